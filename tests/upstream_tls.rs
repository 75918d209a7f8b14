//! HTTPS outward: upstreams over TLS (a rustls stand-in with a test CA
//! made here), their health checks over HTTPS, mutual TLS, and a real
//! identity provider (`oidc-provider`) whose discovery, JWKS and
//! introspection are served over HTTPS only.

mod common;

use common::oidc::{OIDC_CLIENT, client_credentials_with, start_oidc_tls};
use common::tls_upstream::{TestCa, TlsUpstream};
use common::{Gateway, client, eventually, refused_addr};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `upstreams: app` over TLS with `tls` (inline YAML mapping body), one
/// public route to it, and `extra` (e.g. a `health_check:` section).
fn tls_config(servers: &[std::net::SocketAddr], tls: &str, extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "upstreams:\n  app:\n    servers: [{}]\n    tls: {{ {tls} }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n{extra}",
        list.join(", ")
    )
}

const NO_CHECKS: &str = "health_check: { enabled: false }\n";

async fn get(gw: &Gateway, path: &str) -> (u16, Value) {
    let resp = client().get(gw.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn ca_line(path: &Path) -> String {
    format!("ca_file: \"{}\"", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_served_over_pooled_connections() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let up = TlsUpstream::start(
        "billing",
        ca.leaf(&["localhost", "127.0.0.1"]).server_config(None),
    )
    .await;
    let gw = Gateway::start(&tls_config(&[up.addr], &ca_line(&ca_file), NO_CHECKS));
    // One keep-alive client, one request at a time: one upstream connection.
    let c = client();
    for i in 0..20 {
        let resp = c.get(gw.url(&format!("/x/{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", gw.log());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["app"], "billing");
        assert_eq!(body["path"], format!("/x/{i}"));
    }
    assert_eq!(up.requests(), 20);
    let handshakes = up.handshakes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        handshakes <= 2,
        "20 requests took {handshakes} TLS handshakes: connections are not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_health_checks_take_a_dead_server_out_and_bring_it_back() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    let mut a = TlsUpstream::start("a", leaf.server_config(None)).await;
    let b = TlsUpstream::start("b", leaf.server_config(None)).await;
    let gw = Gateway::start(&tls_config(
        &[a.addr, b.addr],
        &ca_line(&ca_file),
        "health_check: { interval_seconds: 0.2, timeout_seconds: 1, healthy_threshold: 1, unhealthy_threshold: 1 }\n",
    ));
    // The servers speak TLS only: a check that arrives came over HTTPS.
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.health_checks() > 0 && b.health_checks() > 0
        })
        .await,
        "no HTTPS health check arrived; log:\n{}",
        gw.log()
    );
    let apps = |n: usize| {
        let gw = &gw;
        async move {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (status, body) = get(gw, "/x").await;
                assert_eq!(status, 200, "{}", gw.log());
                seen.push(body["app"].as_str().unwrap_or("").to_string());
            }
            seen
        }
    };
    let seen = apps(4).await;
    assert!(seen.iter().any(|s| s == "a") && seen.iter().any(|s| s == "b"));

    a.stop().await;
    gw.wait_log("server is unhealthy");
    assert!(
        apps(6).await.iter().all(|s| s == "b"),
        "a is out of rotation"
    );

    a.restart().await;
    gw.wait_log("server is healthy again");
    assert!(
        eventually(Duration::from_secs(10), || async {
            apps(2).await.iter().any(|s| s == "a")
        })
        .await,
        "a is back in rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_a_502_an_error_naming_the_server_and_a_health_failure() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let trusted = TestCa::new("the CA the gateway trusts");
    let other = TestCa::new("some other CA");
    let ca_file = trusted.write(dir.path(), "ca");
    let up = TlsUpstream::start(
        "impostor",
        other.leaf(&["localhost", "127.0.0.1"]).server_config(None),
    )
    .await;
    let gw = Gateway::start(&tls_config(
        &[up.addr],
        &ca_line(&ca_file),
        "health_check: { interval_seconds: 3600, unhealthy_threshold: 2 }\n",
    ));
    let (status, body) = get(&gw, "/x").await;
    assert_eq!(status, 502, "{body}\n{}", gw.log());
    assert_eq!(body["error"], "TLS handshake with the upstream failed");
    assert!(body["request_id"].is_string());
    let log = gw.wait_log("TLS handshake with the upstream server failed");
    let line = log
        .lines()
        .find(|l| l.contains("TLS handshake with the upstream server failed"))
        .unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&up.addr.to_string()),
        "names the server: {line}"
    );
    assert!(line.contains("UnknownIssuer"), "says why: {line}");
    assert_eq!(up.requests(), 0, "nothing was sent to an unverified server");
    // The first probe and the request both failed: out of rotation.
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&gw, "/x").await.0 == 503
        })
        .await,
        "the failures count against the server; log:\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_a_502_and_verify_false_accepts_anything() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let up = TlsUpstream::start(
        "billing",
        ca.leaf(&["billing.internal"]).server_config(None),
    )
    .await;
    // The servers are listed by IP: the name checked is the IP's, unless sni says otherwise.
    let gw = Gateway::start(&tls_config(&[up.addr], &ca_line(&ca_file), NO_CHECKS));
    let (status, body) = get(&gw, "/x").await;
    assert_eq!(status, 502, "{body}");
    let log = gw.wait_log("TLS handshake with the upstream server failed");
    assert!(log.contains("not valid for name"), "{log}");

    let gw = Gateway::start(&tls_config(
        &[up.addr],
        &format!("sni: billing.internal, {}", ca_line(&ca_file)),
        NO_CHECKS,
    ));
    assert_eq!(get(&gw, "/x").await.0, 200, "{}", gw.log());

    let gw = Gateway::start(&tls_config(&[up.addr], "sni: other.internal", NO_CHECKS));
    assert_eq!(get(&gw, "/x").await.0, 502, "wrong name and unknown CA");

    // verify: false: encrypted, not authenticated (validate warns).
    let gw = Gateway::start(&tls_config(&[up.addr], "verify: false", NO_CHECKS));
    assert_eq!(get(&gw, "/x").await.0, 200, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_a_client_certificate_is_accepted_and_its_absence_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream CA");
    let clients = TestCa::new("client CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (cert, key) = clients
        .leaf(&["gateway.internal"])
        .write(dir.path(), "client");
    let up = TlsUpstream::start(
        "vault",
        ca.leaf(&["127.0.0.1"]).server_config(Some(&clients)),
    )
    .await;
    let gw = Gateway::start(&tls_config(
        &[up.addr],
        &format!(
            "{}, client_cert_file: \"{}\", client_key_file: \"{}\"",
            ca_line(&ca_file),
            cert.display(),
            key.display()
        ),
        "health_check: { interval_seconds: 0.2, healthy_threshold: 1 }\n",
    ));
    let (status, body) = get(&gw, "/x").await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert_eq!(body["app"], "vault");
    assert!(
        eventually(Duration::from_secs(10), || async { up.health_checks() > 0 }).await,
        "health checks present the client certificate too"
    );

    // Without a client certificate the server refuses the handshake.
    let refused_before = up.refused.load(std::sync::atomic::Ordering::Relaxed);
    let gw = Gateway::start(&tls_config(&[up.addr], &ca_line(&ca_file), NO_CHECKS));
    let (status, _) = get(&gw, "/x").await;
    assert_eq!(status, 502, "{}", gw.log());
    assert!(up.refused.load(std::sync::atomic::Ordering::Relaxed) > refused_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_ca_file_never_reuses_a_connection_verified_under_the_old_one() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let right = TestCa::new("the upstream's CA");
    let wrong = TestCa::new("another CA");
    let (right_file, wrong_file) = (
        right.write(dir.path(), "right"),
        wrong.write(dir.path(), "wrong"),
    );
    let up = TlsUpstream::start("app", right.leaf(&["127.0.0.1"]).server_config(None)).await;
    let gw = Gateway::start(&tls_config(&[up.addr], &ca_line(&wrong_file), NO_CHECKS));
    assert_eq!(get(&gw, "/x").await.0, 502);
    gw.write_config(&tls_config(&[up.addr], &ca_line(&right_file), NO_CHECKS));
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&gw, "/x").await.0 == 200
        })
        .await,
        "the reload's ca_file applies; log:\n{}",
        gw.log()
    );
    // A connection verified under the right CA sits in the pool: a reload
    // back to the wrong one must not take it.
    gw.write_config(&tls_config(&[up.addr], &ca_line(&wrong_file), NO_CHECKS));
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&gw, "/x").await.0 == 502
        })
        .await,
        "a pooled connection outlived its trust; log:\n{}",
        gw.log()
    );
}

