//! Upstream pools on pingora-load-balancing: round robin over each group's
//! servers, skipping servers whose verdict is down. The verdict is one
//! atomic flag per server address, owned by the health [`Checker`] (active
//! checks and passive connect failures) and shared by every pool that has
//! the server ([`Checker::verdict_handle`]); the shared `HealthRegistry` only
//! runs Pingora's check loop and keeps its state across reloads.
//!
//! Peers (address, timeouts and, for `tls`, SNI, trust and client
//! certificate) are prepared when the config is compiled;
//! a request only selects one and clones it. Connection pooling is Pingora's:
//! connections are keyed by peer, so they are reused across config reloads.
//!
//! Reuse is narrowed per server ([`ServerState`]): the pool key carries an
//! epoch that a desync bumps (connections pooled before it are never taken
//! again); a server that sent unexpected data has pooling suspended for
//! [`SUSPEND_POOLING`]; the server's `Keep-Alive: timeout` shortens the idle
//! time of its pooled connections.

use crate::health::Checker;
use crate::tls::outbound::UpstreamTls;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use std::collections::BTreeSet;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server that sent data nobody asked for gets no pooled connections.
pub const SUSPEND_POOLING: Duration = Duration::from_secs(60);

/// The pool key of connections that are never returned to the pool (they
/// carry `Connection: close`), so looking it up never finds one.
pub const NO_POOL: u64 = u64::MAX;

/// Milliseconds on a process-wide monotonic clock (never 0).
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

const ECHO_UNKNOWN: u8 = 0;
const ECHO_YES: u8 = 1;
const ECHO_NO: u8 = 2;

/// What a request learns about a server and later requests act on. Atomics
/// only: read on every request, written on rare events.
#[derive(Debug)]
pub struct ServerState {
    /// Bumped on a desync: part of the pool key, so connections pooled before
    /// are never taken again.
    epoch: AtomicU64,
    /// Pooling suspended until this time ([`now_ms`]); 0: not suspended.
    suspended_until: AtomicU64,
    /// The server's last `Keep-Alive: timeout`, in ms; 0: none seen.
    keepalive_ms: AtomicU64,
    /// Whether the server returns the `X-Request-Id` it was sent:
    /// `ECHO_UNKNOWN`, `ECHO_YES` or `ECHO_NO` (final).
    echo: AtomicU8,
    /// `gateway_upstream_desync_total{upstream,server}`.
    desync: prometheus::IntCounter,
    /// Added to the epoch in the pool key: the digest of the upstream's TLS
    /// settings (0 for plain HTTP), so connections made under other ones
    /// are never taken.
    salt: u64,
}

impl ServerState {
    fn new(desync: prometheus::IntCounter, salt: u64) -> Self {
        ServerState {
            salt,
            epoch: AtomicU64::new(0),
            suspended_until: AtomicU64::new(0),
            keepalive_ms: AtomicU64::new(0),
            echo: AtomicU8::new(ECHO_UNKNOWN),
            desync,
        }
    }

    /// Whether pooling is suspended now.
    pub fn suspended(&self) -> bool {
        let until = self.suspended_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        let _ =
            self.suspended_until
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    /// The pool key for a request that may reuse a connection (never [`NO_POOL`]).
    pub fn pool_key(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed).wrapping_add(self.salt) & !(1 << 63)
    }

    /// Records data that belongs to no request on a connection to this
    /// server: counted, connections pooled so far abandoned, pooling
    /// suspended for [`SUSPEND_POOLING`]. Returns whether this started a
    /// suspension (the caller logs once per suspension).
    pub fn desync(&self) -> bool {
        self.desync.inc();
        self.epoch.fetch_add(1, Ordering::Relaxed);
        let until = now_ms() + SUSPEND_POOLING.as_millis() as u64;
        let prev = self.suspended_until.swap(until, Ordering::Relaxed);
        prev == 0 || prev <= now_ms()
    }

    /// Learns from the first response on a new connection (which is surely
    /// this request's) whether the server echoes `X-Request-Id`. A server
    /// once seen answering with another id is never trusted to echo.
    pub fn learn_echo(&self, echoed: bool) {
        let new = if echoed { ECHO_YES } else { ECHO_NO };
        let _ = self
            .echo
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old != ECHO_NO && old != new).then_some(new)
            });
    }

    /// Whether the server has been seen to echo `X-Request-Id` (and never
    /// to answer with another one): then a response on a reused connection
    /// with another request's id is a desync, even without
    /// `require_request_id_echo`.
    pub fn echoes(&self) -> bool {
        self.echo.load(Ordering::Relaxed) == ECHO_YES
    }

    /// Remembers the server's `Keep-Alive: timeout=N` (seconds).
    pub fn learn_keepalive(&self, secs: u64) {
        let ms = secs.saturating_mul(1000).min(u64::from(u32::MAX));
        if self.keepalive_ms.load(Ordering::Relaxed) != ms {
            self.keepalive_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// The idle time of a pooled connection: `configured`, but retired
    /// before the server's own keep-alive timeout (1 s before it, or at
    /// half of it when it is under 2 s).
    pub fn idle_timeout(&self, configured: Duration) -> Duration {
        match self.keepalive_ms.load(Ordering::Relaxed) {
            0 => configured,
            ms => {
                let keep = if ms >= 2000 { ms - 1000 } else { ms / 2 };
                configured.min(Duration::from_millis(keep.max(1)))
            }
        }
    }
}

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
    /// Reuse state per server, in config order.
    states: Box<[ServerState]>,
    /// Servers as written, for logs and metrics labels.
    pub servers: Box<[Box<str>]>,
    pub retries: usize,
    pub timeouts: Timeouts,
    /// `require_request_id_echo`.
    pub require_echo: bool,
    /// `keepalive`.
    pub keepalive: bool,
}

