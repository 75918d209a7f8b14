//! Edge policies as written: named rate limits, per-route CORS and header
//! rules, response compression (issue 17). Checked in `check_edge.rs`,
//! compiled by `runtime::compile` into the `policy` module's objects.

use super::seconds::WholeSeconds;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A named rate-limit policy: a token bucket per key (GCRA), in memory, per
/// gateway process. Over the limit: `429` with `Retry-After`,
/// `RateLimit-Policy` and `RateLimit`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// What a bucket belongs to: `client_ip` (the client address, through
    /// `server.trusted_proxies`), `user` (the token's `sub`), `client_id`
    /// (the token's `client_id`/`azp`) or `header:NAME` (a request header's
    /// value). Without a token (public route) or the header, the client
    /// address is the key. Default: `client_ip`.
    #[serde(default = "default_key")]
    #[schemars(regex(
        pattern = r"^(client_ip|user|client_id|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"
    ))]
    pub key: String,
    /// Sustained rate each key may use, requests per second (fractions
    /// allowed: `0.5` is one every 2 s). Required.
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1_000_000_000))]
    pub requests_per_second: f64,
    /// Requests a key may send at once after being idle (the bucket's
    /// size). Default: 1 (requests strictly spaced at the rate).
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub burst: u32,
}

/// Cross-origin resource sharing for a route: the gateway answers
/// preflights itself (before authentication, without calling the upstream)
/// and adds `Access-Control-Allow-*` to responses for allowed origins.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call the route, e.g. `https://app.example.com`
    /// (scheme, host and port, compared case-insensitively), a subdomain
    /// wildcard such as `https://*.example.com`, or `"*"` (any origin; never
    /// with `allow_credentials`). Required.
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for. Default: `[GET, HEAD, POST]`.
    #[serde(default = "default_cors_methods")]
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive). Default:
    /// `[Authorization, Content-Type]`.
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read besides the CORS-safelisted ones.
    /// Default: `[X-Request-Id, Retry-After, RateLimit, RateLimit-Policy]`.
    #[serde(default = "default_cors_expose")]
    pub exposed_headers: Vec<String>,
    /// Allow cookies and `Authorization` on cross-origin requests
    /// (`Access-Control-Allow-Credentials: true`). Default: false.
    #[serde(default)]
    pub allow_credentials: bool,
    /// Seconds a browser may cache a preflight answer
    /// (`Access-Control-Max-Age`). Default: 600.
    #[serde(default = "default_max_age")]
    pub max_age_seconds: WholeSeconds<0, 86400>,
}

/// Headers a route adds to or removes from requests (before they go
/// upstream) or responses (before they go to the client). Applied after the
/// gateway's own headers; identity headers, `X-Request-Id` and
/// `X-Forwarded-*` can be neither added nor removed (a validation error).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesConfig {
    /// Headers set (replacing any with the same name). Default: none.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers removed (case-insensitive names). Default: none.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Response compression by the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Compress at all. Default: false.
    #[serde(default)]
    pub enabled: bool,
    /// Encodings the gateway may use, in its order of preference (the first
    /// one the client's `Accept-Encoding` accepts is used). Default:
    /// `[br, gzip, zstd]`.
    #[serde(default = "default_algorithms")]
    #[schemars(length(min = 1))]
    pub algorithms: Vec<Algorithm>,
    /// Smallest `Content-Length` compressed, bytes; a response without one
    /// (chunked) is compressed. Default: 1024.
    #[serde(default = "default_min_bytes")]
    #[schemars(range(min = 0, max = 1_099_511_627_776u64))]
    pub min_bytes: u64,
    /// Media types compressed: exact (`application/json`) or a type with
    /// `/*` (`text/*`), parameters ignored. `text/event-stream` is never
    /// compressed (events must not wait in a compressor). Default:
    /// `["text/*", "application/json", "application/javascript", "image/svg+xml"]`.
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: false,
            algorithms: default_algorithms(),
            min_bytes: default_min_bytes(),
            content_types: default_content_types(),
        }
    }
}

/// A content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Brotli (level 5).
    Br,
    /// gzip (level 6, nginx's usual).
    Gzip,
    /// Zstandard (level 3).
    Zstd,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Br => "br",
            Algorithm::Gzip => "gzip",
            Algorithm::Zstd => "zstd",
        }
    }
}

fn default_key() -> String {
    "client_ip".into()
}
fn default_burst() -> u32 {
    1
}
fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn default_cors_methods() -> Vec<String> {
    strings(&["GET", "HEAD", "POST"])
}
fn default_cors_headers() -> Vec<String> {
    strings(&["Authorization", "Content-Type"])
}
fn default_cors_expose() -> Vec<String> {
    strings(&[
        "X-Request-Id",
        "Retry-After",
        "RateLimit",
        "RateLimit-Policy",
    ])
}
fn default_max_age() -> WholeSeconds<0, 86400> {
    const { WholeSeconds::lit(600) }
}
fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::Br, Algorithm::Gzip, Algorithm::Zstd]
}
fn default_min_bytes() -> u64 {
    1024
}
fn default_content_types() -> Vec<String> {
    strings(&[
        "text/*",
        "application/json",
        "application/javascript",
        "image/svg+xml",
    ])
}

/// The policies of `rate_limits`, by name.
pub type RateLimits = BTreeMap<String, RateLimitConfig>;

/// What a rate-limit bucket belongs to (`rate_limits.NAME.key`, parsed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyKind {
    ClientIp,
    User,
    ClientId,
    /// A request header, by lower-case name.
    Header(http::HeaderName),
}