fn validate(dir: &Path, body: &str) -> (bool, String) {
    let (code, text) = common::validate_config(dir, body, &[]);
    (code == 0, text)
}

#[test]
fn validate_checks_every_ca_file_and_client_pair() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(d, "ca");
    let (cert, key) = ca.leaf(&["gateway.internal"]).write(d, "client");
    let (_, other_key) = ca.leaf(&["other"]).write(d, "other");
    std::fs::write(d.join("junk.pem"), "not a certificate\n").unwrap();
    let base = |tls: &str, auth: &str| {
        format!(
            "upstreams:\n  app:\n    servers: [\"127.0.0.1:8443\"]\n    tls: {{ {tls} }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nhealth_check: {{ enabled: false }}\nauth:\n  jwks_url: \"https://idp.example/jwks\"\n{auth}"
        )
    };
    let (ok, out) = validate(
        d,
        &base(
            &format!(
                "{}, client_cert_file: \"{}\", client_key_file: \"{}\"",
                ca_line(&ca_file),
                cert.display(),
                key.display()
            ),
            &format!("  {}\n", ca_line(&ca_file)),
        ),
    );
    assert!(ok, "a good config, https JWKS included: {out}");

    let cases: &[(String, String, &str)] = &[
        (
            "ca_file: \"/no/such/ca.pem\"".into(),
            String::new(),
            "upstreams.app.tls.ca_file: cannot read /no/such/ca.pem",
        ),
        (
            format!("ca_file: \"{}\"", d.join("junk.pem").display()),
            String::new(),
            "upstreams.app.tls.ca_file:",
        ),
        (
            format!(
                "client_cert_file: \"{}\", client_key_file: \"{}\"",
                cert.display(),
                other_key.display()
            ),
            String::new(),
            "upstreams.app.tls.client_key_file: key",
        ),
        (
            format!("client_cert_file: \"{}\"", cert.display()),
            String::new(),
            "upstreams.app.tls.client_cert_file: a client certificate needs its key",
        ),
        (
            "sni: \"not a name\"".into(),
            String::new(),
            "upstreams.app.tls.sni: \"not a name\" is not a DNS name or an IP address",
        ),
        (
            String::new(),
            "  ca_file: \"/no/such/auth-ca.pem\"\n".into(),
            "auth.ca_file: cannot read /no/such/auth-ca.pem",
        ),
    ];
    for (tls, auth, expected) in cases {
        let (ok, out) = validate(d, &base(tls, auth));
        assert!(!ok, "{tls} {auth}: {out}");
        assert!(
            out.contains(expected),
            "{tls} {auth}: expected {expected:?} in\n{out}"
        );
    }
    let (ok, out) = validate(d, &base("verify: false", ""));
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "upstreams.app.tls.verify: warning: the servers' certificates are not checked"
        ),
        "{out}"
    );
}

