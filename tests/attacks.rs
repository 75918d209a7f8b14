//! The attack suite, request semantics: each test is one class of attack
//! from the hardening issue, tried against the real binary the way an
//! attacker would, with raw requests no client library would send.
//! (Connection-level attacks — header floods, slowloris, connection caps,
//! the admin listener, logs — are in `attacks_connections.rs`.)

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn upstreams_yaml(ups: &[(&str, &Upstream)]) -> String {
    let mut s = String::from("health_check: { enabled: false }\nupstreams:\n");
    for (name, u) in ups {
        s.push_str(&format!("  {name}: {{ servers: [\"{}\"] }}\n", u.addr));
    }
    s
}

fn auth_yaml(extra: &str) -> String {
    format!("auth:\n  jwt_secret: \"{SECRET}\"\n{extra}")
}

/// The JSON echo of the stand-in upstream in a raw response.
fn echo(text: &str) -> Value {
    raw_json(text)
}

/// Sends `head` (a request head without the final blank line) verbatim.
fn raw(port: u16, head: &str) -> (u16, String) {
    raw_request(port, &format!("{head}\r\nConnection: close\r\n\r\n"))
}

// --- 2. Host narrowing bypass ------------------------------------------------

async fn host_twins() -> (Upstream, Upstream, Gateway) {
    let internal = Upstream::start("internal").await;
    let public = Upstream::start("public").await;
    let body = format!(
        "{}{}routes:\n  - {{ path: \"/x/*\", upstream: internal, host: internal.example }}\n  - {{ path: \"/x/*\", upstream: public, auth_required: false }}\n",
        upstreams_yaml(&[("internal", &internal), ("public", &public)]),
        auth_yaml("")
    );
    let gw = Gateway::start(&body);
    (internal, public, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_cannot_skip_a_host_narrowed_route() {
    let (_i, _p, gw) = host_twins().await;
    // No Host header, absolute-form target: the target's authority is the host.
    let (status, text) = raw_request(
        gw.port,
        "GET http://internal.example/x/secret HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401, "the protected host route must answer: {text}");
    // A Host header that disagrees with the target is refused outright
    // (stricter than RFC 9112 §3.2.2, which lets the target win).
    let (status, text) = raw(
        gw.port,
        "GET http://internal.example/x/secret HTTP/1.1\r\nHost: public.example",
    );
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains("\"app\""), "{text}");
    // With a token the internal upstream answers and sees that Host, in origin form.
    let t = token(json!({"sub": "alice"}));
    let (status, text) = raw(
        gw.port,
        &format!("GET http://INTERNAL.example./x/secret HTTP/1.1\r\nAuthorization: Bearer {t}"),
    );
    assert_eq!(status, 200, "{text}");
    let v = echo(&text);
    assert_eq!(v["app"], "internal");
    assert_eq!(v["headers"]["host"], "internal.example");
    assert_eq!(v["path"], "/x/secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hosts_are_refused_and_canonical_ones_match() {
    let (_i, _p, gw) = host_twins().await;
    for host in [
        "internal.example:80:80",
        "internal.example,public.example",
        "internal.example;x",
        "internal.example/x",
        "internal.example?",
        "internal.example#",
        "internal%2eexample",
        "[internal.example]",
        "user@internal.example",
        "internal.example:",
        "",
    ] {
        let (status, text) = raw(gw.port, &format!("GET /x/a HTTP/1.1\r\nHost: {host}"));
        assert_eq!(status, 400, "Host {host:?}: {text}");
        assert!(!text.contains("\"app\""), "never forwarded: {text}");
    }
    // Case and one trailing dot do not change which route matches.
    for host in [
        "INTERNAL.example",
        "internal.example.",
        "Internal.Example.:8080",
    ] {
        let (status, _) = raw(gw.port, &format!("GET /x/a HTTP/1.1\r\nHost: {host}"));
        assert_eq!(status, 401, "Host {host:?} is the protected host");
    }
    // Two Host headers, and HTTP/1.1 without one.
    let (status, _) = raw(
        gw.port,
        "GET /x/a HTTP/1.1\r\nHost: public.example\r\nHost: internal.example",
    );
    assert_eq!(status, 400);
    let (status, _) = raw(gw.port, "GET /x/a HTTP/1.1");
    assert_eq!(status, 400, "HTTP/1.1 requires Host");
    // HTTP/1.0 may omit it, but the upstream would get HTTP/1.1 without
    // one and fall back to its default virtual host: refused too.
    let (status, text) = raw(gw.port, "GET /x/a HTTP/1.0");
    assert_eq!(status, 400, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_target_that_is_not_utf8_is_refused() {
    let (_i, _p, gw) = host_twins().await;
    // Overlong UTF-8 for "..": routing would see replacement characters,
    // an upstream that decodes overlong forms would see `/x/../..`.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /x/\xC0\xAE\xC0\xAE/secret HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(!text.contains("\"app\""), "{text}");
}

// --- 3. Path parameters ------------------------------------------------------

/// An upstream that treats `;` the way servlet containers do: it drops
/// path parameters from each segment and resolves `..` afterwards, then
/// serves a secret at `/reports/secret`.
async fn java_style_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => n += m,
                    }
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let target = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut segs: Vec<&str> = vec![];
                for seg in target.split('?').next().unwrap().split('/') {
                    match seg.split(';').next().unwrap() {
                        "" | "." => {}
                        ".." => {
                            segs.pop();
                        }
                        s => segs.push(s),
                    }
                }
                let path = format!("/{}", segs.join("/"));
                let body = if path == "/reports/secret" {
                    "SECRET"
                } else {
                    "public"
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_cannot_reach_a_protected_resource_through_a_public_route() {
    let app = java_style_upstream().await;
    let body = format!(
        "health_check: {{ enabled: false }}\nupstreams:\n  app: {{ servers: [\"{app}\"] }}\n{}routes:\n  - {{ path: \"/reports/*\", upstream: app, required_scopes: [reports] }}\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n",
        auth_yaml("")
    );
    let gw = Gateway::start(&body);
    // Sanity: the upstream serves the secret to a routed, authorized request only.
    let (status, text) = raw(gw.port, "GET /reports/secret HTTP/1.1\r\nHost: a");
    assert_eq!(status, 401, "{text}");
    let (status, text) = raw(gw.port, "GET /public HTTP/1.1\r\nHost: a");
    assert_eq!((status, text.ends_with("public")), (200, true), "{text}");
    for path in [
        "/x/..;/reports/secret",
        "/x/.;/../reports/secret",
        "/reports;x/secret",
        "/reports;/secret",
        "/x/%2e%2e;/reports/secret",
        "/reports%3Bx/secret",
        "/x;/../reports/secret",
    ] {
        let (status, text) = raw(gw.port, &format!("GET {path} HTTP/1.1\r\nHost: a"));
        assert_eq!(status, 400, "{path}: {text}");
        assert!(!text.contains("SECRET"), "{path} leaked: {text}");
        assert!(text.contains("path parameters"), "{path}: {text}");
    }
}

// --- 4. Method narrowing -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_case_methods_and_method_overrides_do_not_reach_the_public_twin() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}{}routes:\n  - {{ path: \"/api/*\", upstream: app, methods: [POST, DELETE] }}\n  - {{ path: \"/api/*\", upstream: app, auth_required: false }}\n  - {{ path: \"/legacy/*\", upstream: app, auth_required: false, keep_request_headers: [X-HTTP-Method-Override] }}\n",
        upstreams_yaml(&[("app", &up)]),
        auth_yaml("")
    );
    let gw = Gateway::start(&body);
    for method in ["post", "Post", "delete", "pOST"] {
        let (status, text) = raw(
            gw.port,
            &format!("{method} /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0"),
        );
        assert_eq!(status, 400, "{method}: {text}");
    }
    assert_eq!(up.requests(), 0, "nothing was forwarded");
    let (status, _) = raw(
        gw.port,
        "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0",
    );
    assert_eq!(status, 401, "the protected twin answers POST");
    // Override headers are removed, unless the route keeps them.
    let overrides = "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin";
    let (status, text) = raw(
        gw.port,
        &format!("GET /api/x HTTP/1.1\r\nHost: a\r\n{overrides}"),
    );
    assert_eq!(status, 200);
    let h = &echo(&text)["headers"];
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(h.get(name).is_none(), "{name} forwarded: {h}");
    }
    let (_, text) = raw(
        gw.port,
        &format!("GET /legacy/x HTTP/1.1\r\nHost: a\r\n{overrides}"),
    );
    let h = &echo(&text)["headers"];
    assert_eq!(h["x-http-method-override"], "DELETE", "kept by the route");
    assert!(h.get("x-original-url").is_none());

    // `gateway validate` names the trap.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["validate", "--no-resolve"])
        .arg(&gw.config_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("routes[0].methods: warning: this route is protected only for POST, DELETE; routes[1] (public) answers GET, HEAD, PUT, PATCH, OPTIONS on its paths without a token"),
        "{text}"
    );
}

// --- 5. Claims -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_issuer_and_audience_are_required_and_crit_is_refused() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}{}routes:\n  - {{ path: \"/*\", upstream: app }}\n",
        upstreams_yaml(&[("app", &up)]),
        auth_yaml("  issuer: \"https://auth.example\"\n  audience: [gateway]\n")
    );
    let gw = Gateway::start(&body);
    let call = |t: String| {
        let url = gw.url("/x");
        async move {
            client()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let good = json!({"sub": "a", "iss": "https://auth.example", "aud": "gateway"});
    assert_eq!(call(token(good.clone())).await, 200);
    assert_eq!(
        call(token(json!({"sub": "a", "aud": "gateway"}))).await,
        401,
        "no iss"
    );
    assert_eq!(
        call(token(json!({"sub": "a", "iss": "https://auth.example"}))).await,
        401,
        "no aud"
    );
    assert_eq!(
        call(token(
            json!({"sub": "a", "iss": ["https://auth.example"], "aud": "gateway"})
        ))
        .await,
        401,
        "iss as an array"
    );
    assert_eq!(
        call(token(
            json!({"sub": "a", "iss": ["https://auth.example", "https://evil"], "aud": "gateway"})
        ))
        .await,
        401,
        "iss as an array with another issuer"
    );
    let header = jsonwebtoken::Header {
        crit: Some(vec!["exp".into()]),
        ..Default::default()
    };
    let mut claims = good;
    claims["exp"] = (now() + 600).into();
    let crit = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(call(crit).await, 401, "a crit header is refused");
}

// --- 6. Two Authorization headers ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}{}routes:\n  - {{ path: \"/*\", upstream: app }}\n",
        upstreams_yaml(&[("app", &up)]),
        auth_yaml("")
    );
    let gw = Gateway::start(&body);
    let t = token(json!({"sub": "alice"}));
    let (status, _) = raw(
        gw.port,
        &format!("GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}"),
    );
    assert_eq!(status, 200);
    let (status, text) = raw(
        gw.port,
        &format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nAuthorization: Bearer forged.token.here"
        ),
    );
    assert_eq!(status, 400, "{text}");
    assert_eq!(up.requests(), 1, "the second request never reached the app");
}

