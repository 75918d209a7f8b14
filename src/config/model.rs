//! The configuration *as written*: serde + schemars types, nothing else.
//!
//! These types mirror the YAML file one to one. They are never handed to the
//! proxy: `runtime::compile` turns them into the runtime `RouteTable`.
//! Doc comments here become the JSON schema's descriptions (editors show
//! them), so they state defaults and units.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// Every `default = "…"` below names a function in `defaults.rs`.
use super::defaults::*;
pub use super::seconds::{Seconds, SecondsOrZero, WholeSeconds};

/// pingora-gateway configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pingora-gateway configuration")]
pub struct FileConfig {
    /// Process-level settings: listener, workers, upgrade and shutdown.
    /// Changes here need a restart or a graceful upgrade (`systemctl reload`
    /// under systemd), except `trusted_proxies` and `max_body_bytes`.
    #[serde(default)]
    pub server: ServerConfig,
    /// Named groups of upstream servers; requests are balanced round robin
    /// over each group's healthy servers.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Path routes. The most specific pattern wins, whatever the order here.
    pub routes: Vec<RouteConfig>,
    /// Active HTTP health checks of every upstream server.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// Bearer-token (JWT) authentication for routes with `auth_required`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Prometheus metrics listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Log level and format.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Headers added to every response unless the upstream already set them.
    /// Default: `X-Content-Type-Options: nosniff`, `X-Frame-Options: SAMEORIGIN`,
    /// `Referrer-Policy: strict-origin-when-cross-origin`. Set `{}` to add none.
    #[serde(default = "default_response_headers")]
    pub response_headers: BTreeMap<String, String>,
    /// HTTPS listener and certificates. Absent: plain HTTP only.
    #[serde(default)]
    pub tls: Option<super::tls::TlsConfig>,
    /// Named rate-limit policies, used by `routes[].rate_limit`. Default: none.
    #[serde(default)]
    pub rate_limits: super::edge::RateLimits,
    /// Response compression (gzip, br, zstd). Default: off.
    #[serde(default)]
    pub compression: super::edge::CompressionConfig,
}

