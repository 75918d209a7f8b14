//! Path normalization and the route matcher.
//!
//! Every request path is normalized *before* it is matched or authorized,
//! and the upstream receives the normalized form, so `/test/../admin/x` is
//! routed and authorized as `/admin/x`. The matcher is a segment trie: a
//! lookup walks the path's segments once, whatever the number of routes, and
//! returns the index of the most specific matching route without allocating.
//!
//! A leaf: it imports nothing of ours, so `config`'s checker can use the real
//! matcher to find duplicate and shadowed routes.

use http::Method;
use std::borrow::Cow;
use std::collections::HashMap;

/// Why a request path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("encoded slash or backslash in path")]
    EncodedSeparator,
    #[error("backslash in path")]
    Backslash,
    #[error("NUL byte in path")]
    Nul,
    #[error("malformed percent-encoding in path")]
    BadPercent,
    #[error("path climbs above the root")]
    AboveRoot,
    /// `;` (or `%3B`): servlet containers and other frameworks strip
    /// "path parameters", so `/x/..;/admin` or `/admin;x/secret` would reach
    /// a resource other than the one routed and authorized.
    #[error("path parameters (';') are not accepted")]
    Parameters,
}

/// Normalizes a request path (without query): decodes percent-encoded
/// unreserved characters, resolves `.` and `..`, collapses `//`. Refuses
/// encoded `/` or `\`, raw `\`, NUL, `;` (raw or encoded), and paths that
/// climb above `/`. The result never contains `..`, `//` or an encoded
/// separator, and normalizing it again changes nothing.
/// Returns the input unchanged (borrowed) in the common case.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let needs_work = bytes.iter().any(|&b| matches!(b, b'%' | b'\\' | 0 | b';'))
        || path.contains("//")
        || path.contains("/.");
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }

    let decoded = decode_unreserved(bytes)?;
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Decodes `%XX` for unreserved characters (RFC 3986 §2.3) and keeps other
/// escapes, uppercased. Encoded separators and NUL are refused.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return Err(PathError::Nul),
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Parameters),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadPercent);
                };
                let c = (h * 16 + l) as u8;
                match c {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0 => return Err(PathError::Nul),
                    b';' => return Err(PathError::Parameters),
                    c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                        out.push(c)
                    }
                    c => out.extend_from_slice(format!("%{c:02X}").as_bytes()),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII was decoded; the rest are the original (UTF-8) bytes.
    String::from_utf8(out).map_err(|_| PathError::BadPercent)
}

/// A parsed route pattern: the literal prefix and whether it ends in `/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The path without the trailing `/*` (`/kline` for `/kline/*`, `` for `/*`).
    pub prefix: String,
    pub wildcard: bool,
}

impl Pattern {
    /// Parses a route pattern; the error says how to fix it.
    pub fn parse(p: &str) -> Result<Pattern, String> {
        if !p.starts_with('/') {
            return Err(format!("pattern \"{p}\" must start with '/'"));
        }
        let (prefix, wildcard) = match p.strip_suffix("/*") {
            Some(prefix) => (prefix, true),
            None => (p, false),
        };
        if prefix.contains('*') {
            return Err(format!(
                "pattern \"{p}\": '*' is only allowed as the whole last segment (\"/prefix/*\")"
            ));
        }
        if prefix.contains(['?', '#']) {
            return Err(format!("pattern \"{p}\" must not contain '?' or '#'"));
        }
        let check = if prefix.is_empty() { "/" } else { prefix };
        match normalize_path(check) {
            Ok(n) if n == check => {}
            _ => {
                return Err(format!(
                    "pattern \"{p}\" is not a normalized path (no '//', '.', '..', '\\' or percent-escapes)"
                ));
            }
        }
        Ok(Pattern {
            prefix: prefix.to_string(),
            wildcard,
        })
    }
}

/// What a route matches besides its path.
#[derive(Debug, Clone, Default)]
pub struct Narrowing {
    /// Lowercase host without port.
    pub host: Option<Box<str>>,
    pub methods: Option<Box<[Method]>>,
}

impl Narrowing {
    fn matches(&self, host: Option<&str>, method: &Method) -> bool {
        if let Some(h) = &self.host {
            match host {
                Some(req) if req.eq_ignore_ascii_case(h) => {}
                _ => return false,
            }
        }
        match &self.methods {
            Some(ms) => ms.contains(method),
            None => true,
        }
    }

