//! The Pingora `ProxyHttp` implementation: the request path.
//!
//! Per request: load the current [`RouteTable`] once (`new_ctx`) and keep it
//! in the context; normalize the path; match; authenticate; pick a server;
//! forward with `X-Forwarded-*` and `X-Request-Id`; decorate the response.
//! Errors the gateway produces itself are JSON and go through [`respond`].
//!
//! This file is the thin adapter: Pingora's hooks, the per-request context,
//! and what ties them to the pieces beside it, which are plain functions
//! unit-tested in their own files: `request` (checks before routing, the
//! upstream target), `admit` (authentication), `retry` (the retry decision),
//! `respond` (the one error-response type and writer), `upstream_response`
//! (checks on the upstream's head), `urls` (URL rewriting), `ids` (request
//! ids), `safe_error` (errors as logged), `https` (the plain listener's
//! redirect), `acme` (HTTP-01 challenge answers).

mod acme;
mod admit;
mod ctx;
mod edge;
mod https;
mod ids;
mod limit;
mod log;
mod request;
mod respond;
mod retry;
mod safe_error;
mod servers;
mod upstream_response;
mod urls;

pub use respond::{BODY_TOO_LARGE, ErrorResponse, decorate_response, respond};
pub use safe_error::SafeError;
pub use upstream_response::set_unexpected_data_counter;
pub use urls::{rewrite_location, rewrite_response_urls};

