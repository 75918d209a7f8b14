//! A route's `request_headers` / `response_headers` rules, prepared once:
//! removals first, then additions (which replace a header of the same name).
//! The checks refused every header the gateway sets itself, so a rule can
//! never override identity headers, `X-Request-Id` or `X-Forwarded-*`.

use crate::config::edge::HeaderRulesConfig;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

/// Compiled add/remove rules.
#[derive(Debug, Default)]
pub struct HeaderRules {
    add: Box<[(HeaderName, HeaderValue)]>,
    remove: Box<[HeaderName]>,
}

impl HeaderRules {
    /// From checked rules.
    pub fn new(c: &HeaderRulesConfig) -> HeaderRules {
        HeaderRules {
            add: c
                .add
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            remove: c
                .remove
                .iter()
                .filter_map(|k| HeaderName::from_bytes(k.as_bytes()).ok())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    pub fn apply_request(&self, req: &mut RequestHeader) {
        for name in &self.remove {
            req.remove_header(name);
        }
        for (name, value) in &self.add {
            let _ = req.insert_header(name.clone(), value.clone());
        }
    }

    pub fn apply_response(&self, resp: &mut ResponseHeader) {
        for name in &self.remove {
            resp.remove_header(name);
        }
        for (name, value) in &self.add {
            let _ = resp.insert_header(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_then_additions() {
        let rules = HeaderRules::new(&HeaderRulesConfig {
            add: [("Cache-Control".to_string(), "no-store".to_string())].into(),
            remove: vec!["X-Powered-By".into(), "cache-control".into()],
        });
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("x-powered-by", "php").unwrap();
        r.append_header("cache-control", "max-age=60").unwrap();
        rules.apply_response(&mut r);
        assert!(r.headers.get("x-powered-by").is_none());
        assert_eq!(r.headers["cache-control"], "no-store");
    }
}
