//! Prometheus metrics: the registry and the handles the request path uses.
//! The admin listener that serves them is `admin` (a layer above).
//!
//! Every metric name is a constant in [`names`]; the Grafana dashboard and
//! the tests use the same names. The `route` label is the route's pattern
//! (never the raw path) and unmatched requests share one value, so the
//! number of series does not grow with traffic. Route handles are resolved
//! when a table is compiled ([`RouteMetrics`]) or once per new label
//! combination (a lock-free cache). Rare events are looked up by label per
//! occurrence: an authentication rejection ([`Metrics::auth_rejection`]) and
//! an aborted upstream response.

#[cfg(target_os = "linux")]
mod process;

use arc_swap::ArcSwap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Metric names, in one place.
pub mod names {
    pub const REQUESTS_TOTAL: &str = "gateway_requests_total";
    pub const REQUEST_DURATION: &str = "gateway_request_duration_seconds";
    pub const UPSTREAM_DURATION: &str = "gateway_upstream_duration_seconds";
    pub const REQUESTS_IN_FLIGHT: &str = "gateway_requests_in_flight";
    pub const DOWNSTREAM_CONNECTIONS: &str = "gateway_downstream_connections";
    pub const DOWNSTREAM_ERRORS: &str = "gateway_downstream_errors_total";
    pub const DOWNSTREAM_REJECTED: &str = "gateway_downstream_connections_rejected_total";
    pub const UPSTREAM_SERVER_HEALTHY: &str = "gateway_upstream_server_healthy";
    pub const HEALTH_TRANSITIONS: &str = "gateway_upstream_health_transitions_total";
    pub const AUTH_REJECTIONS: &str = "gateway_auth_rejections_total";
    pub const CONFIG_RELOADS: &str = "gateway_config_reloads_total";
    pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "gateway_config_last_reload_successful";
    pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP: &str =
        "gateway_config_last_reload_success_timestamp_seconds";
    pub const CONFIG_INFO: &str = "gateway_config_info";
    pub const BUILD_INFO: &str = "gateway_build_info";
    pub const UPSTREAM_DESYNC: &str = "gateway_upstream_desync_total";
    pub const UPSTREAM_ABORTED: &str = "gateway_upstream_aborted_total";
    pub const RATE_LIMITED: &str = "gateway_rate_limited_total";
    pub const TLS_CERTIFICATE_EXPIRY: &str = "gateway_tls_certificate_expiry_timestamp_seconds";
    pub const TLS_HANDSHAKES: &str = "gateway_tls_handshakes_total";
    pub const TLS_HANDSHAKE_ERRORS: &str = "gateway_tls_handshake_errors_total";
    pub const TLS_CERTIFICATE_RELOADS: &str = "gateway_tls_certificate_reloads_total";
    pub const ACME_ORDERS: &str = "gateway_acme_orders_total";
}

/// The `route` (and `upstream`) label of requests that matched no route.
pub const UNMATCHED: &str = "(unmatched)";

