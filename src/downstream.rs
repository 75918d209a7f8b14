//! Client-side (downstream) protection: connection caps, error counters and
//! their once-a-second summary line.
//!
//! Every request or connection the gateway refuses before it becomes a
//! request is counted in `gateway_downstream_errors_total{kind}`:
//!
//! | kind | what | answer |
//! |---|---|---|
//! | `header_timeout` | head not complete `server.request_header_timeout_seconds` after its first byte | `408`, close |
//! | `header_too_large` | head longer than `server.max_request_header_bytes` | `431`, close |
//! | `incomplete_header` | client closed (or reset) the connection in the middle of a head | none |
//! | `bad_request` | Pingora refused the head while parsing it (malformed request line or header name or value, too many headers, …; also a `CONNECT`, answered `405`) | `400`, close |
//! | `max_connections` | accepted over `server.max_connections` | close |
//! | `max_connections_per_ip` | accepted over `server.max_connections_per_ip` | close |
//!
//! The two caps are also in `gateway_downstream_connections_rejected_total{reason}`.
//! None of these is logged one by one: [`SummaryService`] writes one INFO line
//! per second in which any happened, with the count of each kind.

use prometheus::{IntCounter, IntCounterVec};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The kinds of downstream errors, in the order of [`Counters::all`].
pub const KINDS: [&str; 6] = [
    "header_timeout",
    "header_too_large",
    "incomplete_header",
    "bad_request",
    "max_connections",
    "max_connections_per_ip",
];

/// Counter handles resolved once (a count is one atomic add).
pub struct Counters {
    pub header_timeout: IntCounter,
    pub header_too_large: IntCounter,
    pub incomplete_header: IntCounter,
    pub bad_request: IntCounter,
    max_connections: IntCounter,
    max_connections_per_ip: IntCounter,
    rejected_total: IntCounter,
    rejected_per_ip: IntCounter,
}

impl Counters {
    /// Handles into `errors{kind}` and `rejected{reason}`.
    pub fn new(errors: &IntCounterVec, rejected: &IntCounterVec) -> Counters {
        let e = |k: &str| errors.with_label_values(&[k]);
        Counters {
            header_timeout: e(KINDS[0]),
            header_too_large: e(KINDS[1]),
            incomplete_header: e(KINDS[2]),
            bad_request: e(KINDS[3]),
            max_connections: e(KINDS[4]),
            max_connections_per_ip: e(KINDS[5]),
            rejected_total: rejected.with_label_values(&["max_connections"]),
            rejected_per_ip: rejected.with_label_values(&["max_connections_per_ip"]),
        }
    }

    /// Counts per kind, in the order of [`KINDS`].
    pub fn all(&self) -> [u64; 6] {
        [
            self.header_timeout.get(),
            self.header_too_large.get(),
            self.incomplete_header.get(),
            self.bad_request.get(),
            self.max_connections.get(),
            self.max_connections_per_ip.get(),
        ]
    }
}

/// Per-IP shards: a connection from one address locks one of these (only
/// when `max_connections_per_ip` is set), never all.
const IP_SHARDS: usize = 64;

/// Open-connection counts and their caps.
pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    /// Address → open connections; an entry is removed when it reaches 0,
    /// so the map holds at most one entry per open connection.
    per_ip: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    hasher: std::collections::hash_map::RandomState,
    counters: Arc<Counters>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

