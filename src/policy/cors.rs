//! CORS (the Fetch standard's CORS protocol) for one route: which origins
//! are allowed and the header values, prepared once.

use crate::config::edge::{CorsConfig, OriginPattern};
use http::{HeaderName, HeaderValue, Method, header};
use pingora_http::ResponseHeader;

/// A route's compiled `cors`.
#[derive(Debug)]
pub struct Cors {
    origins: Box<[OriginPattern]>,
    /// `"*"` without credentials: `Access-Control-Allow-Origin: *`.
    wildcard: bool,
    credentials: bool,
    methods: Box<[Method]>,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

fn join(items: &[String]) -> Option<HeaderValue> {
    (!items.is_empty())
        .then(|| HeaderValue::from_str(&items.join(", ")).ok())
        .flatten()
}

impl Cors {
    /// From a checked config.
    pub fn new(c: &CorsConfig) -> Cors {
        let origins: Box<[OriginPattern]> = c
            .allowed_origins
            .iter()
            .filter_map(|o| OriginPattern::parse(o).ok())
            .collect();
        Cors {
            wildcard: !c.allow_credentials && origins.contains(&OriginPattern::Any),
            origins,
            credentials: c.allow_credentials,
            methods: c
                .allowed_methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            allow_methods: join(&c.allowed_methods).unwrap_or(HeaderValue::from_static("GET")),
            allow_headers: join(&c.allowed_headers),
            expose_headers: join(&c.exposed_headers),
            max_age: HeaderValue::from(c.max_age_seconds.get()),
        }
    }

    /// Whether `origin` (an `Origin` header value) may read responses.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }

    /// Whether a preflight may ask for `method`.
    pub fn allows_method(&self, method: &[u8]) -> bool {
        self.methods.iter().any(|m| m.as_str().as_bytes() == method)
    }

    fn allow_origin(&self, resp: &mut ResponseHeader, origin: &HeaderValue) {
        let value = if self.wildcard {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        let _ = resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            let _ = resp.insert_header(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Headers of an actual (not preflight) response: `Vary: Origin`
    /// always; the `Access-Control-*` ones when `origin` is allowed.
    pub fn decorate(&self, resp: &mut ResponseHeader, origin: Option<&HeaderValue>) {
        add_vary(resp, "Origin");
        if let Some(o) = origin.filter(|o| self.allows(o.as_bytes())) {
            self.allow_origin(resp, o);
            if let Some(v) = &self.expose_headers {
                let _ = resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
        }
    }

    /// The preflight answer's headers (status 204): the `Access-Control-*`
    /// ones only when the origin and the requested method are allowed.
    pub fn preflight(&self, resp: &mut ResponseHeader, origin: &HeaderValue, method: &[u8]) {
        add_vary(resp, "Origin");
        add_vary(resp, "Access-Control-Request-Method");
        add_vary(resp, "Access-Control-Request-Headers");
        if !self.allows(origin.as_bytes()) || !self.allows_method(method) {
            return;
        }
        self.allow_origin(resp, origin);
        let _ = resp.insert_header(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        if let Some(v) = &self.allow_headers {
            let _ = resp.insert_header(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        let _ = resp.insert_header(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

/// Adds `name` to `Vary` unless it is there already (or `Vary: *`).
pub fn add_vary(resp: &mut ResponseHeader, name: &'static str) {
    let listed = resp.headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case(name))
        })
    });
    if !listed {
        let _ = resp.append_header(
            HeaderName::from_static("vary"),
            HeaderValue::from_static(name),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: vec!["GET".into(), "POST".into()],
            allowed_headers: vec!["Authorization".into(), "Content-Type".into()],
            exposed_headers: vec![],
            allow_credentials: credentials,
            max_age_seconds: crate::config::seconds::WholeSeconds::lit(600),
        })
    }

    #[test]
    fn allowed_origins_get_exact_headers_and_others_none() {
        let c = cors(&["https://app.example.com"], true);
        let o = HeaderValue::from_static("https://app.example.com");
        let mut r = ResponseHeader::build(204, None).unwrap();
        c.preflight(&mut r, &o, b"POST");
        assert_eq!(
            r.headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(r.headers["access-control-allow-credentials"], "true");
        assert_eq!(r.headers["access-control-allow-methods"], "GET, POST");
        assert_eq!(
            r.headers["access-control-allow-headers"],
            "Authorization, Content-Type"
        );
        assert_eq!(r.headers["access-control-max-age"], "600");
        let mut r = ResponseHeader::build(204, None).unwrap();
        c.preflight(&mut r, &o, b"DELETE");
        assert!(r.headers.get("access-control-allow-origin").is_none());
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("vary", "Accept-Encoding").unwrap();
        c.decorate(
            &mut r,
            Some(&HeaderValue::from_static("https://evil.example")),
        );
        assert!(r.headers.get("access-control-allow-origin").is_none());
        assert_eq!(r.headers.get_all("vary").iter().count(), 2);
        c.decorate(&mut r, None);
        assert_eq!(
            r.headers.get_all("vary").iter().count(),
            2,
            "Vary: Origin once"
        );
    }

    #[test]
    fn a_wildcard_without_credentials_answers_star() {
        let c = cors(&["*"], false);
        let mut r = ResponseHeader::build(200, None).unwrap();
        c.decorate(&mut r, Some(&HeaderValue::from_static("https://x.example")));
        assert_eq!(r.headers["access-control-allow-origin"], "*");
        assert!(r.headers.get("access-control-allow-credentials").is_none());
    }
}
