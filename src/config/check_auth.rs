//! The `auth` section's checks: which token sources can verify, and what
//! each one needs.

use super::Reporter;
use super::check::check_hc_path;
use super::fetch_url;
use super::model::{
    AuthConfig, IntrospectionConfig, IntrospectionMode, JwtAlgorithm, LoginRedirectConfig,
};

/// Whether some configured source can verify a token.
pub(super) fn can_verify(a: &AuthConfig) -> bool {
    a.jwt_secret.is_some()
        || a.jwks_url.is_some()
        || a.oauth_service_url
            .as_deref()
            .is_some_and(|u| fetch_url(u).is_ok())
        || a.introspection.mode != IntrospectionMode::Off
}

pub(super) fn check_auth(a: &AuthConfig, r: &mut Reporter) {
    let AuthConfig {
        jwt_secret,
        oauth_service_url,
        token_validation_endpoint,
        leeway_seconds: _,
        issuer: _,
        audience,
        jwks_url,
        // Positive durations and sizes are schema rules.
        jwks_refresh_seconds: _,
        jwks_min_refetch_seconds: _,
        fetch_timeout_seconds: _,
        algorithms,
        cookie_name,
        introspection,
        cache_max_entries: _,
        login_redirect,
        identity_headers,
        forward_authorization: _,
        realm,
        // `check_upstream_tls::check_auth_ca_file`; loaded at compile.
        ca_file: _,
    } = a;
    if let Some(secret) = jwt_secret {
        if secret.is_empty() {
            r.error("/auth/jwt_secret", "must not be empty");
        } else if secret.len() < 32 {
            r.warning(
                "/auth/jwt_secret",
                format!(
                    "HS256 secret is {} bytes; use at least 32 random bytes",
                    secret.len()
                ),
            );
        }
    }
    if let Some(url) = oauth_service_url
        && let Err(msg) = fetch_url(url)
    {
        r.error("/auth/oauth_service_url", msg);
    }
    if let Some(url) = jwks_url
        && let Err(msg) = fetch_url(url)
    {
        r.error("/auth/jwks_url", msg);
    }
    if let Some(ep) = token_validation_endpoint {
        check_hc_path(ep, "/auth/token_validation_endpoint", r);
    }
    if let Some(aud) = audience
        && aud.is_empty()
    {
        r.error(
            "/auth/audience",
            "an empty list accepts no token; remove the field to skip the check",
        );
    }
    if let Some(algs) = algorithms {
        if algs.is_empty() {
            r.error(
                "/auth/algorithms",
                "an empty list accepts no token; remove the field to accept what the keys allow",
            );
        }
        let hmac = algs.iter().any(|a| {
            matches!(
                a,
                JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
            )
        });
        if hmac && jwt_secret.is_none() {
            r.warning(
                "/auth/algorithms",
                "HS* algorithms are listed but auth.jwt_secret is not set: no HS token can pass",
            );
        }
    }
    if let Some(name) = cookie_name
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    {
        r.error(
            "/auth/cookie_name",
            format!("\"{name}\" is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
        );
    }
    let IntrospectionConfig {
        mode,
        client_id,
        client_secret,
        cache_ttl_seconds: _,
    } = introspection;
    if *mode != IntrospectionMode::Off {
        if oauth_service_url.is_none() {
            r.error(
                "/auth/introspection/mode",
                "introspection needs auth.oauth_service_url (the authority's base URL)",
            );
        }
        if token_validation_endpoint.is_none() {
            r.error(
                "/auth/introspection/mode",
                "introspection needs auth.token_validation_endpoint (e.g. \"/token/introspection\")",
            );
        }
    }
    if client_id.is_some() != client_secret.is_some() {
        r.error(
            "/auth/introspection",
            "set both client_id and client_secret, or neither",
        );
    }
    if let Some(LoginRedirectConfig {
        url,
        return_parameter,
    }) = login_redirect
    {
        let ok = if url.starts_with('/') {
            http::uri::PathAndQuery::try_from(url.as_str()).is_ok()
        } else {
            matches!(url.parse::<http::Uri>(), Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        };
        if !ok {
            r.error(
                "/auth/login_redirect/url",
                format!("\"{url}\" is neither an http(s) URL nor a path starting with '/'"),
            );
        }
        if return_parameter.is_empty()
            || !return_parameter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            r.error(
                "/auth/login_redirect/return_parameter",
                "must be a plain query parameter name (letters, digits, -_.~)",
            );
        }
    }
    for (claim, header) in identity_headers {
        let p = format!(
            "/auth/identity_headers/{}",
            super::diag::escape_segment(claim)
        );
        if claim.is_empty() {
            r.error_at_key(&p, "a claim name must not be empty");
        }
        match http::HeaderName::from_bytes(header.as_bytes()) {
            Err(_) => r.error(&p, format!("\"{header}\" is not a valid header name")),
            Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => r.error(
                &p,
                format!("\"{header}\" is set by the gateway or the client; pick an X-… name"),
            ),
            Ok(_) => {}
        }
    }
    if realm.is_empty()
        || realm.contains(['"', '\\'])
        || http::HeaderValue::from_str(realm).is_err()
    {
        r.error(
            "/auth/realm",
            "must be non-empty, without quotes or backslashes",
        );
    }
}

/// Headers an identity header must not overwrite.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];
