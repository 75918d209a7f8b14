//! Property tests for the parsers and matchers every request goes through
//! before any routing or auth decision: path normalization, the route
//! matcher (against a plain linear reference), Host parsing, and token
//! extraction.

use http::{HeaderMap, HeaderValue, Method};
use pingora_gateway::auth::{bearer_token, cookie_token};
use pingora_gateway::host::Host;
use pingora_gateway::routing::{Narrowing, Pattern, Router, normalize_path};
use proptest::prelude::*;

// --- path normalization ------------------------------------------------------

/// Paths built from the pieces attacks are made of.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5C".to_string()),
        Just("%25".to_string()),
        Just("%41".to_string()),
        Just("%3b".to_string()),
        Just("%".to_string()),
        Just(";".to_string()),
        Just("\\".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("~".to_string()),
        Just("é".to_string()),
        "[a-z0-9%._~-]{1,3}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn normalization_is_idempotent_and_leaves_nothing_to_climb(p in hostile_path()) {
        if let Ok(n) = normalize_path(&p) {
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"), "{} -> {}", p, n);
            prop_assert!(!n.contains(';'), "{} -> {}", p, n);
            prop_assert!(!n.contains('\\'));
            let lower = n.to_ascii_lowercase();
            for bad in ["%2f", "%5c", "%2e", "%3b", "%00"] {
                prop_assert!(!lower.contains(bad), "{} -> {}", p, n);
            }
            for seg in n.split('/') {
                prop_assert!(seg != ".." && seg != ".", "{} -> {}", p, n);
            }
            let again = normalize_path(&n).expect("a normalized path normalizes");
            prop_assert_eq!(again.as_ref(), n.as_ref());
        }
    }

    #[test]
    fn normalization_never_panics_on_any_string(p in "\\PC*") {
        let _ = normalize_path(&p);
    }
}

// --- the router against a linear reference -----------------------------------

#[derive(Debug, Clone)]
struct RouteSpec {
    segs: Vec<&'static str>,
    wildcard: bool,
    trailing_slash: bool,
    host: Option<&'static str>,
    methods: Option<Vec<Method>>,
}

impl RouteSpec {
    fn pattern(&self) -> String {
        let mut p = String::new();
        for s in &self.segs {
            p.push('/');
            p.push_str(s);
        }
        if self.wildcard {
            p.push_str("/*");
        } else if self.trailing_slash || p.is_empty() {
            p.push('/');
        }
        p
    }

    fn narrowing(&self) -> Narrowing {
        Narrowing {
            host: self.host.map(Into::into),
            methods: self.methods.clone().map(Into::into),
        }
    }

    fn narrow_rank(&self) -> u8 {
        (self.host.is_some() as u8) * 2 + self.methods.is_some() as u8
    }

    fn narrowing_matches(&self, host: Option<&str>, method: &Method) -> bool {
        if let Some(h) = self.host
            && host != Some(h)
        {
            return false;
        }
        self.methods.as_ref().is_none_or(|ms| ms.contains(method))
    }

    /// How specifically this route matches `path`, if it does: an exact
    /// pattern beats any wildcard, then the longer prefix, then narrowing.
    fn score(&self, path: &str, host: Option<&str>, method: &Method) -> Option<(bool, usize, u8)> {
        if !self.narrowing_matches(host, method) {
            return None;
        }
        let pattern = self.pattern();
        if self.wildcard {
            let prefix = pattern.strip_suffix("/*").unwrap();
            let hit = prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('/'));
            hit.then_some((false, self.segs.len(), self.narrow_rank()))
        } else {
            (path == pattern).then_some((true, self.segs.len(), self.narrow_rank()))
        }
    }
}

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..3),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["h1", "h2"])),
        prop::option::of(prop::sample::subsequence(
            vec![Method::GET, Method::POST],
            1..=2,
        )),
    )
        .prop_map(
            |(segs, wildcard, trailing_slash, host, methods)| RouteSpec {
                segs,
                wildcard,
                trailing_slash,
                host,
                methods,
            },
        )
}

