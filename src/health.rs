//! Active HTTP health checks with per-upstream settings, on
//! pingora-load-balancing's shared `HealthRegistry`.
//!
//! ```text
//!  HealthCheckService (pingora, every TICK) ─► registry.run_health_check
//!      └─► Checker::check(server): if a probe is due, spawns it (pingora's
//!          HttpHealthCheck, bounded by the timeout) and returns at once; the
//!          probe applies the upstream's thresholds, flips the server's shared
//!          verdict flag (which pools read lock-free when selecting) and logs
//!          the transition.
//!  proxy: a failed connect ─► report_connect_failure ─► counts like a failed probe
//! ```
//!
//! One registry and one checker live for the whole process (in the
//! `CompileContext`): a reload replaces the settings (`set_specs`) and the
//! pools, while every server present before and after keeps its state.
//! Servers no longer in any pool stop being checked (the registry drops
//! them); new servers are probed on the next tick, not an interval later.

use crate::config::model::{HealthCheckConfig, HealthCheckMethod};
use async_trait::async_trait;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::Backend;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often verdicts are published to the registry and due probes started.
pub const TICK: Duration = Duration::from_millis(200);

/// The health-check settings of one upstream, compiled.
pub struct Spec {
    pub upstream: Arc<str>,
    pub server: Arc<str>,
    pub enabled: bool,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: usize,
    pub unhealthy_threshold: usize,
    probe: HttpHealthCheck,
}

impl Spec {
    /// `tls` makes a probe's peer a TLS one (with the upstream's settings)
    /// when `c.use_https`.
    pub fn new(
        upstream: &str,
        server: &str,
        c: &HealthCheckConfig,
        tls: impl FnOnce(&mut HttpPeer),
    ) -> Spec {
        let timeout = c.timeout_seconds.duration();
        let mut probe = HttpHealthCheck::new(server, c.use_https);
        if c.use_https {
            tls(&mut probe.peer_template);
        }
        let method = match c.method {
            HealthCheckMethod::Get => "GET",
            HealthCheckMethod::Head => "HEAD",
        };
        if let Ok(mut req) = RequestHeader::build(method, c.path.as_bytes(), None) {
            let _ = req.append_header("Host", server);
            let _ = req.append_header("User-Agent", "pingora-gateway-health-check");
            probe.req = req;
        }
        probe.peer_template.options.connection_timeout = Some(timeout);
        probe.peer_template.options.read_timeout = Some(timeout);
        probe.peer_template.options.write_timeout = Some(timeout);
        let codes = c.expected_status_codes.clone();
        probe.validator = Some(Box::new(move |resp| {
            if codes.contains(&resp.status.as_u16()) {
                Ok(())
            } else {
                Error::e_explain(
                    ErrorType::CustomCode("unexpected status", resp.status.as_u16()),
                    "health check",
                )
            }
        }));
        Spec {
            upstream: upstream.into(),
            server: server.into(),
            enabled: c.enabled,
            interval: c.interval_seconds.duration(),
            timeout,
            healthy_threshold: c.healthy_threshold,
            unhealthy_threshold: c.unhealthy_threshold,
            probe,
        }
    }
}

#[derive(Debug, Clone)]
struct ServerState {
    /// The verdict, shared with the upstream pools: selection reads it
    /// lock-free, so a flip takes effect on the very next request.
    up: Arc<AtomicBool>,
    /// Consecutive results against the current verdict.
    streak: usize,
    next_due: Instant,
    probing: bool,
}

impl ServerState {
    fn new() -> Self {
        ServerState {
            up: Arc::new(AtomicBool::new(true)),
            streak: 0,
            next_due: Instant::now(),
            probing: false,
        }
    }
}

/// One server's health, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    pub upstream: String,
    pub server: String,
    pub healthy: bool,
}

/// Told `(upstream, server)` at each transition (the metrics counter).
type OnTransition = Box<dyn Fn(&str, &str) + Send + Sync>;

