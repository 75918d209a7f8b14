//! What the plain listener does for HTTPS: `tls.redirect_http` answers
//! `308` to the same host and path on the HTTPS listener (ACME challenges
//! are never redirected: the caller checks).

use super::Ctx;
use super::respond::{ErrorResponse, decorate_response, respond};
use crate::host::Host;
use http::{StatusCode, header};
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Answers with `308` to `https://HOST[:port]/same/path?query`; `Ok(true)`:
/// the request is done.
pub(super) async fn redirect(session: &mut Session, ctx: &Ctx, port: u16) -> Result<bool> {
    let Some(host) = &ctx.host else {
        let r = ErrorResponse::new(StatusCode::BAD_REQUEST, "a Host header is required");
        respond(session, &ctx.request_id, ctx.response_headers(), &r).await?;
        return Ok(true);
    };
    let target = session
        .req_header()
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str());
    let mut resp = ResponseHeader::build(StatusCode::PERMANENT_REDIRECT, Some(4))?;
    resp.insert_header(header::LOCATION, location(host, port, target))?;
    resp.insert_header(header::CONTENT_LENGTH, 0)?;
    decorate_response(&mut resp, &ctx.request_id, ctx.response_headers())?;
    session.write_response_header(Box::new(resp), true).await?;
    Ok(true)
}

/// The HTTPS URL of the same host (its port replaced by `port`, left out
/// when 443) and target.
fn location(host: &Host, port: u16, target: &str) -> String {
    if port == 443 {
        format!("https://{}{target}", host.name())
    } else {
        format!("https://{}:{port}{target}", host.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_keeps_host_and_target_with_the_https_port() {
        let h = |s| Host::parse(s).unwrap();
        assert_eq!(
            location(&h("gw.example:8080"), 443, "/a?b=1"),
            "https://gw.example/a?b=1"
        );
        assert_eq!(
            location(&h("GW.example."), 6443, "/"),
            "https://gw.example:6443/"
        );
        assert_eq!(location(&h("[::1]:80"), 6443, "/x"), "https://[::1]:6443/x");
    }
}