fn request_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 0..4),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p: String = segs.iter().map(|s| format!("/{s}")).collect();
            if slash || p.is_empty() {
                p.push('/');
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_trie_picks_what_a_linear_scan_picks(
        routes in prop::collection::vec(route_spec(), 1..8),
        path in request_path(),
        host in prop::option::of(prop::sample::select(vec!["h1", "h2", "h3"])),
        method in prop::sample::select(vec![Method::GET, Method::POST, Method::PUT]),
    ) {
        // Configs with two identical routes do not validate: keep the first.
        let mut unique: Vec<RouteSpec> = vec![];
        for r in routes {
            if !unique.iter().any(|u| u.pattern() == r.pattern() && u.host == r.host && u.methods == r.methods) {
                unique.push(r);
            }
        }
        let mut router = Router::default();
        for (i, r) in unique.iter().enumerate() {
            router.insert(&Pattern::parse(&r.pattern()).unwrap(), r.narrowing(), i as u32);
        }
        let reference = unique
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.score(&path, host, &method).map(|s| (s, std::cmp::Reverse(i))))
            .max()
            .map(|(_, std::cmp::Reverse(i))| i as u32);
        prop_assert_eq!(router.lookup(&path, host, &method), reference, "{} {:?}", path, unique);
    }
}

// --- Host parsing ------------------------------------------------------------

fn valid_host() -> impl Strategy<Value = (String, String, Option<u16>)> {
    (
        prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", 1..4),
        any::<bool>(),
        prop::option::of(1u16..),
    )
        .prop_map(|(labels, dot, port)| {
            let name = labels.join(".");
            let mut raw = name.clone();
            if dot {
                raw.push('.');
            }
            if let Some(p) = port {
                raw.push_str(&format!(":{p}"));
            }
            (raw, name.to_ascii_lowercase(), port)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn valid_hosts_parse_to_their_canonical_form((raw, name, port) in valid_host()) {
        let h = Host::parse(&raw).unwrap();
        prop_assert_eq!(h.name(), name.as_str());
        prop_assert_eq!(h.port(), port);
        prop_assert_eq!(Host::parse(h.as_str()).unwrap(), h.clone());
    }

    #[test]
    fn whatever_parses_is_plain_and_stable(raw in "[a-zA-Z0-9.:\\[\\]@%,;/?#_ -]{0,24}") {
        if let Ok(h) = Host::parse(&raw) {
            prop_assert!(h.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b)), "{}", h);
            prop_assert_eq!(h.as_str().matches(':').count() <= 1 || h.as_str().starts_with('['), true);
            prop_assert_eq!(h.name().to_ascii_lowercase(), h.name());
            prop_assert_eq!(Host::parse(h.as_str()).unwrap(), h.clone());
            // The name never gains a character the client did not send.
            prop_assert!(raw.to_ascii_lowercase().contains(h.name()));
        }
    }

    #[test]
    fn host_parsing_never_panics(raw in "\\PC*") {
        let _ = Host::parse(&raw);
    }
}

// --- token extraction ----------------------------------------------------------

fn token_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{0,40}"
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_bearer_token_is_extracted_whole(
        t in token_text(),
        scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER", "BeArEr"]),
        pad in " {0,3}",
    ) {
        let h = headers(&[("authorization", format!("{scheme} {pad}{t}{pad}"))]);
        prop_assert_eq!(bearer_token(&h), Some(t.as_str()));
    }

    #[test]
    fn other_schemes_yield_no_bearer_token(
        t in token_text(),
        scheme in prop::sample::select(vec!["Basic", "Bearerx", "Token", "MAC", "xBearer"]),
    ) {
        let h = headers(&[("authorization", format!("{scheme} {t}"))]);
        prop_assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn the_named_cookie_and_only_it_is_the_token(
        t in token_text(),
        others in prop::collection::vec(("[a-z]{1,8}", "[A-Za-z0-9]{0,12}"), 0..5),
        at in any::<prop::sample::Index>(),
    ) {
        let mut jar: Vec<String> = others
            .iter()
            .filter(|(k, _)| k != "session")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // Look-alikes that must not match.
        jar.push("xsession=nope".into());
        jar.push("session_old=nope".into());
        let i = at.index(jar.len() + 1);
        jar.insert(i, format!("session={t}"));
        let h = headers(&[("cookie", jar.join("; "))]);
        prop_assert_eq!(cookie_token(&h, "session"), Some(t.as_str()));
        let without: Vec<&String> = jar.iter().filter(|c| !c.starts_with("session=")).collect();
        let h = headers(&[("cookie", without.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "))]);
        prop_assert_eq!(cookie_token(&h, "session"), None);
    }

    #[test]
    fn extraction_never_panics(v in "[ -~]{0,64}") {
        if let Ok(value) = HeaderValue::from_str(&v) {
            let mut h = HeaderMap::new();
            h.insert("authorization", value.clone());
            h.insert("cookie", value);
            let _ = bearer_token(&h);
            let _ = cookie_token(&h, "session");
        }
    }
}
