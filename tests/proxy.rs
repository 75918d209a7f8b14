//! Operator stories for the proxy: routing, normalization, forwarded
//! headers, errors, streaming and WebSockets, against the real binary and
//! real upstream servers on 127.0.0.1.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const APPS: [&str; 5] = [
    "oauth-service",
    "admin-portal",
    "kline-service",
    "flow-service",
    "test-service",
];

/// The seed config (`config/default.yaml`) with its servers pointed at `ups`.
fn seed_config(ups: &[Upstream]) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.yaml"))
        .unwrap();
    let mut v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let m = v.as_mapping_mut().unwrap();
    m.remove("server");
    m.remove("metrics");
    for (name, up) in APPS.iter().zip(ups) {
        v["upstreams"][*name]["servers"] = serde_yaml::to_value(vec![up.addr.to_string()]).unwrap();
    }
    v["auth"]["jwt_secret"] = SECRET.into();
    v["health_check"]["enabled"] = false.into();
    serde_yaml::to_string(&v).unwrap()
}

async fn seed() -> (Vec<Upstream>, Gateway) {
    let mut ups = vec![];
    for name in APPS {
        ups.push(Upstream::start(name).await);
    }
    let gw = Gateway::start(&seed_config(&ups));
    (ups, gw)
}

async fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_routes_each_reach_their_upstream() {
    let (_ups, gw) = seed().await;
    let t = token(json!({"sub": "alice"}));
    for (path, app) in [
        ("/oauth/authorize", "oauth-service"),
        ("/admin/users", "admin-portal"),
        ("/kline/btc", "kline-service"),
        ("/flow/x/y", "flow-service"),
        ("/test", "test-service"),
        ("/anything/else", "admin-portal"),
        ("/", "admin-portal"),
    ] {
        let (status, body) = get_json(&gw.url(path), Some(&t)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["app"], app, "{path}");
        assert_eq!(body["path"], path, "the upstream sees the full path");
    }
    // Public routes need no token; protected ones do.
    assert_eq!(get_json(&gw.url("/test/x"), None).await.0, 200);
    assert_eq!(get_json(&gw.url("/oauth/x"), None).await.0, 200);
    for path in ["/admin/x", "/kline/x", "/flow/x", "/other"] {
        assert_eq!(get_json(&gw.url(path), None).await.0, 401, "{path}");
    }
}

