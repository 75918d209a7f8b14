//! Checks of the edge policies (`rate_limits`, `compression`, each route's
//! `rate_limit`, `cors`, `request_headers`, `response_headers`).

use super::edge::{
    CompressionConfig, CorsConfig, HeaderRulesConfig, KeyKind, OriginPattern, RateLimitConfig,
    protected_header,
};
use super::model::FileConfig;
use super::{Reporter, did_you_mean};
use crate::config::diag::escape_segment;

pub(super) fn check_edge(c: &FileConfig, r: &mut Reporter) {
    for (name, p) in &c.rate_limits {
        let RateLimitConfig {
            key,
            requests_per_second,
            burst: _,
        } = p;
        let base = format!("/rate_limits/{}", escape_segment(name));
        if let Err(msg) = KeyKind::parse(key) {
            r.error(&format!("{base}/key"), msg);
        }
        if !requests_per_second.is_finite() || *requests_per_second <= 0.0 {
            r.error(
                &format!("{base}/requests_per_second"),
                "must be a positive number",
            );
        }
    }
    let policies: Vec<&str> = c.rate_limits.keys().map(String::as_str).collect();
    let identity: Vec<String> = c.auth.identity_headers.values().cloned().collect();
    for (i, route) in c.routes.iter().enumerate() {
        let base = format!("/routes/{i}");
        if let Some(name) = &route.rate_limit
            && !c.rate_limits.contains_key(name)
        {
            let hint = match did_you_mean(name, &policies) {
                Some(s) => format!(", did you mean \"{s}\"?"),
                None if policies.is_empty() => " (no rate_limits are defined)".into(),
                None => format!(" (defined: {})", policies.join(", ")),
            };
            r.error(
                &format!("{base}/rate_limit"),
                format!("unknown rate limit policy \"{name}\"{hint}"),
            );
        }
        if let Some(cors) = &route.cors {
            check_cors(cors, &format!("{base}/cors"), r);
        }
        check_rules(
            &route.request_headers,
            &format!("{base}/request_headers"),
            &identity,
            r,
        );
        check_rules(
            &route.response_headers,
            &format!("{base}/response_headers"),
            &identity,
            r,
        );
    }
    check_compression(&c.compression, r);
}

fn check_cors(c: &CorsConfig, base: &str, r: &mut Reporter) {
    let CorsConfig {
        allowed_origins,
        allowed_methods,
        allowed_headers,
        exposed_headers,
        allow_credentials,
        max_age_seconds: _,
    } = c;
    if allowed_origins.is_empty() {
        r.error(
            &format!("{base}/allowed_origins"),
            "an empty list allows no origin; list the origins (or remove cors)",
        );
    }
    for (j, o) in allowed_origins.iter().enumerate() {
        let p = format!("{base}/allowed_origins/{j}");
        match OriginPattern::parse(o) {
            Ok(OriginPattern::Any) if *allow_credentials => r.error(
                &p,
                "\"*\" cannot be used with allow_credentials: true (browsers refuse it); list the origins",
            ),
            Ok(_) => {}
            Err(msg) => r.error(&p, msg),
        }
    }
    for (j, m) in allowed_methods.iter().enumerate() {
        if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
            r.error(
                &format!("{base}/allowed_methods/{j}"),
                format!("\"{m}\" is not an HTTP method (use upper case, e.g. GET)"),
            );
        }
    }
    for (field, list) in [
        ("allowed_headers", allowed_headers),
        ("exposed_headers", exposed_headers),
    ] {
        for (j, h) in list.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                r.error(
                    &format!("{base}/{field}/{j}"),
                    format!("\"{h}\" is not a valid header name"),
                );
            }
        }
    }
}

fn check_rules(rules: &HeaderRulesConfig, base: &str, identity: &[String], r: &mut Reporter) {
    let HeaderRulesConfig { add, remove } = rules;
    let protected = |name: &str| {
        format!(
            "\"{name}\" is set by the gateway (request id, forwarding, identity or message framing) and cannot be changed by a header rule"
        )
    };
    for (name, value) in add {
        let p = format!("{base}/add/{}", escape_segment(name));
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            r.error_at_key(&p, format!("\"{name}\" is not a valid header name"));
        } else if protected_header(name, identity) {
            r.error_at_key(&p, protected(name));
        }
        if http::HeaderValue::from_str(value).is_err() {
            r.error(&p, "not a valid header value");
        }
    }
    for (j, name) in remove.iter().enumerate() {
        let p = format!("{base}/remove/{j}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            r.error(&p, format!("\"{name}\" is not a valid header name"));
        } else if protected_header(name, identity) {
            r.error(&p, protected(name));
        }
    }
}

fn check_compression(c: &CompressionConfig, r: &mut Reporter) {
    let CompressionConfig {
        enabled: _,
        algorithms,
        min_bytes: _,
        content_types,
    } = c;
    for (j, a) in algorithms.iter().enumerate() {
        if algorithms[..j].contains(a) {
            r.warning(
                &format!("/compression/algorithms/{j}"),
                format!("\"{}\" is listed twice", a.as_str()),
            );
        }
    }
    for (j, t) in content_types.iter().enumerate() {
        let ok = t
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !a.contains('*'))
            && !t.contains([';', ' ']);
        if !ok {
            r.error(
                &format!("/compression/content_types/{j}"),
                format!("\"{t}\" is not a media type: type/subtype or type/*"),
            );
        } else if t.eq_ignore_ascii_case("text/event-stream") {
            r.warning(
                &format!("/compression/content_types/{j}"),
                "text/event-stream is never compressed (events would wait in the compressor)",
            );
        }
    }
}
