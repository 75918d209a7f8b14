//! The Pingora `ProxyHttp` implementation: the request path.
//!
//! Per request: load the current [`RouteTable`] once (`new_ctx`) and keep it
//! in the context; normalize the path; match; authenticate; pick a server;
//! forward with `X-Forwarded-*` and `X-Request-Id`; decorate the response.
//! Errors the gateway produces itself are JSON and go through [`respond_error`].

use crate::auth::{self, AuthError};
use crate::forwarding::{Forwarding, prepare_upstream_request, set_host};
use crate::host::Host;
use crate::logging::AccessLine;
use crate::routing::{normalize_path, strip_prefix};
use crate::runtime::{Route, RouteTable};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::authority::raw_target_authority;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::IpAddr;
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
    /// The validated request host (absolute-form target, else `Host`).
    host: Option<Host>,
    /// The client's address (see [`TrustedProxies::client_ip`]).
    client_ip: Option<IpAddr>,
    /// Whether the TCP peer is a trusted proxy.
    peer_trusted: bool,
    /// The verified identity, whose headers go upstream.
    identity: Option<Arc<auth::Identity>>,
    /// Request body bytes seen so far, against the route's limit.
    body_bytes: u64,
    /// Upstream side of the current attempt (see [`Attempt`]).
    up: Attempt,
    /// The next attempt must use a new connection that is not pooled
    /// (a response on a pooled one did not belong to this request).
    fresh: bool,
    /// Why the upstream's response was cut off, for the access line and
    /// `gateway_upstream_aborted_total`.
    aborted: Option<&'static str>,
}