/// Latency buckets: 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide registry and metric families.
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_duration: HistogramVec,
    pub in_flight: IntGauge,
    downstream_connections: IntGauge,
    server_healthy: IntGaugeVec,
    health_transitions: IntCounterVec,
    auth_rejections: IntCounterVec,
    reloads: IntCounterVec,
    last_reload_ok: IntGauge,
    last_reload_ts: IntGauge,
    config_info: IntGaugeVec,
    /// Data from a server that belongs to no request, by upstream and server.
    pub upstream_desync: IntCounterVec,
    /// Responses the upstream did not complete, by route, upstream and reason.
    pub upstream_aborted: IntCounterVec,
    /// Requests refused by a rate limit (429), by route pattern and policy.
    pub rate_limited: IntCounterVec,
    /// Heads and connections refused before they became requests, by kind
    /// (see [`crate::downstream`]).
    pub downstream: Arc<crate::downstream::Counters>,
    /// TLS handshakes and their failures (see [`crate::tls::accept`]).
    pub tls: Arc<crate::tls::TlsCounters>,
    /// File certificate reloads, by result (success, failure).
    pub tls_reloads: IntCounterVec,
    /// ACME certificate orders, by result (success, failure).
    pub acme_orders: IntCounterVec,
    tls_expiry: IntGaugeVec,
    /// Handles for requests that matched no route.
    pub unmatched: RouteMetrics,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram_vec = |name: &str, help: &str| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                &["route", "upstream"],
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        use names::*;
        let requests = counter_vec(
            REQUESTS_TOTAL,
            "Requests answered, by route pattern, upstream, method and status.",
            &["route", "upstream", "method", "status"],
        );
        let duration = histogram_vec(
            REQUEST_DURATION,
            "Time from request to the end of the response.",
        );
        let upstream_duration = histogram_vec(
            UPSTREAM_DURATION,
            "Time from choosing a server to its response headers.",
        );
        let build = gauge_vec(BUILD_INFO, "Build of the running gateway.", &["version"]);
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let unmatched = RouteMetrics::new(
            UNMATCHED,
            UNMATCHED,
            &requests,
            &duration,
            &upstream_duration,
        );
        let auth_rejections = counter_vec(
            AUTH_REJECTIONS,
            "Requests refused by authentication, by route pattern and reason.",
            &["route", "reason"],
        );
        let downstream = Arc::new(crate::downstream::Counters::new(
            &counter_vec(
                DOWNSTREAM_ERRORS,
                "Client heads and connections refused before they became requests, by kind \
                 (header_timeout, header_too_large, incomplete_header, bad_request, \
                 max_connections, max_connections_per_ip).",
                &["kind"],
            ),
            &counter_vec(
                DOWNSTREAM_REJECTED,
                "Client connections closed at once by a connection cap, by reason.",
                &["reason"],
            ),
        ));
        let tls = Arc::new(crate::tls::TlsCounters::new(
            &counter_vec(
                TLS_HANDSHAKES,
                "Completed TLS handshakes on the HTTPS listener, by version (1.2, 1.3) and ALPN (h2, http/1.1, none).",
                &["version", "alpn"],
            ),
            &counter_vec(
                TLS_HANDSHAKE_ERRORS,
                "Failed TLS handshakes on the HTTPS listener, by reason (timeout, closed, protocol_version, no_certificate, alert_received, bad_message, other).",
                &["reason"],
            ),
        ));
        let tls_reloads = counter_vec(
            TLS_CERTIFICATE_RELOADS,
            "Certificate files re-read after a change, by result (success; failure: the previous certificate is kept).",
            &["result"],
        );
        let acme_orders = counter_vec(
            ACME_ORDERS,
            "ACME certificate orders, by result (success; failure: retried with backoff, the current certificate is still served).",
            &["result"],
        );
        let tls_expiry = gauge_vec(
            TLS_CERTIFICATE_EXPIRY,
            "Unix time a served certificate expires, by name (the cert file, or the ACME domains) and source (file, acme).",
            &["name", "source"],
        );
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(process::ProcessMetrics::new()));
        }
        let m = Metrics {
            in_flight: gauge(REQUESTS_IN_FLIGHT, "Requests being processed."),
            downstream_connections: gauge(
                DOWNSTREAM_CONNECTIONS,
                "Open client connections to the proxy listeners (plain and HTTPS).",
            ),
            server_healthy: gauge_vec(
                UPSTREAM_SERVER_HEALTHY,
                "1 if the server is in rotation, 0 if health checks took it out.",
                &["upstream", "server"],
            ),
            health_transitions: counter_vec(
                HEALTH_TRANSITIONS,
                "Servers going in or out of rotation, by upstream and server.",
                &["upstream", "server"],
            ),
            reloads: counter_vec(
                CONFIG_RELOADS,
                "Config reloads, by result (success, failure).",
                &["result"],
            ),
            last_reload_ok: gauge(
                CONFIG_LAST_RELOAD_SUCCESSFUL,
                "1 if the last reload attempt succeeded.",
            ),
            last_reload_ts: gauge(
                CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP,
                "Unix time of the last successful config load.",
            ),
            config_info: gauge_vec(
                CONFIG_INFO,
                "The config in force (hash of the file).",
                &["hash"],
            ),
            upstream_desync: counter_vec(
                UPSTREAM_DESYNC,
                "Data from a server that answered no request (a stray or mismatched response, bytes on an idle connection).",
                &["upstream", "server"],
            ),
            upstream_aborted: counter_vec(
                UPSTREAM_ABORTED,
                "Responses the upstream did not complete (cut off, timed out, broke the protocol), by route pattern, upstream and reason.",
                &["route", "upstream", "reason"],
            ),
            rate_limited: counter_vec(
                RATE_LIMITED,
                "Requests refused with 429 by a rate limit, by route pattern and policy.",
                &["route", "policy"],
            ),
            registry,
            requests,
            duration,
            upstream_duration,
            auth_rejections,
            downstream,
            tls,
            tls_reloads,
            acme_orders,
            tls_expiry,
            unmatched,
        };
        m.reloads.with_label_values(&["success"]);
        m.tls_reloads.with_label_values(&["success"]);
        m.tls_reloads.with_label_values(&["failure"]);
        m.acme_orders.with_label_values(&["success"]);
        m.acme_orders.with_label_values(&["failure"]);
        m.reloads.with_label_values(&["failure"]);
        Arc::new(m)
    }

    /// Handles for one route (resolved when a table is compiled).
    pub fn route(&self, route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics::new(
            route,
            upstream,
            &self.requests,
            &self.duration,
            &self.upstream_duration,
        )
    }

    /// Counts a server going in or out of rotation (told by the health
    /// checker at the transition).
    pub fn health_transition(&self, upstream: &str, server: &str) {
        self.health_transitions
            .with_label_values(&[upstream, server])
            .inc();
    }

    /// Counts a request refused by authentication.
    pub fn auth_rejection(&self, route: &str, reason: &str) {
        self.auth_rejections
            .with_label_values(&[route, reason])
            .inc();
    }

    /// Copies state kept elsewhere (health, reloads, connections) into the
    /// registry; runs at scrape time only.
    fn refresh(&self, s: &Scrape) {
        self.server_healthy.reset();
        for (upstream, server, healthy) in &s.servers {
            self.server_healthy
                .with_label_values(&[upstream, server])
                .set(i64::from(*healthy));
        }
        // Every checked server has a transitions series, 0 until it flips.
        for (upstream, server, _) in &s.servers {
            self.health_transitions
                .with_label_values(&[upstream, server]);
        }
        let sync = |c: &IntCounter, v: u64| c.inc_by(v.saturating_sub(c.get()));
        sync(
            &self.reloads.with_label_values(&["success"]),
            s.reloads_succeeded,
        );
        sync(
            &self.reloads.with_label_values(&["failure"]),
            s.reloads_failed,
        );
        self.last_reload_ok.set(i64::from(s.last_reload_ok));
        self.last_reload_ts.set(s.last_success_timestamp as i64);
        self.config_info.reset();
        self.config_info.with_label_values(&[&s.config_hash]).set(1);
        self.downstream_connections
            .set(i64::try_from(s.downstream_connections).unwrap_or(i64::MAX));
        self.tls_expiry.reset();
        for (name, source, not_after) in &s.certificates {
            self.tls_expiry
                .with_label_values(&[name.as_str(), source])
                .set(*not_after);
        }
    }

    /// The Prometheus text exposition, after copying in `scrape`.
    pub fn render(&self, scrape: &Scrape) -> String {
        self.refresh(scrape);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// State kept elsewhere that a scrape copies into the registry (gathered by
/// the admin listener, so this module needs none of its owners).
#[derive(Debug, Default)]
pub struct Scrape {
    /// `(upstream, server, healthy)` for every checked server.
    pub servers: Vec<(String, String, bool)>,
    /// Transitions of all servers (the exported counter, by upstream and
    /// server, is counted at each transition: [`Metrics::health_transition`]).
    pub health_transitions: u64,
    pub reloads_succeeded: u64,
    pub reloads_failed: u64,
    pub last_reload_ok: bool,
    /// Unix seconds of the last successful load.
    pub last_success_timestamp: u64,
    /// The `hash` label of `gateway_config_info`.
    pub config_hash: String,
    /// Open client connections (admitted by the connection caps, plain and
    /// HTTPS).
    pub downstream_connections: usize,
    /// `(name, source, not_after)` of every served certificate.
    pub certificates: Vec<(String, &'static str, i64)>,
}

/// One route's metric handles. Histograms are created on first use, so
/// 10,000 routes that see no traffic export no series.
pub struct RouteMetrics {
    route: Box<str>,
    upstream: Box<str>,
    family: IntCounterVec,
    /// (method, status) → counter; read lock-free, extended on a miss.
    /// Methods are folded to a fixed set, so clients cannot mint series.
    counters: ArcSwap<HashMap<(&'static str, u16), IntCounter>>,
    duration_vec: HistogramVec,
    upstream_vec: HistogramVec,
    duration: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
}

impl RouteMetrics {
    fn new(
        route: &str,
        upstream: &str,
        family: &IntCounterVec,
        duration: &HistogramVec,
        upstream_duration: &HistogramVec,
    ) -> Self {
        RouteMetrics {
            route: route.into(),
            upstream: upstream.into(),
            family: family.clone(),
            counters: ArcSwap::default(),
            duration_vec: duration.clone(),
            upstream_vec: upstream_duration.clone(),
            duration: OnceLock::new(),
            upstream_duration: OnceLock::new(),
        }
    }

    /// Counts one finished request and its duration.
    pub fn observe(&self, method: &http::Method, status: u16, elapsed: Duration) {
        let key = (method_label(method), status);
        let counter = match self.counters.load().get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = self.family.with_label_values(&[
                    &*self.route,
                    &*self.upstream,
                    key.0,
                    itoa(status).as_str(),
                ]);
                self.counters.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.insert(key, c.clone());
                    m
                });
                c
            }
        };
        counter.inc();
        self.duration
            .get_or_init(|| {
                self.duration_vec
                    .with_label_values(&[&*self.route, &*self.upstream])
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time to the upstream's response headers.
    pub fn observe_upstream(&self, elapsed: Duration) {
        self.upstream_duration
            .get_or_init(|| {
                self.upstream_vec
                    .with_label_values(&[&*self.route, &*self.upstream])
            })
            .observe(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish()
    }
}

/// The `method` label: the standard methods, anything else `OTHER`.
fn method_label(m: &http::Method) -> &'static str {
    use http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "OTHER",
    }
}

fn itoa(n: u16) -> String {
    n.to_string()
}
