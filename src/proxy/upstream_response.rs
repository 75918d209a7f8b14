//! Checks on an upstream's response head: interim responses, duplicate
//! `Content-Length`, the `Keep-Alive` timeout it advertises, and Pingora's
//! count of pooled connections found holding stray bytes.

use http::{StatusCode, header};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most this many `1xx` responses before the final one.
const MAX_INFORMATIONAL: u8 = 4;

/// Pingora's count of pooled connections found holding unexpected data
/// (set once at start, see [`set_unexpected_data_counter`]).
static UNEXPECTED_DATA: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();

/// Hands the gateway Pingora's connector counter of pooled connections
/// found with unexpected data (`HttpProxy::unexpected_data_connection_counter`).
pub fn set_unexpected_data_counter(c: Arc<AtomicU64>) {
    let _ = UNEXPECTED_DATA.set(c);
}

pub(crate) fn unexpected_data_count() -> u64 {
    UNEXPECTED_DATA
        .get()
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// An error the upstream's response caused.
pub(crate) fn upstream_error(kind: ErrorType, why: &'static str) -> Box<Error> {
    Error::explain(kind, why).into_up()
}

/// Collapses repeated `Content-Length` headers to one (Pingora accepts
/// identical duplicates and rejects different ones).
pub(crate) fn one_content_length(resp: &mut ResponseHeader) -> Result<()> {
    let mut all = resp.headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(first), Some(_)) = (all.next(), all.next()) {
        let first = first.clone();
        resp.insert_header(header::CONTENT_LENGTH, first)?;
    }
    Ok(())
}

/// `timeout=N` of the response's `Keep-Alive` header, in seconds.
pub(crate) fn keepalive_timeout(resp: &ResponseHeader) -> Option<u64> {
    let v = resp.headers.get("keep-alive")?.to_str().ok()?;
    v.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("timeout") {
            v.trim().parse().ok().filter(|n| *n > 0)
        } else {
            None
        }
    })
}

/// Checks a `1xx` or `101` response head: a `101` only to an upgrade
/// request, at most [`MAX_INFORMATIONAL`] interim responses, all within the
/// read timeout. `Ok(true)`: an interim response (the final one follows).
pub(crate) fn interim(
    status: StatusCode,
    upgrade_requested: bool,
    informational: &mut u8,
    upstream_started: Option<Instant>,
    read_timeout: Duration,
) -> Result<bool> {
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    if upgrade && !upgrade_requested {
        return Err(upstream_error(
            ErrorType::InvalidHTTPHeader,
            "101 Switching Protocols to a request that asked for no upgrade",
        ));
    }
    if status.is_informational() && !upgrade {
        // A few interim responses, within the read timeout, then the real one.
        *informational = informational.saturating_add(1);
        if *informational > MAX_INFORMATIONAL {
            return Err(upstream_error(
                ErrorType::InvalidHTTPHeader,
                "too many 1xx responses",
            ));
        }
        if upstream_started.is_some_and(|t| t.elapsed() >= read_timeout) {
            return Err(upstream_error(
                ErrorType::ReadTimedout,
                "no final response within the read timeout (1xx responses only)",
            ));
        }
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(201, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn collapses_duplicate_content_length() {
        let mut r = resp(&[("content-length", "2"), ("content-length", "2")]);
        one_content_length(&mut r).unwrap();
        assert_eq!(r.headers.get_all("content-length").iter().count(), 1);
    }
    #[test]
    fn reads_the_keep_alive_timeout() {
        let t = |v: &str| keepalive_timeout(&resp(&[("keep-alive", v)]));
        assert_eq!(t("timeout=5"), Some(5));
        assert_eq!(t("max=100, timeout=2"), Some(2));
        assert_eq!(t(" Timeout = 7 "), Some(7));
        assert_eq!(t("timeout=0"), None);
        assert_eq!(t("timeout=x"), None);
        assert_eq!(t("max=5"), None);
        assert_eq!(keepalive_timeout(&resp(&[])), None);
    }

    #[test]
    fn interim_responses_are_bounded() {
        let mut n = 0;
        let ok = |s: u16, up: bool, n: &mut u8| {
            interim(
                StatusCode::from_u16(s).unwrap(),
                up,
                n,
                None,
                Duration::from_secs(1),
            )
        };
        assert!(ok(101, false, &mut n).is_err());
        assert!(!ok(101, true, &mut n).unwrap());
        for _ in 0..MAX_INFORMATIONAL {
            assert!(ok(103, false, &mut n).unwrap());
        }
        assert!(ok(103, false, &mut n).is_err());
        assert!(!ok(200, false, &mut 0).unwrap());
        let late = Instant::now() - Duration::from_secs(2);
        let e = interim(
            StatusCode::CONTINUE,
            false,
            &mut 0,
            Some(late),
            Duration::from_secs(1),
        );
        assert_eq!(e.unwrap_err().etype(), &ErrorType::ReadTimedout);
    }

    proptest::proptest! {
        #[test]
        fn keep_alive_parsing_never_panics(v in "[ -~]{0,64}") {
            let mut r = ResponseHeader::build(200, None).unwrap();
            if r.append_header("keep-alive", v.as_str()).is_ok() {
                let _ = keepalive_timeout(&r);
            }
        }
    }
}