/// What the gateway tracks about one attempt to get a response from a server.
#[derive(Default)]
struct Attempt {
    /// The connection is not pooled afterwards (`Connection: close` is sent).
    no_pool: bool,
    /// The connection came from the pool.
    reused: bool,
    /// Pingora's count of pooled connections found with unexpected data, when
    /// this attempt took its connection or got its response header.
    unexpected_base: u64,
    /// `1xx` responses seen.
    informational: u8,
    /// The final response header arrived.
    got_header: bool,
    /// This attempt failed because the response belonged to another request.
    desync: bool,
    /// Proof material that a request on a reused connection never reached
    /// the server (non-idempotent requests only).
    probe: Option<crate::upstream::StaleProbe>,
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
            host: None,
            client_ip: None,
            peer_trusted: false,
            identity: None,
            body_bytes: 0,
            up: Attempt::default(),
            fresh: false,
            aborted: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()) {
            let peer = peer.ip();
            let trusted = &ctx.table.trusted_proxies;
            ctx.peer_trusted = !trusted.is_empty() && trusted.contains(peer);
            ctx.client_ip = Some(if ctx.peer_trusted {
                trusted.client_ip(peer, session.req_header())
            } else {
                peer
            });
        }
        // An incoming id is kept only from a trusted proxy (Envoy's edge
        // default): a client choosing its id could forge log correlation or
        // reuse another request's id, which `require_request_id_echo`
        // relies on being unique.
        ctx.request_id = match session.req_header().headers.get("x-request-id") {
            Some(v) if ctx.peer_trusted && valid_request_id(v.as_bytes()) => v.clone(),
            _ => self.ids.next(),
        };
        if let Err(msg) = check_request(session, ctx) {
            respond_error(session, ctx, StatusCode::BAD_REQUEST, msg, &[]).await?;
            return Ok(true);
        }
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
        let found = table.lookup(
            &path,
            ctx.host.as_ref().map(Host::name),
            &session.req_header().method,
        );
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

        // A declared body over the limit is refused before anything is
        // forwarded; a chunked one is counted in `request_body_filter`.
        if declared_length(session.req_header()).is_some_and(|n| n > route.max_body_bytes) {
            respond_error(
                session,
                ctx,
                StatusCode::PAYLOAD_TOO_LARGE,
                BODY_TOO_LARGE,
                &[],
            )
            .await?;
            return Ok(true);
        }

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
        // An absolute-form target goes upstream in origin form (its
        // authority is the `Host` now).
        if forwarded != raw_path || session.req_header().raw_path().first() != Some(&b'/') {
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
        // Which pooled connections this request may take (see upstream.rs).
        let state = route.upstream.state(&peer._address);
        let pooled =
            route.upstream.keepalive && !ctx.fresh && !state.is_some_and(|s| s.suspended());
        if pooled {
            if let Some(s) = state {
                peer.group_key = s.pool_key();
                peer.options.idle_timeout = Some(s.idle_timeout(route.upstream.timeouts.idle));
            }
        } else {
            peer.group_key = crate::upstream::NO_POOL;
        }
        ctx.up = Attempt {
            no_pool: !pooled,
            unexpected_base: unexpected_data_count(),
            ..Attempt::default()
        };
        ctx.server = Some(peer._address.clone());
        ctx.upstream_started = Some(Instant::now());
        Ok(peer)
    }

    async fn connected_to_upstream(
        &self,
        session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.up.reused = reused;
        if !ctx.up.no_pool {
            // Pingora found data on a pooled connection of this server while
            // this request looked for one.
            self.check_unexpected_data(ctx, &peer._address);
        }
        #[cfg(unix)]
        if reused && !session.req_header().method.is_idempotent() {
            ctx.up.probe = crate::upstream::StaleProbe::new(fd);
        }
        #[cfg(windows)]
        let _ = session;
        Ok(())
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
        let retry = self.another_server_left(ctx);
        if retry {
            tracing::warn!(
                request_id = ctx.request_id.to_str().unwrap_or(""),
                server = %peer._address,
                error = %SafeError(&e),
                "cannot connect to the server, trying another"
            );
        }
        e.set_retry(retry);
        e
    }

    /// An error after the request went out.
    ///
    /// - A response that belonged to another request (see
    ///   `upstream_response_filter`): an idempotent request is retried once on
    ///   a new, unpooled connection.
    /// - A pooled connection that turned out dead before any byte of the
    ///   response (closed or reset): an idempotent request is retried (the
    ///   usual keep-alive race); any other request only when the server's TCP
    ///   acknowledged no byte of it ([`crate::upstream::StaleProbe`]), so it
    ///   provably never reached the application.
    /// - Beyond that, an idempotent request with no unbuffered body and
    ///   nothing answered yet is retried on another server of the upstream
    ///   after a connection failure (not after a timeout), as nginx's
    ///   `proxy_next_upstream error` does. Never anything else.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        // Our own refusal (a body over the limit) is final, never retried.
        if matches!(e.etype(), ErrorType::HTTPStatus(413)) {
            e.set_retry(false);
            return e;
        }
        let probe = ctx.up.probe.take();
        let idempotent = session.req_header().method.is_idempotent();
        let body_kept = !session.as_ref().retry_buffer_truncated();
        let unanswered = session.response_written().is_none();
        let replayable = idempotent && body_kept && unanswered;
        let request_id = ctx.request_id.to_str().unwrap_or("");
        if ctx.up.desync {
            let retry = replayable && !ctx.fresh;
            ctx.fresh = true;
            e.set_retry(retry);
            return e;
        }
        let timed_out = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
        );
        let dead_before_response = client_reused
            && !ctx.up.got_header
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if client_reused
            && !ctx.up.got_header
            && e.esource() == &pingora_error::ErrorSource::Upstream
            && matches!(e.etype(), ErrorType::InvalidHTTPHeader | ErrorType::H1Error)
        {
            // Bytes that are no response to this request where its response
            // should start: left over from an earlier exchange.
            self.desync(ctx, &peer._address, "garbage where a response should start");
            let retry = replayable && !ctx.fresh;
            ctx.fresh = true;
            e.set_retry(retry);
            return e;
        }
        let retries = ctx.route().map_or(0, |r| r.upstream.retries);
        if dead_before_response && unanswered && body_kept {
            let proven = idempotent
                || (e.retry == pingora_error::RetryType::ReusedOnly
                    || e.etype() == &ErrorType::WriteError)
                    && probe.is_some_and(|p| p.request_unacknowledged());
            if proven {
                tracing::debug!(request_id, server = %peer._address, error = %SafeError(&e), "pooled connection was closed by the server, retrying on another");
                e.set_retry(true);
            } else {
                e.set_retry(false);
            }
        } else if !replayable {
            e.set_retry(false);
        } else if client_reused {
            e.retry.decide_reuse(true);
        } else if !timed_out && ctx.failed.len() < retries {
            ctx.failed.push(peer._address.clone());
            let retry = self.another_server_left(ctx);
            if retry {
                tracing::warn!(request_id, server = %peer._address, error = %SafeError(&e), "upstream failed, trying another server");
            }
            e.set_retry(retry);
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
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let local_port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        let keep = ctx.route().map(|r| r.keep_headers).unwrap_or_default();
        // Once per attempt: a retry replays the body from the start.
        ctx.body_bytes = 0;
        prepare_upstream_request(
            req,
            &Forwarding {
                peer,
                trusted: ctx.peer_trusted,
                host: ctx.host.as_ref(),
                scheme: "http",
                local_port,
                request_id: &ctx.request_id,
                keep,
            },
        )?;
        // Set after Pingora removed what the client's `Connection` header
        // named, so a client cannot make them disappear.
        if let Some(id) = &ctx.identity {
            for (name, value) in &id.headers {
                req.insert_header(name.clone(), value.clone())?;
            }
        }
        if ctx.up.no_pool && !req.headers.contains_key(header::UPGRADE) {
            req.insert_header(header::CONNECTION, "close")?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // After a `101` the bytes are a WebSocket's (or another upgraded
        // protocol's), not a request body.
        if session.was_upgraded() {
            return Ok(());
        }
        if let (Some(b), Some(route)) = (body.as_ref(), ctx.route()) {
            let limit = route.max_body_bytes;
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > limit {
                // The upstream never sees the body complete: the request
                // is abandoned mid-body and the client gets 413 if nothing
                // was answered yet.
                return Err(Error::explain(ErrorType::HTTPStatus(413), BODY_TOO_LARGE));
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let table = ctx.table.clone();
        let Some(route) = ctx.route.map(|i| &table.routes[i]) else {
            return Ok(());
        };
        // Any response header, interim ones included, is a byte of the response.
        ctx.up.got_header = true;
        ctx.up.probe = None;
        let upgrade = resp.status == StatusCode::SWITCHING_PROTOCOLS;
        if upgrade && !session.is_upgrade_req() {
            return Err(upstream_error(
                ErrorType::InvalidHTTPHeader,
                "101 Switching Protocols to a request that asked for no upgrade",
            ));
        }
        if resp.status.is_informational() && !upgrade {
            // A few interim responses, within the read timeout, then the real one.
            ctx.up.informational = ctx.up.informational.saturating_add(1);
            if ctx.up.informational > MAX_INFORMATIONAL {
                return Err(upstream_error(
                    ErrorType::InvalidHTTPHeader,
                    "too many 1xx responses",
                ));
            }
            if ctx
                .upstream_started
                .is_some_and(|t| t.elapsed() >= route.timeouts.read)
            {
                return Err(upstream_error(
                    ErrorType::ReadTimedout,
                    "no final response within the read timeout (1xx responses only)",
                ));
            }
            return Ok(());
        }
        let started = ctx.upstream_started.take();
        if let Some(t) = started {
            route.metrics.observe_upstream(t.elapsed());
        }
        let Some(server) = ctx.server.clone() else {
            return Ok(());
        };
        let state = route.upstream.state(&server);
        let echoed = resp.headers.get("x-request-id").map(|v| v.as_bytes());
        let mismatch = match echoed {
            Some(id) if id == ctx.request_id.as_bytes() => {
                if !ctx.up.reused
                    && let Some(s) = state
                {
                    s.learn_echo(true);
                }
                false
            }
            // The first response on a new connection is this request's: a
            // server that answers it with another id does not echo.
            Some(_) if !ctx.up.reused => {
                if let Some(s) = state {
                    s.learn_echo(false);
                }
                route.upstream.require_echo
            }
            Some(_) => route.upstream.require_echo || state.is_some_and(|s| s.echoes()),
            None => route.upstream.require_echo,
        };
        if mismatch {
            self.desync(
                ctx,
                &server,
                "response carries another request's X-Request-Id",
            );
            ctx.up.desync = true;
            return Err(upstream_error(
                ErrorType::InvalidHTTPHeader,
                "response X-Request-Id does not match the request",
            ));
        }
        one_content_length(resp)?;
        if let (Some(secs), Some(state)) = (keepalive_timeout(resp), state) {
            state.learn_keepalive(secs);
        }
        // Pingora checks the connection for stray data when it pools it, after this.
        ctx.up.unexpected_base = unexpected_data_count();
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            // Pingora checks the connection for stray data when it pools it, after this.
            ctx.up.unexpected_base = unexpected_data_count();
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        add_gateway_headers(resp, ctx)?;
        if let Some(server) = &ctx.server {
            rewrite_response_urls(resp, server, ctx.host.as_ref().map(Host::as_str))?;
        }
        Ok(())
    }

    /// Pingora's own error line lacks the request id; `fail_to_proxy` logs one that has it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        true
    }

    /// Retries are logged by `fail_to_connect` / `error_while_proxy` (a normal
    /// stale-connection retry at debug), without upstream bytes.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &Ctx,
        _error: &Error,
        _context: pingora_proxy::ProxyWarnLogContext,
    ) -> bool {
        true
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (status, msg) = error_status(e);
        // The response already started: an error body would corrupt it (a
        // "complete" chunked stream, a padded download). Drop the connection
        // instead, so the client sees the failure.
        // A final response is still possible after forwarded `1xx` ones.
        let started = session
            .response_written()
            .is_some_and(|r| !r.status.is_informational());
        if started && !downstream_gone(e) {
            ctx.aborted = Some(abort_reason(e));
        }
        let route = ctx.route();
        let server = match (route, &ctx.server) {
            (Some(r), Some(s)) => r.upstream.server_label(s),
            _ => "",
        };
        let request_id = ctx.request_id.to_str().unwrap_or("");
        let (route_label, upstream) = route.map_or(("", ""), |r| (&*r.pattern, &*r.upstream.name));
        let error = SafeError(e);
        if downstream_gone(e) {
            tracing::info!(request_id, route = route_label, error = %error, "client went away");
        } else if started {
            // The client has a status already and gets a cut-off response.
            let reason = ctx.aborted.unwrap_or("");
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            tracing::error!(request_id, route = route_label, upstream, server, status, reason, error = %error, "upstream response cut off");
        } else if status.is_server_error() {
            tracing::error!(request_id, route = route_label, upstream, server, status = status.as_u16(), error = %error, "request failed");
        } else {
            tracing::warn!(request_id, route = route_label, status = status.as_u16(), error = %error, "request failed");
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
        if let Some(server) = ctx.server.clone()
            && !ctx.up.no_pool
        {
            // Pingora found stray data on the connection when pooling it.
            self.check_unexpected_data(ctx, &server);
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let path = ctx.logged_path.as_deref().unwrap_or_else(|| req.uri.path());
        let route = ctx.route();
        let elapsed = ctx.started.elapsed();
        route
            .map_or(&ctx.table.metrics.unmatched, |r| &r.metrics)
            .observe(&req.method, status, elapsed);
        if let (Some(reason), Some(r)) = (ctx.aborted, route) {
            ctx.table
                .metrics
                .upstream_aborted
                .with_label_values(&[&*r.pattern, &*r.upstream.name, reason])
                .inc();
        }
        if !ctx.table.access_log {
            return;
        }
        let server = match (route, &ctx.server) {
            (Some(r), Some(s)) => r.upstream.server_label(s),
            _ => "",
        };
        AccessLine {
            method: req.method.as_str(),
            client_ip: ctx.client_ip,
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
            aborted: ctx.aborted.unwrap_or(""),
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
    ctx.identity = Some(id);
    let from_header = auth::bearer_token(&session.req_header().headers).is_some();
    let req = session.req_header_mut();
    if !auth.forward_authorization {
        req.remove_header(&header::AUTHORIZATION);
    }
    // The upstream sees only the credential that was checked: a token
    // cookie beside a verified header (or any, when credentials are not
    // forwarded) is removed.
    if let Some(name) = auth.cookie_name()
        && (from_header || !auth.forward_authorization)
    {
        strip_cookie(req, name);
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
        // Only the validated host: a `Host` is the client's word, and the
        // login page sends the browser back to `return_to`.
        let req = session.req_header();
        let original = format!(
            "http://{}{}",
            ctx.host.as_ref().map_or("localhost", Host::as_str),
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

/// At most this many `1xx` responses before the final one.
const MAX_INFORMATIONAL: u8 = 4;

/// Pingora's count of pooled connections found holding unexpected data
/// (set once at start, see [`set_unexpected_data_counter`]).
static UNEXPECTED_DATA: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();

/// Hands the gateway Pingora's connector counter of pooled connections
/// found with unexpected data (`HttpProxy::unexpected_data_connection_counter`).
pub fn set_unexpected_data_counter(c: Arc<AtomicU64>) {
    let _ = UNEXPECTED_DATA.set(c);
}

fn unexpected_data_count() -> u64 {
    UNEXPECTED_DATA
        .get()
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// An error the upstream's response caused.
fn upstream_error(kind: ErrorType, why: &'static str) -> Box<Error> {
    Error::explain(kind, why).into_up()
}

/// Why a started response was cut off (`aborted` in the access line).
fn abort_reason(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        ErrorType::ConnectionClosed => "closed",
        ErrorType::ReadError => "reset",
        _ if e.esource() == &pingora_error::ErrorSource::Upstream => "protocol",
        _ => "error",
    }
}

/// Collapses repeated `Content-Length` headers to one (Pingora accepts
/// identical duplicates and rejects different ones).
fn one_content_length(resp: &mut ResponseHeader) -> Result<()> {
    let mut all = resp.headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(first), Some(_)) = (all.next(), all.next()) {
        let first = first.clone();
        resp.insert_header(header::CONTENT_LENGTH, first)?;
    }
    Ok(())
}

/// `timeout=N` of the response's `Keep-Alive` header, in seconds.
fn keepalive_timeout(resp: &ResponseHeader) -> Option<u64> {
    let v = resp.headers.get("keep-alive")?.to_str().ok()?;
    v.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("timeout") {
            v.trim().parse().ok().filter(|n| *n > 0)
        } else {
            None
        }
    })
}

/// An error for logs: its kind, source and short context, never the raw
/// upstream bytes Pingora puts in some contexts (`buf: ...`, header values),
/// at most a few hundred bytes.
pub struct SafeError<'a>(pub &'a Error);

impl std::fmt::Display for SafeError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut e = self.0;
        for depth in 0..4 {
            if depth > 0 {
                f.write_str(" cause: ")?;
            }
            write!(f, "{} {}", e.esource().as_str(), e.etype().as_str())?;
            if let Some(c) = e.context.as_ref() {
                f.write_str(" context: ")?;
                write_safe_context(f, c.as_str())?;
            }
            match e.cause.as_ref() {
                Some(c) => match c.downcast_ref::<Box<Error>>() {
                    Some(inner) => e = inner,
                    None => {
                        f.write_str(" cause: ")?;
                        let text = c.to_string();
                        return write_safe_context(f, &text);
                    }
                },
                None => return Ok(()),
            }
        }
        Ok(())
    }
}

/// Writes a context string up to the first place upstream bytes can start
/// (`buf:`, `value:`), printable ASCII only, at most 120 bytes.
fn write_safe_context(f: &mut std::fmt::Formatter<'_>, c: &str) -> std::fmt::Result {
    let mut end = c.len();
    for marker in ["buf:", "value:", "Cookie", "cookie", "Bearer", "bearer"] {
        if let Some(i) = c.find(marker) {
            end = end.min(
                i + if marker.ends_with(':') {
                    marker.len()
                } else {
                    0
                },
            );
        }
    }
    let cut = end < c.len();
    for (n, ch) in c[..end].chars().enumerate() {
        if n >= 120 {
            return f.write_str("…");
        }
        let ch = if ch.is_ascii_graphic() || ch == ' ' {
            ch
        } else {
            '?'
        };
        write!(f, "{ch}")?;
    }
    if cut {
        f.write_str(" (upstream bytes withheld)")?;
    }
    Ok(())
}

impl Gateway {
    /// Records a desync on `server` of this request's upstream: counted,
    /// the server's pooled connections abandoned and pooling suspended;
    /// logged once per suspension.
    fn desync(&self, ctx: &Ctx, server: &SocketAddr, what: &'static str) {
        let Some(route) = ctx.route() else { return };
        let Some(state) = route.upstream.state(server) else {
            return;
        };
        if state.desync() {
            tracing::warn!(
                request_id = ctx.request_id.to_str().unwrap_or(""),
                upstream = %route.upstream.name,
                server = route.upstream.server_label(server),
                what,
                suspend_seconds = crate::upstream::SUSPEND_POOLING.as_secs(),
                "server sent data that answers no request: its connections are not reused for a while"
            );
        }
    }

    /// Attributes a rise of Pingora's unexpected-data count since this
    /// attempt's last look to `server` (Pingora tests a pooled connection
    /// for stray bytes when it pools it and when it takes it).
    fn check_unexpected_data(&self, ctx: &mut Ctx, server: &SocketAddr) {
        let now = unexpected_data_count();
        if now > ctx.up.unexpected_base {
            ctx.up.unexpected_base = now;
            self.desync(ctx, server, "bytes on an idle pooled connection");
        }
    }

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
        HTTPStatus(413) => (StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE),
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

/// Removes cookie `name` from every `Cookie` header.
fn strip_cookie(req: &mut RequestHeader, name: &str) {
    let values: Vec<String> = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let rewritten: Vec<Option<String>> = values
        .iter()
        .map(|v| auth::without_cookie(v, name))
        .collect();
    if rewritten.iter().all(Option::is_none) {
        return;
    }
    req.remove_header(&header::COOKIE);
    for (old, new) in values.into_iter().zip(rewritten) {
        let v = new.unwrap_or(old);
        if !v.is_empty() {
            let _ = req.append_header(header::COOKIE, v);
        }
    }
}

/// The message of a 413.
const BODY_TOO_LARGE: &str = "request body too large";

/// Request-line and header rules checked before routing; the message is
/// the 400's. Sets `ctx.host` and the forwarded `Host`.
fn check_request(session: &mut Session, ctx: &mut Ctx) -> std::result::Result<(), &'static str> {
    let req = session.req_header();
    // Methods are case-sensitive (RFC 9110 §9.1) but many frameworks
    // upper-case them: `post` must not slip past a route narrowed to `POST`.
    if req.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("method must be upper case");
    }
    // Routing sees a lossy copy of a target that is not UTF-8, while the
    // upstream would get the raw bytes (an overlong `\xC0\xAE` is `.` to some).
    if !req.raw_path_is_utf8() {
        return Err("request target is not valid UTF-8");
    }
    // Two credentials: which one an upstream reads is anybody's guess.
    if req
        .headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err("more than one Authorization header");
    }
    // RFC 9112 §3.2.2: an absolute-form target's authority is the host
    // (Pingora keeps it off the `Uri` and refuses a `Host` that differs).
    let host = match raw_target_authority(req.raw_path()).authority() {
        Some(a) => Some(
            std::str::from_utf8(a)
                .ok()
                .and_then(|a| Host::parse(a).ok())
                .ok_or("invalid host in request target")?,
        ),
        None => {
            let mut hosts = req.headers.get_all(header::HOST).iter();
            match (hosts.next(), hosts.next()) {
                (Some(_), Some(_)) => return Err("more than one Host header"),
                (Some(h), None) => Some(Host::from_header(h).map_err(|_| "invalid Host header")?),
                // HTTP/1.0 may omit it, but the upstream gets HTTP/1.1 and
                // would fall back to its default virtual host: refuse.
                (None, _) => return Err("missing Host header"),
            }
        }
    };
    if let Some(h) = &host {
        set_host(session.req_header_mut(), h).map_err(|_| "invalid Host header")?;
    }
    ctx.host = host;
    Ok(())
}