#[derive(Default)]
struct Inner {
    specs: Mutex<HashMap<SocketAddr, Arc<Spec>>>,
    states: Mutex<HashMap<SocketAddr, ServerState>>,
    transitions: AtomicU64,
    on_transition: std::sync::OnceLock<OnTransition>,
}

/// The process-wide health checker (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct Checker(Arc<Inner>);

impl Checker {
    /// Installs the settings of a newly compiled config. Servers keep their
    /// state; settings of servers gone from the config are dropped.
    pub fn set_specs(&self, specs: HashMap<SocketAddr, Arc<Spec>>) {
        let mut states = lock(&self.0.states);
        states.retain(|addr, _| specs.contains_key(addr));
        for (addr, spec) in &specs {
            let s = states.entry(addr.clone()).or_insert_with(ServerState::new);
            if !spec.enabled {
                s.up.store(true, Ordering::Relaxed);
                s.streak = 0;
            }
        }
        *lock(&self.0.specs) = specs;
    }

    /// A request could not connect to `addr` (`why`: refused, timed out,
    /// TLS handshake failed): counts as a failed check, so a dead server
    /// leaves rotation before the next probe would notice.
    pub fn report_connect_failure(&self, addr: &SocketAddr, why: &str) {
        let Some(spec) = lock(&self.0.specs).get(addr).cloned() else {
            return;
        };
        if spec.enabled {
            self.record(addr, &spec, Err(format!("{why} (passive)")));
        }
    }

    /// Calls `f(upstream, server)` at every transition from now on (set
    /// once, by the composition of the process-wide state).
    pub fn on_transition(&self, f: impl Fn(&str, &str) + Send + Sync + 'static) {
        let _ = self.0.on_transition.set(Box::new(f));
    }

    /// Health transitions since start (up and down).
    pub fn transitions(&self) -> u64 {
        self.0.transitions.load(Ordering::Relaxed)
    }

    /// Every checked server and its verdict.
    pub fn snapshot(&self) -> Vec<ServerHealth> {
        let specs = lock(&self.0.specs);
        let states = lock(&self.0.states);
        let mut out: Vec<_> = specs
            .iter()
            .map(|(addr, spec)| ServerHealth {
                upstream: spec.upstream.to_string(),
                server: spec.server.to_string(),
                healthy: states
                    .get(addr)
                    .is_none_or(|s| s.up.load(Ordering::Relaxed)),
            })
            .collect();
        out.sort_by(|a, b| (&a.upstream, &a.server).cmp(&(&b.upstream, &b.server)));
        out
    }

    /// Applies one result with the upstream's thresholds; logs a flip.
    fn record(&self, addr: &SocketAddr, spec: &Spec, result: std::result::Result<(), String>) {
        let mut states = lock(&self.0.states);
        let Some(s) = states.get_mut(addr) else {
            return;
        };
        let ok = result.is_ok();
        if ok == s.up.load(Ordering::Relaxed) {
            s.streak = 0;
            return;
        }
        s.streak += 1;
        let threshold = if ok {
            spec.healthy_threshold
        } else {
            spec.unhealthy_threshold
        };
        if s.streak >= threshold {
            s.up.store(ok, Ordering::Relaxed);
            s.streak = 0;
            self.0.transitions.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = self.0.on_transition.get() {
                f(&spec.upstream, &spec.server);
            }
            match result {
                Ok(()) => {
                    tracing::info!(upstream = %spec.upstream, server = %spec.server, "server is healthy again: back in rotation")
                }
                Err(reason) => {
                    tracing::warn!(upstream = %spec.upstream, server = %spec.server, %reason, "server is unhealthy: out of rotation")
                }
            }
        }
    }

    #[cfg(test)]
    fn verdict(&self, addr: &SocketAddr) -> bool {
        lock(&self.0.states)
            .get(addr)
            .is_none_or(|s| s.up.load(Ordering::Relaxed))
    }