/// Process-level settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the proxy listens on, `IP:PORT`. Default: `0.0.0.0:6188`.
    #[serde(default = "default_bind")]
    pub bind_address: String,
    /// Number of proxy worker threads. Default: 4.
    #[serde(default = "default_workers")]
    #[schemars(range(min = 1, max = 1024))]
    pub worker_threads: usize,
    /// Pid file written by `gateway run --daemon`. Default: `/tmp/pingora-gateway.pid`.
    #[serde(default = "default_pid_file")]
    pub pid_file: String,
    /// Unix socket through which a new process (`gateway run --upgrade`)
    /// takes over the listening sockets. Default: `/tmp/pingora-gateway-upgrade.sock`.
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: String,
    /// Seconds an old process keeps serving in-flight requests after a
    /// graceful upgrade or SIGTERM before it stops accepting. Default: 5.
    #[serde(default = "default_grace_period")]
    pub grace_period_seconds: WholeSeconds<0, 3600>,
    /// Lame-duck seconds on SIGTERM: `/readyz` answers 503 at once while the
    /// proxy keeps serving this long, then the grace period starts. Default: 0.
    #[serde(default = "default_shutdown_delay")]
    pub shutdown_delay_seconds: WholeSeconds<0, 3600>,
    /// Seconds allowed for services to shut down once the grace period ended. Default: 5.
    #[serde(default = "default_shutdown_timeout")]
    pub graceful_shutdown_timeout_seconds: WholeSeconds<0, 3600>,
    /// Set `SO_REUSEPORT` on the listener, so that several processes can
    /// share the port (the test harness uses it to reserve ports without
    /// races). Default: false: a second gateway on the same port fails to start.
    #[serde(default)]
    pub reuse_port: bool,
    /// Addresses (CIDR, e.g. `10.0.0.0/8`, or single IPs) of proxies and load
    /// balancers in front of the gateway whose `X-Forwarded-*` headers are
    /// believed. From any other peer those headers are replaced, and
    /// `True-Client-IP`, `X-Client-IP`, `Client-IP`, `X-Real-IP` and
    /// `Forwarded` are removed. The client address (access log, rate limits)
    /// is the right-most `X-Forwarded-For` hop that is not trusted.
    /// Default: none. Applies on reload.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Largest request body, in bytes, for routes without their own
    /// `max_body_bytes`: a larger `Content-Length` gets 413 before anything
    /// is forwarded; a chunked body that grows past it is cut off and never
    /// completes upstream. Default: 10485760 (10 MiB). Applies on reload.
    #[serde(default = "default_max_body")]
    #[schemars(range(min = 0, max = 1_099_511_627_776u64))]
    pub max_body_bytes: u64,
    /// Bytes of read buffer each client connection keeps for its whole
    /// life (Pingora's default is 64 KiB, whether busy or idle). 0 (the
    /// default) reads straight into each request's own buffers: request
    /// headers and bodies are read in large pieces anyway, and 10,000 idle
    /// connections then hold no buffer at all.
    #[serde(default = "default_read_buffer")]
    #[schemars(range(min = 0, max = 1048576))]
    pub read_buffer_bytes: usize,
    /// Bytes of an HTTP/1 response the gateway gathers before sending, so
    /// that a small response (header and body) leaves in one send and a
    /// larger body leaves with its header in one vectored send. The buffer
    /// exists only while a response is being written: allocated by its
    /// first small piece, freed once sent; an idle connection holds none.
    /// Everything Pingora flushes (the end of each response, each chunk of
    /// a streamed one, WebSocket data) leaves at once, and nothing is held
    /// while the connection waits for the client. HTTP/2 is not affected
    /// (it gathers its own frames). 0: every write is its own send (≈10 %
    /// more CPU per small request in the benchmark). Default: 4096.
    /// Pingora's own write buffer, which a connection would keep for its
    /// whole life, stays off.
    #[serde(default = "default_write_buffer")]
    #[schemars(range(min = 0, max = 1048576))]
    pub write_buffer_bytes: usize,
    /// Let idle worker threads take ready tasks from busy ones (Pingora's
    /// default, tokio's multi-threaded scheduler). Default: true. With false
    /// each connection stays on the thread that accepted it, like nginx's
    /// workers, but with more than one worker thread Pingora loses most
    /// upstream connection reuse (a pooled connection watched from another
    /// thread cannot be taken: "failed to acquire reusable stream", a new
    /// connection instead): 6-14 new upstream connections per 1,000
    /// requests and no CPU saved in `benches/upstream_reuse.py`.
    #[serde(default = "default_true")]
    pub work_stealing: bool,
    /// Seconds a client connection may stay idle between two requests before
    /// the gateway closes it (nginx's `keepalive_timeout`). Default: 60.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout_seconds: WholeSeconds<1, 86400>,
    /// Seconds between checks of the config file's content, a backup for
    /// file systems that lose change notifications (Docker bind mounts,
    /// network file systems). Default: 5.
    #[serde(default = "default_config_poll")]
    pub config_poll_interval_seconds: Seconds,
    /// Seconds a client has to send a whole request head (request line and
    /// headers), counted from its first byte; a head still incomplete then is
    /// answered `408` and the connection closed. The wait for that first byte
    /// is `keepalive_timeout_seconds`. The admin listener uses the same limit
    /// for each head, counted from the moment it waits for one. Default: 10.
    #[serde(default = "default_header_timeout")]
    pub request_header_timeout_seconds: WholeSeconds<1, 3600>,
    /// Bytes a request head (request line and headers, up to the blank line)
    /// may take; a longer one is answered `431` and the connection closed. A
    /// connection never buffers more than this for a head. At most
    /// 1048575 (Pingora's own limit). Default: 65536.
    #[serde(default = "default_max_header_bytes")]
    #[schemars(range(min = 1024, max = 1_048_575))]
    pub max_request_header_bytes: usize,
    /// Client connections open at once on the proxy listener; one more is
    /// closed as soon as it is accepted (counted in
    /// `gateway_downstream_connections_rejected_total{reason="max_connections"}`).
    /// 0 (the default): the process's soft open-file limit (`RLIMIT_NOFILE`)
    /// at start minus a reserve of a tenth of it (at least 64) for upstream
    /// connections, the listeners, logs and config files; e.g. 1024 → 922,
    /// 65536 → 58983.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10_000_000))]
    pub max_connections: usize,
    /// Client connections open at once from one IP address; one more is
    /// closed as soon as it is accepted (counted with
    /// `reason="max_connections_per_ip"`). 0 (the default): no limit (behind
    /// another proxy every client shares its address).
    #[serde(default)]
    #[schemars(range(min = 0, max = 10_000_000))]
    pub max_connections_per_ip: usize,
}

