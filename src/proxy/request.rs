//! Request checks before routing (request line, `Host`, credentials) and the
//! rewrites of what goes upstream (target in origin form, token cookie).
//! Plain functions of the request head, unit-tested here.

use crate::auth;
use crate::host::Host;
use http::header;
use pingora_http::RequestHeader;
use pingora_http::authority::raw_target_authority;

/// Request-line and header rules checked before routing; the error is the
/// 400's message. Returns the validated host: an absolute-form target's
/// authority, else the `Host` header.
pub fn check_request(req: &RequestHeader) -> Result<Option<Host>, &'static str> {
    // Methods are case-sensitive (RFC 9110 §9.1) but many frameworks
    // upper-case them: `post` must not slip past a route narrowed to `POST`.
    if req.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("method must be upper case");
    }
    // Routing sees a lossy copy of a target that is not UTF-8, while the
    // upstream would get the raw bytes (an overlong `\xC0\xAE` is `.` to some).
    if !req.raw_path_is_utf8() {
        return Err("request target is not valid UTF-8");
    }
    // Two credentials: which one an upstream reads is anybody's guess.
    if req
        .headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err("more than one Authorization header");
    }
    // HTTP/2 (RFC 9113 §8.3.1): `:authority` is the host; a `Host` beside
    // it must say the same.
    if req.version == http::Version::HTTP_2
        && let Some(a) = req.uri.authority()
    {
        let host = Host::parse(a.as_str()).map_err(|_| "invalid :authority")?;
        let mut hosts = req.headers.get_all(header::HOST).iter();
        return match (hosts.next(), hosts.next()) {
            (None, _) => Ok(Some(host)),
            (Some(h), None) if Host::from_header(h).is_ok_and(|h| h == host) => Ok(Some(host)),
            _ => Err("Host differs from :authority"),
        };
    }
    // RFC 9112 §3.2.2: an absolute-form target's authority is the host
    // (Pingora keeps it off the `Uri` and refuses a `Host` that differs).
    match raw_target_authority(req.raw_path()).authority() {
        Some(a) => Ok(Some(
            std::str::from_utf8(a)
                .ok()
                .and_then(|a| Host::parse(a).ok())
                .ok_or("invalid host in request target")?,
        )),
        None => {
            let mut hosts = req.headers.get_all(header::HOST).iter();
            match (hosts.next(), hosts.next()) {
                (Some(_), Some(_)) => Err("more than one Host header"),
                (Some(h), None) => Ok(Some(
                    Host::from_header(h).map_err(|_| "invalid Host header")?,
                )),
                // HTTP/1.0 may omit it, but the upstream gets HTTP/1.1 and
                // would fall back to its default virtual host: refuse.
                (None, _) => Err("missing Host header"),
            }
        }
    }
}

/// The request's `Content-Length`, when it has one that parses (Pingora
/// refuses conflicting or malformed ones before this point).
pub fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The origin-form target the upstream gets (`forwarded` path plus the
/// query), or `None` when the request's own target already is that.
pub fn upstream_target(
    forwarded: &str,
    raw_path: &str,
    query: Option<&str>,
    origin_form: bool,
) -> Option<String> {
    // An absolute-form target goes upstream in origin form (its authority
    // is the `Host` now).
    if forwarded == raw_path && origin_form {
        return None;
    }
    let mut pq = String::with_capacity(forwarded.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(forwarded);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Some(pq)
}

/// Removes cookie `name` from every `Cookie` header.
pub fn strip_cookie(req: &mut RequestHeader, name: &str) {
    // The usual request has no such cookie: decide that without copying.
    let present = req.headers.get_all(header::COOKIE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| auth::without_cookie_needed(v, name))
    });
    if !present {
        return;
    }
    let values: Vec<String> = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let rewritten: Vec<Option<String>> = values
        .iter()
        .map(|v| auth::without_cookie(v, name))
        .collect();
    if rewritten.iter().all(Option::is_none) {
        return;
    }
    req.remove_header(&header::COOKIE);
    for (old, new) in values.into_iter().zip(rewritten) {
        let v = new.unwrap_or(old);
        if !v.is_empty() {
            let _ = req.append_header(header::COOKIE, v);
        }
    }
}

/// A browser navigation: a GET that accepts HTML.
pub fn is_navigation(req: &RequestHeader) -> bool {
    req.method == http::Method::GET
        && req
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn checks_the_request_line_and_host() {
        let host = |r: &RequestHeader| check_request(r).map(|h| h.map(|h| h.to_string()));
        assert_eq!(
            host(&req("GET", "/x", &[("host", "Example.com:8080")])),
            Ok(Some("example.com:8080".into()))
        );
        assert_eq!(
            host(&req("get", "/x", &[("host", "a")])),
            Err("method must be upper case")
        );
        assert_eq!(host(&req("GET", "/x", &[])), Err("missing Host header"));
        assert_eq!(
            host(&req("GET", "/x", &[("host", "a"), ("host", "b")])),
            Err("more than one Host header")
        );
        assert_eq!(
            host(&req("GET", "/x", &[("host", "a b")])),
            Err("invalid Host header")
        );
        assert_eq!(
            host(&req(
                "GET",
                "/x",
                &[
                    ("host", "a"),
                    ("authorization", "x"),
                    ("authorization", "y")
                ]
            )),
            Err("more than one Authorization header")
        );
        assert_eq!(
            host(&req("GET", "http://b.example/x", &[("host", "b.example")])),
            Ok(Some("b.example".into()))
        );
    }

    #[test]
    fn the_upstream_target_is_origin_form() {
        assert_eq!(upstream_target("/x", "/x", None, true), None);
        assert_eq!(
            upstream_target("/x", "/a/../x", Some("q=1"), true).as_deref(),
            Some("/x?q=1")
        );
        assert_eq!(
            upstream_target("/x", "/x", None, false).as_deref(),
            Some("/x")
        );
    }

    #[test]
    fn strips_only_the_named_cookie() {
        let mut r = req("GET", "/", &[("cookie", "a=1; tok=secret; b=2")]);
        strip_cookie(&mut r, "tok");
        assert_eq!(r.headers["cookie"], "a=1; b=2");
        let mut r = req("GET", "/", &[("cookie", "tok=secret")]);
        strip_cookie(&mut r, "tok");
        assert!(r.headers.get("cookie").is_none());
    }

    #[test]
    fn reads_declared_length_and_navigation() {
        assert_eq!(
            declared_length(&req("POST", "/", &[("content-length", "12")])),
            Some(12)
        );
        assert_eq!(declared_length(&req("POST", "/", &[])), None);
        assert!(is_navigation(&req(
            "GET",
            "/",
            &[("accept", "text/html,*/*")]
        )));
        assert!(!is_navigation(&req(
            "POST",
            "/",
            &[("accept", "text/html")]
        )));
    }
}