    /// The shared verdict of `addr` for an upstream pool (created healthy
    /// for a server not seen before; the same flag across reloads).
    pub fn verdict_handle(&self, addr: &SocketAddr) -> Arc<AtomicBool> {
        lock(&self.0.states)
            .entry(addr.clone())
            .or_insert_with(ServerState::new)
            .up
            .clone()
    }
}

#[async_trait]
impl HealthCheck for Checker {
    /// Starts a probe when one is due and returns at once. The verdict is
    /// not reported through the registry: pools read the shared flag
    /// ([`Checker::verdict_handle`]), which flips without waiting for a pass.
    async fn check(&self, target: &Backend) -> Result<()> {
        let addr = &target.addr;
        let spec = lock(&self.0.specs).get(addr).cloned();
        if let Some(spec) = spec.filter(|s| s.enabled) {
            let due = {
                let mut states = lock(&self.0.states);
                let s = states.entry(addr.clone()).or_insert_with(ServerState::new);
                let due = !s.probing && Instant::now() >= s.next_due;
                if due {
                    s.probing = true;
                }
                due
            };
            if due {
                let this = self.clone();
                let target = target.clone();
                tokio::spawn(async move { this.probe(target, spec).await });
            }
        }
        Ok(())
    }

    /// Thresholds are applied per upstream in `record`.
    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

impl Checker {
    async fn probe(&self, target: Backend, spec: Arc<Spec>) {
        let result = match tokio::time::timeout(spec.timeout, spec.probe.check(&target)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", spec.timeout)),
        };
        self.record(&target.addr, &spec, result);
        let mut states = lock(&self.0.states);
        if let Some(s) = states.get_mut(&target.addr) {
            s.probing = false;
            s.next_due = Instant::now() + jittered(spec.interval, &target.addr);
        }
    }
}

/// `interval` ±10 %, varied per server and over time, so checks of many
/// servers do not fire in lockstep.
fn jittered(interval: Duration, addr: &SocketAddr) -> Duration {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(addr);
    let unit = (h % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
    interval.mul_f64(1.0 + 0.1 * unit)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(healthy: usize, unhealthy: usize) -> Arc<Spec> {
        let c = HealthCheckConfig {
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            ..HealthCheckConfig::default()
        };
        Arc::new(Spec::new("app", "127.0.0.1:1", &c, |_| {}))
    }

    #[test]
    fn thresholds_flip_the_verdict_and_state_survives_new_settings() {
        let c = Checker::default();
        let addr = SocketAddr::Inet("127.0.0.1:1".parse().unwrap());
        let s = spec(2, 3);
        c.set_specs(HashMap::from([(addr.clone(), s.clone())]));
        let fail = || Err("down".to_string());
        c.record(&addr, &s, fail());
        c.record(&addr, &s, fail());
        assert!(
            c.verdict(&addr),
            "two failures are below the threshold of three"
        );
        c.record(&addr, &s, Ok(()));
        c.record(&addr, &s, fail());
        c.record(&addr, &s, fail());
        assert!(c.verdict(&addr), "a success resets the streak");
        c.record(&addr, &s, fail());
        assert!(!c.verdict(&addr));
        assert_eq!(c.transitions(), 1);

        // A reload with new settings keeps the verdict of a server still present.
        let s2 = spec(1, 1);
        c.set_specs(HashMap::from([(addr.clone(), s2.clone())]));
        assert!(!c.verdict(&addr));
        c.report_connect_failure(&addr, "connect failed");
        assert!(!c.verdict(&addr));
        c.record(&addr, &s2, Ok(()));
        assert!(
            c.verdict(&addr),
            "healthy_threshold 1 brings it back at once"
        );
        assert!(c.snapshot()[0].healthy);

        // A server gone from the config is forgotten.
        c.set_specs(HashMap::new());
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let addr = SocketAddr::Inet("127.0.0.1:1".parse().unwrap());
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10), &addr);
            assert!(
                d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
    }
}
