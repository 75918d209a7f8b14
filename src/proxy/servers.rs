//! What a request's attempts tell about its upstream's servers: responses
//! that answer another request (desyncs), stray bytes on pooled
//! connections, and whether a server is left to try.

use super::upstream_response::unexpected_data_count;
use super::{Ctx, Gateway};
use crate::runtime::Route;
use crate::upstream::ServerState;
use http::HeaderValue;
use pingora_core::protocols::l4::socket::SocketAddr;

impl Gateway {
    /// Records a desync on `server` of this request's upstream: counted,
    /// the server's pooled connections abandoned and pooling suspended;
    /// logged once per suspension.
    pub(super) fn desync(&self, ctx: &Ctx, server: &SocketAddr, what: &'static str) {
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
    pub(super) fn check_unexpected_data(&self, ctx: &mut Ctx, server: &SocketAddr) {
        let now = unexpected_data_count();
        if now > ctx.up.unexpected_base {
            ctx.up.unexpected_base = now;
            self.desync(ctx, server, "bytes on an idle pooled connection");
        }
    }

    /// Whether this request's upstream has a healthy server it has not failed
    /// on yet, within the upstream's `retries`.
    pub(super) fn another_server_left(&self, ctx: &Ctx) -> bool {
        let Some(route) = ctx.route() else {
            return false;
        };
        ctx.failed.len() <= route.upstream.retries
            && route.upstream.has_candidate(|a| ctx.failed.contains(a))
    }
}

/// Whether a response's `X-Request-Id` shows that it answers another
/// request; learns on a new connection whether the server echoes ids.
pub(super) fn echo_mismatch(
    echoed: Option<&[u8]>,
    request_id: &HeaderValue,
    reused: bool,
    route: &Route,
    state: Option<&ServerState>,
) -> bool {
    match echoed {
        Some(id) if id == request_id.as_bytes() => {
            if !reused && let Some(s) = state {
                s.learn_echo(true);
            }
            false
        }
        // The first response on a new connection is this request's: a
        // server that answers it with another id does not echo.
        Some(_) if !reused => {
            if let Some(s) = state {
                s.learn_echo(false);
            }
            route.upstream.require_echo
        }
        Some(_) => route.upstream.require_echo || state.is_some_and(|s| s.echoes()),
        None => route.upstream.require_echo,
    }
}