/// One named group of servers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Servers as `HOST:PORT` (an IP or a name resolved when the file is loaded).
    pub servers: Vec<String>,
    /// Seconds to establish a TCP connection. Default: 2.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: Seconds,
    /// Seconds to wait for each read from the upstream (response headers or
    /// the next body chunk). Default: 60.
    #[serde(default = "default_io_timeout")]
    pub read_timeout_seconds: Seconds,
    /// Seconds to wait for each write to the upstream. Default: 60.
    #[serde(default = "default_io_timeout")]
    pub write_timeout_seconds: Seconds,
    /// Seconds an idle pooled upstream connection is kept. Default: 4, below
    /// the 5 s after which Node.js (Next.js) servers close idle connections.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: Seconds,
    /// How many other servers a request that could not connect is retried on.
    /// Default: 1.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 100))]
    pub retries: usize,
    /// Require the server to return the `X-Request-Id` it was sent on every
    /// response; a missing or different id is treated as a response that
    /// belongs to another request: 502, the connection dropped, the server's
    /// connection pooling suspended for 60 s. Default: false.
    #[serde(default)]
    pub require_request_id_echo: bool,
    /// Reuse connections to this upstream's servers (HTTP keep-alive). With
    /// false every request gets a new connection and asks the server to close
    /// it (`Connection: close`). Default: true.
    #[serde(default = "default_true")]
    pub keepalive: bool,
    /// Health-check settings for this upstream only; any subset of the global
    /// `health_check` fields, the rest inherited.
    #[serde(default)]
    pub health_check: Option<HealthCheckOverride>,
    /// TLS to this upstream's servers. Absent: plain HTTP.
    #[serde(default)]
    pub tls: Option<super::upstream_tls::UpstreamTlsConfig>,
}

/// A path route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path pattern. `/p/*` matches `/p`, `/p/` and everything below;
    /// without `*` the path must match exactly; `/*` matches everything.
    pub path: String,
    /// Name of the upstream group (a key of `upstreams`).
    pub upstream: String,
    /// Whether a valid bearer token is required. Default: true.
    #[serde(default = "default_true")]
    pub auth_required: bool,
    /// Only match requests for this host (the `Host` header, without port,
    /// case-insensitive).
    #[serde(default)]
    pub host: Option<String>,
    /// Only match these methods (e.g. `[GET, HEAD]`). Default: all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Remove the pattern's prefix (the part before `/*`) before forwarding.
    /// Default: false, the upstream sees the full path (Next.js `basePath`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Overrides the upstream's `read_timeout_seconds` for this route
    /// (e.g. long-lived streams).
    #[serde(default)]
    pub read_timeout_seconds: Option<Seconds>,
    /// Overrides the upstream's `write_timeout_seconds` for this route.
    #[serde(default)]
    pub write_timeout_seconds: Option<Seconds>,
    /// Scopes the token must all carry (from `scope` or `scp`). Default: none.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Largest request body for this route, in bytes (overrides
    /// `server.max_body_bytes`).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_099_511_627_776u64))]
    pub max_body_bytes: Option<u64>,
    /// Request headers the gateway removes by default that this route's
    /// upstream needs: `X-HTTP-Method-Override`, `X-HTTP-Method`,
    /// `X-Method-Override`, `X-Original-URL`, `X-Rewrite-URL`. Default: none
    /// (a method override could turn a GET the route admits into a DELETE).
    #[serde(default)]
    pub keep_request_headers: Vec<String>,
    /// Name of a `rate_limits` policy applied to this route. Default: none.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// CORS for browser apps on other origins. Default: none.
    #[serde(default)]
    pub cors: Option<super::edge::CorsConfig>,
    /// Headers added to / removed from requests sent upstream. Default: none.
    #[serde(default)]
    pub request_headers: super::edge::HeaderRulesConfig,
    /// Headers added to / removed from responses. Default: none.
    #[serde(default)]
    pub response_headers: super::edge::HeaderRulesConfig,
}

