//! The request's host: parsed and validated before routing (RFC 9112 §3.2,
//! RFC 3986 §3.2.2).
//!
//! A host is `name[:port]` where `name` is a registered name (letters,
//! digits, `-`, `.`, `_`), an IPv4 address or a bracketed IPv6 address, and
//! `port` is 1-5 digits up to 65535. Anything else — userinfo, a second port,
//! `,` `;` `/` `?` `#` `%`, spaces, stray brackets — is refused, so a value
//! that an upstream or a browser could read differently never reaches one.
//! For matching, the name is lower-cased and one trailing dot removed.

use http::HeaderValue;
use std::fmt;

/// The longest host accepted (a DNS name is at most 253 bytes).
pub const MAX_HOST_BYTES: usize = 255;

/// Why a `Host` (or absolute-form authority) is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("host too long")]
    TooLong,
    #[error("invalid character in host")]
    BadChar,
    #[error("malformed IPv6 host")]
    BadIpv6,
    #[error("malformed port in host")]
    BadPort,
}

/// A validated host: the canonical name (lower-case, no trailing dot; an
/// IPv6 address keeps its brackets) and the port if one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `name[:port]`, canonical; the client's own header value when it
    /// already was (the usual case: no copy).
    value: HeaderValue,
    name_len: usize,
    port: Option<u16>,
}

impl Host {
    /// Validates a `Host` header value, keeping the value itself when it is
    /// canonical already (no allocation in the usual case).
    pub fn from_header(v: &HeaderValue) -> Result<Host, HostError> {
        let raw = v.to_str().map_err(|_| HostError::BadChar)?;
        let parts = split(raw)?;
        Ok(if parts.canonical {
            Host {
                value: v.clone(),
                name_len: parts.name.len(),
                port: parts.port,
            }
        } else {
            parts.build()
        })
    }

    /// Parses `host[:port]` as sent by a client.
    pub fn parse(raw: &str) -> Result<Host, HostError> {
        Ok(split(raw)?.build())
    }

    /// The canonical name, without port: what routes' `host:` match.
    pub fn name(&self) -> &str {
        &self.as_str()[..self.name_len]
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `name[:port]`: the value forwarded as `Host` and used in rewritten URLs.
    pub fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or("")
    }

    /// The same, as a header value (cloning it copies nothing).
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host taken apart without copying.
struct Parts<'a> {
    /// Without the trailing dot; brackets kept for IPv6.
    name: &'a str,
    port: Option<u16>,
    /// `name[:port]` is exactly the input.
    canonical: bool,
}

impl Parts<'_> {
    fn build(&self) -> Host {
        let mut text = self.name.to_ascii_lowercase();
        if let Some(p) = self.port {
            use fmt::Write;
            let _ = write!(text, ":{p}");
        }
        Host {
            // Only ASCII letters, digits and `-._:[]` are left: always valid.
            value: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("")),
            name_len: self.name.len(),
            port: self.port,
        }
    }
}

fn split(raw: &str) -> Result<Parts<'_>, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.len() > MAX_HOST_BYTES {
        return Err(HostError::TooLong);
    }
    let (name, port, port_text) = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']').ok_or(HostError::BadIpv6)?;
        let (addr, after) = (&rest[..end], &rest[end + 1..]);
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::BadIpv6);
        }
        let (port, text) = match after {
            "" => (None, ""),
            p => {
                let digits = p.strip_prefix(':').ok_or(HostError::BadPort)?;
                (Some(parse_port(digits)?), digits)
            }
        };
        (&raw[..end + 2], port, text)
    } else {
        let (name, port, text) = match raw.split_once(':') {
            Some((n, p)) => (n, Some(parse_port(p)?), p),
            None => (raw, None, ""),
        };
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(HostError::BadChar);
        }
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        // A name of dots only ("." or ".."), or with empty labels, is not a host.
        // `a..` is an empty label, not a trailing dot: checked before trimming.
        if trimmed.is_empty() || trimmed.starts_with('.') || name.contains("..") {
            return Err(HostError::BadChar);
        }
        (trimmed, port, text)
    };
    // Canonical: nothing to lower-case, no dot dropped, the port as printed.
    let canonical = !name.bytes().any(|b| b.is_ascii_uppercase())
        && raw.len()
            == name.len()
                + if port.is_some() {
                    1 + port_text.len()
                } else {
                    0
                }
        && !port_text.starts_with('0');
    Ok(Parts {
        name,
        port,
        canonical,
    })
}

fn parse_port(p: &str) -> Result<u16, HostError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort);
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(HostError::BadPort),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_addresses_and_ports() {
        let ok = |s: &str| Host::parse(s).unwrap().to_string();
        assert_eq!(ok("Example.COM"), "example.com");
        assert_eq!(ok("example.com."), "example.com");
        assert_eq!(ok("gw.example:6188"), "gw.example:6188");
        assert_eq!(ok("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(ok("[::1]:8080"), "[::1]:8080");
        assert_eq!(ok("[FE80::1]"), "[fe80::1]");
        assert_eq!(ok("my_host"), "my_host");
        assert_eq!(Host::parse("a.b.:1").unwrap().name(), "a.b");
        assert_eq!(Host::parse("a:080").unwrap().as_str(), "a:80");
    }

    #[test]
    fn a_canonical_header_value_is_kept_and_others_rewritten() {
        for (raw, want) in [
            ("gw.example:6188", "gw.example:6188"),
            ("GW.example", "gw.example"),
            ("gw.example.", "gw.example"),
            ("gw.example.:1", "gw.example:1"),
            ("gw:01", "gw:1"),
            ("[::1]:8", "[::1]:8"),
            ("[::A]", "[::a]"),
        ] {
            let h = Host::from_header(&HeaderValue::from_str(raw).unwrap()).unwrap();
            assert_eq!(h.as_str(), want, "{raw}");
            assert_eq!(h.to_string(), want);
        }
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        for bad in [
            "",
            ".",
            "..",
            "a..b",
            "a..",
            "_..",
            "a..:80",
            ".a",
            "a:1:2",
            "a:",
            "a:99999",
            "a:0",
            "a:+1",
            "a,b",
            "a;b",
            "a/b",
            "evil.example/phish?",
            "a?b",
            "a#b",
            "a%2eb",
            "a b",
            "user@host",
            "[::1",
            "::1",
            "[zz]",
            "[::1]x",
            "[::1]:",
            "a]",
            "a[b]",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            Host::parse(&"a".repeat(300)),
            Err(HostError::TooLong),
            "long"
        );
    }
}
