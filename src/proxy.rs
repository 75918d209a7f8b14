//! The Pingora `ProxyHttp` implementation: the request path.
//!
//! Per request: load the current [`RouteTable`] once (`new_ctx`) and keep it
//! in the context; normalize the path; match; authenticate; pick a server;
//! forward with `X-Forwarded-*` and `X-Request-Id`; decorate the response.
//! Errors the gateway produces itself are JSON and go through [`respond_error`].

use crate::auth::{self, AuthError};
use crate::logging::AccessLine;
use crate::routing::{Route, RouteTable, normalize_path, strip_prefix};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The gateway's proxy logic. Cheap to share: all state is in the table.
pub struct Gateway {
    table: Arc<ArcSwap<RouteTable>>,
    ids: RequestIds,
    draining: Arc<AtomicBool>,
}

impl Gateway {
    /// `draining` turns true when this process is being replaced (graceful
    /// upgrade) or stopped: from then on every response closes its
    /// connection, so clients move to the new process while this one still
    /// answers, instead of having idle keep-alive connections cut under them.
    pub fn new(table: Arc<ArcSwap<RouteTable>>, draining: Arc<AtomicBool>) -> Self {
        Gateway {
            table,
            ids: RequestIds::new(),
            draining,
        }
    }
}

/// Per-request state.
pub struct Ctx {
    /// The table this request started with; kept until it ends.
    table: Arc<RouteTable>,
    route: Option<usize>,
    request_id: HeaderValue,
    /// The normalized path when it differs from what is now in the request
    /// (normalization or `strip_prefix` changed it), for the access log.
    logged_path: Option<String>,
    /// Servers this request failed to connect to (they are not tried again).
    failed: Vec<SocketAddr>,
    server: Option<SocketAddr>,
    started: Instant,
    /// When the current server was chosen (upstream latency).
    upstream_started: Option<Instant>,
    subject: Option<String>,
    client_id: Option<String>,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.table.metrics.in_flight.dec();
    }
}

