//! Rate limits on the request path: which key a request counts against,
//! and the `429` it gets over the limit (JSON, `Retry-After`, and the IETF
//! `RateLimit-Policy` / `RateLimit` headers of
//! draft-ietf-httpapi-ratelimit-headers).

use super::Ctx;
use super::respond::{ErrorResponse, respond};
use crate::config::edge::KeyKind;
use crate::policy::Verdict;
use crate::runtime::Route;
use http::{HeaderName, HeaderValue, StatusCode, header};
use pingora_error::Result;
use pingora_proxy::Session;

/// Counts the request against its route's limit; `Ok(true)` when it was
/// refused (the 429 is written). Keys from the token (`user`,
/// `client_id`) are counted after authentication, the others before it (a
/// flood is refused before any token is verified).
pub(super) async fn refused(
    session: &mut Session,
    ctx: &Ctx,
    route: &Route,
    authenticated: bool,
) -> Result<bool> {
    let Some(rl) = &route.edge.rate_limit else {
        return Ok(false);
    };
    let l = &rl.limiter;
    if matches!(l.kind, KeyKind::User | KeyKind::ClientId) != authenticated {
        return Ok(false);
    }
    let ip = match ctx.client_ip {
        Some(std::net::IpAddr::V4(a)) => a.to_ipv6_mapped().octets(),
        Some(std::net::IpAddr::V6(a)) => a.octets(),
        None => [0; 16],
    };
    let req = session.req_header();
    let (tag, key): (u8, &[u8]) = match &l.kind {
        KeyKind::User if ctx.subject.is_some() => {
            (1, ctx.subject.as_deref().unwrap_or("").as_bytes())
        }
        KeyKind::ClientId if ctx.client_id.is_some() => {
            (2, ctx.client_id.as_deref().unwrap_or("").as_bytes())
        }
        KeyKind::Header(h) if req.headers.contains_key(h) => {
            (3, req.headers.get(h).map_or(&b""[..], |v| v.as_bytes()))
        }
        // No token (a public route), no such header: the client address.
        _ => (0, &ip[..]),
    };
    let Verdict::Limited { retry_after } = l.check(tag, key) else {
        return Ok(false);
    };
    rl.limited.inc();
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let state = format!("\"{}\";r=0;t={secs}", l.name);
    let r = ErrorResponse::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
        .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
        .with_header(
            HeaderName::from_static("ratelimit-policy"),
            l.policy_header.clone(),
        )
        .with_header(
            HeaderName::from_static("ratelimit"),
            HeaderValue::from_str(&state).unwrap_or(HeaderValue::from_static("")),
        );
    respond(session, &ctx.request_id, ctx.response_headers(), &r).await?;
    Ok(true)
}