// --- 7. Connection header and unrenderable claims -------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_header_cannot_remove_what_the_gateway_sets() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}{}routes:\n  - {{ path: \"/*\", upstream: app }}\n",
        upstreams_yaml(&[("app", &up)]),
        auth_yaml(
            "  identity_headers: { sub: X-User-Id, scopes: X-User-Scopes, email: X-User-Email }\n"
        )
    );
    let gw = Gateway::start(&body);
    let t = token(json!({"sub": "alice", "scope": "read", "email": "a@example.com"}));
    let (status, text) = raw(
        gw.port,
        &format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: X-User-Id, X-User-Scopes, X-User-Email, X-Request-Id, X-Forwarded-Port"
        ),
    );
    assert_eq!(status, 200, "{text}");
    let h = &echo(&text)["headers"];
    assert_eq!(h["x-user-id"], "alice", "{h}");
    assert_eq!(h["x-user-scopes"], "read");
    assert_eq!(h["x-user-email"], "a@example.com");
    assert!(h.get("x-request-id").is_some());
    assert!(h.get("x-forwarded-port").is_some());
    // A claim that cannot be a header value refuses the token.
    for email in [
        json!("a@example.com\r\nX-Admin: 1"),
        json!({"nested": true}),
    ] {
        let t = token(json!({"sub": "bob", "email": email}));
        let r = client()
            .get(gw.url("/x"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "email claim {email}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_checked_credential_reaches_the_upstream() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}{}routes:\n  - {{ path: \"/*\", upstream: app }}\n",
        upstreams_yaml(&[("app", &up)]),
        auth_yaml("  cookie_name: session\n")
    );
    let gw = Gateway::start(&body);
    let t = token(json!({"sub": "alice"}));
    // The token cookie twice: frameworks disagree on which wins, so neither counts.
    let (status, _) = raw(
        gw.port,
        &format!("GET /x HTTP/1.1\r\nHost: a\r\nCookie: session={t}; session=forged"),
    );
    assert_eq!(status, 401);
    let (status, _) = raw(
        gw.port,
        &format!("GET /x HTTP/1.1\r\nHost: a\r\nCookie: session={t}\r\nCookie: session=forged"),
    );
    assert_eq!(status, 401);
    // A verified header: an unverified token cookie beside it is not forwarded.
    let (status, text) = raw(
        gw.port,
        &format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nCookie: theme=dark; session=forged"
        ),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(echo(&text)["headers"]["cookie"], "theme=dark");
    // The cookie alone is the credential, and is forwarded as it is.
    let (status, text) = raw(
        gw.port,
        &format!("GET /x HTTP/1.1\r\nHost: a\r\nCookie: theme=dark; session={t}"),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        echo(&text)["headers"]["cookie"],
        format!("theme=dark; session={t}")
    );
    // Identity values an upstream would read differently once trimmed.
    for sub in [json!("admin\t"), json!(" admin")] {
        let r = client()
            .get(gw.url("/x"))
            .bearer_auth(token(json!({ "sub": sub })))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "sub {sub}");
    }
    let r = client()
        .get(gw.url("/x"))
        .bearer_auth(token(json!({"sub": "a", "scp": ["read admin"]})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a scope with a space");
}

// --- 9. Host into Location ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_host_never_reaches_a_location_header() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}{}routes:\n  - {{ path: \"/app/*\", upstream: app, auth_required: false }}\n  - {{ path: \"/*\", upstream: app }}\n",
        upstreams_yaml(&[("app", &up)]),
        auth_yaml("  login_redirect: { url: \"/oauth/login\" }\n")
    );
    let gw = Gateway::start(&body);
    for host in ["evil.example/phish?", "evil.example#", "evil.example\\x"] {
        // The upstream redirects to itself (rewritten to the client's host) …
        let (status, text) = raw(
            gw.port,
            &format!("GET /app/redirect HTTP/1.1\r\nHost: {host}"),
        );
        assert_eq!(status, 400, "{host}: {text}");
        assert!(!text.to_ascii_lowercase().contains("location:"), "{text}");
        // … and the login redirect's return_to carries the host.
        let (status, text) = raw(
            gw.port,
            &format!("GET /private HTTP/1.1\r\nHost: {host}\r\nAccept: text/html"),
        );
        assert_eq!(status, 400, "{host}: {text}");
        assert!(!text.contains("evil"), "{text}");
    }
    // A valid host comes back canonical, in the rewritten Location too.
    let (status, text) = raw(
        gw.port,
        "GET /app/redirect HTTP/1.1\r\nHost: GW.Example.:8080",
    );
    assert_eq!(status, 302, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("location: http://gw.example:8080/target"),
        "{text}"
    );
    let (status, text) = raw(
        gw.port,
        "GET /private HTTP/1.1\r\nHost: GW.Example.:8080\r\nAccept: text/html",
    );
    assert_eq!(status, 302, "{text}");
    assert!(
        text.contains("return_to=http%3A%2F%2Fgw.example%3A8080%2Fprivate"),
        "{text}"
    );
}

