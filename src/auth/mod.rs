//! Bearer-token authentication (OAuth 2.1 resource server).
//!
//! ```text
//! request ─► token (Authorization: Bearer, else the configured cookie; never the query)
//!         ─► > 8 KiB? refused before parsing
//!         ─► cache (SHA-256 of the token → identity, until min(exp, ttl)) ─► hit: done
//!         ─► JWT? jwt.rs: key by kid / family (secret or jwks.rs), pinned algorithms, claims
//!            └─ introspection `always`: then also introspect.rs (revocation)
//!         ─► not a JWT and introspection `opaque|always`: introspect.rs
//!         ─► Identity (subject, client, scopes, pre-rendered upstream headers)
//! ```
//!
//! One file per concern: `extract` (where the token is), `jwt` (keys,
//! pinned algorithms, claims), `jwks` (key sets and their refresh),
//! `introspect` (RFC 7662), `cache` (results by token hash), `identity`
//! (claims → upstream headers), `challenge` (what a refused client is
//! told), `error` (why). This module orchestrates them.
//!
//! Keys and rules are prepared when a config is compiled; key sets live in
//! the [`JwksRegistry`] of the `CompileContext`, so reloads keep them.
//! Tokens never reach a log or a metric: rejections are labelled by
//! [`AuthError::reason`].

mod cache;
mod challenge;
mod error;
mod extract;
mod identity;
mod introspect;
pub mod jwks;
mod jwt;

/// Defined with the config rules (the checker refuses what it refuses).
pub use crate::config::fetch_url;
pub use challenge::LoginRedirect;
pub use error::AuthError;
pub use extract::{
    MAX_TOKEN_BYTES, bearer_token, cookie_token, without_cookie, without_cookie_needed,
};
pub use identity::{IDENTITY_HEADERS, Identity};
pub use jwks::{JwksLocation, JwksRefresher, JwksRegistry, JwksSettings};

use crate::config::model::{AuthConfig, IntrospectionConfig, IntrospectionMode};
use cache::{TokenCache, deadline, token_hash};
use http::{HeaderMap, HeaderName, HeaderValue};
use identity::IdentityHeaders;
use jwt::{Claims, JwtVerifier, algorithm};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Cached {
    identity: Arc<Identity>,
    /// Key-set epoch the token was verified under; a changed set re-verifies.
    key_epoch: Option<u64>,
}

/// Verifies tokens for one compiled config.
pub struct Authenticator {
    jwt: JwtVerifier,
    introspector: Option<introspect::Introspector>,
    mode: IntrospectionMode,
    introspection_ttl: Duration,
    cache: TokenCache<Cached>,
    identity_headers: IdentityHeaders,
    cookie_name: Option<Box<str>>,
    /// Pass `Authorization` on to the upstream of a protected route.
    pub forward_authorization: bool,
    pub login_redirect: Option<LoginRedirect>,
    realm: Box<str>,
    /// Checked here for introspected tokens (`jwt` checks JWTs).
    issuer: Option<String>,
    audience: Option<Vec<String>>,
}