/// The request's `Content-Length`, when it has one that parses (Pingora
/// refuses conflicting or malformed ones before this point).
fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Rewrites URLs of a response that point at the upstream server itself to
/// the host the client used: `Location` of a redirect or a `201 Created`,
/// `Content-Location`, and the `url=` of `Refresh`.
pub fn rewrite_response_urls(
    resp: &mut ResponseHeader,
    server: &SocketAddr,
    client_host: Option<&str>,
) -> Result<()> {
    if client_host.is_none() {
        return Ok(());
    }
    if (resp.status.is_redirection() || resp.status == StatusCode::CREATED)
        && let Some(new) = resp
            .headers
            .get(header::LOCATION)
            .and_then(|v| rewrite_location(v.as_bytes(), server, client_host))
    {
        resp.insert_header(header::LOCATION, new)?;
    }
    if let Some(new) = resp
        .headers
        .get(header::CONTENT_LOCATION)
        .and_then(|v| rewrite_location(v.as_bytes(), server, client_host))
    {
        resp.insert_header(header::CONTENT_LOCATION, new)?;
    }
    if let Some(new) = resp
        .headers
        .get(header::REFRESH)
        .and_then(|v| rewrite_refresh(v.as_bytes(), server, client_host))
    {
        resp.insert_header(header::REFRESH, new)?;
    }
    Ok(())
}

