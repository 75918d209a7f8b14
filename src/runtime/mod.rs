//! The runtime: the reloadable snapshot ([`RouteTable`]) a checked config
//! compiles to ([`compile`]), and the process-wide state every snapshot
//! borrows ([`compile::CompileContext`]: health registry and checker, metrics
//! registry, JWKS key sets), which never changes on reload.
//!
//! Direction: `routing`, `config` and the components (`upstream`, `health`,
//! `auth`, `forwarding`, `metrics`, …) are below; `reload`, `proxy`, `admin`
//! and `server` use it.

pub mod compile;

pub use compile::{CompileContext, Prepared, compile, prepare, prepare_bytes};

use crate::auth::Authenticator;
use crate::forwarding::{KeepHeaders, TrustedProxies};
use crate::health::Checker;
use crate::metrics::{Metrics, RouteMetrics};
use crate::routing::Router;
use crate::upstream::{Timeouts, UpstreamPool};
use http::{HeaderName, HeaderValue, Method};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// The pattern as written (the `route` label of logs and metrics).
    pub pattern: Box<str>,
    /// The literal prefix (pattern without `/*`), for `strip_prefix`.
    pub prefix: Box<str>,
    pub upstream: Arc<UpstreamPool>,
    pub auth_required: bool,
    pub strip_prefix: bool,
    /// Upstream timeouts with this route's overrides applied.
    pub timeouts: Timeouts,
    pub required_scopes: Box<[Box<str>]>,
    /// Largest request body (the route's or `server.max_body_bytes`).
    pub max_body_bytes: u64,
    /// Override headers this route's upstream receives.
    pub keep_headers: KeepHeaders,
    /// Metric handles labelled with this route's pattern and upstream.
    pub metrics: RouteMetrics,
    /// Rate limit, CORS and header rules.
    pub edge: RouteEdge,
}

/// A route's edge policies (issue 17).
#[derive(Debug, Default)]
pub struct RouteEdge {
    pub rate_limit: Option<RouteLimit>,
    pub cors: Option<crate::policy::Cors>,
    pub request_headers: crate::policy::HeaderRules,
    pub response_headers: crate::policy::HeaderRules,
}

impl RouteEdge {
    /// Whether responses of the route get anything from these policies.
    pub fn decorates_responses(&self) -> bool {
        self.cors.is_some() || !self.response_headers.is_empty()
    }
}

/// A route's rate limit: the process-wide limiter and its refusal counter.
#[derive(Debug)]
pub struct RouteLimit {
    pub limiter: Arc<crate::policy::Limiter>,
    /// `gateway_rate_limited_total{route,policy}`.
    pub limited: prometheus::IntCounter,
}

/// The compiled, immutable runtime form of one config file. The proxy
/// reads it through an `ArcSwap` and each request keeps the `Arc` it
/// started with, so it sees one consistent config from start to end.
pub struct RouteTable {
    pub(crate) router: Router,
    pub routes: Box<[Route]>,
    /// Every upstream pool, by name. Not read on the request path, but it
    /// keeps the pools of upstreams no route uses alive: without it their
    /// servers' health is no longer checked (tests/metrics.rs fails).
    pub upstreams: BTreeMap<String, Arc<UpstreamPool>>,
    /// Whether each request writes an access-log line.
    pub access_log: bool,
    /// Added to responses unless the upstream set them.
    pub response_headers: Box<[(HeaderName, HeaderValue)]>,
    /// The same for responses over HTTPS: plus `Strict-Transport-Security`
    /// when `tls.hsts` is set.
    pub tls_response_headers: Box<[(HeaderName, HeaderValue)]>,
    /// `tls.redirect_http`: the HTTPS listener's port that plain-HTTP
    /// requests are redirected to (`308`).
    pub redirect_https: Option<u16>,
    /// With `tls.acme`: the HTTP-01 answers the plain listener serves at
    /// `/.well-known/acme-challenge/` before routing, auth or redirect.
    pub acme_challenges: Option<Arc<crate::tls::challenge::Challenges>>,
    /// `compression` when enabled.
    pub compression: Option<Arc<crate::policy::Compression>>,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: TrustedProxies,
    pub auth: Option<Authenticator>,
    /// The process-wide health checker (passive failure reports).
    pub health: Checker,
    /// The process-wide metrics (in-flight gauge, unmatched requests, auth).
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the file this table was compiled from.
    pub hash: crate::config::ConfigHash,
}

impl RouteTable {
    /// The headers added to responses on a connection (TLS or not).
    pub fn response_headers(&self, tls: bool) -> &[(HeaderName, HeaderValue)] {
        if tls {
            &self.tls_response_headers
        } else {
            &self.response_headers
        }
    }

    /// The most specific route for a normalized path (see [`Router::lookup`]).
    /// Returns the route's index (kept in the request context) and the route.
    pub fn lookup(
        &self,
        path: &str,
        host: Option<&str>,
        method: &Method,
    ) -> Option<(usize, &Route)> {
        let i = self.router.lookup(path, host, method)? as usize;
        Some((i, &self.routes[i]))
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes)
            .field("hash", &self.hash)
            .finish()
    }
}