// --- 12. X-Forwarded-For and client-address claims ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let up = Upstream::start("app").await;
    let routes = "routes:\n  - { path: \"/*\", upstream: app, auth_required: false }\n";
    let claims = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 1\r\nTrue-Client-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\nClient-IP: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Prefix: /admin\r\nX-Cluster-Client-IP: 6.6.6.6\r\nFront-End-Https: on";

    // Untrusted (no trusted_proxies): every claim replaced or removed.
    let gw = Gateway::start(&format!("{}{routes}", upstreams_yaml(&[("app", &up)])));
    let (_, text) = raw(
        gw.port,
        &format!("GET /x HTTP/1.1\r\nHost: gw.example\r\n{claims}"),
    );
    let h = &echo(&text)["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gw.example");
    assert_eq!(h["x-forwarded-port"], gw.port.to_string());
    for name in [
        "true-client-ip",
        "x-client-ip",
        "client-ip",
        "x-real-ip",
        "forwarded",
        "x-forwarded-ssl",
        "x-forwarded-prefix",
        "x-cluster-client-ip",
        "front-end-https",
    ] {
        assert!(h.get(name).is_none(), "{name}: {h}");
    }
    let log = gw.wait_log("\"client_ip\":\"127.0.0.1\"");
    assert!(!log.contains("6.6.6.6"), "{log}");
    drop(gw);

    // The loopback peer trusted: kept, extended; the client is the
    // right-most untrusted hop.
    let gw = Gateway::start(&format!(
        "server:\n  trusted_proxies: [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n{}{routes}",
        upstreams_yaml(&[("app", &up)])
    ));
    let (_, text) = raw(
        gw.port,
        "GET /x HTTP/1.1\r\nHost: gw.example\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.9, 10.1.2.3\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 203.0.113.9",
    );
    let h = &echo(&text)["headers"];
    assert_eq!(
        h["x-forwarded-for"],
        "6.6.6.6, 203.0.113.9, 10.1.2.3, 127.0.0.1"
    );
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-real-ip"], "203.0.113.9");
    gw.wait_log("\"client_ip\":\"203.0.113.9\"");
}