fn upstreams_yaml(ups: &[(&str, &Upstream)]) -> String {
    let mut s = String::from("upstreams:\n");
    for (name, u) in ups {
        s.push_str(&format!("  {name}: {{ servers: [\"{}\"] }}\n", u.addr));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_specific_route_wins_whatever_the_file_order() {
    let (a, b, c, d) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
        Upstream::start("d").await,
    );
    let body = format!(
        "{}routes:\n  - {{ path: \"/*\", upstream: a, auth_required: false }}\n  - {{ path: \"/api/*\", upstream: b, auth_required: false }}\n  - {{ path: \"/api/v2/*\", upstream: c, auth_required: false }}\n  - {{ path: \"/api/v2/exact\", upstream: d, auth_required: false }}\n",
        upstreams_yaml(&[("a", &a), ("b", &b), ("c", &c), ("d", &d)])
    );
    let gw = Gateway::start(&body);
    for (path, app) in [
        ("/x", "a"),
        ("/api", "b"),
        ("/api/v1/x", "b"),
        ("/api/v2", "c"),
        ("/api/v2/x", "c"),
        ("/api/v2/exact", "d"),
        ("/api/v2/exact/more", "c"),
        ("/apix", "a"),
    ] {
        assert_eq!(get_json(&gw.url(path), None).await.1["app"], app, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_methods_and_strip_prefix() {
    let (a, b, c, k) = (
        Upstream::start("default").await,
        Upstream::start("by-host").await,
        Upstream::start("by-method").await,
        Upstream::start("kline").await,
    );
    let body = format!(
        "{}routes:\n  - {{ path: \"/api/*\", upstream: default, auth_required: false }}\n  - {{ path: \"/api/*\", upstream: byhost, host: admin.example.com, auth_required: false }}\n  - {{ path: \"/api/*\", upstream: bymethod, methods: [POST, PUT], auth_required: false }}\n  - {{ path: \"/kline/*\", upstream: kline, strip_prefix: true, auth_required: false }}\n",
        upstreams_yaml(&[
            ("default", &a),
            ("byhost", &b),
            ("bymethod", &c),
            ("kline", &k)
        ])
    );
    let gw = Gateway::start(&body);
    let cl = client();
    let app = |r: reqwest::Response| async move { r.json::<Value>().await.unwrap() };

    let v = app(cl.get(gw.url("/api/x")).send().await.unwrap()).await;
    assert_eq!(v["app"], "default");
    let v = app(cl
        .get(gw.url("/api/x"))
        .header("host", "Admin.Example.com:6188")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(v["app"], "by-host");
    assert_eq!(
        v["headers"]["host"], "admin.example.com:6188",
        "Host reaches the app validated and lower-cased"
    );
    let v = app(cl.post(gw.url("/api/x")).body("hi").send().await.unwrap()).await;
    assert_eq!(v["app"], "by-method");
    assert_eq!(v["body_bytes"], 2);
    let v = app(cl.delete(gw.url("/api/x")).send().await.unwrap()).await;
    assert_eq!(v["app"], "default");

    let v = app(cl
        .get(gw.url("/kline/candles/1m?symbol=BTC"))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(
        (v["app"].as_str(), v["path"].as_str()),
        (Some("kline"), Some("/candles/1m"))
    );
    assert_eq!(v["query"], "symbol=BTC");
    let v = app(cl.get(gw.url("/kline")).send().await.unwrap()).await;
    assert_eq!(v["path"], "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalized_before_routing_and_auth() {
    let (_ups, gw) = seed().await;
    let t = token(json!({"sub": "alice"}));
    let auth = format!("Authorization: Bearer {t}\r\n");

    // `/test` is public, but `/test/../admin/x` is `/admin/x`: protected.
    let (status, _) = raw_get(gw.port, "/test/../admin/x", "");
    assert_eq!(status, 401);
    let (status, text) = raw_get(gw.port, "/test/../admin/x", &auth);
    assert_eq!(status, 200, "{text}\n{}", gw.log());
    assert_eq!(raw_json(&text)["app"], "admin-portal");
    assert_eq!(
        raw_json(&text)["path"],
        "/admin/x",
        "the upstream gets the normalized path"
    );

    for (path, app, seen) in [
        ("//test//a///b", "test-service", "/test/a/b"),
        ("/test/./a/../b?q=1", "test-service", "/test/b"),
        ("/t%65st/%7Euser", "test-service", "/test/~user"),
        ("/test/%2e%2e/admin/x", "admin-portal", "/admin/x"),
    ] {
        let (status, text) = raw_get(gw.port, path, &auth);
        assert_eq!(status, 200, "{path}: {text}");
        let v = raw_json(&text);
        assert_eq!(
            (v["app"].as_str(), v["path"].as_str()),
            (Some(app), Some(seen)),
            "{path}"
        );
    }
    assert_eq!(
        raw_json(&raw_get(gw.port, "/test/./a/../b?q=1", "").1)["query"],
        "q=1"
    );

    for path in [
        "/test/a%2Fb",
        "/test/a%5cb",
        "/test/%00",
        "/..",
        "/test/../../etc/passwd",
        "/test/%zz",
    ] {
        let (status, text) = raw_get(gw.port, path, "");
        assert_eq!(status, 400, "{path}: {text}");
        let v = raw_json(&text);
        assert!(v["error"].as_str().unwrap().contains("path"), "{v}");
        assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_request_id_headers() {
    let up = Upstream::start("echo").await;
    let body = format!(
        "{}routes:\n  - {{ path: \"/*\", upstream: echo, auth_required: false }}\n",
        upstreams_yaml(&[("echo", &up)])
    );
    let gw = Gateway::start(&body);
    let cl = client();

    let r = cl
        .get(gw.url("/x"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "client-id-123")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(
        id, "client-id-123",
        "a client's own id is replaced (no trusted proxies)"
    );
    let v: Value = r.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "an untrusted client's X-Forwarded-For is replaced by its address"
    );
    assert_eq!(
        h["x-forwarded-proto"], "http",
        "set by the gateway, not trusted from the client"
    );
    assert_eq!(h["x-forwarded-host"], format!("127.0.0.1:{}", gw.port));
    assert_eq!(
        h["host"],
        format!("127.0.0.1:{}", gw.port),
        "Host is preserved"
    );
    assert_eq!(h["x-request-id"], id.as_str());
    drop(gw);

    // From a trusted proxy, a valid incoming id is kept.
    let gw = Gateway::start(&format!(
        "server:\n  trusted_proxies: [\"127.0.0.1\"]\n{body}"
    ));
    let r = cl
        .get(gw.url("/x"))
        .header("x-request-id", "client-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-123");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-request-id"], "client-id-123");

    // No id, or an unusable one: a fresh id, the same on both sides.
    for incoming in [None, Some("bad id with spaces"), Some(&"x".repeat(200)[..])] {
        let mut req = cl.get(gw.url("/x"));
        if let Some(id) = incoming {
            req = req.header("x-request-id", id);
        }
        let r = req.send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{id}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["headers"]["x-request-id"], id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_cannot_be_spoofed_on_public_routes() {
    let (_ups, gw) = seed().await;
    let r = client()
        .get(gw.url("/test/x"))
        .header("x-user-id", "admin")
        .header("x-user-scopes", "everything")
        .header("x-client-id", "evil")
        // Spellings app servers fold into X-User-Id, and forged hop headers.
        .header("x_user_id", "admin")
        .header("X_Client_Id", "evil")
        .header("forwarded", "for=203.0.113.9;proto=https")
        .header("x-real-ip", "203.0.113.9")
        .header("x-forwarded-port", "443")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    for h in [
        "x-user-id",
        "x-user-scopes",
        "x-client-id",
        "x_user_id",
        "x_client_id",
        "forwarded",
        "x-real-ip",
    ] {
        assert!(
            v["headers"].get(h).is_none(),
            "{h} reached the upstream: {v}"
        );
    }
    assert_eq!(v["headers"]["x-forwarded-port"], gw.port.to_string());
    // On a protected route they come from the token only.
    let t = token(json!({"sub": "alice", "scope": "read", "client_id": "web"}));
    let v: Value = client()
        .get(gw.url("/admin/x"))
        .bearer_auth(t)
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["headers"]["x-user-id"], "alice");
    assert_eq!(v["headers"]["x-user-scopes"], "read");
    assert_eq!(v["headers"]["x-client-id"], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_added_but_never_override_the_upstream() {
    let up = Upstream::start("echo").await;
    let body = format!(
        "{}routes:\n  - {{ path: \"/*\", upstream: echo, auth_required: false }}\n",
        upstreams_yaml(&[("echo", &up)])
    );
    let gw = Gateway::start(&body);
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "SAMEORIGIN");
    assert_eq!(
        r.headers()["referrer-policy"],
        "strict-origin-when-cross-origin"
    );

    let r = client()
        .get(gw.url("/x?respond_header=x-frame-options:DENY"))
        .send()
        .await
        .unwrap();
    let values: Vec<_> = r.headers().get_all("x-frame-options").iter().collect();
    assert_eq!(values, ["DENY"], "the upstream's value wins, once");

    // Configurable: a custom set replaces the defaults.
    let body = format!(
        "{}routes:\n  - {{ path: \"/*\", upstream: echo, auth_required: false }}\nresponse_headers:\n  Strict-Transport-Security: \"max-age=63072000\"\n",
        upstreams_yaml(&[("echo", &up)])
    );
    let gw = Gateway::start(&body);
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=63072000");
    assert!(r.headers().get("x-frame-options").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_json_with_the_right_status() {
    let slow = Upstream::start("slow").await;
    let (refused, _hold) = refused_addr();
    let body = format!(
        "upstreams:\n  slow: {{ servers: [\"{}\"], read_timeout_seconds: 0.3 }}\n  down: {{ servers: [\"{refused}\"] }}\nroutes:\n  - {{ path: \"/slow/*\", upstream: slow, auth_required: false }}\n  - {{ path: \"/down/*\", upstream: down, auth_required: false }}\nhealth_check: {{ enabled: false }}\n",
        slow.addr
    );
    let gw = Gateway::start(&body);
    let cl = client();

    let check = |status: u16, fragment: &'static str| {
        move |r: reqwest::Response| async move {
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers()["content-type"], "application/json");
            let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
            let v: Value = r.json().await.unwrap();
            assert!(v["error"].as_str().unwrap().contains(fragment), "{v}");
            assert_eq!(v["request_id"], id.as_str());
        }
    };
    check(404, "no route")(cl.get(gw.url("/nowhere")).send().await.unwrap()).await;
    let r = cl.get(gw.url("/down/x")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    check(502, "refused")(r).await;
    // The error line in the log carries the request id.
    let log = gw.wait_log(&id);
    let line = log
        .lines()
        .find(|l| l.contains("\"request failed\"") && l.contains(&id))
        .unwrap_or_else(|| panic!("no error line for {id}:\n{log}"));
    assert!(
        line.contains("\"level\":\"ERROR\"") && line.contains("\"upstream\":\"down\""),
        "{line}"
    );
    let started = Instant::now();
    check(504, "timed out")(cl.get(gw.url("/slow/sleep/3000")).send().await.unwrap()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the read timeout applies"
    );
    // The route still works for fast requests.
    assert_eq!(
        cl.get(gw.url("/slow/x")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_take_the_process_down() {
    let (_ups, gw) = seed().await;
    for junk in [
        "\x00\x01\x02garbage\r\n\r\n",
        "GET\r\n\r\n",
        "GET /test/x HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
        "GET /test/x HTTP/1.1\r\nBad Header Line\r\n\r\n",
        &format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100_000)),
        "GET * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET /test/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
    ] {
        let (status, _) = raw_request(gw.port, junk);
        assert!(status == 0 || status >= 400, "{junk:?} -> {status}");
    }
    let (status, _) = raw_get(gw.port, "/test/still-alive", "");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_redirects_to_itself_are_rewritten_to_the_gateway() {
    let (_ups, gw) = seed().await;
    let r = client().get(gw.url("/test/redirect")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("http://127.0.0.1:{}/target", gw.port).as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_through_unbuffered() {
    let (_ups, gw) = seed().await;
    let started = Instant::now();
    let r = client()
        .get(gw.url("/test/stream?n=4&interval_ms=400"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("\"seq\":0"));
    let mut all = first.to_vec();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    let last_at = started.elapsed();
    assert!(String::from_utf8_lossy(&all).contains("\"seq\":3"));
    assert!(last_at >= Duration::from_millis(1200), "{last_at:?}");
    assert!(
        first_at < Duration::from_millis(600),
        "first event after {first_at:?}: the response was buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    let ws_addr = common::ws::ws_echo_server().await;
    let body = format!(
        "upstreams:\n  ws: {{ servers: [\"{ws_addr}\"] }}\nroutes:\n  - {{ path: \"/ws/*\", upstream: ws, auth_required: false }}\n"
    );
    let gw = Gateway::start(&body);
    let mut ws = common::ws::ws_connect(gw.port).await;
    common::ws::ws_roundtrip(&mut ws, 3, || gw.log()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_by_the_upstream_is_retried_transparently() {
    // The race Node's keep-alive timeout creates: the gateway reuses a pooled
    // connection just as the server gives up on it. This upstream answers
    // the first request of each connection and hangs up on the second
    // without answering, so every reuse fails and must be retried.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hung_up = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = hung_up.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                for request in 0.. {
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    if request > 0 {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return; // hang up without an answer
                    }
                    let ok =
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let body = format!(
        "upstreams:\n  node: {{ servers: [\"{addr}\"], idle_timeout_seconds: 30 }}\nroutes:\n  - {{ path: \"/*\", upstream: node, auth_required: false }}\n"
    );
    let gw = Gateway::start(&body);
    let cl = client();
    for _ in 0..5 {
        let r = cl.get(gw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert!(
        hung_up.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "no pooled connection was reused, so nothing was retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_can_be_turned_off_while_errors_are_still_logged() {
    let up = Upstream::start("echo").await;
    let (refused, _hold) = refused_addr();
    let body = format!(
        "upstreams:\n  echo: {{ servers: [\"{}\"] }}\n  down: {{ servers: [\"{refused}\"], retries: 0, health_check: {{ enabled: false }} }}\nroutes:\n  - {{ path: \"/down/*\", upstream: down, auth_required: false }}\n  - {{ path: \"/*\", upstream: echo, auth_required: false }}\nlogging:\n  access_log: false\n",
        up.addr
    );
    let gw = Gateway::start(&body);
    assert_eq!(
        client().get(gw.url("/x")).send().await.unwrap().status(),
        200
    );
    let r = client().get(gw.url("/down/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    // Lines are written in order: once the error line is there, an access
    // line for the earlier request would be too.
    let log = gw.wait_log(&id);
    assert!(!log.contains("\"target\":\"access\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_serve_again_and_close_after_the_timeout() {
    use std::io::{Read, Write};
    let (_ups, gw) = {
        let mut ups = vec![];
        for name in APPS {
            ups.push(Upstream::start(name).await);
        }
        let body = format!(
            "server:\n  keepalive_timeout_seconds: 1\n{}",
            seed_config(&ups)
        );
        (ups, Gateway::start(&body))
    };
    let port = gw.port;
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let big = "x".repeat(3000); // beyond the first read of a parked connection
        let big_header = format!("X-Big: {big}\r\n");
        // (extra header, bytes sent first, pause before the rest): at once;
        // in pieces with a pause; a long request after an idle pause.
        for (i, (extra, first, pause)) in [("", 3, 0), (&*big_header, 3, 50), (&*big_header, 0, 0)]
            .into_iter()
            .enumerate()
        {
            std::thread::sleep(Duration::from_millis(50));
            let req = format!("GET /test/{i} HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
            let (head, tail) = req.split_at(first);
            s.write_all(head.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(pause));
            s.write_all(tail.as_bytes()).unwrap();
            let (status, body) = read_response(&mut s);
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["path"], format!("/test/{i}"));
            if !extra.is_empty() {
                assert_eq!(v["headers"]["x-big"], big.as_str());
            }
        }
        // Idle past the limit: the gateway closes the connection.
        let idle = Instant::now();
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).unwrap(), 0, "closed without a response");
        let waited = idle.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_get_their_first_answer_and_a_clean_close() {
    let (_ups, gw) = seed().await;
    // Pipelining is off (as in Pingora): the first request is answered, then
    // the connection closes; the client retries the rest (RFC 9112 §9.3.2).
    let two = "GET /test/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /test/2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let port = gw.port;
    let (status, text) = tokio::task::spawn_blocking(move || raw_request(port, two))
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("/test/1"), "{text}");
    let (status, _) = raw_get(gw.port, "/test/after", "");
    assert_eq!(status, 200);
}