/// Active HTTP health checks.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Whether servers are checked at all. Default: true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between checks of one server. Default: 10.
    #[serde(default = "default_hc_interval")]
    pub interval_seconds: Seconds,
    /// Seconds a check may take (connect plus response headers). Default: 5.
    #[serde(default = "default_hc_timeout")]
    pub timeout_seconds: Seconds,
    /// Consecutive passing checks that bring a server back. Default: 2.
    #[serde(default = "default_healthy_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub healthy_threshold: usize,
    /// Consecutive failing checks that take a server out. Default: 3.
    #[serde(default = "default_unhealthy_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub unhealthy_threshold: usize,
    /// Request path of the check. Default: `/health`.
    #[serde(default = "default_hc_path")]
    pub path: String,
    /// Statuses that count as healthy. Default: `[200]`.
    #[serde(default = "default_hc_codes")]
    #[schemars(length(min = 1), inner(range(min = 100, max = 599)))]
    pub expected_status_codes: Vec<u16>,
    /// HTTP method of the check. Default: `GET`.
    #[serde(default = "default_hc_method")]
    pub method: HealthCheckMethod,
    /// Check over TLS (with the upstream's `tls` settings, or the defaults:
    /// system roots, verified, SNI the server's host). An upstream with
    /// `tls` is always checked over TLS unless its own
    /// `health_check.use_https` is false. Default: false.
    #[serde(default)]
    pub use_https: bool,
}

/// Per-upstream health-check override: every field optional.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckOverride {
    /// See `health_check.enabled`.
    pub enabled: Option<bool>,
    /// See `health_check.interval_seconds`.
    pub interval_seconds: Option<Seconds>,
    /// See `health_check.timeout_seconds`.
    pub timeout_seconds: Option<Seconds>,
    /// See `health_check.healthy_threshold`.
    #[schemars(range(min = 1, max = 1000))]
    pub healthy_threshold: Option<usize>,
    /// See `health_check.unhealthy_threshold`.
    #[schemars(range(min = 1, max = 1000))]
    pub unhealthy_threshold: Option<usize>,
    /// See `health_check.path`.
    pub path: Option<String>,
    /// See `health_check.expected_status_codes`.
    #[schemars(length(min = 1), inner(range(min = 100, max = 599)))]
    pub expected_status_codes: Option<Vec<u16>>,
    /// See `health_check.method`.
    pub method: Option<HealthCheckMethod>,
    /// See `health_check.use_https`.
    pub use_https: Option<bool>,
}

/// HTTP method used by health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum HealthCheckMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "HEAD")]
    Head,
}

