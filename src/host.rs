//! The request's host: parsed and validated before routing (RFC 9112 §3.2,
//! RFC 3986 §3.2.2).
//!
//! A host is `name[:port]` where `name` is a registered name (letters,
//! digits, `-`, `.`, `_`), an IPv4 address or a bracketed IPv6 address, and
//! `port` is 1-5 digits up to 65535. Anything else — userinfo, a second port,
//! `,` `;` `/` `?` `#` `%`, spaces, stray brackets — is refused, so a value
//! that an upstream or a browser could read differently never reaches one.
//! For matching, the name is lower-cased and one trailing dot removed.

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
    /// `name[:port]`, canonical.
    text: Box<str>,
    name_len: usize,
    port: Option<u16>,
}

impl Host {
    /// Parses `host[:port]` as sent by a client.
    pub fn parse(raw: &str) -> Result<Host, HostError> {
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        if raw.len() > MAX_HOST_BYTES {
            return Err(HostError::TooLong);
        }
        let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
            let end = rest.find(']').ok_or(HostError::BadIpv6)?;
            let (addr, after) = (&rest[..end], &rest[end + 1..]);
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(HostError::BadIpv6);
            }
            let port = match after {
                "" => None,
                p => Some(parse_port(p.strip_prefix(':').ok_or(HostError::BadPort)?)?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        } else {
            let (name, port) = match raw.split_once(':') {
                Some((n, p)) => (n, Some(parse_port(p)?)),
                None => (raw, None),
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
            let name = name.strip_suffix('.').unwrap_or(name);
            // A name of dots only ("." or ".."), or with empty labels, is not a host.
            if name.is_empty() || name.starts_with('.') || name.contains("..") {
                return Err(HostError::BadChar);
            }
            (name.to_ascii_lowercase(), port)
        };
        let name_len = name.len();
        let mut text = name;
        if let Some(p) = port {
            use fmt::Write;
            let _ = write!(text, ":{p}");
        }
        Ok(Host {
            text: text.into(),
            name_len,
            port,
        })
    }

    /// The canonical name, without port: what routes' `host:` match.
    pub fn name(&self) -> &str {
        &self.text[..self.name_len]
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `name[:port]`: the value forwarded as `Host` and used in rewritten URLs.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
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
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        for bad in [
            "",
            ".",
            "..",
            "a..b",
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
