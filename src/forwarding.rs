//! What the upstream is told about the client: `X-Forwarded-*`, the client
//! address, and the request headers the gateway never passes on.
//!
//! Trust is decided by the peer's address (`server.trusted_proxies`): a
//! trusted proxy's `X-Forwarded-*` headers are kept and extended, anyone
//! else's are replaced, so a client cannot pick the address or scheme an
//! upstream believes. The client address is the right-most
//! `X-Forwarded-For` hop that is not a trusted proxy (nginx's
//! `real_ip_recursive on`).

use crate::host::Host;
use http::{HeaderValue, header};
use ipnet::IpNet;
use pingora_error::Result;
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// Addresses whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Box<[IpNet]>);

impl TrustedProxies {
    /// Parses CIDRs or single addresses; the error names the bad entry.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, String> {
        list.iter()
            .map(|s| parse_net(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| TrustedProxies(v.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the peer itself unless it is trusted, else the
    /// right-most untrusted `X-Forwarded-For` hop (the left-most hop when
    /// every hop is trusted; the last trusted one when an entry does not
    /// parse, as nothing before it can be believed).
    pub fn client_ip(&self, peer: IpAddr, req: &RequestHeader) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for value in req.headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(text) = value.to_str() else {
                return client;
            };
            for hop in text.rsplit(',') {
                let Some(ip) = parse_hop(hop.trim()) else {
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// `10.0.0.0/8`, `2001:db8::/32` or a single address.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("\"{s}\" is not an address or CIDR (e.g. 10.0.0.0/8)"))
}

/// An `X-Forwarded-For` entry: an address, possibly `[v6]` or with a port.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| canonical(a.ip()))
        .or_else(|| {
            s.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<IpAddr>()
                .ok()
        })
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, how a dual-stack socket reports an
/// IPv4 peer) compares as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Request headers the gateway removes unless a route keeps them
/// (`routes[].keep_request_headers`): method overrides and URL overrides
/// that some frameworks obey, turning an admitted request into another.
pub const OVERRIDE_HEADERS: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Client-address and scheme claims removed unless the peer is a trusted
/// proxy (besides every `X-Forwarded-*` the gateway does not set itself:
/// `-Ssl`, `-Scheme`, `-Prefix`, `-Server`, …, which frameworks believe).
pub const CLIENT_CLAIMS: [&str; 9] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "x-original-host",
    "x-host",
    "front-end-https",
];

/// The `X-Forwarded-*` headers the gateway sets itself.
const OWN_FORWARDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
];

/// A set of [`OVERRIDE_HEADERS`] a route keeps, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepHeaders(u8);

impl KeepHeaders {
    /// Parses header names; the error names one that is not in the set.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut bits = 0;
        for n in names {
            let lower = n.as_ref().to_ascii_lowercase();
            match OVERRIDE_HEADERS.iter().position(|h| *h == lower) {
                Some(i) => bits |= 1 << i,
                None => {
                    return Err(format!(
                        "\"{}\" is not a header the gateway removes (one of: X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, X-Original-URL, X-Rewrite-URL)",
                        n.as_ref()
                    ));
                }
            }
        }
        Ok(KeepHeaders(bits))
    }

    fn keeps(self, name: &str) -> bool {
        OVERRIDE_HEADERS
            .iter()
            .position(|h| *h == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

/// What the gateway knows about the connection a request came in on.
pub struct Forwarding<'a> {
    /// The TCP peer (a client, or a proxy in front).
    pub peer: Option<IpAddr>,
    /// Whether `peer` is a trusted proxy.
    pub trusted: bool,
    /// The validated request host, as forwarded in `Host`.
    pub host: Option<&'a Host>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The port the client connected to.
    pub local_port: Option<u16>,
    pub request_id: &'a HeaderValue,
    pub keep: KeepHeaders,
}

/// The request as the upstream gets it. From an untrusted peer,
/// `X-Forwarded-For` is the peer's address and `-Proto`, `-Host`, `-Port`
/// are the gateway's own view (the port the client connected to: Next.js
/// builds absolute URLs from it); client-address claims (`Forwarded`,
/// `X-Real-IP`, `True-Client-IP`, …) are removed. From a trusted proxy the
/// forwarding headers are kept and the peer appended to `X-Forwarded-For`.
/// Always: [`OVERRIDE_HEADERS`] (unless kept), header names with `_`
/// (nginx's `underscores_in_headers off`: many app servers fold `X_User_Id`
/// into `X-User-Id`), and `X-Request-Id` set to the gateway's.
pub fn prepare_upstream_request(req: &mut RequestHeader, f: &Forwarding) -> Result<()> {
    // One pass over the names; most requests have nothing to remove.
    let remove: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.contains('_')
                || (OVERRIDE_HEADERS.contains(&k) && !f.keep.keeps(k))
                || (!f.trusted
                    && (CLIENT_CLAIMS.contains(&k)
                        || (k.starts_with("x-forwarded-") && !OWN_FORWARDED.contains(&k))))
        })
        .cloned()
        .collect();
    for name in &remove {
        req.remove_header(name);
    }

    if let Some(ip) = f.peer {
        use std::fmt::Write;
        let mut xff = String::with_capacity(64);
        if f.trusted
            && let Some(prev) = joined(req, "x-forwarded-for")
        {
            xff.push_str(&prev);
            xff.push_str(", ");
        }
        let _ = write!(xff, "{ip}");
        req.insert_header("x-forwarded-for", xff)?;
    } else {
        req.remove_header("x-forwarded-for");
    }
    let keep = |req: &RequestHeader, name: &str| f.trusted && req.headers.contains_key(name);
    if !keep(req, "x-forwarded-proto") {
        req.insert_header("x-forwarded-proto", f.scheme)?;
    }
    if !keep(req, "x-forwarded-host") {
        match f.host {
            Some(h) => req.insert_header("x-forwarded-host", h.header_value().clone())?,
            None => drop(req.remove_header("x-forwarded-host")),
        }
    }
    if !keep(req, "x-forwarded-port") {
        match f.local_port {
            Some(port) => req.insert_header("x-forwarded-port", port)?,
            None => drop(req.remove_header("x-forwarded-port")),
        }
    }
    req.insert_header("x-request-id", f.request_id.clone())?;
    Ok(())
}

/// Every value of `name`, comma-joined (a proxy may send several lines).
fn joined(req: &RequestHeader, name: &str) -> Option<String> {
    let mut out = String::new();
    for v in req.headers.get_all(name) {
        let Ok(s) = v.to_str() else { continue };
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(s);
    }
    (!out.is_empty()).then_some(out)
}

/// Sets `Host` to the validated host unless it already reads exactly so.
pub fn set_host(req: &mut RequestHeader, host: &Host) -> Result<()> {
    if req.headers.get(header::HOST) != Some(host.header_value()) {
        req.insert_header(header::HOST, host.header_value().clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_ip_is_the_rightmost_untrusted_hop() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.1"]).unwrap();
        let r = req(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.1.1.1")]);
        assert_eq!(t.client_ip(ip("10.0.0.5"), &r), ip("1.2.3.4"));
        // An untrusted peer's claims are ignored.
        assert_eq!(t.client_ip(ip("5.5.5.5"), &r), ip("5.5.5.5"));
        // Several header lines are one list, the last line nearest.
        let r = req(&[
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-for", "192.168.1.1"),
        ]);
        assert_eq!(t.client_ip(ip("10.0.0.5"), &r), ip("7.7.7.7"));
        // Garbage stops the walk at the last trusted hop.
        let r = req(&[("x-forwarded-for", "1.1.1.1, junk, 10.2.2.2")]);
        assert_eq!(t.client_ip(ip("10.0.0.5"), &r), ip("10.2.2.2"));
        // IPv4-mapped peers match IPv4 ranges.
        assert!(t.contains(ip("::ffff:10.9.9.9")));
        assert!(TrustedProxies::parse(&["nonsense"]).is_err());
    }

    #[test]
    fn untrusted_peers_get_their_forwarding_headers_replaced() {
        let id = HeaderValue::from_static("abc");
        let host = Host::parse("gw.example:8080").unwrap();
        let mut r = req(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-port", "1"),
            ("true-client-ip", "6.6.6.6"),
            ("x-forwarded-ssl", "on"),
            ("x-forwarded-prefix", "/admin"),
            ("front-end-https", "on"),
            ("x-http-method-override", "DELETE"),
            ("x_user_id", "admin"),
        ]);
        let f = Forwarding {
            peer: Some(ip("1.2.3.4")),
            trusted: false,
            host: Some(&host),
            scheme: "http",
            local_port: Some(8080),
            request_id: &id,
            keep: KeepHeaders::default(),
        };
        prepare_upstream_request(&mut r, &f).unwrap();
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("x-forwarded-for").as_deref(), Some("1.2.3.4"));
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(h("x-forwarded-host").as_deref(), Some("gw.example:8080"));
        assert_eq!(h("x-forwarded-port").as_deref(), Some("8080"));
        assert_eq!(h("true-client-ip"), None);
        assert_eq!(h("x-forwarded-ssl"), None);
        assert_eq!(h("x-forwarded-prefix"), None);
        assert_eq!(h("front-end-https"), None);
        assert_eq!(h("x-http-method-override"), None);
        assert_eq!(h("x_user_id"), None);
        assert_eq!(h("x-request-id").as_deref(), Some("abc"));
    }

    #[test]
    fn trusted_proxies_headers_are_kept_and_extended() {
        let id = HeaderValue::from_static("abc");
        let mut r = req(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "6.6.6.6"),
            ("x-http-method-override", "PUT"),
        ]);
        let f = Forwarding {
            peer: Some(ip("10.0.0.1")),
            trusted: true,
            host: None,
            scheme: "http",
            local_port: Some(80),
            request_id: &id,
            keep: KeepHeaders::parse(&["X-HTTP-Method-Override"]).unwrap(),
        };
        prepare_upstream_request(&mut r, &f).unwrap();
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("x-forwarded-for").as_deref(), Some("6.6.6.6, 10.0.0.1"));
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(h("x-real-ip").as_deref(), Some("6.6.6.6"));
        assert_eq!(h("x-http-method-override").as_deref(), Some("PUT"));
        assert!(KeepHeaders::parse(&["Authorization"]).is_err());
    }
}
