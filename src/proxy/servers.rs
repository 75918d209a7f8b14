//! What a request's attempts tell about its upstream's servers: responses
//! that answer another request (desyncs), stray bytes on pooled
//! connections, and whether a server is left to try.

use super::upstream_response::unexpected_data_count;
use super::{Ctx, Gateway};
use crate::runtime::Route;
use crate::upstream::ServerState;
use http::HeaderValue;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};

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

/// What a failed connect says about the server (`None`: not its fault,
/// e.g. our own EMFILE). A failed TLS handshake (certificate refused, wrong
/// name, client certificate refused) is logged as an ERROR naming the
/// server and the reason: it is a configuration problem, not a blip.
pub(super) fn connect_fault(peer: &HttpPeer, ctx: &Ctx, e: &Error) -> Option<&'static str> {
    match e.etype() {
        ErrorType::ConnectRefused | ErrorType::ConnectNoRoute => Some("connect failed"),
        ErrorType::ConnectTimedout => Some("connect timed out"),
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => {
            let (upstream, server) = ctx.route().map_or(("", ""), |r| {
                (&*r.upstream.name, r.upstream.server_label(&peer._address))
            });
            tracing::error!(
                request_id = ctx.request_id.to_str().unwrap_or(""),
                upstream,
                server,
                sni = peer.sni.as_str(),
                reason = tls_reason(e),
                "TLS handshake with the upstream server failed"
            );
            Some("TLS handshake failed")
        }
        _ => None,
    }
}

/// Why a TLS handshake failed, in rustls's words (e.g. "invalid peer
/// certificate: UnknownIssuer"), which Pingora puts in the context of the
/// outermost error: printable ASCII, at most 300 bytes.
fn tls_reason(e: &Error) -> String {
    let text = e.context.as_ref().map_or("", |c| c.as_str());
    let text = text.strip_prefix("TLS connect() failed:").unwrap_or(text);
    text.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect()
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