use crate::forwarding::{Forwarding, prepare_upstream_request, set_host};
use crate::host::Host;
use crate::routing::{normalize_path, strip_prefix};
use crate::runtime::RouteTable;
use admit::{authenticate, reject};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use ctx::Attempt;
pub use ctx::Ctx;
use http::{StatusCode, header};
use ids::{RequestIds, valid_request_id};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use request::{check_request, declared_length, upstream_target};
use respond::{abort_reason, downstream_gone, refuse};
use retry::{Decision, Facts};
use servers::echo_mismatch;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use upstream_response::{
    keepalive_timeout, one_content_length, unexpected_data_count, upstream_error,
};

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

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        modules.add_module(Box::new(edge::EdgeModuleBuilder));
    }

    fn new_ctx(&self) -> Ctx {
        crate::downstream::mark_reached_proxy();
        let table = self.table.load_full();
        table.metrics.in_flight.inc();
        Ctx::new(table)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.set_client(session);
        // An incoming id is kept only from a trusted proxy (Envoy's edge
        // default): a client choosing its id could forge log correlation or
        // reuse another request's id, which `require_request_id_echo`
        // relies on being unique.
        ctx.request_id = match session.req_header().headers.get("x-request-id") {
            Some(v) if ctx.peer_trusted && valid_request_id(v.as_bytes()) => v.clone(),
            _ => self.ids.next(),
        };
        let host = match check_request(session.req_header()) {
            Ok(Some(h)) => match set_host(session.req_header_mut(), &h) {
                Ok(()) => Some(h),
                Err(_) => {
                    return refuse(session, ctx, StatusCode::BAD_REQUEST, "invalid Host header")
                        .await;
                }
            },
            Ok(None) => None,
            Err(msg) => {
                return refuse(session, ctx, StatusCode::BAD_REQUEST, msg).await;
            }
        };
        ctx.host = host;
        if acme::answer(session, ctx).await? {
            return Ok(true);
        }
        if let Some(port) = ctx.table.redirect_https
            && !ctx.tls
            && !crate::tls::challenge::is_challenge_path(session.req_header().uri.path())
        {
            return https::redirect(session, ctx, port).await;
        }
        // Identity headers come from the gateway only, on every route.
        admit::strip_identity_headers(session.req_header_mut(), ctx.table.auth.as_ref());

        // The URI is refcounted: cloning it lets `path` outlive changes to the request.
        let uri = session.req_header().uri.clone();
        let raw_path = uri.path();
        let path = match normalize_path(raw_path) {
            Ok(p) => p,
            Err(e) => {
                return refuse(session, ctx, StatusCode::BAD_REQUEST, &e.to_string()).await;
            }
        };
        if let std::borrow::Cow::Owned(p) = &path {
            ctx.logged_path = Some(p.clone());
        }
        let table = ctx.table.clone();
        let found = edge::lookup(
            &table,
            &path,
            ctx.host.as_ref().map(Host::name),
            session.req_header(),
        );
        let Some((route_idx, route, preflight)) = found else {
            return refuse(
                session,
                ctx,
                StatusCode::NOT_FOUND,
                "no route for this path",
            )
            .await;
        };
        ctx.route = Some(route_idx);
        edge::start(session, &table, route_idx, preflight);
        if preflight {
            return edge::preflight(session, ctx, route).await;
        }

        // A declared body over the limit is refused before anything is
        // forwarded; a chunked one is counted in `request_body_filter`.
        if declared_length(session.req_header()).is_some_and(|n| n > route.max_body_bytes) {
            return refuse(session, ctx, StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE).await;
        }

        if limit::refused(session, ctx, route, false).await? {
            return Ok(true);
        }
        // Every request on a protected route, upgrades and streams included.
        if route.auth_required
            && let Err(e) = authenticate(session, &table, route, ctx).await
        {
            reject(session, &table, route, ctx, e).await?;
            return Ok(true);
        }
        if limit::refused(session, ctx, route, true).await? {
            return Ok(true);
        }

        // Forward the normalized path (minus the route's prefix if asked).
        let forwarded = if route.strip_prefix {
            strip_prefix(&path, &route.prefix)
        } else {
            &path
        };
        let origin_form = session.req_header().raw_path().first() == Some(&b'/');
        if let Some(pq) = upstream_target(forwarded, raw_path, uri.query(), origin_form) {
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
        // Only the server's fault counts against it, not our own (e.g. EMFILE).
        if let Some(why) = servers::connect_fault(peer, ctx, &e) {
            ctx.table.health.report_connect_failure(&peer._address, why);
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

    /// An error after the request went out: [`retry::decide`] says whether
    /// it is tried again.
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
        let facts = Facts {
            etype: e.etype(),
            source: e.esource(),
            retry: &e.retry,
            idempotent: session.req_header().method.is_idempotent(),
            body_kept: !session.as_ref().retry_buffer_truncated(),
            unanswered: session.response_written().is_none(),
            client_reused,
            got_header: ctx.up.got_header,
            desync: ctx.up.desync,
            fresh: ctx.fresh,
            failed: ctx.failed.len(),
            retries: ctx.route().map_or(0, |r| r.upstream.retries),
        };
        let decision = retry::decide(&facts, || probe.is_some_and(|p| p.request_unacknowledged()));
        let request_id = ctx.request_id.to_str().unwrap_or("");
        match decision {
            Decision::Final => e.set_retry(false),
            Decision::RetryStale => {
                tracing::debug!(request_id, server = %peer._address, error = %SafeError(&e), "pooled connection was closed by the server, retrying on another");
                e.set_retry(true);
            }
            Decision::Fresh { retry, garbage } => {
                if garbage {
                    // Bytes that are no response to this request where its
                    // response should start: left over from an earlier exchange.
                    self.desync(ctx, &peer._address, "garbage where a response should start");
                }
                ctx.fresh = true;
                e.set_retry(retry);
            }
            Decision::IfReused => e.retry.decide_reuse(true),
            Decision::NextServer => {
                ctx.failed.push(peer._address.clone());
                let retry = self.another_server_left(ctx);
                if retry {
                    let request_id = ctx.request_id.to_str().unwrap_or("");
                    tracing::warn!(request_id, server = %peer._address, error = %SafeError(&e), "upstream failed, trying another server");
                }
                e.set_retry(retry);
            }
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
                scheme: ctx.scheme(),
                local_port,
                request_id: &ctx.request_id,
                keep,
            },
        )?;
        if session.req_header().version == http::Version::HTTP_2 {
            https::join_cookies(req)?;
        }
        // Set after Pingora removed what the client's `Connection` header
        // named, so a client cannot make them disappear.
        if let Some(id) = &ctx.identity {
            for (name, value) in &id.headers {
                req.insert_header(name.clone(), value.clone())?;
            }
        }
        if let Some(r) = ctx.route() {
            r.edge.request_headers.apply_request(req);
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
        let interim = upstream_response::interim(
            resp.status,
            session.is_upgrade_req(),
            &mut ctx.up.informational,
            ctx.upstream_started,
            route.timeouts.read,
        )?;
        if interim {
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
        let mismatch = echo_mismatch(echoed, &ctx.request_id, ctx.up.reused, route, state);
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
        decorate_response(resp, &ctx.request_id, ctx.response_headers())?;
        if let Some(server) = &ctx.server {
            let client = ctx.host.as_ref().map(|h| (ctx.scheme(), h.as_str()));
            rewrite_response_urls(resp, server, client)?;
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
        let response = ErrorResponse::for_proxy_error(e);
        let status = response.status;
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
        log::failure(session, e, ctx, status, started);
        let code = if started || downstream_gone(e) {
            0
        } else {
            // Pingora does not reuse a connection after a proxy failure: say so.
            session.set_keepalive(None);
            if respond(session, &ctx.request_id, ctx.response_headers(), &response)
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
        log::request_done(session, e, ctx);
    }
}
