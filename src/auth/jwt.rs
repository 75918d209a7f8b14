//! JWT verification: key selection, pinned algorithms, claim checks.
//!
//! The key decides the algorithm, never the token alone: an HS token is
//! only checked with `jwt_secret`, an RS/PS/ES/EdDSA token only with a JWKS
//! key of that type. A `kid` selects the key; without one, the algorithm
//! family does. So `alg: none` (not even parsed) and an HS token signed
//! with an RSA public key (algorithm confusion) are refused.

use super::AuthError;
use super::jwks::JwksSource;
use crate::config::model::JwtAlgorithm;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header, Validation, decode};
use serde::Deserialize;
use std::sync::Arc;

/// Every algorithm the gateway can verify.
pub const SUPPORTED: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The claims the gateway reads, from a JWT or an introspection answer.
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub azp: Option<String>,
    pub scope: Option<String>,
    /// An array (RFC 9068 style) or a space-separated string.
    pub scp: Option<serde_json::Value>,
    pub exp: Option<u64>,
    pub iat: Option<u64>,
    /// Every other claim, for configured identity headers.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    pub fn scopes(&self) -> Vec<String> {
        let words = |s: &str| s.split_ascii_whitespace().map(str::to_string).collect();
        match (&self.scope, &self.scp) {
            (Some(s), _) => words(s),
            (None, Some(serde_json::Value::String(s))) => words(s),
            (None, Some(serde_json::Value::Array(v))) => v
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    }
}

/// Claim rules and keys of one compiled config.
pub struct JwtVerifier {
    pub hmac: Option<DecodingKey>,
    pub jwks: Option<Arc<JwksSource>>,
    /// `auth.algorithms`, when set.
    pub allowed: Option<Box<[Algorithm]>>,
    /// One rule set per algorithm family (jsonwebtoken wants every listed
    /// algorithm to fit the key).
    validations: [Validation; 4],
    leeway: u64,
}

/// What a successful verification yields.
pub struct Verified {
    pub claims: Claims,
    /// Epoch of the key set that verified it (`None` for the shared secret).
    pub key_epoch: Option<u64>,
}

impl JwtVerifier {
    pub fn new(
        secret: Option<&str>,
        jwks: Option<Arc<JwksSource>>,
        allowed: Option<Vec<Algorithm>>,
        leeway: u64,
        issuer: Option<&str>,
        audience: Option<&[String]>,
    ) -> Self {
        let rules = |family: AlgorithmFamily| {
            let mut v = Validation::new(Algorithm::HS256);
            v.algorithms = SUPPORTED
                .iter()
                .copied()
                .filter(|a| a.family() == family)
                .collect();
            v.leeway = leeway;
            v.validate_nbf = true;
            // A configured issuer or audience makes the claim required: a
            // token without `iss` (or `aud`) must not pass a check it skipped.
            let mut required = vec!["exp"];
            if issuer.is_some() {
                required.push("iss");
            }
            if audience.is_some() {
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            match audience {
                Some(aud) => v.set_audience(aud),
                None => v.validate_aud = false,
            }
            if let Some(iss) = issuer {
                v.set_issuer(&[iss]);
            }
            v
        };
        JwtVerifier {
            hmac: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks,
            allowed: allowed.map(Into::into),
            validations: [
                rules(AlgorithmFamily::Hmac),
                rules(AlgorithmFamily::Rsa),
                rules(AlgorithmFamily::Ec),
                rules(AlgorithmFamily::Ed),
            ],
            leeway,
        }
    }

    /// Verifies a token whose header parsed. Waits on the network only when
    /// the token names a key that is not known yet.
    pub async fn verify(&self, token: &str, header: &Header) -> Result<Verified, AuthError> {
        check_typ(header.typ.as_deref())?;
        // RFC 7515 §4.1.11: a recipient that does not understand a listed
        // critical extension must reject; the gateway understands none.
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let alg = header.alg;
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&alg)
        {
            return Err(AuthError::Algorithm);
        }
        if alg.family() == AlgorithmFamily::Hmac {
            // A kid naming a public key with an HS alg is algorithm confusion.
            if let (Some(kid), Some(j)) = (&header.kid, &self.jwks)
                && j.current().by_kid(kid).is_some()
            {
                return Err(AuthError::Algorithm);
            }
            let key = self.hmac.as_ref().ok_or(AuthError::Algorithm)?;
            return Ok(Verified {
                claims: self.decode(token, key)?,
                key_epoch: None,
            });
        }
        let jwks = self.jwks.as_ref().ok_or(AuthError::Algorithm)?;
        let mut set = jwks.current();
        let known = |set: &super::jwks::KeySet| match &header.kid {
            Some(kid) => set.by_kid(kid).is_some(),
            None => set.keys.iter().any(|k| k.accepts(alg)),
        };
        if !known(&set) {
            jwks.refetch_unknown().await;
            set = jwks.current();
        }
        // Keys never fetched from an authority that did not answer: its
        // outage (503, retry), not a bad token (401, a re-login loop).
        let unknown = if jwks.unavailable() {
            AuthError::Unavailable
        } else {
            AuthError::UnknownKey
        };
        let claims = match &header.kid {
            Some(kid) => {
                let key = set.by_kid(kid).ok_or(unknown)?;
                if !key.accepts(alg) {
                    return Err(AuthError::Algorithm);
                }
                self.decode(token, &key.decoding)?
            }
            None => {
                let mut result = Err(unknown);
                for key in set.keys.iter().filter(|k| k.accepts(alg)) {
                    result = self.decode(token, &key.decoding);
                    if !matches!(result, Err(AuthError::Signature)) {
                        break;
                    }
                }
                result?
            }
        };
        Ok(Verified {
            claims,
            key_epoch: Some(set.epoch),
        })
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Claims, AuthError> {
        let rules = match key.family() {
            AlgorithmFamily::Hmac => &self.validations[0],
            AlgorithmFamily::Rsa => &self.validations[1],
            AlgorithmFamily::Ec => &self.validations[2],
            AlgorithmFamily::Ed => &self.validations[3],
        };
        let c = decode::<Claims>(token, key, rules)
            .map_err(map_jwt_error)?
            .claims;
        // `iss` is a single string (RFC 7519 §4.1.1); an array could name
        // the expected issuer beside any other.
        if c.extra.get("iss").is_some_and(|v| !v.is_string()) {
            return Err(AuthError::Claims);
        }
        // `iat` in the future (beyond the leeway) is as suspect as `nbf`.
        if let Some(iat) = c.iat
            && iat > jsonwebtoken::get_current_timestamp() + self.leeway
        {
            return Err(AuthError::NotYetValid);
        }
        Ok(c)
    }
}

/// `JWT` and RFC 9068's `at+jwt` (with or without `application/`) pass.
fn check_typ(typ: Option<&str>) -> Result<(), AuthError> {
    match typ {
        None => Ok(()),
        Some(t) => {
            let t = t.strip_prefix("application/").unwrap_or(t);
            if t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt") {
                Ok(())
            } else {
                Err(AuthError::Malformed)
            }
        }
    }
}

pub fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidIssuer => AuthError::Issuer,
        K::InvalidAudience => AuthError::Audience,
        K::InvalidSignature => AuthError::Signature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::InvalidKeyFormat => AuthError::Algorithm,
        K::MissingRequiredClaim(_) | K::InvalidClaimFormat(_) | K::Json(_) => AuthError::Claims,
        _ => AuthError::Malformed,
    }
}

/// The `jsonwebtoken` algorithm of a configured name.
pub fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}