    /// Narrower routes are tried first: host beats methods beats nothing.
    fn rank(&self) -> u8 {
        (self.host.is_some() as u8) * 2 + self.methods.is_some() as u8
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    /// Routes whose pattern ends exactly here (no wildcard), narrowest first.
    exact: Vec<(u32, Narrowing)>,
    /// Routes whose pattern is this node followed by `/` (`/admin/`),
    /// narrowest first: `/admin/` and `/admin` are different routes.
    exact_slash: Vec<(u32, Narrowing)>,
    /// Routes whose pattern is this node followed by `/*`, narrowest first.
    wildcard: Vec<(u32, Narrowing)>,
}

/// The route matcher. Build once per config; look up per request.
#[derive(Debug, Default)]
pub struct Router {
    root: Node,
}

impl Router {
    /// Adds route `index` for `pattern`. Ties between equally specific routes
    /// keep file order (validation rejects exact duplicates).
    pub fn insert(&mut self, pattern: &Pattern, narrowing: Narrowing, index: u32) {
        let mut node = &mut self.root;
        for seg in segments(&pattern.prefix) {
            node = node.children.entry(seg.into()).or_default();
        }
        let list = if pattern.wildcard {
            &mut node.wildcard
        } else if pattern.prefix.ends_with('/') {
            &mut node.exact_slash
        } else {
            &mut node.exact
        };
        list.push((index, narrowing));
        list.sort_by_key(|(i, n)| (std::cmp::Reverse(n.rank()), *i));
    }