// --- 13. Code-read bugs ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_route_with_a_trailing_slash_matches_only_that_path() {
    let (a, b) = (
        Upstream::start("slash").await,
        Upstream::start("bare").await,
    );
    let body = format!(
        "{}routes:\n  - {{ path: \"/admin/\", upstream: a, auth_required: false }}\n  - {{ path: \"/admin\", upstream: b, auth_required: false }}\n",
        upstreams_yaml(&[("a", &a), ("b", &b)])
    );
    let gw = Gateway::start(&body);
    let (_, text) = raw(gw.port, "GET /admin/ HTTP/1.1\r\nHost: a");
    assert_eq!(echo(&text)["app"], "slash");
    let (_, text) = raw(gw.port, "GET /admin HTTP/1.1\r\nHost: a");
    assert_eq!(echo(&text)["app"], "bare");
    let (status, _) = raw(gw.port, "GET /admin/x HTTP/1.1\r\nHost: a");
    assert_eq!(status, 404);
}

#[test]
fn huge_numbers_in_a_config_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for (field, line) in [
        (
            "auth.introspection.cache_ttl_seconds",
            "auth:\n  jwt_secret: \"0123456789abcdef0123456789abcdef\"\n  introspection: { cache_ttl_seconds: 1.0e30 }\n",
        ),
        (
            "auth.leeway_seconds",
            "auth:\n  jwt_secret: \"0123456789abcdef0123456789abcdef\"\n  leeway_seconds: 100000000000000\n",
        ),
        (
            "upstreams.app.read_timeout_seconds",
            "upstreams:\n  app: { servers: [\"127.0.0.1:1\"], read_timeout_seconds: 1.0e300 }\n",
        ),
        (
            "server.grace_period_seconds",
            "server:\n  grace_period_seconds: 18446744073709551615\n",
        ),
    ] {
        let mut text = String::from(line);
        if !line.contains("upstreams:") {
            text.push_str("upstreams:\n  app: { servers: [\"127.0.0.1:1\"] }\n");
        }
        text.push_str("routes:\n  - { path: \"/*\", upstream: app, auth_required: false }\n");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["validate", "--no-resolve"])
            .arg(&path)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{field}: {all}");
        assert!(all.contains(field), "{field}: {all}");
        assert!(!all.contains("panicked"), "{field}: {all}");
    }
}

