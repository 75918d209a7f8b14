//! What a request leaves behind: its error line (Pingora's own is
//! suppressed: it lacks the request id), its metrics and its access line.

use super::Ctx;
use super::respond::downstream_gone;
use super::safe_error::SafeError;
use crate::logging::AccessLine;
use http::StatusCode;
use pingora_error::Error;
use pingora_proxy::Session;

/// Logs a failed request once, with its id, never with upstream bytes.
pub(super) fn failure(session: &Session, e: &Error, ctx: &Ctx, status: StatusCode, started: bool) {
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
}

/// Request metrics, the aborted-response count and the access line.
pub(super) fn request_done(session: &Session, e: Option<&Error>, ctx: &Ctx) {
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
    let query = crate::logging::redact_query(req.uri.query().unwrap_or(""));
    let user_agent = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let digest = session.digest();
    let tls_version = digest
        .and_then(|d| d.ssl_digest.as_ref())
        .map_or("", |t| &*t.version);
    AccessLine {
        host: ctx.host.as_ref().map_or("", |h| h.as_str()),
        protocol: match req.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        },
        user_agent: crate::logging::cap(user_agent),
        query: &query,
        tls_version,
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