impl Ctx {
    fn route(&self) -> Option<&Route> {
        self.route.map(|i| &self.table.routes[i])
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        crate::downstream::mark_reached_proxy();
        let table = self.table.load_full();
        table.metrics.in_flight.inc();
        Ctx {
            table,
            route: None,
            request_id: HeaderValue::from_static(""),
            logged_path: None,
            failed: Vec::new(),
            server: None,
            started: Instant::now(),
            upstream_started: None,
            subject: None,
            client_id: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        ctx.request_id = match session.req_header().headers.get("x-request-id") {
            Some(v) if valid_request_id(v.as_bytes()) => v.clone(),
            _ => self.ids.next(),
        };
        {
            // Identity headers come from the gateway only, on every route.
            let req = session.req_header_mut();
            match &ctx.table.auth {
                Some(a) => {
                    for h in a.stripped_headers() {
                        req.remove_header(h);
                    }
                }
                None => {
                    for h in auth::IDENTITY_HEADERS {
                        req.remove_header(h);
                    }
                }
            }
        }

        // The URI is refcounted: cloning it lets `path` outlive changes to the request.
        let uri = session.req_header().uri.clone();
        let raw_path = uri.path();
        let path = match normalize_path(raw_path) {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                respond_error(session, ctx, StatusCode::BAD_REQUEST, &msg, &[]).await?;
                return Ok(true);
            }
        };
        if let std::borrow::Cow::Owned(p) = &path {
            ctx.logged_path = Some(p.clone());
        }
        let table = ctx.table.clone();
        let found = {
            let req = session.req_header();
            table.lookup(&path, request_host(req), &req.method)
        };
        let Some((route_idx, route)) = found else {
            respond_error(
                session,
                ctx,
                StatusCode::NOT_FOUND,
                "no route for this path",
                &[],
            )
            .await?;
            return Ok(true);
        };
        ctx.route = Some(route_idx);

        // Every request on a protected route, upgrades and streams included.
        if route.auth_required
            && let Err(e) = authenticate(session, &table, route, ctx).await
        {
            reject(session, &table, route, ctx, e).await?;
            return Ok(true);
        }

        // Forward the normalized path (minus the route's prefix if asked).
        let forwarded = if route.strip_prefix {
            strip_prefix(&path, &route.prefix)
        } else {
            &path
        };
        if forwarded != raw_path {
            let query = uri.query();
            let mut pq = String::with_capacity(forwarded.len() + query.map_or(0, |q| q.len() + 1));
            pq.push_str(forwarded);
            if let Some(q) = query {
                pq.push('?');
                pq.push_str(q);
            }
            let uri = http::Uri::builder()
                .path_and_query(pq)
                .build()
                .map_err(|_| Error::new(ErrorType::InvalidHTTPHeader))?;
            if ctx.logged_path.is_none() {
                ctx.logged_path = Some(path.into_owned());
            }
            session.req_header_mut().set_uri(uri);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx.route().expect("routed in request_filter");
        let failed = &ctx.failed;
        let Some(peer) = route.upstream.select(|a| failed.contains(a)) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no healthy server available",
            ));
        };
        let mut peer = Box::new(peer.clone());
        peer.options.read_timeout = Some(route.timeouts.read);
        peer.options.write_timeout = Some(route.timeouts.write);
        ctx.server = Some(peer._address.clone());
        ctx.upstream_started = Some(Instant::now());
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent yet: try another server of the same upstream, if
        // one is left; otherwise the client sees this error (502/504), not 503.
        if matches!(
            e.etype(),
            ErrorType::ConnectRefused | ErrorType::ConnectTimedout | ErrorType::ConnectNoRoute
        ) {
            // Only the server's fault counts against it, not our own (e.g. EMFILE).
            ctx.table.health.report_connect_failure(&peer._address);
        }
        ctx.failed.push(peer._address.clone());
        e.set_retry(self.another_server_left(ctx));
        e
    }

    /// An error after the request went out. A stale pooled connection is
    /// retried (Pingora's policy); beyond it, an idempotent request with no
    /// unbuffered body and nothing answered yet is retried on another server
    /// of the upstream after a connection failure (not after a timeout), as
    /// nginx's `proxy_next_upstream error` does. Never anything else.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        let timed_out = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
        );
        let retries = ctx.route().map_or(0, |r| r.upstream.retries);
        if !replayable {
            e.set_retry(false);
        } else if client_reused {
            e.retry.decide_reuse(true);
        } else if !timed_out && ctx.failed.len() < retries {
            ctx.failed.push(peer._address.clone());
            e.set_retry(self.another_server_left(ctx));
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let local_port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        prepare_upstream_request(req, client_ip, local_port, &ctx.request_id)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if !resp.status.is_informational() {
            let started = ctx.upstream_started.take();
            if let (Some(route), Some(t)) = (ctx.route(), started) {
                route.metrics.observe_upstream(t.elapsed());
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        add_gateway_headers(resp, ctx)?;
        if resp.status.is_redirection()
            && let (Some(server), Some(loc)) = (&ctx.server, resp.headers.get(header::LOCATION))
            && let Some(new) = rewrite_location(
                loc.as_bytes(),
                server,
                request_host_raw(session.req_header()),
            )
        {
            resp.insert_header(header::LOCATION, new)?;
        }
        Ok(())
    }

    /// Pingora's own error line lacks the request id; `fail_to_proxy` logs one that has it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        true
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (status, msg) = error_status(e);
        // The response already started: an error body would corrupt it (a
        // "complete" chunked stream, a padded download). Drop the connection
        // instead, so the client sees the failure.
        let started = session.response_written().is_some();
        let route = ctx.route();
        let server = match (route, &ctx.server) {
            (Some(r), Some(s)) => r.upstream.server_label(s),
            _ => "",
        };
        let request_id = ctx.request_id.to_str().unwrap_or("");
        let (route_label, upstream) = route.map_or(("", ""), |r| (&*r.pattern, &*r.upstream.name));
        if downstream_gone(e) {
            tracing::info!(request_id, route = route_label, error = %e, "client went away");
        } else if status.is_server_error() {
            tracing::error!(request_id, route = route_label, upstream, server, status = status.as_u16(), error = %e, "request failed");
        } else {
            tracing::warn!(request_id, route = route_label, status = status.as_u16(), error = %e, "request failed");
        }
        let mut extra: Vec<(header::HeaderName, HeaderValue)> = vec![];
        if status == StatusCode::SERVICE_UNAVAILABLE {
            extra.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        let code = if started || downstream_gone(e) {
            0
        } else {
            // Pingora does not reuse a connection after a proxy failure: say so.
            session.set_keepalive(None);
            if respond_error(session, ctx, status, msg, &extra)
                .await
                .is_err()
            {
                tracing::debug!("could not send the error response");
            }
            status.as_u16()
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let path = ctx.logged_path.as_deref().unwrap_or_else(|| req.uri.path());
        let route = ctx.route();
        let elapsed = ctx.started.elapsed();
        route
            .map_or(&ctx.table.metrics.unmatched, |r| &r.metrics)
            .observe(&req.method, status, elapsed);
        if !ctx.table.access_log {
            return;
        }
        let server = match (route, &ctx.server) {
            (Some(r), Some(s)) => r.upstream.server_label(s),
            _ => "",
        };
        AccessLine {
            method: req.method.as_str(),
            path,
            route: route.map_or("", |r| &r.pattern),
            upstream: route.map_or("", |r| &r.upstream.name),
            server,
            status,
            duration: elapsed,
            bytes: session.body_bytes_sent(),
            request_id: ctx.request_id.to_str().unwrap_or(""),
            user: ctx.subject.as_deref().unwrap_or(""),
            error: e.map(|e| e.etype().as_str()).unwrap_or(""),
        }
        .emit();
    }
}

/// Checks the token of a protected route and passes the identity on.
async fn authenticate(
    session: &mut Session,
    table: &RouteTable,
    route: &Route,
    ctx: &mut Ctx,
) -> std::result::Result<(), AuthError> {
    let auth = table.auth.as_ref().ok_or(AuthError::Missing)?;
    let token = auth
        .token(&session.req_header().headers)
        .ok_or(AuthError::Missing)?;
    let id = auth.authenticate(token).await?;
    ctx.subject = id.subject.clone();
    ctx.client_id = id.client_id.clone();
    if !id.has_scopes(&route.required_scopes) {
        return Err(AuthError::Scope);
    }
    let req = session.req_header_mut();
    for (name, value) in &id.headers {
        let _ = req.insert_header(name.clone(), value.clone());
    }
    if !auth.forward_authorization {
        req.remove_header(&header::AUTHORIZATION);
    }
    Ok(())
}

/// Answers a request that was not admitted: 401 / 403 with a
/// `WWW-Authenticate` challenge (RFC 6750 §3), 503 when the authority could
/// not be asked, or a redirect to the login page for a browser navigation.
async fn reject(
    session: &mut Session,
    table: &RouteTable,
    route: &Route,
    ctx: &Ctx,
    e: AuthError,
) -> Result<()> {
    // The one place a rejection is seen.
    table.metrics.auth_rejection(&route.pattern, e.reason());
    tracing::info!(
        request_id = ctx.request_id.to_str().unwrap_or(""),
        route = %route.pattern,
        reason = e.reason(),
        user = ctx.subject.as_deref().unwrap_or(""),
        client = ctx.client_id.as_deref().unwrap_or(""),
        "request not authenticated"
    );
    let auth = table.auth.as_ref();
    if let Some(login) = auth.and_then(|a| a.login_redirect.as_ref())
        && !matches!(e, AuthError::Scope | AuthError::Unavailable)
        && is_navigation(session.req_header())
    {
        let req = session.req_header();
        let original = format!(
            "http://{}{}",
            request_host_raw(req).unwrap_or("localhost"),
            req.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut resp = ResponseHeader::build(StatusCode::FOUND, Some(5))?;
        resp.insert_header(header::LOCATION, login.location(&original))?;
        resp.insert_header(header::CONTENT_LENGTH, 0)?;
        resp.insert_header(header::CACHE_CONTROL, "no-store")?;
        add_gateway_headers(&mut resp, ctx)?;
        return session.write_response_header(Box::new(resp), true).await;
    }
    let extra = match (auth, e) {
        (_, AuthError::Unavailable) => (header::RETRY_AFTER, HeaderValue::from_static("5")),
        (Some(a), e) => (
            header::WWW_AUTHENTICATE,
            a.challenge(e, &route.required_scopes),
        ),
        (None, _) => (
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pingora-gateway\""),
        ),
    };
    respond_error(session, ctx, e.status(), &e.to_string(), &[extra]).await
}

/// A browser navigation: a GET that accepts HTML.
fn is_navigation(req: &RequestHeader) -> bool {
    req.method == http::Method::GET
        && req
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

/// Writes `{"error": msg, "request_id": id}` with `status`.
pub async fn respond_error(
    session: &mut Session,
    ctx: &Ctx,
    status: StatusCode,
    msg: &str,
    extra: &[(header::HeaderName, HeaderValue)],
) -> Result<()> {
    let body = serde_json::json!({
        "error": msg,
        "request_id": ctx.request_id.to_str().unwrap_or(""),
    })
    .to_string();
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    resp.insert_header(header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    for (k, v) in extra {
        resp.insert_header(k.clone(), v.clone())?;
    }
    add_gateway_headers(&mut resp, ctx)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

impl Gateway {
    /// Whether this request's upstream has a healthy server it has not failed
    /// on yet, within the upstream's `retries`.
    fn another_server_left(&self, ctx: &Ctx) -> bool {
        let Some(route) = ctx.route() else {
            return false;
        };
        ctx.failed.len() <= route.upstream.retries
            && route.upstream.has_candidate(|a| ctx.failed.contains(a))
    }
}

/// Maps a proxy error to the status the client sees.
fn error_status(e: &Error) -> (StatusCode, &'static str) {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(503) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy server available",
        ),
        HTTPStatus(code) => (
            StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY),
            "request failed",
        ),
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
        }
        ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => {
            (StatusCode::BAD_GATEWAY, "upstream refused the connection")
        }
        _ => match e.esource() {
            pingora_error::ErrorSource::Upstream => {
                (StatusCode::BAD_GATEWAY, "upstream broke the protocol")
            }
            pingora_error::ErrorSource::Downstream => (StatusCode::BAD_REQUEST, "bad request"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        },
    }
}

/// The client went away: nothing can be written.
fn downstream_gone(e: &Error) -> bool {
    matches!(e.esource(), pingora_error::ErrorSource::Downstream)
        && matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
        )
}

/// `X-Request-Id` and the configured response headers, the latter only
/// where the response does not carry them already (the upstream's win).
fn add_gateway_headers(resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
    decorate_response(resp, &ctx.request_id, &ctx.table.response_headers)
}

/// The request as the upstream gets it: `X-Forwarded-For` (the client's
/// address appended), `-Proto`, `-Host`, `-Port` (the port the client
/// connected to, never one the client claims: Next.js builds absolute URLs
/// from it), `X-Request-Id`; client-supplied `Forwarded`, `X-Real-IP` and
/// header names with `_` are dropped.
pub fn prepare_upstream_request(
    req: &mut RequestHeader,
    client_ip: Option<std::net::IpAddr>,
    local_port: Option<u16>,
    request_id: &HeaderValue,
) -> Result<()> {
    if let Some(ip) = client_ip {
        use std::fmt::Write;
        let mut xff = String::with_capacity(64);
        if let Some(prev) = req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            && !prev.trim().is_empty()
        {
            xff.push_str(prev);
            xff.push_str(", ");
        }
        let _ = write!(xff, "{ip}");
        req.insert_header("x-forwarded-for", xff)?;
    }
    req.insert_header("x-forwarded-proto", "http")?;
    if let Some(host) = req.headers.get(header::HOST).cloned() {
        req.insert_header("x-forwarded-host", host)?;
    }
    match local_port {
        Some(port) => req.insert_header("x-forwarded-port", port)?,
        None => drop(req.remove_header("x-forwarded-port")),
    }
    // Other client-supplied hop claims are not forwarded.
    req.remove_header("forwarded");
    req.remove_header("x-real-ip");
    // Names with `_` are dropped (nginx's `underscores_in_headers off`):
    // many app servers fold `X_User_Id` into `X-User-Id`, which would
    // bypass the stripping of identity headers.
    if req.headers.keys().any(|k| k.as_str().contains('_')) {
        let names: Vec<_> = req
            .headers
            .keys()
            .filter(|k| k.as_str().contains('_'))
            .cloned()
            .collect();
        for n in names {
            req.remove_header(&n);
        }
    }
    req.insert_header("x-request-id", request_id.clone())?;
    Ok(())
}

/// The gateway's response headers: `X-Request-Id` and the configured
/// `response_headers` (security headers by default), never over a header
/// the upstream set.
pub fn decorate_response(
    resp: &mut ResponseHeader,
    request_id: &HeaderValue,
    extra: &[(header::HeaderName, HeaderValue)],
) -> Result<()> {
    resp.insert_header("x-request-id", request_id.clone())?;
    for (name, value) in extra {
        if !resp.headers.contains_key(name) {
            resp.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}

/// The request's host without port (`Host` header, else the URI authority).
fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = request_host_raw(req)?;
    Some(match raw.rfind(':') {
        Some(i) if !raw.ends_with(']') => &raw[..i],
        _ => raw,
    })
}

/// The request's host as sent, with port if any.
fn request_host_raw(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// Rewrites a `Location` pointing at the upstream server itself (as Next.js
/// emits `http://localhost:3002/...`) to the host the client used, as nginx's
/// `proxy_redirect default` does. Other locations are left alone.
pub fn rewrite_location(
    loc: &[u8],
    server: &SocketAddr,
    client_host: Option<&str>,
) -> Option<String> {
    let client_host = client_host?;
    let server = server.as_inet()?;
    let loc = std::str::from_utf8(loc).ok()?;
    let rest = loc.strip_prefix("http://")?;
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => (h, p.parse::<u16>().ok()?),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let is_server = port == server.port()
        && (host.eq_ignore_ascii_case("localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                ip == server.ip() || ip.is_loopback() && server.ip().is_loopback()
            }));
    is_server.then(|| {
        format!(
            "http://{client_host}{}",
            if tail.is_empty() { "/" } else { tail }
        )
    })
}

/// A client-supplied request id is kept only if it is short and plain.
fn valid_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Unique request ids: a random per-process prefix and a mixed counter,
/// 32 hex digits, no lock and no system call per request.
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        RequestIds {
            prefix: h.finish(),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // splitmix64 is a bijection: distinct counters give distinct ids.
        let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let mut buf = [0u8; 32];
        hex(self.prefix, &mut buf[..16]);
        hex(z, &mut buf[16..]);
        HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
    }
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::Inet(s.parse().unwrap())
    }

    #[test]
    fn rewrites_locations_that_point_at_the_upstream() {
        let s = addr("127.0.0.1:3002");
        let rw = |l: &str| rewrite_location(l.as_bytes(), &s, Some("gw.example:6188"));
        assert_eq!(
            rw("http://localhost:3002/login?x=1").as_deref(),
            Some("http://gw.example:6188/login?x=1")
        );
        assert_eq!(
            rw("http://127.0.0.1:3002").as_deref(),
            Some("http://gw.example:6188/")
        );
        assert_eq!(rw("http://localhost:3003/x"), None);
        assert_eq!(rw("https://localhost:3002/x"), None);
        assert_eq!(rw("http://example.com/x"), None);
        assert_eq!(rw("/relative"), None);
    }

    #[test]
    fn request_ids_are_unique_and_well_formed() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(valid_request_id(a.as_bytes()));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id(&[b'a'; 129]));
        assert!(!valid_request_id(b""));
    }
}