#[test]
fn every_number_in_the_schema_has_a_maximum() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/gateway.schema.json"
    ))
    .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let mut missing = vec![];
    fn walk(v: &Value, path: String, missing: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                let numeric = |t: &Value| matches!(t.as_str(), Some("number" | "integer"));
                let is_number = match m.get("type") {
                    Some(Value::Array(ts)) => ts.iter().any(numeric),
                    Some(t) => numeric(t),
                    None => false,
                };
                if is_number && !m.contains_key("maximum") {
                    missing.push(path.clone());
                }
                for (k, v) in m {
                    walk(v, format!("{path}/{k}"), missing);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, format!("{path}/{i}"), missing);
                }
            }
            _ => {}
        }
    }
    walk(&schema, String::new(), &mut missing);
    assert!(missing.is_empty(), "numbers without a maximum: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_does_not_apply_to_websocket_traffic() {
    use futures_util::{SinkExt, StreamExt};
    let echo_addr = common::ws::ws_echo_server().await;
    let body = format!(
        "server:\n  max_body_bytes: 100\nhealth_check: {{ enabled: false }}\nupstreams:\n  ws: {{ servers: [\"{echo_addr}\"] }}\nroutes:\n  - {{ path: \"/ws/*\", upstream: ws, auth_required: false }}\n"
    );
    let gw = Gateway::start(&body);
    let mut ws = common::ws::ws_connect(gw.port).await;
    for i in 0..20 {
        let msg = format!("{i:03}{}", "x".repeat(60));
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
            .await
            .unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("a message");
        assert_eq!(back.into_text().unwrap().as_str(), msg, "message {i}");
    }
}

