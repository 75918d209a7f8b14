//! The per-request context: the snapshot the request started with and what
//! the hooks learn along the way.

use crate::auth;
use crate::host::Host;
use crate::runtime::{Route, RouteTable};
use http::HeaderValue;
use pingora_core::protocols::l4::socket::SocketAddr;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Per-request state.
pub struct Ctx {
    /// The table this request started with; kept until it ends.
    pub(super) table: Arc<RouteTable>,
    pub(super) route: Option<usize>,
    pub(super) request_id: HeaderValue,
    /// The normalized path when it differs from what is now in the request
    /// (normalization or `strip_prefix` changed it), for the access log.
    pub(super) logged_path: Option<String>,
    /// Servers this request failed to connect to (they are not tried again).
    pub(super) failed: Vec<SocketAddr>,
    pub(super) server: Option<SocketAddr>,
    pub(super) started: Instant,
    /// When the current server was chosen (upstream latency).
    pub(super) upstream_started: Option<Instant>,
    pub(super) subject: Option<String>,
    pub(super) client_id: Option<String>,
    /// The validated request host (absolute-form target, else `Host`).
    pub(super) host: Option<Host>,
    /// The client's address (see [`TrustedProxies::client_ip`]).
    pub(super) client_ip: Option<IpAddr>,
    /// Whether the TCP peer is a trusted proxy.
    pub(super) peer_trusted: bool,
    /// The request came over TLS (the HTTPS listener).
    pub(super) tls: bool,
    /// The verified identity, whose headers go upstream.
    pub(super) identity: Option<Arc<auth::Identity>>,
    /// Request body bytes seen so far, against the route's limit.
    pub(super) body_bytes: u64,
    /// Upstream side of the current attempt (see [`Attempt`]).
    pub(super) up: Attempt,
    /// The next attempt must use a new connection that is not pooled
    /// (a response on a pooled one did not belong to this request).
    pub(super) fresh: bool,
    /// Why the upstream's response was cut off, for the access line and
    /// `gateway_upstream_aborted_total`.
    pub(super) aborted: Option<&'static str>,
}

/// What the gateway tracks about one attempt to get a response from a server.
#[derive(Default)]
pub(super) struct Attempt {
    /// The connection is not pooled afterwards (`Connection: close` is sent).
    pub(super) no_pool: bool,
    /// The connection came from the pool.
    pub(super) reused: bool,
    /// Pingora's count of pooled connections found with unexpected data, when
    /// this attempt took its connection or got its response header.
    pub(super) unexpected_base: u64,
    /// `1xx` responses seen.
    pub(super) informational: u8,
    /// The final response header arrived.
    pub(super) got_header: bool,
    /// This attempt failed because the response belonged to another request.
    pub(super) desync: bool,
    /// Proof material that a request on a reused connection never reached
    /// the server (non-idempotent requests only).
    pub(super) probe: Option<crate::upstream::StaleProbe>,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.table.metrics.in_flight.dec();
    }
}

impl Ctx {
    pub(super) fn new(table: Arc<RouteTable>) -> Self {
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
            tls: false,
            identity: None,
            body_bytes: 0,
            up: Attempt::default(),
            fresh: false,
            aborted: None,
        }
    }

    /// The scheme the client used.
    pub(super) fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The headers the gateway adds to this request's response.
    pub(super) fn response_headers(&self) -> &[(http::HeaderName, HeaderValue)] {
        self.table.response_headers(self.tls)
    }

    /// The client's address and whether the TCP peer is a trusted proxy.
    pub(super) fn set_client(&mut self, session: &pingora_proxy::Session) {
        if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()) {
            let peer = peer.ip();
            let trusted = &self.table.trusted_proxies;
            self.peer_trusted = !trusted.is_empty() && trusted.contains(peer);
            self.client_ip = Some(if self.peer_trusted {
                trusted.client_ip(peer, session.req_header())
            } else {
                peer
            });
        }
    }

    pub(super) fn route(&self) -> Option<&Route> {
        self.route.map(|i| &self.table.routes[i])
    }
}
