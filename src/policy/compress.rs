//! Which responses the gateway compresses, and with what: negotiation of
//! `Accept-Encoding` (q-values honoured, the gateway's order breaking ties)
//! and the per-response conditions. The encoding itself is Pingora's
//! (`ResponseCompressionCtx`, driven by the proxy).

use crate::config::edge::{Algorithm, CompressionConfig};
use http::{HeaderValue, StatusCode, header};
use pingora_http::ResponseHeader;

/// A listed media type: `(type, subtype)`, lower case; subtype `None` for `type/*`.
type MediaRule = (Box<str>, Option<Box<str>>);

/// The compiled `compression` section (present only when enabled).
#[derive(Debug)]
pub struct Compression {
    algorithms: Box<[Algorithm]>,
    min_bytes: u64,
    types: Box<[MediaRule]>,
}

impl Compression {
    /// `None` when compression is disabled.
    pub fn new(c: &CompressionConfig) -> Option<Compression> {
        if !c.enabled {
            return None;
        }
        Some(Compression {
            algorithms: c.algorithms.clone().into(),
            min_bytes: c.min_bytes,
            types: c
                .content_types
                .iter()
                .filter_map(|t| {
                    let (a, b) = t.split_once('/')?;
                    let b = (b != "*").then(|| b.to_ascii_lowercase().into());
                    Some((a.to_ascii_lowercase().into(), b))
                })
                .collect(),
        })
    }

    /// The encoding to use for a request's `Accept-Encoding`: the highest
    /// q-value among the configured algorithms (`*` counts for those not
    /// named), the configured order breaking ties; none without the header.
    pub fn negotiate(&self, accept: Option<&HeaderValue>) -> Option<Algorithm> {
        let accept = accept?.to_str().ok()?;
        let mut q = [None::<u16>; 3];
        let mut star = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let weight = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
                })
                .unwrap_or(Some(1000));
            let Some(weight) = weight else { continue };
            if name == "*" {
                star = Some(weight);
            } else if let Some(a) = self
                .algorithms
                .iter()
                .find(|a| a.as_str().eq_ignore_ascii_case(name))
            {
                q[*a as usize] = Some(weight);
            }
        }
        let mut best: Option<(Algorithm, u16)> = None;
        for &a in self.algorithms.iter() {
            let w = q[a as usize].or(star).unwrap_or(0);
            if w > 0 && best.is_none_or(|(_, b)| w > b) {
                best = Some((a, w));
            }
        }
        best.map(|(a, _)| a)
    }

    /// Whether a response may be compressed: a status with a body that is
    /// the whole representation, no `Content-Encoding`, a listed type that
    /// is not `text/event-stream`, and a `Content-Length` (when present) of
    /// at least `min_bytes`.
    pub fn wants(&self, resp: &ResponseHeader) -> bool {
        if matches!(
            resp.status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        ) || resp.status.is_informational()
            || resp.headers.contains_key(header::CONTENT_ENCODING)
            || resp.headers.contains_key(header::CONTENT_RANGE)
        {
            return false;
        }
        if let Some(len) = resp.headers.get(header::CONTENT_LENGTH)
            && len
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_none_or(|n| n < self.min_bytes)
        {
            return false;
        }
        let Some(ct) = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let media = ct.split(';').next().unwrap_or("").trim();
        let Some((ty, sub)) = media.split_once('/') else {
            return false;
        };
        if ty.eq_ignore_ascii_case("text") && sub.eq_ignore_ascii_case("event-stream") {
            return false;
        }
        self.types.iter().any(|(t, s)| {
            t.eq_ignore_ascii_case(ty) && s.as_ref().is_none_or(|s| s.eq_ignore_ascii_case(sub))
        })
    }
}

/// An RFC 9110 qvalue in thousandths (`0`, `0.5`, `1.000`); `None` if malformed.
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Compression {
        Compression::new(&CompressionConfig {
            enabled: true,
            ..CompressionConfig::default()
        })
        .unwrap()
    }

    fn neg(accept: &str) -> Option<&'static str> {
        c().negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
            .map(Algorithm::as_str)
    }

    #[test]
    fn negotiation_honours_q_values_and_the_configured_order() {
        assert_eq!(neg("gzip, br"), Some("br"));
        assert_eq!(neg("gzip"), Some("gzip"));
        assert_eq!(neg("zstd, gzip;q=0.5"), Some("zstd"));
        assert_eq!(neg("br;q=0, gzip"), Some("gzip"));
        assert_eq!(neg("*"), Some("br"));
        assert_eq!(neg("*;q=0.1, gzip;q=0.2"), Some("gzip"));
        assert_eq!(neg("identity"), None);
        assert_eq!(neg("deflate, gzip;q=0"), None);
        assert_eq!(neg("gzip;q=2"), None);
        assert_eq!(c().negotiate(None), None);
    }

    #[test]
    fn which_responses_are_compressed() {
        let r = |ct: &str, len: Option<&str>| {
            let mut r = ResponseHeader::build(200, None).unwrap();
            r.append_header("content-type", ct).unwrap();
            if let Some(l) = len {
                r.append_header("content-length", l).unwrap();
            }
            c().wants(&r)
        };
        assert!(r("application/json", Some("2048")));
        assert!(r("text/html; charset=utf-8", None));
        assert!(!r("application/json", Some("1023")));
        assert!(!r("image/png", Some("99999")));
        assert!(!r("text/event-stream", None));
        let mut enc = ResponseHeader::build(200, None).unwrap();
        enc.append_header("content-type", "text/plain").unwrap();
        enc.append_header("content-encoding", "gzip").unwrap();
        assert!(!c().wants(&enc));
    }
}
