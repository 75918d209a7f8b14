//! Response URL rewriting: URLs that point at the upstream server itself
//! (`Location`, `Content-Location`, `Refresh`) become the client's host.

use http::{StatusCode, header};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_error::Result;
use pingora_http::ResponseHeader;

/// Rewrites URLs of a response that point at the upstream server itself to
/// the host the client used: `Location` of a redirect or a `201 Created`,
/// `Content-Location`, and the `url=` of `Refresh`.
/// `client`: the scheme and host the client used.
pub fn rewrite_response_urls(
    resp: &mut ResponseHeader,
    server: &SocketAddr,
    client: Option<(&str, &str)>,
) -> Result<()> {
    let client_host = client;
    if client_host.is_none() {
        return Ok(());
    }
    if (resp.status.is_redirection() || resp.status == StatusCode::CREATED)
        && let Some(new) = resp
            .headers
            .get(header::LOCATION)
            .and_then(|v| rewrite_location(v.as_bytes(), server, client_host))
    {
        resp.insert_header(header::LOCATION, new)?;
    }
    if let Some(new) = resp
        .headers
        .get(header::CONTENT_LOCATION)
        .and_then(|v| rewrite_location(v.as_bytes(), server, client_host))
    {
        resp.insert_header(header::CONTENT_LOCATION, new)?;
    }
    if let Some(new) = resp
        .headers
        .get(header::REFRESH)
        .and_then(|v| rewrite_refresh(v.as_bytes(), server, client_host))
    {
        resp.insert_header(header::REFRESH, new)?;
    }
    Ok(())
}

/// `Refresh: 5; url=http://127.0.0.1:3002/x` with the URL rewritten as
/// [`rewrite_location`] does.
fn rewrite_refresh(
    v: &[u8],
    server: &SocketAddr,
    client_host: Option<(&str, &str)>,
) -> Option<String> {
    let v = std::str::from_utf8(v).ok()?;
    let lower = v.to_ascii_lowercase();
    let i = lower.find("url=")? + 4;
    let url = v[i..].trim().trim_matches(['"', '\'']);
    let new = rewrite_location(url.as_bytes(), server, client_host)?;
    Some(format!("{}{new}", &v[..i]))
}

/// Rewrites a `Location` pointing at the upstream server itself (as Next.js
/// emits `http://localhost:3002/...`) to the host the client used, as nginx's
/// `proxy_redirect default` does, with the scheme the client used
/// (`client` = scheme, host). Other locations are left alone.
pub fn rewrite_location(
    loc: &[u8],
    server: &SocketAddr,
    client: Option<(&str, &str)>,
) -> Option<String> {
    let (scheme, client_host) = client?;
    let server = server.as_inet()?;
    let loc = std::str::from_utf8(loc).ok()?;
    let rest = loc.strip_prefix("http://")?;
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => (h, p.parse::<u16>().ok()?),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let is_server = port == server.port()
        && (host.eq_ignore_ascii_case("localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                ip == server.ip() || ip.is_loopback() && server.ip().is_loopback()
            }));
    is_server.then(|| {
        format!(
            "{scheme}://{client_host}{}",
            if tail.is_empty() { "/" } else { tail }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::Inet(s.parse().unwrap())
    }

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(201, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn rewrites_locations_that_point_at_the_upstream() {
        let s = addr("127.0.0.1:3002");
        let rw = |l: &str| rewrite_location(l.as_bytes(), &s, Some(("http", "gw.example:6188")));
        assert_eq!(
            rw("http://localhost:3002/login?x=1").as_deref(),
            Some("http://gw.example:6188/login?x=1")
        );
        assert_eq!(
            rw("http://127.0.0.1:3002").as_deref(),
            Some("http://gw.example:6188/")
        );
        assert_eq!(rw("http://localhost:3003/x"), None);
        assert_eq!(rw("https://localhost:3002/x"), None);
        assert_eq!(rw("http://example.com/x"), None);
        assert_eq!(rw("/relative"), None);
    }

    #[test]
    fn a_rewritten_location_keeps_the_clients_scheme() {
        let s = addr("127.0.0.1:3002");
        let loc = rewrite_location(
            b"http://localhost:3002/login",
            &s,
            Some(("https", "gw.example")),
        );
        assert_eq!(loc.as_deref(), Some("https://gw.example/login"));
    }
    #[test]
    fn rewrites_201_location_content_location_and_refresh() {
        let s = addr("127.0.0.1:3002");
        let mut r = resp(&[
            ("location", "http://127.0.0.1:3002/a"),
            ("content-location", "http://localhost:3002/b?x"),
            ("refresh", "5; URL=http://127.0.0.1:3002/c"),
        ]);
        rewrite_response_urls(&mut r, &s, Some(("http", "gw:80"))).unwrap();
        assert_eq!(r.headers["location"], "http://gw:80/a");
        assert_eq!(r.headers["content-location"], "http://gw:80/b?x");
        assert_eq!(r.headers["refresh"], "5; URL=http://gw:80/c");
        // A 200's Location and foreign URLs are left alone.
        let mut r = resp(&[
            ("location", "http://127.0.0.1:3002/a"),
            ("refresh", "5; url=https://example.com/"),
        ]);
        r.set_status(200).unwrap();
        rewrite_response_urls(&mut r, &s, Some(("http", "gw:80"))).unwrap();
        assert_eq!(r.headers["location"], "http://127.0.0.1:3002/a");
        assert_eq!(r.headers["refresh"], "5; url=https://example.com/");
    }
}
