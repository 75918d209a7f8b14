//! Where a request's token is: `Authorization: Bearer`, else the configured
//! cookie. Never the query string (it ends up in logs and `Referer`).

use http::HeaderMap;

/// Largest token accepted; longer ones are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The bearer token of a request (RFC 6750 `Authorization: Bearer`).
/// Tokens in the query string are never looked at.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name` (every `Cookie` header is searched). A name
/// sent twice yields nothing: frameworks disagree on which one wins, so
/// neither may be the credential.
pub fn cookie_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name);
    let (_, v) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some(v.trim().trim_matches('"')).filter(|v| !v.is_empty())
}

/// Whether the `Cookie` header value carries cookie `name`.
pub fn without_cookie_needed(value: &str, name: &str) -> bool {
    value
        .split(';')
        .any(|pair| pair.trim().split_once('=').is_some_and(|(k, _)| k == name))
}

/// A `Cookie` header value without cookie `name`, when it had it (`None`:
/// unchanged). The upstream must only see the credential the gateway checked.
pub fn without_cookie(value: &str, name: &str) -> Option<String> {
    if !without_cookie_needed(value, name) {
        return None;
    }
    let named = |pair: &str| pair.trim().split_once('=').is_some_and(|(k, _)| k == name);
    Some(
        value
            .split(';')
            .filter(|p| !named(p) && !p.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_bearer_and_cookie_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "bearer  abc ".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; session=tok".parse().unwrap());
        h.append("cookie", "other=2".parse().unwrap());
        assert_eq!(cookie_token(&h, "session"), Some("tok"));
        assert_eq!(cookie_token(&h, "sess"), None);
        h.append("cookie", "session=forged".parse().unwrap());
        assert_eq!(cookie_token(&h, "session"), None, "sent twice: neither");
    }

    #[test]
    fn removes_one_cookie() {
        assert_eq!(
            without_cookie("a=1; session=t; b=2", "session").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without_cookie("session=t", "session").as_deref(), Some(""));
        assert_eq!(without_cookie("a=1; xsession=t", "session"), None);
    }
}
