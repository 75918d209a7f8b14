//! Token verification cost: HS256 and RS256, cold (signature and claims
//! checked) and cached (a token seen before: one SHA-256 and a map lookup).
//!
//! ```text
//! cargo bench --bench auth
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use pingora_gateway::auth::{Authenticator, JwksLocation, JwksRegistry, JwksSettings};
use pingora_gateway::config::model::AuthConfig;
use serde_json::json;
use std::hint::black_box;

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const RSA: &[u8] = include_bytes!("../tests/fixtures/keys/rsa1.pem");
const JWKS_URL: &str = "http://127.0.0.1:9/jwks";

fn authenticator() -> Authenticator {
    let reg = JwksRegistry::default();
    let key = EncodingKey::from_rsa_pem(RSA).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("rsa1".into());
    let body = serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap();
    reg.source(
        JwksLocation::Url(JWKS_URL.into()),
        JwksSettings::default(),
        reg.client(&[]),
    )
    .install(&body)
    .unwrap();
    Authenticator::from_config(
        &AuthConfig {
            jwt_secret: Some(SECRET.into()),
            jwks_url: Some(JWKS_URL.into()),
            ..AuthConfig::default()
        },
        &reg,
        &[],
    )
}

fn tokens() -> [(&'static str, String); 2] {
    let claims = json!({"sub": "alice", "scope": "read write", "client_id": "portal",
        "exp": jsonwebtoken::get_current_timestamp() + 3600});
    let hs = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".into());
    let rs = encode(&h, &claims, &EncodingKey::from_rsa_pem(RSA).unwrap()).unwrap();
    [("hs256", hs), ("rs256", rs)]
}

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = authenticator();
    let mut g = c.benchmark_group("verify");
    for (name, t) in tokens() {
        assert!(rt.block_on(a.verify_uncached(&t)).is_ok());
        g.bench_function(format!("{name}_cold"), |b| {
            b.iter(|| rt.block_on(a.verify_uncached(black_box(&t))))
        });
        assert!(rt.block_on(a.authenticate(&t)).is_ok());
        g.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| rt.block_on(a.authenticate(black_box(&t))))
        });
    }
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