impl KeyKind {
    pub fn parse(key: &str) -> Result<KeyKind, String> {
        match key {
            "client_ip" => Ok(KeyKind::ClientIp),
            "user" => Ok(KeyKind::User),
            "client_id" => Ok(KeyKind::ClientId),
            _ => match key.strip_prefix("header:") {
                Some(name) => http::HeaderName::from_bytes(name.as_bytes())
                    .map(KeyKind::Header)
                    .map_err(|_| format!("\"{name}\" is not a valid header name")),
                None => Err(format!(
                    "unknown key \"{key}\": use client_ip, user, client_id or header:NAME"
                )),
            },
        }
    }
}

/// An entry of `cors.allowed_origins`, parsed: matched against a request's
/// `Origin` (ASCII case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `"*"`.
    Any,
    /// `scheme://host[:port]`, lower case.
    Exact(String),
    /// `scheme://*.suffix[:port]`: `scheme://` and `.suffix[:port]`, lower
    /// case; at least one label must stand for the `*`.
    Subdomains { scheme: String, suffix: String },
}

impl OriginPattern {
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        if s == "*" {
            return Ok(OriginPattern::Any);
        }
        let lower = s.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(format!(
                "\"{s}\" is not an origin: scheme://host[:port], e.g. https://app.example.com"
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("\"{s}\": the scheme must be http or https"));
        }
        if rest.is_empty()
            || rest.contains(['/', '?', '#', '@', ' '])
            || rest.ends_with(':')
            || rest.ends_with('.')
        {
            return Err(format!(
                "\"{s}\" is not an origin (no path, no trailing slash): scheme://host[:port]"
            ));
        }
        if let Some(suffix) = rest.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(format!(
                    "\"{s}\": a wildcard stands for whole labels: https://*.example.com"
                ));
            }
            return Ok(OriginPattern::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{suffix}"),
            });
        }
        if rest.contains('*') {
            return Err(format!(
                "\"{s}\": only a leading \"*.\" wildcard is allowed"
            ));
        }
        Ok(OriginPattern::Exact(lower))
    }

    /// Whether an `Origin` header value is allowed by this pattern.
    pub fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(o) => origin.eq_ignore_ascii_case(o.as_bytes()),
            OriginPattern::Subdomains { scheme, suffix } => {
                let (s, x) = (scheme.as_bytes(), suffix.as_bytes());
                origin.len() > s.len() + x.len()
                    && origin[..s.len()].eq_ignore_ascii_case(s)
                    && origin[origin.len() - x.len()..].eq_ignore_ascii_case(x)
                    && origin[s.len()..origin.len() - x.len()]
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    && origin[s.len()] != b'.'
            }
        }
    }
}

/// Request and response headers no header rule may touch: set by the
/// gateway itself (ids, forwarding, identity) or framing the message.
pub fn protected_header(name: &str, identity: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    n == "x-request-id"
        || n.starts_with("x-forwarded-")
        || n == "forwarded"
        || identity.iter().any(|h| h.eq_ignore_ascii_case(&n))
        || matches!(
            n.as_str(),
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "upgrade"
                | "te"
                | "trailer"
                | "keep-alive"
                | "proxy-connection"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let p = OriginPattern::parse("https://App.example.com").unwrap();
        assert!(p.matches(b"https://app.example.com"));
        assert!(p.matches(b"HTTPS://APP.EXAMPLE.COM"));
        assert!(!p.matches(b"https://app.example.com.evil"));
        assert!(!p.matches(b"http://app.example.com"));
        assert!(!p.matches(b"https://app.example.com:8443"));
        let w = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(w.matches(b"https://a.example.com"));
        assert!(w.matches(b"https://a.b.example.com"));
        assert!(!w.matches(b"https://example.com"));
        assert!(!w.matches(b"https://.example.com"));
        assert!(!w.matches(b"https://evil.com/.example.com"));
        assert!(!w.matches(b"https://evilexample.com"));
        assert!(!w.matches(b"http://a.example.com"));
        for bad in [
            "app.example.com",
            "ftp://x",
            "https://x/",
            "https://a*.b",
            "https://",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_parse() {
        assert_eq!(KeyKind::parse("user"), Ok(KeyKind::User));
        assert!(
            matches!(KeyKind::parse("header:X-Api-Key"), Ok(KeyKind::Header(h)) if h == "x-api-key")
        );
        assert!(KeyKind::parse("header:bad name").is_err());
        assert!(KeyKind::parse("ip").is_err());
    }

    proptest::proptest! {
        #[test]
        fn an_exact_origin_matches_only_itself(host in "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}", other in "[ -~]{0,40}") {
            let origin = format!("https://{host}");
            let p = OriginPattern::parse(&origin).unwrap();
            proptest::prop_assert!(p.matches(origin.as_bytes()));
            proptest::prop_assert!(p.matches(origin.to_ascii_uppercase().as_bytes()));
            proptest::prop_assert_eq!(p.matches(other.as_bytes()), other.eq_ignore_ascii_case(&origin));
            let w = OriginPattern::parse(&format!("https://*.{host}")).unwrap();
            proptest::prop_assert!(!w.matches(origin.as_bytes()));
            let sub = format!("https://x.{host}");
            proptest::prop_assert!(w.matches(sub.as_bytes()));
            // Anything the wildcard admits ends with the suffix, scheme first.
            if w.matches(other.as_bytes()) {
                let suffix = format!(".{host}");
                proptest::prop_assert!(other.to_ascii_lowercase().ends_with(&suffix));
                proptest::prop_assert!(other.to_ascii_lowercase().starts_with("https://"));
            }
        }
    }
}