/// A reqwest client trusting only `ca` (for the test's own calls to the provider).
fn trusting(ca: &TestCa) -> reqwest::Client {
    init();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// A protected route to a plain stand-in, and `auth`.
fn auth_config(app: &common::Upstream, auth: &str) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/api/*\", upstream: app }}\nhealth_check: {{ enabled: false }}\nauth:\n{auth}",
        app.addr
    )
}

async fn call(gw: &Gateway, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .get(gw.url("/api/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_over_https_issues_jwts_and_opaque_tokens_that_pass() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("identity provider CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(dir.path(), "idp");
    let oidc = start_oidc_tls(&cert, &key).await;
    assert!(oidc.issuer.starts_with("https://"));
    let app = common::Upstream::start("app").await;
    let auth = |extra: &str| {
        format!(
            "  oauth_service_url: \"{iss}\"\n  token_validation_endpoint: /token/introspection\n  issuer: \"{iss}\"\n  introspection: {{ mode: opaque, client_id: {}, client_secret: {} }}\n  jwks_min_refetch_seconds: 0\n{extra}",
            OIDC_CLIENT.0,
            OIDC_CLIENT.1,
            iss = oidc.issuer
        )
    };
    let gw = Gateway::start(&auth_config(
        &app,
        &auth(&format!("  {}\n", ca_line(&ca_file))),
    ));
    let idp = trusting(&ca);
    // An RS256 JWT: discovery and JWKS fetched over HTTPS.
    let jwt = client_credentials_with(&idp, &oidc, "&resource=urn%3Agateway").await;
    assert_eq!(jwt.matches('.').count(), 2, "a JWT");
    let (status, _, body) = call(&gw, &jwt).await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert_eq!(body["headers"]["x-client-id"], "svc");
    // An opaque token: introspected over HTTPS.
    let opaque = client_credentials_with(&idp, &oidc, "").await;
    assert!(!opaque.contains('.'), "opaque");
    let (status, _, body) = call(&gw, &opaque).await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert_eq!(body["headers"]["x-client-id"], "svc");

    // Without the provider's CA: its certificate is refused, the tokens get
    // 503 (retry later), never 401, and the cause is logged once with the URL.
    let gw = Gateway::start(&auth_config(&app, &auth("")));
    for _ in 0..3 {
        let (status, headers, body) = call(&gw, &jwt).await;
        assert_eq!(status, 503, "{body}\n{}", gw.log());
        assert_eq!(headers["retry-after"], "5");
    }
    let (status, _, _) = call(&gw, &opaque).await;
    assert_eq!(status, 503);
    let log = gw.wait_log("key set refresh failed");
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("key set refresh failed;"))
        .collect();
    assert_eq!(failures.len(), 1, "once per cause:\n{log}");
    assert!(failures[0].contains(&oidc.issuer), "{}", failures[0]);
    assert!(
        failures[0].contains("UnknownIssuer") || failures[0].contains("certificate"),
        "{}",
        failures[0]
    );
    let log = gw.wait_log("introspection unavailable");
    assert!(
        log.contains(&format!("{}/token/introspection", oidc.issuer)),
        "{log}"
    );
}

/// An RS256 token naming key `kid`, signed with a fixture key.
fn rs256_token(kid: &str) -> String {
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("fixtures/keys/rsa1.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let claims = serde_json::json!({"sub": "alice", "exp": common::now() + 600});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// Serves `body` as JSON to every request (a discovery document).
async fn serve_json(body: String) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_from_the_start_is_503_not_401() {
    init();
    let app = common::Upstream::start("app").await;
    let (down, _hold) = refused_addr();
    let gw = Gateway::start(&auth_config(
        &app,
        &format!(
            "  oauth_service_url: \"https://{down}\"\n  token_validation_endpoint: /introspect\n  introspection: {{ mode: opaque }}\n"
        ),
    ));
    let (status, headers, body) = call(&gw, &rs256_token("k1")).await;
    assert_eq!(status, 503, "{body}\n{}", gw.log());
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(body["error"], "authorization server unavailable");
    let (status, _, _) = call(&gw, "an-opaque-token").await;
    assert_eq!(status, 503);

    // An http discovery document whose jwks_uri is https, and that JWKS down.
    let (addr, _task) = serve_json(
        serde_json::json!({"issuer": "http://idp", "jwks_uri": format!("https://{down}/jwks")})
            .to_string(),
    )
    .await;
    let gw = Gateway::start(&auth_config(
        &app,
        &format!("  oauth_service_url: \"http://{addr}\"\n"),
    ));
    let (status, _, body) = call(&gw, &rs256_token("k1")).await;
    assert_eq!(status, 503, "not a 401 re-login loop: {body}\n{}", gw.log());
}