/// `Refresh: 5; url=http://127.0.0.1:3002/x` with the URL rewritten as
/// [`rewrite_location`] does.
fn rewrite_refresh(v: &[u8], server: &SocketAddr, client_host: Option<&str>) -> Option<String> {
    let v = std::str::from_utf8(v).ok()?;
    let lower = v.to_ascii_lowercase();
    let i = lower.find("url=")? + 4;
    let url = v[i..].trim().trim_matches(['"', '\'']);
    let new = rewrite_location(url.as_bytes(), server, client_host)?;
    Some(format!("{}{new}", &v[..i]))
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

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(201, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn rewrites_201_location_content_location_and_refresh() {
        let s = addr("127.0.0.1:3002");
        let mut r = resp(&[
            ("location", "http://127.0.0.1:3002/a"),
            ("content-location", "http://localhost:3002/b?x"),
            ("refresh", "5; URL=http://127.0.0.1:3002/c"),
        ]);
        rewrite_response_urls(&mut r, &s, Some("gw:80")).unwrap();
        assert_eq!(r.headers["location"], "http://gw:80/a");
        assert_eq!(r.headers["content-location"], "http://gw:80/b?x");
        assert_eq!(r.headers["refresh"], "5; URL=http://gw:80/c");
        // A 200's Location and foreign URLs are left alone.
        let mut r = resp(&[
            ("location", "http://127.0.0.1:3002/a"),
            ("refresh", "5; url=https://example.com/"),
        ]);
        r.set_status(200).unwrap();
        rewrite_response_urls(&mut r, &s, Some("gw:80")).unwrap();
        assert_eq!(r.headers["location"], "http://127.0.0.1:3002/a");
        assert_eq!(r.headers["refresh"], "5; url=https://example.com/");
    }

    #[test]
    fn collapses_duplicate_content_length() {
        let mut r = resp(&[("content-length", "2"), ("content-length", "2")]);
        one_content_length(&mut r).unwrap();
        assert_eq!(r.headers.get_all("content-length").iter().count(), 1);
    }

    #[test]
    fn reads_the_keep_alive_timeout() {
        let t = |v: &str| keepalive_timeout(&resp(&[("keep-alive", v)]));
        assert_eq!(t("timeout=5"), Some(5));
        assert_eq!(t("max=100, timeout=2"), Some(2));
        assert_eq!(t(" Timeout = 7 "), Some(7));
        assert_eq!(t("timeout=0"), None);
        assert_eq!(t("timeout=x"), None);
        assert_eq!(t("max=5"), None);
        assert_eq!(keepalive_timeout(&resp(&[])), None);
    }

    #[test]
    fn errors_are_logged_without_upstream_bytes() {
        let inner = Error::explain(
            ErrorType::InvalidHTTPHeader,
            "buf: HTTP/1.1 200 OK\\r\\nSet-Cookie: sid=SECRET",
        );
        let e = Error::because(ErrorType::InvalidHTTPHeader, "while reading", inner).into_up();
        let text = SafeError(&e).to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("InvalidHTTPHeader"), "{text}");
        assert!(text.contains("withheld"), "{text}");
        let e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            format!("invalid Content-Length header value: {}", "9".repeat(5000)),
        );
        let text = SafeError(&e).to_string();
        assert!(!text.contains("999"), "{text}");
    }

    proptest::proptest! {
        #[test]
        fn safe_errors_are_short_and_never_carry_what_follows_buf(
            prefix in "[ -~]{0,300}",
            secret in "[A-Za-z0-9]{8,40}",
            depth in 1usize..6,
        ) {
            let mut e = Error::explain(ErrorType::InvalidHTTPHeader, format!("{prefix}buf: {secret}"));
            for _ in 1..depth {
                e = Error::because(ErrorType::ReadError, format!("{prefix}buf: {secret}"), e);
            }
            let text = SafeError(&e).to_string();
            proptest::prop_assert!(text.len() <= 1024, "{} bytes", text.len());
            let leaked = format!("buf: {secret}");
            proptest::prop_assert!(!text.contains(&leaked));
        }

        #[test]
        fn keep_alive_parsing_never_panics(v in "[ -~]{0,64}") {
            let mut r = ResponseHeader::build(200, None).unwrap();
            if r.append_header("keep-alive", v.as_str()).is_ok() {
                let _ = keepalive_timeout(&r);
            }
        }
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
