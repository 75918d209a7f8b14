//! Bearer-token authentication: token extraction and JWT verification.
//!
//! Keys and validation rules are prepared when a config is compiled; a
//! request only decodes and checks. Algorithms are pinned per key type, so
//! `alg: none` and algorithm confusion are refused. Tokens never reach a log.

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

/// Largest token accepted; longer ones are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Headers carrying the verified identity to the upstream. They are removed
/// from every incoming request first, so a client can never spoof them.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-user-id", "x-user-scopes", "x-client-id"];

/// Why a request was not admitted; the label used in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("invalid claims")]
    Claims,
    #[error("insufficient scope")]
    Scope,
}

impl AuthError {
    /// Short label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Issuer => "issuer",
            AuthError::Audience => "audience",
            AuthError::Claims => "claims",
            AuthError::Scope => "scope",
        }
    }
}

/// The verified identity of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    scope: Option<String>,
    scp: Option<Vec<String>>,
}

/// Verifies tokens against the keys of one compiled config.
pub struct Authenticator {
    hmac: Option<(DecodingKey, Validation)>,
}

/// Settings an [`Authenticator`] is built from.
pub struct AuthSettings<'a> {
    pub jwt_secret: Option<&'a str>,
    pub leeway_seconds: u64,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a [String]>,
}

impl Authenticator {
    pub fn new(s: &AuthSettings<'_>) -> Self {
        let hmac = s.jwt_secret.map(|secret| {
            let mut v = Validation::new(Algorithm::HS256);
            v.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
            v.leeway = s.leeway_seconds;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp"]);
            match s.audience {
                Some(aud) => v.set_audience(aud),
                None => v.validate_aud = false,
            }
            if let Some(iss) = s.issuer {
                v.set_issuer(&[iss]);
            }
            (DecodingKey::from_secret(secret.as_bytes()), v)
        });
        Authenticator { hmac }
    }

    /// Verifies `token` and returns the identity it carries.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let (key, validation) = match &self.hmac {
            Some(k) if validation_allows(&k.1, header.alg) => k,
            _ => return Err(AuthError::Algorithm),
        };
        let data = decode::<Claims>(token, key, validation).map_err(map_jwt_error)?;
        let c = data.claims;
        let scopes = match (c.scope, c.scp) {
            (Some(s), _) => s.split_ascii_whitespace().map(str::to_string).collect(),
            (None, Some(v)) => v,
            (None, None) => vec![],
        };
        Ok(Identity {
            subject: c.sub,
            client_id: c.client_id.or(c.azp),
            scopes,
        })
    }
}

fn validation_allows(v: &Validation, alg: Algorithm) -> bool {
    v.algorithms.contains(&alg)
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidIssuer => AuthError::Issuer,
        K::InvalidAudience => AuthError::Audience,
        K::InvalidSignature => AuthError::Signature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => AuthError::Algorithm,
        K::MissingRequiredClaim(_) | K::InvalidClaimFormat(_) | K::Json(_) => AuthError::Claims,
        _ => AuthError::Malformed,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn auth() -> Authenticator {
        Authenticator::new(&AuthSettings {
            jwt_secret: Some(SECRET),
            leeway_seconds: 0,
            issuer: None,
            audience: None,
        })
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn accepts_a_valid_hs256_token() {
        let t =
            token(json!({"sub": "alice", "exp": now() + 60, "scope": "read write", "azp": "cli"}));
        let id = auth().verify(&t).unwrap();
        assert_eq!(id.subject.as_deref(), Some("alice"));
        assert_eq!(id.client_id.as_deref(), Some("cli"));
        assert_eq!(id.scopes, ["read", "write"]);
    }

    #[test]
    fn refuses_bad_tokens() {
        let a = auth();
        assert_eq!(
            a.verify(&token(json!({"sub": "a", "exp": now() - 10}))),
            Err(AuthError::Expired)
        );
        assert_eq!(
            a.verify(&token(json!({"sub": "a"}))),
            Err(AuthError::Claims)
        );
        assert_eq!(a.verify("abc.def"), Err(AuthError::Malformed));
        assert_eq!(
            a.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::TooLarge)
        );
        let other = encode(
            &Header::default(),
            &json!({"exp": now() + 60}),
            &EncodingKey::from_secret(b"another secret that is long enough!!"),
        )
        .unwrap();
        assert_eq!(a.verify(&other), Err(AuthError::Signature));
        // alg: none
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"exp":{}}}"#, now() + 60))
        );
        assert!(a.verify(&none).is_err());
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn extracts_bearer_tokens() {
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
    }
}
