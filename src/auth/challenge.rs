//! What a refused client is told: the `WWW-Authenticate` challenge
//! (RFC 6750 §3) or, for a browser navigation, a redirect to the login page.

use super::AuthError;
use http::HeaderValue;

/// The `WWW-Authenticate` challenge for a refusal (RFC 6750 §3).
pub fn challenge(realm: &str, e: AuthError, required_scopes: &[Box<str>]) -> HeaderValue {
    let v = match e {
        AuthError::Missing => format!("Bearer realm=\"{realm}\""),
        AuthError::Scope => format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
            required_scopes.join(" ")
        ),
        _ => format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
    };
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("Bearer"))
}

/// Redirect of browser navigations without a valid token.
pub struct LoginRedirect {
    pub url: Box<str>,
    pub return_parameter: Box<str>,
}

impl LoginRedirect {
    /// The login URL carrying `original` (the URL the browser asked for).
    pub fn location(&self, original: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}{}={}",
            self.url,
            self.return_parameter,
            form_urlencoded::byte_serialize(original.as_bytes()).collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_login_locations() {
        assert_eq!(
            challenge(
                "pingora-gateway",
                AuthError::Scope,
                &["read".into(), "write".into()]
            ),
            "Bearer realm=\"pingora-gateway\", error=\"insufficient_scope\", scope=\"read write\""
        );
        assert_eq!(
            challenge("pingora-gateway", AuthError::Expired, &[]),
            "Bearer realm=\"pingora-gateway\", error=\"invalid_token\""
        );
        let l = LoginRedirect {
            url: "/oauth/login".into(),
            return_parameter: "return_to".into(),
        };
        assert_eq!(
            l.location("http://gw/admin/x?a=1"),
            "/oauth/login?return_to=http%3A%2F%2Fgw%2Fadmin%2Fx%3Fa%3D1"
        );
    }
}