    /// The most specific route for a normalized `path`: an exact pattern
    /// beats a wildcard, a longer prefix beats a shorter one, and at equal
    /// path specificity a route narrowed by host or methods beats one that is not.
    pub fn lookup(&self, path: &str, host: Option<&str>, method: &Method) -> Option<u32> {
        let pick = |list: &[(u32, Narrowing)]| {
            list.iter()
                .find(|(_, n)| n.matches(host, method))
                .map(|(i, _)| *i)
        };
        let mut node = &self.root;
        let mut best = pick(&node.wildcard);
        let mut complete = true;
        let mut slash = false;
        let mut segs = path.split('/').skip(1).peekable();
        while let Some(seg) = segs.next() {
            if seg.is_empty() && segs.peek().is_none() {
                // Trailing slash: `/p/` is matched by exact `/p/` and by
                // `/p/*`, not by exact `/p`.
                slash = true;
                break;
            }
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    if let Some(i) = pick(&node.wildcard) {
                        best = Some(i);
                    }
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        let exact = if slash {
            &node.exact_slash
        } else {
            &node.exact
        };
        if complete && let Some(i) = pick(exact) {
            return Some(i);
        }
        best
    }
}

fn segments(prefix: &str) -> impl Iterator<Item = &str> {
    prefix.split('/').filter(|s| !s.is_empty())
}

/// The path the upstream sees when a route strips its prefix.
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        let ok = |p: &str| normalize_path(p).unwrap().into_owned();
        assert_eq!(ok("/admin/x"), "/admin/x");
        assert_eq!(ok("/test/../admin/x"), "/admin/x");
        assert_eq!(ok("/a//b///c"), "/a/b/c");
        assert_eq!(ok("/a/./b/."), "/a/b/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/%61dmin/%7Ex"), "/admin/~x");
        assert_eq!(ok("/test/%2e%2e/admin"), "/admin");
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("//"), "/");
        assert_eq!(ok("/."), "/");
    }

    #[test]
    fn refuses_dangerous_paths() {
        use PathError::*;
        assert_eq!(normalize_path("/a%2Fb"), Err(EncodedSeparator));
        assert_eq!(normalize_path("/a%2fb"), Err(EncodedSeparator));
        assert_eq!(normalize_path("/a%5Cb"), Err(EncodedSeparator));
        assert_eq!(normalize_path("/a\\b"), Err(Backslash));
        assert_eq!(normalize_path("/a%00b"), Err(Nul));
        assert_eq!(normalize_path("/a\0b"), Err(Nul));
        assert_eq!(normalize_path("/.."), Err(AboveRoot));
        assert_eq!(normalize_path("/a/../../b"), Err(AboveRoot));
        assert_eq!(normalize_path("/%2e%2e/x"), Err(AboveRoot));
        assert_eq!(normalize_path("/a%zz"), Err(BadPercent));
        assert_eq!(normalize_path("/a%2"), Err(BadPercent));
        assert_eq!(normalize_path("*"), Err(NotAbsolute));
    }

    #[test]
    fn parses_patterns() {
        assert_eq!(
            Pattern::parse("/*").unwrap(),
            Pattern {
                prefix: "".into(),
                wildcard: true
            }
        );
        assert_eq!(Pattern::parse("/a/b/*").unwrap().prefix, "/a/b");
        assert!(!Pattern::parse("/a/b").unwrap().wildcard);
        assert!(Pattern::parse("a/*").is_err());
        assert!(Pattern::parse("/a*/b").is_err());
        assert!(Pattern::parse("/a/*/b").is_err());
        assert!(Pattern::parse("/a/*x").is_err());
        assert!(Pattern::parse("/a//b").is_err());
        assert!(Pattern::parse("/a/../b/*").is_err());
    }

    fn router(patterns: &[&str]) -> Router {
        let mut r = Router::default();
        for (i, p) in patterns.iter().enumerate() {
            r.insert(&Pattern::parse(p).unwrap(), Narrowing::default(), i as u32);
        }
        r
    }

    #[test]
    fn most_specific_wins_whatever_the_order() {
        let r = router(&[
            "/*",
            "/admin/*",
            "/admin/users/*",
            "/admin/exact",
            "/oauth/*",
        ]);
        let get = |p| r.lookup(p, None, &Method::GET);
        assert_eq!(get("/"), Some(0));
        assert_eq!(get("/other"), Some(0));
        assert_eq!(get("/admin"), Some(1));
        assert_eq!(get("/admin/"), Some(1));
        assert_eq!(get("/admin/x/y"), Some(1));
        assert_eq!(get("/admin/users"), Some(2));
        assert_eq!(get("/admin/users/7"), Some(2));
        assert_eq!(get("/admin/exact"), Some(3));
        assert_eq!(get("/admin/exact/"), Some(1));
        assert_eq!(get("/admin/exactly"), Some(1));
        assert_eq!(get("/oauthx"), Some(0));
    }

    #[test]
    fn no_catch_all_means_no_match() {
        let r = router(&["/a/*", "/b"]);
        assert_eq!(r.lookup("/c", None, &Method::GET), None);
        assert_eq!(r.lookup("/b/c", None, &Method::GET), None);
        assert_eq!(r.lookup("/b", None, &Method::GET), Some(1));
    }

    #[test]
    fn host_and_methods_narrow_and_fall_back() {
        let mut r = Router::default();
        let p = Pattern::parse("/api/*").unwrap();
        r.insert(&p, Narrowing::default(), 0);
        r.insert(
            &p,
            Narrowing {
                host: Some("admin.example.com".into()),
                methods: None,
            },
            1,
        );
        r.insert(
            &p,
            Narrowing {
                host: None,
                methods: Some(vec![Method::POST].into()),
            },
            2,
        );
        r.insert(
            &Pattern::parse("/*").unwrap(),
            Narrowing {
                host: Some("other".into()),
                methods: None,
            },
            3,
        );
        assert_eq!(
            r.lookup("/api/x", Some("ADMIN.example.com"), &Method::POST),
            Some(1)
        );
        assert_eq!(r.lookup("/api/x", None, &Method::POST), Some(2));
        assert_eq!(r.lookup("/api/x", None, &Method::GET), Some(0));
        assert_eq!(r.lookup("/x", Some("other"), &Method::GET), Some(3));
        assert_eq!(r.lookup("/x", Some("else"), &Method::GET), None);
    }

    #[test]
    fn strips_prefixes() {
        assert_eq!(strip_prefix("/kline/a/b", "/kline"), "/a/b");
        assert_eq!(strip_prefix("/kline", "/kline"), "/");
        assert_eq!(strip_prefix("/kline/", "/kline"), "/");
        assert_eq!(strip_prefix("/x", ""), "/x");
    }
}
