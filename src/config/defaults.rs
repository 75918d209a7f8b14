//! Defaults of the config as written: the functions serde's
//! `default = "…"` attributes in `model.rs` name, and the `Default` impls
//! built from them (so a section left out equals a section written empty).

use super::model::*;
use std::collections::BTreeMap;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind_address: default_bind(),
            worker_threads: default_workers(),
            pid_file: default_pid_file(),
            upgrade_sock: default_upgrade_sock(),
            grace_period_seconds: default_grace_period(),
            graceful_shutdown_timeout_seconds: default_shutdown_timeout(),
            shutdown_delay_seconds: default_shutdown_delay(),
            reuse_port: false,
            trusted_proxies: Vec::new(),
            max_body_bytes: default_max_body(),
            read_buffer_bytes: default_read_buffer(),
            keepalive_timeout_seconds: default_keepalive_timeout(),
            work_stealing: true,
            write_buffer_bytes: default_write_buffer(),
            config_poll_interval_seconds: default_config_poll(),
            request_header_timeout_seconds: default_header_timeout(),
            max_request_header_bytes: default_max_header_bytes(),
            max_connections: 0,
            max_connections_per_ip: 0,
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: default_hc_interval(),
            timeout_seconds: default_hc_timeout(),
            healthy_threshold: default_healthy_threshold(),
            unhealthy_threshold: default_unhealthy_threshold(),
            path: default_hc_path(),
            expected_status_codes: default_hc_codes(),
            method: default_hc_method(),
            use_https: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            oauth_service_url: None,
            token_validation_endpoint: None,
            leeway_seconds: default_leeway(),
            issuer: None,
            audience: None,
            jwks_url: None,
            jwks_refresh_seconds: default_jwks_refresh(),
            jwks_min_refetch_seconds: default_jwks_min_refetch(),
            fetch_timeout_seconds: default_fetch_timeout(),
            algorithms: None,
            cookie_name: None,
            introspection: IntrospectionConfig::default(),
            cache_max_entries: default_cache_entries(),
            login_redirect: None,
            identity_headers: default_identity_headers(),
            forward_authorization: true,
            realm: default_realm(),
            ca_file: None,
        }
    }
}

impl Default for IntrospectionConfig {
    fn default() -> Self {
        Self {
            mode: IntrospectionMode::Off,
            client_id: None,
            client_secret: None,
            cache_ttl_seconds: default_introspection_ttl(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind_address: default_metrics_bind(),
            path: default_metrics_path(),
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::Json,
            access_log: true,
        }
    }
}

pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_bind() -> String {
    "0.0.0.0:6188".into()
}
pub(super) fn default_workers() -> usize {
    4
}
pub(super) fn default_pid_file() -> String {
    "/tmp/pingora-gateway.pid".into()
}
pub(super) fn default_upgrade_sock() -> String {
    "/tmp/pingora-gateway-upgrade.sock".into()
}
pub(super) fn default_grace_period() -> WholeSeconds<0, 3600> {
    const { WholeSeconds::lit(5) }
}
pub(super) fn default_shutdown_timeout() -> WholeSeconds<0, 3600> {
    const { WholeSeconds::lit(5) }
}
pub(super) fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
pub(super) fn default_read_buffer() -> usize {
    0
}
/// Bytes of a response gathered into one send (held only while writing).
pub(super) fn default_write_buffer() -> usize {
    4096
}
/// How long a connection may sit idle between requests, unless configured
/// (Pingora's default).
pub const KEEPALIVE_SECONDS: u64 = 60;
pub(super) fn default_keepalive_timeout() -> WholeSeconds<1, 86400> {
    const { WholeSeconds::lit(KEEPALIVE_SECONDS) }
}
pub(super) fn default_shutdown_delay() -> WholeSeconds<0, 3600> {
    const { WholeSeconds::lit(0) }
}
pub(super) fn default_config_poll() -> Seconds {
    const { Seconds::lit(5.0) }
}
/// Default `server.request_header_timeout_seconds` (also what
/// `idle::HeadLimits::default` applies).
pub const HEADER_TIMEOUT: WholeSeconds<1, 3600> = WholeSeconds::lit(10);
/// Default `server.max_request_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 65536;

pub(super) fn default_header_timeout() -> WholeSeconds<1, 3600> {
    HEADER_TIMEOUT
}
pub(super) fn default_max_header_bytes() -> usize {
    MAX_HEADER_BYTES
}
pub(super) fn default_connect_timeout() -> Seconds {
    const { Seconds::lit(2.0) }
}
pub(super) fn default_io_timeout() -> Seconds {
    const { Seconds::lit(60.0) }
}
pub(super) fn default_idle_timeout() -> Seconds {
    const { Seconds::lit(4.0) }
}
pub(super) fn default_retries() -> usize {
    1
}
pub(super) fn default_hc_interval() -> Seconds {
    const { Seconds::lit(10.0) }
}
pub(super) fn default_hc_timeout() -> Seconds {
    const { Seconds::lit(5.0) }
}
pub(super) fn default_healthy_threshold() -> usize {
    2
}
pub(super) fn default_unhealthy_threshold() -> usize {
    3
}
pub(super) fn default_hc_path() -> String {
    "/health".into()
}
pub(super) fn default_hc_codes() -> Vec<u16> {
    vec![200]
}
pub(super) fn default_hc_method() -> HealthCheckMethod {
    HealthCheckMethod::Get
}
pub(super) fn default_leeway() -> WholeSeconds<0, 3600> {
    const { WholeSeconds::lit(30) }
}
pub(super) fn default_jwks_refresh() -> Seconds {
    const { Seconds::lit(300.0) }
}
pub(super) fn default_jwks_min_refetch() -> SecondsOrZero {
    const { SecondsOrZero::lit(5.0) }
}
pub(super) fn default_fetch_timeout() -> Seconds {
    const { Seconds::lit(5.0) }
}
pub(super) fn default_cache_entries() -> usize {
    10_000
}
pub(super) fn default_introspection_ttl() -> SecondsOrZero {
    const { SecondsOrZero::lit(60.0) }
}
pub(super) fn default_realm() -> String {
    "pingora-gateway".into()
}
pub(super) fn default_return_param() -> String {
    "return_to".into()
}
pub(crate) fn default_identity_headers() -> BTreeMap<String, String> {
    [
        ("sub", "X-User-Id"),
        ("scopes", "X-User-Scopes"),
        ("client_id", "X-Client-Id"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
pub(super) fn default_metrics_bind() -> String {
    "127.0.0.1:9090".into()
}
pub(super) fn default_metrics_path() -> String {
    "/metrics".into()
}
pub(super) fn default_log_level() -> LogLevel {
    LogLevel::Info
}
pub(crate) fn default_response_headers() -> BTreeMap<String, String> {
    [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