impl ConnLimits {
    /// `max_total` 0: [`default_max_connections`]; `max_per_ip` 0: no limit.
    pub fn new(max_total: usize, max_per_ip: usize, counters: Arc<Counters>) -> ConnLimits {
        let max_total = if max_total == 0 {
            default_max_connections()
        } else {
            max_total
        };
        ConnLimits {
            max_total,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: (0..IP_SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            counters,
        }
    }

    /// Whether connections are counted per client address.
    #[inline]
    pub fn per_ip_enabled(&self) -> bool {
        self.max_per_ip > 0
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Takes a place for a connection from `ip` (None: not an IP socket),
    /// counting a refusal in the metrics.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnPermit, Refused> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.counters.max_connections.inc();
            self.counters.rejected_total.inc();
            return Err(Refused::Total);
        }
        let ip = match ip {
            Some(ip) if self.max_per_ip > 0 => {
                let mut map = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
                let n = map.entry(ip).or_insert(0);
                if *n as usize >= self.max_per_ip {
                    drop(map);
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    self.counters.max_connections_per_ip.inc();
                    self.counters.rejected_per_ip.inc();
                    return Err(Refused::PerIp);
                }
                *n += 1;
                Some(ip)
            }
            _ => None,
        };
        Ok(ConnPermit {
            limits: self.clone(),
            ip,
        })
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.per_ip[self.hasher.hash_one(ip) as usize % IP_SHARDS]
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Addresses with an open connection (per-IP counting on only).
    pub fn tracked_ips(&self) -> usize {
        self.per_ip
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

/// One admitted connection; gives its place back when dropped.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: Option<IpAddr>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self
                .limits
                .shard(ip)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The default `server.max_connections`: the soft `RLIMIT_NOFILE` minus a
/// reserve of a tenth of it (at least 64) for upstream connections, the
/// listeners and files. Unlimited or unknown: 1,000,000.
pub fn default_max_connections() -> usize {
    headroom(soft_nofile())
}

fn headroom(limit: Option<u64>) -> usize {
    match limit {
        Some(n) if n < 1_000_000 => {
            let n = n as usize;
            n.saturating_sub((n / 10).max(64)).max(1)
        }
        _ => 1_000_000,
    }
}

fn soft_nofile() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (rc == 0 && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

tokio::task_local! {
    /// Set around the proxy's handling of one request head: the gateway's
    /// `ProxyHttp::new_ctx` turns it true, so a head that never got there
    /// was refused by Pingora's parser (or the service is shutting down).
    pub static REACHED_PROXY: std::cell::Cell<bool>;
}

/// Called from the proxy's `new_ctx`: the head was parsed.
#[inline]
pub fn mark_reached_proxy() {
    let _ = REACHED_PROXY.try_with(|c| c.set(true));
}

/// Bytes in head buffers grown past their first allocation (`idle`'s
/// `HEADER_BUFFER`) whose heads are still being read, and the most there were since the last trim.
static GROWN: AtomicUsize = AtomicUsize::new(0);
static GROWN_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Accounts one head buffer in [`GROWN`] while it is read.
#[derive(Default)]
pub struct GrownHead(usize);

impl GrownHead {
    pub fn set(&mut self, cap: usize) {
        let add = cap.saturating_sub(self.0);
        let now = GROWN.fetch_add(add, Ordering::Relaxed) + add;
        GROWN_PEAK.fetch_max(now, Ordering::Relaxed);
        self.0 = cap;
    }
}

impl Drop for GrownHead {
    fn drop(&mut self) {
        GROWN.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Below this many bytes of grown head buffers at their peak, memory is
/// left to the allocator.
const TRIM_AFTER: usize = 8 << 20;

/// Hands freed memory back to the system after a burst of large heads
/// ended: glibc's allocator keeps the 8-64 KiB head buffers of 2,000
/// stalled connections (≈130 MB) in its arenas after they are freed. Called
/// once a second from a background service; does nothing (two atomic loads)
/// unless grown head buffers peaked above 8 MiB and are now down to a
/// quarter of that peak. Returns whether it trimmed.
pub fn trim_after_head_burst() -> bool {
    let peak = GROWN_PEAK.load(Ordering::Relaxed);
    let now = GROWN.load(Ordering::Relaxed);
    if peak < TRIM_AFTER || now > peak / 4 {
        return false;
    }
    GROWN_PEAK.store(now, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    true
}

/// Writes one INFO line per second in which downstream errors happened
/// (target `downstream`), with the count of each kind in that second; also
/// returns the memory of a burst of large heads to the system
/// ([`trim_after_head_burst`]).
pub struct SummaryService {
    pub counters: Arc<Counters>,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for SummaryService {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let mut last = self.counters.all();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if trim_after_head_burst() {
                tracing::debug!("freed memory of large request heads returned to the system");
            }
            let now = self.counters.all();
            if now != last {
                let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
                tracing::info!(
                    target: "downstream",
                    header_timeout = d[0],
                    header_too_large = d[1],
                    incomplete_header = d[2],
                    bad_request = d[3],
                    max_connections = d[4],
                    max_connections_per_ip = d[5],
                    "downstream errors in the last second (gateway_downstream_errors_total)"
                );
                last = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    fn limits(total: usize, per_ip: usize) -> Arc<ConnLimits> {
        let e = IntCounterVec::new(Opts::new("e", "e"), &["kind"]).unwrap();
        let r = IntCounterVec::new(Opts::new("r", "r"), &["reason"]).unwrap();
        Arc::new(ConnLimits::new(
            total,
            per_ip,
            Arc::new(Counters::new(&e, &r)),
        ))
    }

    #[test]
    fn headroom_leaves_a_tenth() {
        assert_eq!(headroom(Some(1024)), 922);
        assert_eq!(headroom(Some(65536)), 58983);
        assert_eq!(headroom(Some(100)), 36);
        assert_eq!(headroom(Some(10)), 1);
        assert_eq!(headroom(None), 1_000_000);
    }

    #[test]
    fn total_cap_and_release() {
        let l = limits(2, 0);
        let a = l.admit(None).unwrap();
        let _b = l.admit(None).unwrap();
        assert_eq!(l.admit(None).err(), Some(Refused::Total));
        drop(a);
        let _c = l.admit(None).unwrap();
        assert_eq!(l.open(), 2);
        assert_eq!(l.counters().all()[4], 1);
    }

    #[test]
    fn per_ip_cap_and_entries_removed_at_zero() {
        let l = limits(100, 2);
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let a = l.admit(Some(ip1)).unwrap();
        let b = l.admit(Some(ip1)).unwrap();
        assert_eq!(l.admit(Some(ip1)).err(), Some(Refused::PerIp));
        let c = l.admit(Some(ip2)).unwrap();
        assert_eq!(l.tracked_ips(), 2);
        assert_eq!(l.open(), 3);
        drop((a, b, c));
        assert_eq!(l.tracked_ips(), 0);
        assert_eq!(l.open(), 0);
        assert_eq!(l.counters().all()[5], 1);
    }
}
