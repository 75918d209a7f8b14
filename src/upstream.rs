//! Upstream pools on pingora-load-balancing: round robin over each group's
//! servers, skipping servers the shared health registry marks unhealthy.
//!
//! Peers (address plus timeouts) are prepared when the config is compiled;
//! a request only selects one and clones it. Connection pooling is Pingora's:
//! connections are keyed by peer, so they are reused across config reloads.

use crate::health::Checker;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use std::collections::BTreeSet;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Timeouts of one upstream (or one route's override).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

/// One named group of servers.
pub struct UpstreamPool {
    pub name: Box<str>,
    lb: LoadBalancer<RoundRobin>,
    /// Prepared peer and health verdict per server, in config order.
    peers: Box<[(SocketAddr, HttpPeer, Arc<AtomicBool>)]>,
    /// Servers as written, for logs and metrics labels.
    pub servers: Box<[Box<str>]>,
    pub retries: usize,
    pub timeouts: Timeouts,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("name", &self.name)
            .field("servers", &self.servers)
            .finish()
    }
}

/// Resolves `HOST:PORT` (a name is looked up once, at load time).
pub fn resolve(server: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(a) = server.parse() {
        return Ok(a);
    }
    server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve \"{server}\": {e}"))?
        .next()
        .ok_or_else(|| format!("\"{server}\" resolves to no address"))
}

impl UpstreamPool {
    /// Builds the pool; `addrs` are the resolved `servers`, in order.
    pub fn new(
        name: &str,
        servers: &[String],
        addrs: &[std::net::SocketAddr],
        retries: usize,
        timeouts: Timeouts,
        registry: &Arc<HealthRegistry>,
        checker: &Checker,
    ) -> Self {
        let backends: BTreeSet<Backend> = addrs
            .iter()
            .map(|a| Backend {
                addr: SocketAddr::Inet(*a),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        let view = Backends::new_with_health_registry(Static::new(backends), registry.clone());
        let lb = LoadBalancer::from_backends(view);
        // Static discovery never waits and never fails.
        let updated = futures_now(lb.update());
        debug_assert!(matches!(updated, Some(Ok(()))));

        let peers = addrs
            .iter()
            .map(|a| {
                let mut p = HttpPeer::new(*a, false, String::new());
                p.options.connection_timeout = Some(timeouts.connect);
                p.options.read_timeout = Some(timeouts.read);
                p.options.write_timeout = Some(timeouts.write);
                p.options.idle_timeout = Some(timeouts.idle);
                let addr = SocketAddr::Inet(*a);
                let up = checker.verdict_handle(&addr);
                (addr, p, up)
            })
            .collect();
        UpstreamPool {
            name: name.into(),
            lb,
            peers,
            servers: servers.iter().map(|s| s.as_str().into()).collect(),
            retries,
            timeouts,
        }
    }

    /// The next healthy server in round-robin order that `skip` does not
    /// exclude (servers this request already failed on).
    pub fn select(&self, skip: impl Fn(&SocketAddr) -> bool) -> Option<&HttpPeer> {
        let max = self.peers.len().max(1) * 2;
        let backend = self.lb.select_with(b"", max, |b, _| {
            self.peers
                .iter()
                .any(|(a, _, up)| *a == b.addr && up.load(Ordering::Relaxed))
                && !skip(&b.addr)
        })?;
        self.peers
            .iter()
            .find(|(a, _, _)| *a == backend.addr)
            .map(|(_, p, _)| p)
    }

    /// Whether a healthy server exists that `skip` does not exclude
    /// (does not advance the round robin).
    pub fn has_candidate(&self, skip: impl Fn(&SocketAddr) -> bool) -> bool {
        self.peers
            .iter()
            .any(|(a, _, up)| up.load(Ordering::Relaxed) && !skip(a))
    }

    /// Server label (as written in the config) for a selected address.
    pub fn server_label(&self, addr: &SocketAddr) -> &str {
        self.peers
            .iter()
            .position(|(a, _, _)| a == addr)
            .map_or("unknown", |i| &self.servers[i])
    }
}

/// Polls a future that is known to complete without waiting.
fn futures_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}