impl Authenticator {
    /// Prepares keys, rules and header names from a checked config. Key
    /// sets come from (and stay in) `registry`; nothing is fetched here.
    /// `extra_roots`: `auth.ca_file`'s certificates, trusted beside the
    /// system's roots for every fetch from the authority.
    pub fn from_config(
        c: &AuthConfig,
        registry: &JwksRegistry,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Self {
        let AuthConfig {
            jwt_secret,
            oauth_service_url,
            token_validation_endpoint,
            leeway_seconds,
            issuer,
            audience,
            jwks_url,
            jwks_refresh_seconds,
            jwks_min_refetch_seconds,
            fetch_timeout_seconds,
            algorithms,
            cookie_name,
            introspection,
            cache_max_entries,
            login_redirect,
            identity_headers,
            forward_authorization,
            realm,
            // Loaded by the compiler into `extra_roots`.
            ca_file: _,
        } = c;
        let client = registry.client(extra_roots);
        let timeout = fetch_timeout_seconds.duration();
        let location = match (jwks_url, oauth_service_url) {
            (Some(u), _) => Some(JwksLocation::Url(u.clone())),
            (None, Some(base)) => Some(JwksLocation::Discover(base.clone())),
            (None, None) => None,
        };
        let jwks = location.map(|l| {
            registry.source(
                l,
                JwksSettings {
                    refresh: jwks_refresh_seconds.duration(),
                    min_refetch: jwks_min_refetch_seconds.duration(),
                    timeout,
                },
                client.clone(),
            )
        });
        let jwt = JwtVerifier::new(
            jwt_secret.as_deref(),
            jwks,
            algorithms
                .as_ref()
                .map(|v| v.iter().map(|a| algorithm(*a)).collect()),
            leeway_seconds.get(),
            issuer.as_deref(),
            audience.as_deref(),
        );
        let IntrospectionConfig {
            mode,
            client_id,
            client_secret,
            cache_ttl_seconds,
        } = introspection;
        let introspector = match (mode, oauth_service_url, token_validation_endpoint) {
            (IntrospectionMode::Off, _, _) => None,
            (_, Some(base), Some(ep)) => Some(introspect::Introspector {
                url: format!("{}{ep}", base.trim_end_matches('/')),
                basic: client_id.clone().zip(client_secret.clone()),
                timeout,
                client,
                last_error: Default::default(),
            }),
            _ => None, // refused by the checks
        };
        Authenticator {
            jwt,
            introspector,
            mode: *mode,
            introspection_ttl: cache_ttl_seconds.duration(),
            cache: TokenCache::new(*cache_max_entries),
            identity_headers: IdentityHeaders::from_config(identity_headers),
            cookie_name: cookie_name.as_deref().map(Into::into),
            forward_authorization: *forward_authorization,
            login_redirect: login_redirect.as_ref().map(|l| LoginRedirect {
                url: l.url.as_str().into(),
                return_parameter: l.return_parameter.as_str().into(),
            }),
            realm: realm.as_str().into(),
            issuer: issuer.clone(),
            audience: audience.clone(),
        }
    }

    /// The cookie a token may come in (`auth.cookie_name`).
    pub fn cookie_name(&self) -> Option<&str> {
        self.cookie_name.as_deref()
    }

    /// Headers removed from every incoming request (identity headers).
    pub fn stripped_headers(&self) -> &[HeaderName] {
        self.identity_headers.stripped()
    }

    /// The `WWW-Authenticate` challenge for a refusal (RFC 6750 §3).
    pub fn challenge(&self, e: AuthError, required_scopes: &[Box<str>]) -> HeaderValue {
        challenge::challenge(&self.realm, e, required_scopes)
    }

    /// The request's token: `Authorization: Bearer`, else the configured
    /// cookie. Never the query string.
    pub fn token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        bearer_token(headers).or_else(|| cookie_token(headers, self.cookie_name.as_deref()?))
    }