/// How an upstream's connections are used (`keepalive`, `require_request_id_echo`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reuse {
    pub keepalive: bool,
    pub require_echo: bool,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        servers: &[String],
        addrs: &[std::net::SocketAddr],
        retries: usize,
        timeouts: Timeouts,
        reuse: Reuse,
        tls: Option<&UpstreamTls>,
        registry: &Arc<HealthRegistry>,
        checker: &Checker,
        desync: &prometheus::IntCounterVec,
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
            .zip(servers)
            .map(|(a, server)| {
                let mut p = HttpPeer::new(*a, false, String::new());
                if let Some(t) = tls {
                    t.apply(&mut p, server);
                }
                p.options.connection_timeout = Some(timeouts.connect);
                p.options.read_timeout = Some(timeouts.read);
                p.options.write_timeout = Some(timeouts.write);
                p.options.idle_timeout = Some(timeouts.idle);
                let addr = SocketAddr::Inet(*a);
                let up = checker.verdict_handle(&addr);
                (addr, p, up)
            })
            .collect();
        let states = servers
            .iter()
            .map(|s| {
                ServerState::new(
                    desync.with_label_values(&[name, s.as_str()]),
                    tls.map_or(0, |t| t.digest),
                )
            })
            .collect();
        UpstreamPool {
            name: name.into(),
            lb,
            peers,
            states,
            servers: servers.iter().map(|s| s.as_str().into()).collect(),
            retries,
            timeouts,
            require_echo: reuse.require_echo,
            keepalive: reuse.keepalive,
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

    /// The reuse state of a server of this upstream.
    pub fn state(&self, addr: &SocketAddr) -> Option<&ServerState> {
        self.peers
            .iter()
            .position(|(a, _, _)| a == addr)
            .map(|i| &self.states[i])
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

/// Evidence that a request sent on a reused connection never reached the
/// server's application: a duplicate of the socket (so it can still be
/// asked after Pingora closed its copy) and the bytes the server's TCP had
/// acknowledged before the request was written.
///
/// When the server closed the idle connection before the request arrived,
/// its TCP answers the request with a reset and never acknowledges it; an
/// application that read the request has had its TCP acknowledge it (at the
/// latest in the FIN it sends when it closes), so an unchanged
/// acknowledged-byte count (Linux `TCP_INFO.tcpi_bytes_acked`) when the
/// connection turns out closed proves the request was not delivered.
#[derive(Debug)]
pub struct StaleProbe {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    #[cfg(target_os = "linux")]
    acked: u64,
}

impl StaleProbe {
    /// Takes the evidence before the request is written; `None` where the
    /// platform cannot tell (then nothing is proven and nothing retried).
    #[cfg(target_os = "linux")]
    pub fn new(fd: std::os::fd::RawFd) -> Option<Self> {
        use std::os::fd::FromRawFd;
        let acked = bytes_acked(fd)?;
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor; the new one is owned here.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return None;
        }
        // SAFETY: `dup` is a fresh descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) };
        Some(StaleProbe { fd, acked })
    }

    #[cfg(all(unix, not(target_os = "linux")))]
    pub fn new(_fd: std::os::fd::RawFd) -> Option<Self> {
        None
    }

    /// Whether the server's TCP acknowledged no byte written since [`Self::new`].
    pub fn request_unacknowledged(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            bytes_acked(self.fd.as_raw_fd()) == Some(self.acked)
        }
        #[cfg(not(target_os = "linux"))]
        false
    }
}

/// `tcpi_bytes_acked` of a TCP socket (Linux 4.1 and later).
#[cfg(target_os = "linux")]
fn bytes_acked(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: tcp_info is plain old data; the kernel writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
    (rc == 0 && len as usize >= needed).then_some(info.tcpi_bytes_acked)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::StaleProbe;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    #[test]
    fn the_probe_tells_a_request_sent_after_the_close_from_one_the_server_received() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut buf = [0u8; 64];

        // The server closed the idle connection before the request was sent.
        let mut c = TcpStream::connect(addr).unwrap();
        drop(l.accept().unwrap());
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c.read(&mut buf).unwrap(), 0, "the server's FIN");
        let p = StaleProbe::new(c.as_raw_fd()).expect("TCP_INFO");
        c.write_all(b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        let reset = c.read(&mut buf);
        assert!(reset.is_err() || reset.unwrap() == 0);
        assert!(p.request_unacknowledged());

        // The server's TCP received the request: never provably unread.
        let mut c = TcpStream::connect(addr).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let p = StaleProbe::new(c.as_raw_fd()).expect("TCP_INFO");
        c.write_all(b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        assert!(s.read(&mut buf).unwrap() > 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.request_unacknowledged() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!p.request_unacknowledged());
    }
}