/// Authentication settings, with the oauth-service as the authority.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared secret for HS256/384/512 tokens. Supports `${JWT_SECRET}`.
    /// Should be at least 32 bytes.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// Base URL of the OAuth 2.1 authority (the oauth-service, or an
    /// identity provider such as Auth0 or Keycloak), `https://…` or `http://…`.
    /// Without `jwks_url`, its key set is discovered from
    /// `/.well-known/openid-configuration` (then RFC 8414's
    /// `/.well-known/oauth-authorization-server`).
    #[serde(default)]
    pub oauth_service_url: Option<String>,
    /// Path on the authority of the RFC 7662 token introspection endpoint
    /// (used when `introspection.mode` is not `off`).
    #[serde(default)]
    pub token_validation_endpoint: Option<String>,
    /// Seconds of clock skew tolerated for `exp`, `nbf` and `iat`. Default: 30, at most 3600.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: WholeSeconds<0, 3600>,
    /// Expected `iss` claim; not checked when unset.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Expected `aud` claim: one string, or a list (any of them); not
    /// checked when unset.
    #[serde(default, deserialize_with = "super::one_or_many::deserialize")]
    #[schemars(with = "Option<super::one_or_many::OneOrMany>")]
    pub audience: Option<Vec<String>>,
    /// URL of the JWKS (`https://…` or `http://…`) with the keys of RS256, PS256, ES256 and
    /// EdDSA tokens. Default: discovered from `oauth_service_url`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Seconds between background refreshes of the key set. Default: 300.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: Seconds,
    /// Minimum seconds between two fetches triggered by tokens naming an
    /// unknown `kid`. Default: 5.
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch_seconds: SecondsOrZero,
    /// Seconds a fetch from the authority (discovery, key set,
    /// introspection) may take. Default: 5.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_seconds: Seconds,
    /// Accepted JWT algorithms. Default: every algorithm that fits a
    /// configured key (HS* for `jwt_secret`, the key type's for JWKS keys).
    #[serde(default)]
    pub algorithms: Option<Vec<JwtAlgorithm>>,
    /// Cookie to read the token from when there is no `Authorization`
    /// header (browsers navigating a portal). Default: none, header only.
    #[serde(default)]
    pub cookie_name: Option<String>,
    /// RFC 7662 token introspection at the authority. Default: off.
    #[serde(default)]
    pub introspection: IntrospectionConfig,
    /// Most verified tokens and introspection results kept in memory
    /// (each keyed by a hash of the token, never the token). Default: 10000.
    #[serde(default = "default_cache_entries")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub cache_max_entries: usize,
    /// Redirect browser navigations without a valid token to a login page
    /// instead of answering 401. Default: off.
    #[serde(default)]
    pub login_redirect: Option<LoginRedirectConfig>,
    /// Claim → upstream request header. `scopes` is the token's scope list
    /// (space-separated), `client_id` falls back to `azp`; other names are
    /// top-level claims. Default: `sub: X-User-Id`, `scopes: X-User-Scopes`,
    /// `client_id: X-Client-Id`. These headers are removed from every
    /// incoming request, on every route.
    #[serde(default = "default_identity_headers")]
    pub identity_headers: BTreeMap<String, String>,
    /// Pass the client's `Authorization` header on to the upstream of a
    /// protected route. Default: true.
    #[serde(default = "default_true")]
    pub forward_authorization: bool,
    /// `realm` of `WWW-Authenticate` challenges. Default: `pingora-gateway`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// PEM file of extra roots for the discovery, JWKS and introspection
    /// fetches (a private CA); the system's roots are always trusted too.
    /// Default: none.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// A JWT signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// When tokens are sent to the authority's introspection endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntrospectionMode {
    /// Never: only JWTs are accepted.
    #[default]
    Off,
    /// Tokens that are not JWTs (opaque tokens).
    Opaque,
    /// Opaque tokens and, after their signature checked out, JWTs too
    /// (so that revoked tokens are refused).
    Always,
}

/// RFC 7662 introspection at `oauth_service_url + token_validation_endpoint`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// `off`, `opaque` or `always`. Default: `off`.
    #[serde(default)]
    pub mode: IntrospectionMode,
    /// Client id the gateway authenticates with (HTTP Basic). Default: none.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret; supports `${VAR}`. Default: none.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Seconds an `active` answer is reused (never past the token's `exp`).
    /// Default: 60.
    #[serde(default = "default_introspection_ttl")]
    pub cache_ttl_seconds: SecondsOrZero,
}

/// Login redirect for browser navigations (GET accepting `text/html`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRedirectConfig {
    /// Login page: an `http(s)://` URL, or a path on the gateway (e.g.
    /// `/oauth/login`).
    pub url: String,
    /// Query parameter carrying the original URL. Default: `return_to`.
    #[serde(default = "default_return_param")]
    pub return_parameter: String,
}

/// Prometheus metrics listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve metrics at all; when false nothing listens. Default: true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Listener address, `IP:PORT`. Default: `127.0.0.1:9090` (local only:
    /// `/readyz` and the metrics name upstream servers); set `0.0.0.0:9090`
    /// explicitly for a scraper on another host.
    #[serde(default = "default_metrics_bind")]
    pub bind_address: String,
    /// Path of the Prometheus text exposition. Default: `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub path: String,
}

/// Logging through `tracing`; `RUST_LOG` overrides `level`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Minimum level. Default: `info`.
    #[serde(default = "default_log_level")]
    pub level: LogLevel,
    /// `json` (one JSON object per line) or `text`. Default: `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// One access-log line per request (at `info`). Default: true. Turning it
    /// off saves ≈15 % of the gateway's CPU per request; metrics still count.
    #[serde(default = "default_true")]
    pub access_log: bool,
}

/// Log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}