// --- Body limits ----------------------------------------------------------------

/// An upstream that records whether each request's chunked body completed.
async fn body_recorder() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (started, completed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s2, c2) = (started.clone(), completed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (s3, c3) = (s2.clone(), c2.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 65536];
                let mut counted = false;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    if !counted && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        counted = true;
                        s3.fetch_add(1, Ordering::SeqCst);
                    }
                    if seen.ends_with(b"0\r\n\r\n") {
                        c3.fetch_add(1, Ordering::SeqCst);
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (addr, started, completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_never_complete_upstream() {
    use std::sync::atomic::Ordering;
    let up = Upstream::start("app").await;
    let (rec, started, completed) = body_recorder().await;
    let body = format!(
        "server:\n  max_body_bytes: 1000\nhealth_check: {{ enabled: false }}\nupstreams:\n  app: {{ servers: [\"{}\"] }}\n  rec: {{ servers: [\"{rec}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n  - {{ path: \"/big/*\", upstream: app, auth_required: false, max_body_bytes: 100000 }}\n  - {{ path: \"/chunked/*\", upstream: rec, auth_required: false }}\n",
        up.addr
    );
    let gw = Gateway::start(&body);
    let cl = client();
    // Declared too large: 413 JSON, nothing forwarded.
    let r = cl
        .post(gw.url("/x"))
        .body(vec![b'a'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "request body too large");
    assert_eq!(up.requests(), 0);
    // At the limit, and a route with a larger one.
    let r = cl
        .post(gw.url("/x"))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = cl
        .post(gw.url("/big/x"))
        .body(vec![b'a'; 50_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["body_bytes"], 50_000);

    // Chunked under the limit completes upstream; over it never does.
    let chunked = |total: usize| {
        let mut req = String::from(
            "POST /chunked/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        let mut left = total;
        while left > 0 {
            let n = left.min(300);
            req.push_str(&format!("{n:x}\r\n{}\r\n", "b".repeat(n)));
            left -= n;
        }
        req.push_str("0\r\n\r\n");
        req
    };
    let (status, _) = raw_request(gw.port, &chunked(900));
    assert_eq!(status, 200);
    assert_eq!(completed.load(Ordering::SeqCst), 1);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(chunked(5000).as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        wait_for(Duration::from_secs(5), || started.load(Ordering::SeqCst)
            >= 2)
        .is_ok(),
        "the cut-off request had started upstream"
    );
    // Give the upstream a moment to see the end it will never get.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        completed.load(Ordering::SeqCst),
        1,
        "the oversized chunked body must never complete upstream"
    );
}