    /// Verifies `token`, from the cache when it was verified before.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let key = token_hash(token);
        if let Some(hit) = self.cache.get(&key) {
            let fresh = match (hit.key_epoch, &self.jwt.jwks) {
                (Some(e), Some(j)) => j.epoch() == e,
                _ => true,
            };
            if fresh {
                return Ok(hit.identity);
            }
            self.cache.remove(&key);
        }
        let (identity, until, key_epoch) = self.verify_fresh(token).await?;
        self.cache.insert(
            key,
            Cached {
                identity: identity.clone(),
                key_epoch,
            },
            until,
        );
        Ok(identity)
    }

    /// Verifies `token` without the cache (what a cache miss costs).
    pub async fn verify_uncached(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        Ok(self.verify_fresh(token).await?.0)
    }

    async fn verify_fresh(
        &self,
        token: &str,
    ) -> Result<(Arc<Identity>, Instant, Option<u64>), AuthError> {
        match jsonwebtoken::decode_header(token) {
            Ok(header) => {
                let v = self.jwt.verify(token, &header).await?;
                let ttl = if self.mode == IntrospectionMode::Always {
                    // The signature is good; the authority says whether it was revoked.
                    self.introspect(token).await?;
                    Some(self.introspection_ttl)
                } else {
                    None
                };
                let until = deadline(v.claims.exp, ttl);
                Ok((
                    Arc::new(self.identity_headers.render(&v.claims)?),
                    until,
                    v.key_epoch,
                ))
            }
            Err(_) if self.mode != IntrospectionMode::Off => {
                let claims = self.introspect(token).await?;
                self.check_introspected(&claims)?;
                let until = deadline(claims.exp, Some(self.introspection_ttl));
                Ok((
                    Arc::new(self.identity_headers.render(&claims)?),
                    until,
                    None,
                ))
            }
            Err(_) => Err(AuthError::Malformed),
        }
    }

    /// The configured `issuer` and `audience` hold for introspected tokens
    /// too (RFC 7662 answers carry `iss` and `aud`): an opaque token issued
    /// for another API of the same authority is refused.
    fn check_introspected(&self, c: &Claims) -> Result<(), AuthError> {
        if let Some(iss) = &self.issuer
            && c.extra.get("iss").and_then(|v| v.as_str()) != Some(iss)
        {
            return Err(AuthError::Issuer);
        }
        if let Some(aud) = &self.audience {
            let ok = match c.extra.get("aud") {
                Some(serde_json::Value::String(a)) => aud.contains(a),
                Some(serde_json::Value::Array(v)) => v
                    .iter()
                    .any(|a| a.as_str().is_some_and(|a| aud.iter().any(|x| x == a))),
                _ => false,
            };
            if !ok {
                return Err(AuthError::Audience);
            }
        }
        Ok(())
    }

    async fn introspect(&self, token: &str) -> Result<Claims, AuthError> {
        let i = self.introspector.as_ref().ok_or(AuthError::Unavailable)?;
        i.introspect(token).await?.ok_or(AuthError::Inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::JwtAlgorithm;
    use jsonwebtoken::Algorithm;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const RSA: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa1.pem");
    const RSA_PUB: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa1.pub.pem");
    const EC: &[u8] = include_bytes!("../../tests/fixtures/keys/ec1.pem");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn config() -> AuthConfig {
        AuthConfig {
            jwt_secret: Some(SECRET.into()),
            leeway_seconds: crate::config::model::WholeSeconds::lit(0),
            jwks_url: Some("http://127.0.0.1:9/jwks".into()),
            fetch_timeout_seconds: crate::config::model::Seconds::lit(0.2),
            ..AuthConfig::default()
        }
    }

    /// An authenticator with the RSA and EC test keys installed (no network).
    fn auth_with(c: AuthConfig) -> Authenticator {
        let reg = JwksRegistry::default();
        let a = Authenticator::from_config(&c, &reg, &[]);
        let mut rsa = Jwk::from_encoding_key(&rsa_key(), Algorithm::RS256).unwrap();
        rsa.common.key_id = Some("rsa1".into());
        let mut ec = Jwk::from_encoding_key(&ec_key(), Algorithm::ES256).unwrap();
        ec.common.key_id = Some("ec1".into());
        let set = JwkSet {
            keys: vec![rsa, ec],
        };
        a.jwt
            .jwks
            .as_ref()
            .unwrap()
            .install(&serde_json::to_vec(&set).unwrap())
            .unwrap();
        a
    }

    fn auth() -> Authenticator {
        auth_with(config())
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA).unwrap()
    }

    fn ec_key() -> EncodingKey {
        EncodingKey::from_ec_pem(EC).unwrap()
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn signed(
        alg: Algorithm,
        kid: Option<&str>,
        key: &EncodingKey,
        claims: serde_json::Value,
    ) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(Into::into);
        encode(&h, &claims, key).unwrap()
    }

    fn verify(a: &Authenticator, t: &str) -> Result<Arc<Identity>, AuthError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(a.authenticate(t))
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn accepts_a_valid_hs256_token_and_renders_identity_headers() {
        let t = hs(json!({"sub": "alice", "exp": now() + 60, "scope": "read write", "azp": "cli"}));
        let id = verify(&auth(), &t).unwrap();
        assert_eq!(id.subject.as_deref(), Some("alice"));
        assert_eq!(id.client_id.as_deref(), Some("cli"));
        assert_eq!(id.scopes, ["read", "write"]);
        let h: Vec<_> = id
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert!(h.contains(&("x-user-id", "alice")));
        assert!(h.contains(&("x-user-scopes", "read write")));
        assert!(h.contains(&("x-client-id", "cli")));
    }

    #[test]
    fn accepts_rs256_es256_and_at_jwt_by_kid_or_family() {
        let a = auth();
        let claims = json!({"sub": "svc", "exp": now() + 60, "scp": ["a", "b"]});
        let t = signed(Algorithm::RS256, Some("rsa1"), &rsa_key(), claims.clone());
        assert_eq!(verify(&a, &t).unwrap().scopes, ["a", "b"]);
        let t = signed(Algorithm::RS256, None, &rsa_key(), claims.clone());
        assert!(
            verify(&a, &t).is_ok(),
            "no kid: the RSA family finds the key"
        );
        let t = signed(Algorithm::PS256, Some("rsa1"), &rsa_key(), claims.clone());
        assert_eq!(
            verify(&a, &t),
            Err(AuthError::Algorithm),
            "the JWK pins RS256"
        );
        let t = signed(Algorithm::ES256, Some("ec1"), &ec_key(), claims.clone());
        assert!(verify(&a, &t).is_ok());
        let mut h = Header::new(Algorithm::RS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some("rsa1".into());
        assert!(verify(&a, &encode(&h, &claims, &rsa_key()).unwrap()).is_ok());
        h.typ = Some("JWE".into());
        assert_eq!(
            verify(&a, &encode(&h, &claims, &rsa_key()).unwrap()),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn refuses_bad_tokens() {
        let a = auth();
        let e = |t: &str| verify(&a, t).unwrap_err();
        assert_eq!(
            e(&hs(json!({"sub": "a", "exp": now() - 10}))),
            AuthError::Expired
        );
        assert_eq!(e(&hs(json!({"sub": "a"}))), AuthError::Claims);
        assert_eq!(
            e(&hs(json!({"exp": now() + 60, "nbf": now() + 600}))),
            AuthError::NotYetValid
        );
        assert_eq!(
            e(&hs(json!({"exp": now() + 60, "iat": now() + 600}))),
            AuthError::NotYetValid
        );
        assert_eq!(e("abc.def"), AuthError::Malformed);
        assert_eq!(e("!!!.***.???"), AuthError::Malformed);
        assert_eq!(e(&"a".repeat(MAX_TOKEN_BYTES + 1)), AuthError::TooLarge);
        let other = encode(
            &Header::default(),
            &json!({"exp": now() + 60}),
            &EncodingKey::from_secret(b"another secret that is long enough!!"),
        )
        .unwrap();
        assert_eq!(e(&other), AuthError::Signature);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"exp":{}}}"#, now() + 60))
        );
        assert_eq!(e(&none), AuthError::Malformed);
        // ES256 token claiming the RSA key's kid.
        let t = signed(
            Algorithm::ES256,
            Some("rsa1"),
            &ec_key(),
            json!({"exp": now() + 60}),
        );
        assert_eq!(e(&t), AuthError::Algorithm);
    }

    #[test]
    fn refuses_hs256_signed_with_the_rsa_public_key() {
        let a = auth();
        let confused = EncodingKey::from_secret(RSA_PUB);
        let claims = json!({"sub": "mallory", "exp": now() + 60});
        let with_kid = signed(Algorithm::HS256, Some("rsa1"), &confused, claims.clone());
        assert_eq!(verify(&a, &with_kid), Err(AuthError::Algorithm));
        let without = signed(Algorithm::HS256, None, &confused, claims.clone());
        assert_eq!(verify(&a, &without), Err(AuthError::Signature));
        // Without a secret, no HS token passes at all.
        let a = auth_with(AuthConfig {
            jwt_secret: None,
            ..config()
        });
        assert_eq!(verify(&a, &without), Err(AuthError::Algorithm));
    }

    #[test]
    fn the_algorithm_list_pins_what_passes() {
        let a = auth_with(AuthConfig {
            algorithms: Some(vec![JwtAlgorithm::RS256]),
            ..config()
        });
        let claims = json!({"exp": now() + 60});
        assert_eq!(verify(&a, &hs(claims.clone())), Err(AuthError::Algorithm));
        let ps = signed(Algorithm::PS256, Some("rsa1"), &rsa_key(), claims.clone());
        assert_eq!(verify(&a, &ps), Err(AuthError::Algorithm));
        let rs = signed(Algorithm::RS256, Some("rsa1"), &rsa_key(), claims);
        assert!(verify(&a, &rs).is_ok());
    }

    #[test]
    fn checks_issuer_and_audience() {
        let a = auth_with(AuthConfig {
            issuer: Some("https://auth.example".into()),
            audience: Some(vec!["gateway".into()]),
            ..config()
        });
        let good = json!({"exp": now() + 60, "iss": "https://auth.example", "aud": "gateway"});
        assert!(verify(&a, &hs(good)).is_ok());
        let t = hs(json!({"exp": now() + 60, "iss": "https://evil", "aud": "gateway"}));
        assert_eq!(verify(&a, &t), Err(AuthError::Issuer));
        let t = hs(json!({"exp": now() + 60, "iss": "https://auth.example", "aud": "other"}));
        assert_eq!(verify(&a, &t), Err(AuthError::Audience));
    }

    #[test]
    fn introspected_tokens_meet_the_configured_issuer_and_audience() {
        let a = auth_with(AuthConfig {
            issuer: Some("https://auth.example".into()),
            audience: Some(vec!["gateway".into()]),
            ..config()
        });
        let claims = |v: serde_json::Value| serde_json::from_value::<Claims>(v).unwrap();
        let ok = claims(json!({"iss": "https://auth.example", "aud": ["other", "gateway"]}));
        assert_eq!(a.check_introspected(&ok), Ok(()));
        let ok = claims(json!({"iss": "https://auth.example", "aud": "gateway"}));
        assert_eq!(a.check_introspected(&ok), Ok(()));
        for (c, e) in [
            (json!({"aud": "gateway"}), AuthError::Issuer),
            (
                json!({"iss": "https://evil", "aud": "gateway"}),
                AuthError::Issuer,
            ),
            (json!({"iss": "https://auth.example"}), AuthError::Audience),
            (
                json!({"iss": "https://auth.example", "aud": "other"}),
                AuthError::Audience,
            ),
        ] {
            assert_eq!(a.check_introspected(&claims(c.clone())), Err(e), "{c}");
        }
    }

    #[test]
    fn caches_by_hash_and_reverifies_after_a_key_change() {
        let a = auth();
        let t = signed(
            Algorithm::RS256,
            Some("rsa1"),
            &rsa_key(),
            json!({"exp": now() + 60}),
        );
        assert!(verify(&a, &t).is_ok());
        assert_eq!(a.cache.entries(), 1);
        assert!(verify(&a, &t).is_ok());
        // The key set loses rsa1: the cached result is not trusted any more.
        let mut ec = Jwk::from_encoding_key(&ec_key(), Algorithm::ES256).unwrap();
        ec.common.key_id = Some("ec1".into());
        let set = serde_json::to_vec(&JwkSet { keys: vec![ec] }).unwrap();
        a.jwt.jwks.as_ref().unwrap().install(&set).unwrap();
        assert_eq!(verify(&a, &t), Err(AuthError::UnknownKey));
    }

    #[test]
    fn the_bearer_header_wins_over_the_cookie() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; session=tok".parse().unwrap());
        let a = Authenticator::from_config(
            &AuthConfig {
                cookie_name: Some("session".into()),
                ..config()
            },
            &JwksRegistry::default(),
            &[],
        );
        assert_eq!(a.token(&h), Some("tok"));
        h.insert("authorization", "Bearer hdr".parse().unwrap());
        assert_eq!(a.token(&h), Some("hdr"), "the header wins over the cookie");
    }
}
