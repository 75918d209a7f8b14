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

/// HTTP/2 clients may split `Cookie` into one field per cookie (RFC 9113
/// §8.2.3); an HTTP/1.1 upstream must get them as one header, `; `-joined.
pub(super) fn join_cookies(req: &mut pingora_http::RequestHeader) -> Result<()> {
    let mut values = req.headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return Ok(());
    }
    let joined = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect::<Vec<_>>()
        .join("; ");
    req.insert_header(header::COOKIE, joined)?;
    Ok(())
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
    fn split_cookies_are_joined_for_http1() {
        let mut req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "a=1").unwrap();
        join_cookies(&mut req).unwrap();
        assert_eq!(req.headers["cookie"], "a=1");
        req.append_header("cookie", "b=2").unwrap();
        req.append_header("cookie", "c=3").unwrap();
        join_cookies(&mut req).unwrap();
        let all: Vec<_> = req.headers.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }

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
