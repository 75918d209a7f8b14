//! Operator stories for authentication: the real gateway binary between a
//! client and a stand-in app, with a stand-in authority (JWKS, metadata,
//! introspection) on 127.0.0.1:0, and a real OAuth 2.1 server
//! (`oidc-provider`) for the last stories.

mod common;

use bytes::Bytes;
use common::oidc::{OIDC_CLIENT, client_credentials, start_oidc};
use common::*;
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RSA1: &[u8] = include_bytes!("fixtures/keys/rsa1.pem");
const RSA2: &[u8] = include_bytes!("fixtures/keys/rsa2.pem");
const RSA1_PUB: &[u8] = include_bytes!("fixtures/keys/rsa1.pub.pem");
const EC1: &[u8] = include_bytes!("fixtures/keys/ec1.pem");

fn rsa(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC1).unwrap()
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.into());
    j
}

fn signed(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, mut claims: Value) -> String {
    if claims.get("exp").is_none() {
        claims["exp"] = (now() + 600).into();
    }
    let mut h = Header::new(alg);
    h.kid = kid.map(Into::into);
    encode(&h, &claims, key).unwrap()
}

/// A stand-in authority: JWKS at `/jwks` (RFC 8414 metadata only, so
/// discovery must fall back from OpenID's), introspection at `/introspect`.
struct Authority {
    addr: std::net::SocketAddr,
    jwks: Arc<Mutex<JwkSet>>,
    /// Opaque token → introspection answer; unknown tokens are inactive.
    active: Arc<Mutex<HashMap<String, Value>>>,
    jwks_fetches: Arc<AtomicU64>,
    /// Closes every open connection when set.
    stop: tokio::sync::watch::Sender<bool>,
    introspections: Arc<AtomicU64>,
    /// `Authorization` header of the last introspection request.
    last_client_auth: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Authority {
    async fn start(keys: Vec<Jwk>) -> Authority {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut a = Authority {
            addr,
            jwks: Arc::new(Mutex::new(JwkSet { keys })),
            active: Arc::default(),
            jwks_fetches: Arc::default(),
            introspections: Arc::default(),
            last_client_auth: Arc::default(),
            stop: tokio::sync::watch::channel(false).0,
            task: tokio::spawn(async {}),
        };
        let (jwks, active, fetches, intros, last) = (
            a.jwks.clone(),
            a.active.clone(),
            a.jwks_fetches.clone(),
            a.introspections.clone(),
            a.last_client_auth.clone(),
        );
        let stop = a.stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut stopped = stop.subscribe();
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let (jwks, active, fetches, intros, last) = (
                    jwks.clone(),
                    active.clone(),
                    fetches.clone(),
                    intros.clone(),
                    last.clone(),
                );
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (jwks, active, fetches, intros, last) = (
                                jwks.clone(),
                                active.clone(),
                                fetches.clone(),
                                intros.clone(),
                                last.clone(),
                            );
                            async move {
                                use http_body_util::BodyExt;
                                let path = req.uri().path().to_string();
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .map(|v| v.to_str().unwrap().to_string());
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let (status, out) = match path.as_str() {
                                "/jwks" => {
                                    fetches.fetch_add(1, Ordering::SeqCst);
                                    (200, serde_json::to_string(&*jwks.lock().unwrap()).unwrap())
                                }
                                "/.well-known/oauth-authorization-server" => (
                                    200,
                                    json!({"issuer": format!("http://{addr}"), "jwks_uri": format!("http://{addr}/jwks")}).to_string(),
                                ),
                                "/introspect" => {
                                    intros.fetch_add(1, Ordering::SeqCst);
                                    *last.lock().unwrap() = auth;
                                    let form = String::from_utf8_lossy(&body).to_string();
                                    let token = form
                                        .split('&')
                                        .find_map(|kv| kv.strip_prefix("token="))
                                        .unwrap_or("")
                                        .to_string();
                                    let answer = active
                                        .lock()
                                        .unwrap()
                                        .get(&token)
                                        .cloned()
                                        .unwrap_or(json!({"active": false}));
                                    (200, answer.to_string())
                                }
                                _ => (404, "{}".to_string()),
                            };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(out)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        a.task = task;
        a
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The authority becomes unreachable: no listener, no open connection.
    fn go_down(&self) {
        self.task.abort();
        let _ = self.stop.send(true);
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Routes: `/api/*` protected, `/admin/*` protected and needing scope
/// `admin`, `/pub/*` public.
fn config(app: &Upstream, auth: &str) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/api/*\", upstream: app }}\n  - {{ path: \"/admin/*\", upstream: app, required_scopes: [admin] }}\n  - {{ path: \"/pub/*\", upstream: app, auth_required: false }}\nhealth_check: {{ enabled: false }}\nauth:\n{auth}",
        app.addr
    )
}

async fn call(
    gw: &Gateway,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().get(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

fn challenge(h: &reqwest::header::HeaderMap) -> String {
    h.get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_token_is_accepted_and_identity_reaches_the_upstream() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(&app, &format!("  jwt_secret: \"{SECRET}\"\n")));
    let t = token(json!({"sub": "alice", "scope": "read write", "client_id": "portal"}));
    let (status, _, body) = call(&gw, "/api/x", Some(&t)).await;
    assert_eq!(status, 200, "{body}");
    let h = &body["headers"];
    assert_eq!(h["x-user-id"], "alice");
    assert_eq!(h["x-user-scopes"], "read write");
    assert_eq!(h["x-client-id"], "portal");
    assert_eq!(
        h["authorization"],
        format!("Bearer {t}"),
        "forwarded by default"
    );

    // Missing token: a bare challenge with the realm.
    let (status, headers, body) = call(&gw, "/api/x", None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge(&headers), "Bearer realm=\"pingora-gateway\"");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let id = body["request_id"].as_str().unwrap();
    assert!(
        !gw.wait_log(id).contains(&t),
        "a token never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rs256_and_es256_tokens_are_accepted() {
    let app = Upstream::start("app").await;
    let authority = Authority::start(vec![
        jwk(&rsa(RSA1), Algorithm::RS256, "rsa1"),
        jwk(&ec(), Algorithm::ES256, "ec1"),
    ])
    .await;
    let gw = Gateway::start(&config(
        &app,
        &format!("  jwks_url: \"{}/jwks\"\n", authority.url()),
    ));
    let rs = signed(
        Algorithm::RS256,
        Some("rsa1"),
        &rsa(RSA1),
        json!({"sub": "svc-rs"}),
    );
    let (status, _, body) = call(&gw, "/api/x", Some(&rs)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-user-id"], "svc-rs");
    let es = signed(
        Algorithm::ES256,
        Some("ec1"),
        &ec(),
        json!({"sub": "svc-es"}),
    );
    let (status, _, body) = call(&gw, "/api/x", Some(&es)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-user-id"], "svc-es");
    // RFC 9068 access tokens (typ at+jwt) pass like plain JWTs.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".into());
    h.typ = Some("at+jwt".into());
    let at = encode(&h, &json!({"sub": "at", "exp": now() + 60}), &rsa(RSA1)).unwrap();
    assert_eq!(call(&gw, "/api/x", Some(&at)).await.0, 200);
    // A token verified once is served from the cache: still one fetch.
    for _ in 0..3 {
        assert_eq!(call(&gw, "/api/x", Some(&rs)).await.0, 200);
    }
    assert_eq!(authority.jwks_fetches.load(Ordering::SeqCst), 1);

    // A flood of tokens naming an unknown kid: refused, and the authority
    // sees at most one more fetch (single flight, rate-limited).
    let unknown = signed(
        Algorithm::RS256,
        Some("nope"),
        &rsa(RSA1),
        json!({"sub": "x"}),
    );
    let calls = (0..20).map(|_| call(&gw, "/api/x", Some(&unknown)));
    for (status, _, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 401);
    }
    assert!(authority.jwks_fetches.load(Ordering::SeqCst) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_set_is_discovered_from_the_oauth_service_url() {
    let app = Upstream::start("app").await;
    let authority = Authority::start(vec![jwk(&rsa(RSA1), Algorithm::RS256, "rsa1")]).await;
    // No OpenID metadata there (404): RFC 8414's document names the JWKS.
    let gw = Gateway::start(&config(
        &app,
        &format!("  oauth_service_url: \"{}\"\n", authority.url()),
    ));
    let t = signed(
        Algorithm::RS256,
        Some("rsa1"),
        &rsa(RSA1),
        json!({"sub": "d"}),
    );
    let (status, _, body) = call(&gw, "/api/x", Some(&t)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_new_kid_is_fetched_and_removed_key_is_refused() {
    let app = Upstream::start("app").await;
    let authority = Authority::start(vec![jwk(&rsa(RSA1), Algorithm::RS256, "rsa1")]).await;
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  jwks_url: \"{}/jwks\"\n  jwks_refresh_seconds: 1\n  jwks_min_refetch_seconds: 0.2\n",
            authority.url()
        ),
    ));
    let old = signed(
        Algorithm::RS256,
        Some("rsa1"),
        &rsa(RSA1),
        json!({"sub": "old"}),
    );
    assert_eq!(call(&gw, "/api/x", Some(&old)).await.0, 200);

    // The authority rotates: rsa2 published, rsa1 withdrawn.
    *authority.jwks.lock().unwrap() = JwkSet {
        keys: vec![jwk(&rsa(RSA2), Algorithm::RS256, "rsa2")],
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new = signed(
        Algorithm::RS256,
        Some("rsa2"),
        &rsa(RSA2),
        json!({"sub": "new"}),
    );
    let (status, _, body) = call(&gw, "/api/x", Some(&new)).await;
    assert_eq!(status, 200, "a new kid is fetched on first sight: {body}");
    // After the refresh, the withdrawn key verifies nothing, cached or not.
    let fresh_old = signed(
        Algorithm::RS256,
        Some("rsa1"),
        &rsa(RSA1),
        json!({"sub": "old2"}),
    );
    for t in [&old, &fresh_old] {
        let (status, headers, _) = call(&gw, "/api/x", Some(t)).await;
        assert_eq!(status, 401);
        assert!(challenge(&headers).contains("error=\"invalid_token\""));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_401_invalid_token() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let app = Upstream::start("app").await;
    let authority = Authority::start(vec![jwk(&rsa(RSA1), Algorithm::RS256, "rsa1")]).await;
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  jwt_secret: \"{SECRET}\"\n  jwks_url: \"{}/jwks\"\n  issuer: \"https://auth.example\"\n  audience: [gateway]\n  leeway_seconds: 5\n",
            authority.url()
        ),
    ));
    let good = json!({"sub": "a", "iss": "https://auth.example", "aud": "gateway"});
    assert_eq!(call(&gw, "/api/x", Some(&token(good.clone()))).await.0, 200);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let confused = EncodingKey::from_secret(RSA1_PUB);
    let cases: Vec<(&str, String)> = vec![
        ("expired", token(with("exp", (now() - 60).into()))),
        (
            "nbf in the future",
            token(with("nbf", (now() + 600).into())),
        ),
        (
            "wrong issuer",
            token(with("iss", "https://evil.example".into())),
        ),
        ("wrong audience", token(with("aud", "other".into()))),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&with("exp", (now() + 60).into()).to_string())
            ),
        ),
        (
            "HS256 signed with the RSA public key, kid of the RSA key",
            signed(Algorithm::HS256, Some("rsa1"), &confused, good.clone()),
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            signed(Algorithm::HS256, None, &confused, good.clone()),
        ),
        ("malformed base64", "eyJ@@@.!!!.%%%".to_string()),
        (
            "oversize",
            format!("{}.{}.sig", b64("{}"), "a".repeat(9 * 1024)),
        ),
        (
            "signed by another secret",
            token_with("another-secret-0123456789abcdef-xyz", good.clone()),
        ),
    ];
    for (what, t) in cases {
        let (status, headers, body) = call(&gw, "/api/x", Some(&t)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            challenge(&headers),
            "Bearer realm=\"pingora-gateway\", error=\"invalid_token\"",
            "{what}"
        );
    }
    let last_id = body_request_id(&gw).await;
    assert!(
        !gw.wait_log(&last_id).contains(&token(good)),
        "tokens never reach the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scope_is_403_insufficient_scope() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(&app, &format!("  jwt_secret: \"{SECRET}\"\n")));
    let reader = token(json!({"sub": "bob", "scope": "read"}));
    let (status, headers, body) = call(&gw, "/admin/users", Some(&reader)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        challenge(&headers),
        "Bearer realm=\"pingora-gateway\", error=\"insufficient_scope\", scope=\"admin\""
    );
    let admin = token(json!({"sub": "root", "scp": ["read", "admin"]}));
    assert_eq!(call(&gw, "/admin/users", Some(&admin)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_token_is_accepted_and_query_string_token_ignored() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  jwt_secret: \"{SECRET}\"\n  cookie_name: session\n  forward_authorization: false\n"
        ),
    ));
    let t = token(json!({"sub": "carol"}));
    let resp = client()
        .get(gw.url("/api/x"))
        .header("cookie", format!("theme=dark; session={t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["headers"]["x-user-id"],
        "carol"
    );
    for q in ["access_token", "token", "session"] {
        let (status, _, _) = call(&gw, &format!("/api/x?{q}={t}"), None).await;
        assert_eq!(status, 401, "?{q}= is never a token");
    }
    // forward_authorization: false keeps the token from the upstream.
    let (_, _, body) = call(&gw, "/api/x", Some(&t)).await;
    assert_eq!(body["headers"]["authorization"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_public_routes() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  jwt_secret: \"{SECRET}\"\n  identity_headers: {{ sub: X-User-Id, tenant: X-Tenant }}\n"
        ),
    ));
    let resp = client()
        .get(gw.url("/pub/x"))
        .header("x-user-id", "admin")
        .header("x-user-scopes", "admin")
        .header("x-client-id", "root")
        .header("x-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = &resp.json::<Value>().await.unwrap()["headers"];
    for name in ["x-user-id", "x-user-scopes", "x-client-id", "x-tenant"] {
        assert_eq!(h[name], Value::Null, "{name} must not reach the upstream");
    }
    // On a protected route the configured claim map decides.
    let t = token(json!({"sub": "dave", "tenant": "acme", "scope": "x"}));
    let (_, _, body) = call(&gw, "/api/x", Some(&t)).await;
    assert_eq!(body["headers"]["x-user-id"], "dave");
    assert_eq!(body["headers"]["x-tenant"], "acme");
    assert_eq!(body["headers"]["x-user-scopes"], Value::Null, "not mapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_does_not_skip_auth() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(&app, &format!("  jwt_secret: \"{SECRET}\"\n")));
    let (status, _) = raw_get(
        gw.port,
        "/api/ws",
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_active_inactive_cached_and_authority_down() {
    let app = Upstream::start("app").await;
    let authority = Authority::start(vec![]).await;
    authority.active.lock().unwrap().insert(
        "opaque-good".into(),
        json!({"active": true, "sub": "erin", "scope": "read", "client_id": "cli", "exp": now() + 600}),
    );
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  oauth_service_url: \"{}\"\n  token_validation_endpoint: /introspect\n  introspection: {{ mode: opaque, client_id: gateway, client_secret: s3cret }}\n",
            authority.url()
        ),
    ));
    let (status, _, body) = call(&gw, "/api/x", Some("opaque-good")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-user-id"], "erin");
    assert_eq!(body["headers"]["x-client-id"], "cli");
    assert_eq!(
        authority.last_client_auth.lock().unwrap().as_deref(),
        Some("Basic Z2F0ZXdheTpzM2NyZXQ="),
        "the gateway authenticates as its client"
    );
    // Cached: the second request does not reach the authority.
    assert_eq!(call(&gw, "/api/x", Some("opaque-good")).await.0, 200);
    assert_eq!(authority.introspections.load(Ordering::SeqCst), 1);

    let (status, headers, _) = call(&gw, "/api/x", Some("opaque-revoked")).await;
    assert_eq!(status, 401);
    assert!(challenge(&headers).contains("invalid_token"));

    // The authority goes away: fail closed with 503, except for the cached token.
    authority.go_down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, headers, body) = call(&gw, "/api/x", Some("opaque-unknown")).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.get("retry-after").is_some());
    assert_eq!(call(&gw, "/api/x", Some("opaque-good")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirect_for_html_navigations_only() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(
        &app,
        &format!("  jwt_secret: \"{SECRET}\"\n  login_redirect: {{ url: \"/oauth/login\" }}\n"),
    ));
    let nav = client()
        .get(gw.url("/api/page?tab=2"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(nav.status(), 302);
    let port = gw.port;
    assert_eq!(
        nav.headers()["location"],
        format!("/oauth/login?return_to=http%3A%2F%2F127.0.0.1%3A{port}%2Fapi%2Fpage%3Ftab%3D2")
            .as_str()
    );
    // An API call (JSON) and a POST get the 401 challenge.
    let api = client()
        .get(gw.url("/api/page"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let post = client()
        .post(gw.url("/api/page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_oauth_server_jwt_and_opaque_tokens_pass_the_gateway() {
    let oidc = start_oidc().await;
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  oauth_service_url: \"{iss}\"\n  token_validation_endpoint: /token/introspection\n  issuer: \"{iss}\"\n  audience: [\"urn:gateway\"]\n  introspection: {{ mode: opaque, client_id: {}, client_secret: {} }}\n",
            OIDC_CLIENT.0,
            OIDC_CLIENT.1,
            iss = oidc.issuer
        ),
    ));
    // An RS256 JWT access token (typ at+jwt), keys discovered from the issuer.
    let jwt = client_credentials(&oidc, "&resource=urn%3Agateway").await;
    assert_eq!(jwt.matches('.').count(), 2, "a JWT");
    let (status, _, body) = call(&gw, "/api/x", Some(&jwt)).await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert_eq!(body["headers"]["x-client-id"], "svc");
    assert_eq!(body["headers"]["x-user-scopes"], "api:read");
    // An opaque token, checked at its introspection endpoint. Issued for
    // no resource, it carries no `aud`: refused where an audience is set …
    let opaque = client_credentials(&oidc, "").await;
    assert!(!opaque.contains('.'), "opaque");
    let (status, _, body) = call(&gw, "/api/x", Some(&opaque)).await;
    assert_eq!(status, 401, "{body}\n{}", gw.log());
    assert_eq!(body["error"], "wrong audience");
    // … and admitted where only the issuer is required.
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  oauth_service_url: \"{iss}\"\n  token_validation_endpoint: /token/introspection\n  issuer: \"{iss}\"\n  introspection: {{ mode: opaque, client_id: {}, client_secret: {} }}\n",
            OIDC_CLIENT.0,
            OIDC_CLIENT.1,
            iss = oidc.issuer
        ),
    ));
    let (status, _, body) = call(&gw, "/api/x", Some(&opaque)).await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert_eq!(body["headers"]["x-client-id"], "svc");
    let (status, _, _) = call(&gw, "/api/x", Some("not-a-token-it-issued")).await;
    assert_eq!(status, 401, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_always_refuses_a_revoked_jwt() {
    let app = Upstream::start("app").await;
    let authority = Authority::start(vec![]).await;
    let live = token(json!({"sub": "frank"}));
    let revoked = token(json!({"sub": "grace"}));
    authority
        .active
        .lock()
        .unwrap()
        .insert(live.clone(), json!({"active": true, "sub": "frank"}));
    let gw = Gateway::start(&config(
        &app,
        &format!(
            "  jwt_secret: \"{SECRET}\"\n  oauth_service_url: \"{}\"\n  token_validation_endpoint: /introspect\n  introspection: {{ mode: always }}\n",
            authority.url()
        ),
    ));
    assert_eq!(call(&gw, "/api/x", Some(&live)).await.0, 200);
    assert_eq!(
        call(&gw, "/api/x", Some(&revoked)).await.0,
        401,
        "good signature, revoked"
    );
    // A bad signature is refused before the authority is asked.
    let forged = token_with(
        "forged-secret-0123456789abcdef-0123",
        json!({"sub": "frank"}),
    );
    assert_eq!(call(&gw, "/api/x", Some(&forged)).await.0, 401);
    assert_eq!(authority.introspections.load(Ordering::SeqCst), 2);
}

/// The request id of one more rejected call: once it is in the log, every
/// earlier line is too.
async fn body_request_id(gw: &Gateway) -> String {
    let (_, _, body) = call(gw, "/api/x", None).await;
    body["request_id"].as_str().unwrap().to_string()
}
