//! Edge policies as an operator meets them (issue 17): rate limits, CORS
//! (with a real headless Chromium on another origin), compression, header
//! rules and the access log's fields. Real gateway binary, real upstream on
//! 127.0.0.1:0, counted upstream hits.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Body = BoxBody<Bytes, Infallible>;

/// A 64 KiB JSON document (compressible like an API's list answer).
fn big_json() -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < 64 * 1024 - 80 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"id\":{i},\"symbol\":\"BTC-USD\",\"open\":{},\"close\":{}}}",
            40000 + i % 97,
            40010 + i % 89
        ));
        i += 1;
    }
    s.push(']');
    s
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The test app: `/big.json` (64 KiB, ETag), `/small.json`, `/image.png`,
/// `/pre-encoded` (already gzip), `/sse` (3 events 400 ms apart), anything
/// else echoes the request headers (and sets `X-Powered-By`).
struct App {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start() -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let big = Bytes::from(big_json());
        let h = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (h, big) = (h.clone(), big.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (h, big) = (h.clone(), big.clone());
                        async move { Ok::<_, Infallible>(answer(req, &h, big)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        App {
            addr,
            hits,
            _task: task,
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    Full::new(b.into()).boxed()
}

fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    hits: &AtomicU64,
    big: Bytes,
) -> hyper::Response<Body> {
    let path = req.uri().path().to_string();
    if path.ends_with("/health") {
        return hyper::Response::new(full("ok"));
    }
    hits.fetch_add(1, Ordering::Relaxed);
    let b = hyper::Response::builder();
    match path.rsplit('/').next().unwrap_or("") {
        "big.json" => b
            .header("content-type", "application/json")
            .header("etag", "\"v1\"")
            .body(full(big)),
        "small.json" => b
            .header("content-type", "application/json")
            .body(full(Bytes::from(vec![b' '; 100]))),
        "image.png" => b
            .header("content-type", "image/png")
            .body(full(Bytes::from(vec![0u8; 8192]))),
        "pre-encoded" => b
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(full(gzip(&big))),
        "sse" => {
            let stream = futures_util::stream::unfold(0u32, |i| async move {
                if i == 3 {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                let ev = Bytes::from(format!("data: event {i} {}\n\n", "x".repeat(2000)));
                Some((Ok::<_, Infallible>(Frame::data(ev)), i + 1))
            });
            use http_body_util::BodyExt;
            b.header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
        }
        _ => {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            b.header("content-type", "application/json")
                .header("x-powered-by", "php")
                .header("cache-control", "max-age=60")
                .body(full(json!({"path": path, "headers": headers}).to_string()))
        }
    }
    .unwrap()
}

fn auth() -> &'static str {
    "auth:\n  jwt_secret: \"test-secret-0123456789abcdef-0123456789\"\n"
}

fn upstream(app: &App) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nhealth_check: {{ enabled: false }}\n",
        app.addr
    )
}

async fn metric(gw: &Gateway, key: &str) -> f64 {
    scrape(gw).await.get(key).copied().unwrap_or(0.0)
}

// ---------------------------------------------------------------- rate limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_a_client_gets_429_with_retry_after_and_ratelimit_headers() {
    let app = App::start().await;
    let gw = Gateway::start(&format!(
        "{}{}rate_limits:\n  per-ip: {{ key: client_ip, requests_per_second: 1, burst: 3 }}\nroutes:\n  - {{ path: \"/api/*\", upstream: app, auth_required: false, rate_limit: per-ip }}\n  - {{ path: \"/free/*\", upstream: app, auth_required: false }}\n",
        upstream(&app),
        auth()
    ));
    let c = client();
    for i in 0..3 {
        let r = c.get(gw.url("/api/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i} of the burst");
    }
    let r = c.get(gw.url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["ratelimit-policy"], "\"per-ip\";q=1;w=1");
    assert_eq!(h["ratelimit"], "\"per-ip\";r=0;t=1");
    assert!(h.contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate limit exceeded");
    assert_eq!(app.hits(), 3, "the refused request never reached the app");
    // Another route without a policy is not limited.
    assert_eq!(c.get(gw.url("/free/x")).send().await.unwrap().status(), 200);
    assert_eq!(
        metric(
            &gw,
            "gateway_rate_limited_total{policy=\"per-ip\",route=\"/api/*\"}"
        )
        .await,
        1.0
    );
    // One token back per second.
    assert!(
        eventually(Duration::from_secs(3), || async {
            c.get(gw.url("/api/x")).send().await.unwrap().status() == 200
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_type_has_its_own_buckets() {
    let app = App::start().await;
    let gw = Gateway::start(&format!(
        "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n{}{}rate_limits:\n  by-key: {{ key: \"header:X-Api-Key\", requests_per_second: 0.1, burst: 2 }}\n  by-user: {{ key: user, requests_per_second: 0.1, burst: 2 }}\n  by-client: {{ key: client_id, requests_per_second: 0.1, burst: 2 }}\nroutes:\n  - {{ path: \"/keyed/*\", upstream: app, auth_required: false, rate_limit: by-key }}\n  - {{ path: \"/user/*\", upstream: app, rate_limit: by-user }}\n  - {{ path: \"/public/*\", upstream: app, auth_required: false, rate_limit: by-user }}\n  - {{ path: \"/client/*\", upstream: app, rate_limit: by-client }}\n",
        upstream(&app),
        auth()
    ));
    let c = client();
    let status = |path: &'static str, name: &'static str, value: String| {
        let c = c.clone();
        let url = gw.url(path);
        async move {
            c.get(url)
                .header(name, value)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // header:X-Api-Key: key A's third request is refused, key B is fresh.
    let a = || status("/keyed/x", "x-api-key", "A".into());
    assert_eq!((a().await, a().await, a().await), (200, 200, 429));
    assert_eq!(status("/keyed/x", "x-api-key", "B".into()).await, 200);

    // user: alice and bob apart, whatever address they come from.
    let bearer = |sub: &str| format!("Bearer {}", token(json!({"sub": sub})));
    let alice = || status("/user/x", "authorization", bearer("alice"));
    assert_eq!(
        (alice().await, alice().await, alice().await),
        (200, 200, 429)
    );
    assert_eq!(status("/user/x", "authorization", bearer("bob")).await, 200);

    // client_id: the token's client, not its user.
    let app_token =
        |cid: &str, sub: &str| format!("Bearer {}", token(json!({"sub": sub, "client_id": cid})));
    for sub in ["u1", "u2"] {
        assert_eq!(
            status("/client/x", "authorization", app_token("mobile", sub)).await,
            200
        );
    }
    assert_eq!(
        status("/client/x", "authorization", app_token("mobile", "u3")).await,
        429
    );
    assert_eq!(
        status("/client/x", "authorization", app_token("web", "u3")).await,
        200
    );

    // user on a public route: the client address (X-Forwarded-For from the
    // trusted proxy at 127.0.0.1), so two clients are two buckets.
    let from = |ip: &'static str| status("/public/x", "x-forwarded-for", ip.into());
    assert_eq!(
        (
            from("203.0.113.1").await,
            from("203.0.113.1").await,
            from("203.0.113.1").await
        ),
        (200, 200, 429)
    );
    assert_eq!(from("203.0.113.2").await, 200);
    // A token on a public route is not verified: still the address.
    let r = c
        .get(gw.url("/public/x"))
        .header("x-forwarded-for", "203.0.113.1")
        .header("authorization", bearer("carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_policy_keeps_its_state_across_a_reload() {
    let app = App::start().await;
    let body = |extra: &str, burst: u32| {
        format!(
            "{}{}rate_limits:\n  slow: {{ key: client_ip, requests_per_second: 0.05, burst: {burst} }}\nroutes:\n  - {{ path: \"/api/*\", upstream: app, auth_required: false, rate_limit: slow }}\n{extra}",
            upstream(&app),
            auth()
        )
    };
    let gw = Gateway::start(&body("", 2));
    let c = client();
    let get = || async {
        c.get(gw.url("/api/x"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!((get().await, get().await, get().await), (200, 200, 429));

    // Another route added, the policy as it was: still refused.
    gw.write_config(&body(
        "  - { path: \"/other/*\", upstream: app, auth_required: false }\n",
        2,
    ));
    gw.wait_log("config reloaded");
    assert_eq!(
        c.get(gw.url("/other/x")).send().await.unwrap().status(),
        200
    );
    assert_eq!(get().await, 429, "the bucket survived the reload");

    // The policy changed: a new bucket.
    gw.write_config(&body(
        "  - { path: \"/other/*\", upstream: app, auth_required: false }\n",
        3,
    ));
    assert!(
        wait_for(Duration::from_secs(10), || gw
            .log()
            .matches("config reloaded")
            .count()
            >= 2)
        .is_ok()
    );
    assert_eq!(get().await, 200);
}

// ----------------------------------------------------------------------- CORS

const APP_ORIGIN: &str = "https://app.example.com";

fn cors_config(app: &App) -> String {
    format!(
        "{}{}routes:\n  - path: \"/kline/*\"\n    upstream: app\n    methods: [GET, POST, DELETE]\n    cors:\n      allowed_origins: [\"{APP_ORIGIN}\"]\n      allowed_methods: [GET, POST]\n      allowed_headers: [Authorization, Content-Type]\n      allow_credentials: true\n      max_age_seconds: 600\n",
        upstream(app),
        auth()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_by_the_gateway_without_auth_or_upstream() {
    let app = App::start().await;
    let gw = Gateway::start(&cors_config(&app));
    let c = client();
    let preflight = |origin: &'static str, method: &'static str| {
        c.request(reqwest::Method::OPTIONS, gw.url("/kline/api/candles"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let r = preflight(APP_ORIGIN, "POST").await.unwrap();
    assert_eq!(r.status(), 204, "no token, yet no 401");
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "Authorization, Content-Type"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    let vary: Vec<_> = h
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(vary.contains(&"Origin"), "{vary:?}");

    // Another origin, or a method not allowed: answered, without CORS headers.
    for (origin, method) in [("https://evil.example", "POST"), (APP_ORIGIN, "DELETE")] {
        let r = preflight(origin, method).await.unwrap();
        assert_eq!(r.status(), 204);
        assert!(r.headers().get("access-control-allow-origin").is_none());
        assert!(r.headers().get("access-control-allow-methods").is_none());
    }
    // A method no route serves: no route for the preflight either.
    assert_eq!(preflight(APP_ORIGIN, "PUT").await.unwrap().status(), 404);
    assert_eq!(app.hits(), 0, "no preflight reached the upstream");

    // Actual requests: allowed origin gets the headers, on a 401 too (so the
    // browser app can read it) ...
    let r = c
        .get(gw.url("/kline/api/candles"))
        .header("origin", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], APP_ORIGIN);
    let t = token(json!({"sub": "alice"}));
    let r = c
        .get(gw.url("/kline/api/candles"))
        .header("origin", APP_ORIGIN)
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["vary"], "Origin");
    // ... another origin none, and every response varies on Origin.
    for origin in [Some("https://evil.example"), None] {
        let mut req = c.get(gw.url("/kline/api/candles")).bearer_auth(&t);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("access-control-allow-origin").is_none());
        assert_eq!(r.headers()["vary"], "Origin");
    }
    assert_eq!(app.hits(), 3);
}

fn validate(body: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    common::validate_config(dir.path(), body, &[])
}

#[test]
fn validation_refuses_wildcard_with_credentials_protected_headers_and_unknown_policies() {
    let base =
        "upstreams:\n  app: { servers: [\"127.0.0.1:9\"] }\nhealth_check: { enabled: false }\n";
    let (code, out) = validate(&format!(
        "{base}routes:\n  - path: \"/*\"\n    upstream: app\n    auth_required: false\n    cors: {{ allowed_origins: [\"*\"], allow_credentials: true }}\n"
    ));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("routes[0].cors.allowed_origins[0]"), "{out}");
    assert!(
        out.contains("cannot be used with allow_credentials"),
        "{out}"
    );

    let (code, out) = validate(&format!(
        "{base}routes:\n  - path: \"/*\"\n    upstream: app\n    auth_required: false\n    rate_limit: per-usr\n    request_headers: {{ add: {{ X-User-Id: admin, X-Forwarded-For: 1.2.3.4 }}, remove: [X-Request-Id] }}\n    response_headers: {{ add: {{ Cache-Control: no-store }} }}\nrate_limits:\n  per-user: {{ key: user, requests_per_second: 5 }}\n  bad: {{ key: \"cookie:x\", requests_per_second: 5 }}\n"
    ));
    assert_ne!(code, 0, "{out}");
    for needle in [
        "unknown rate limit policy \"per-usr\", did you mean \"per-user\"?",
        "\"X-User-Id\" is set by the gateway",
        "\"X-Forwarded-For\" is set by the gateway",
        "\"X-Request-Id\" is set by the gateway",
        "rate_limits.bad.key: \"cookie:x\"",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    assert!(!out.contains("Cache-Control"), "{out}");
}

/// A page on another origin calls the API with `fetch` and a bearer token
/// (so the browser sends a preflight first) and reads the answer; a page on
/// an origin that is not allowed cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_on_another_origin_calls_the_api_and_reads_the_answer() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            || std::env::var_os("CHROMIUM").is_some(),
        "/usr/bin/chromium is missing: run ./tests/run"
    );
    let app = App::start().await;
    // The pages' origins: two listeners serving the same small page.
    let pages: Vec<tokio::net::TcpListener> = vec![
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let origins: Vec<String> = pages
        .iter()
        .map(|l| format!("http://127.0.0.1:{}", l.local_addr().unwrap().port()))
        .collect();
    for l in pages {
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "text/html")
                                .body(full("<!doctype html><title>app</title><h1>app</h1>"))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    }
    let gw = Gateway::start(&format!(
        "{}{}routes:\n  - path: \"/kline/*\"\n    upstream: app\n    cors:\n      allowed_origins: [\"{}\"]\n      allowed_methods: [GET, POST]\n      allowed_headers: [Authorization, Content-Type]\n",
        upstream(&app),
        auth(),
        origins[0]
    ));
    // The API on "localhost": another origin than 127.0.0.1 pages.
    let api = format!("http://localhost:{}/kline/api/candles?from=1", gw.port);
    let t = token(json!({"sub": "alice"}));
    let run = |page: String| {
        let (api, t) = (api.clone(), t.clone());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("node")
                .arg("cors.mjs")
                .arg(&page)
                .arg(&api)
                .arg(&t)
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e"))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "cors.mjs failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_str::<Value>(stdout.lines().last().unwrap_or("")).unwrap()
        })
    };
    let seen = run(format!("{}/", origins[0])).await.unwrap();
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["body"]["path"], "/kline/api/candles", "{seen}");
    assert_eq!(seen["body"]["headers"]["x-user-id"], "alice", "{seen}");
    assert!(
        seen["requestId"].as_str().is_some_and(|s| !s.is_empty()),
        "{seen}"
    );
    let seen = run(format!("{}/", origins[1])).await.unwrap();
    assert_eq!(seen["status"], Value::Null, "{seen}");
    assert!(
        seen["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{seen}"
    );
    // The allowed page: one preflight (answered by the gateway) and one GET
    // reached the app; the refused page's preflight did not reach it.
    assert_eq!(app.hits(), 1);
}

// ---------------------------------------------------------------- compression

fn compression_config(app: &App, enabled: bool) -> String {
    format!(
        "{}routes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\ncompression:\n  enabled: {enabled}\n",
        upstream(app)
    )
}

async fn fetch(
    c: &reqwest::Client,
    url: String,
    accept: Option<&str>,
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = c.get(url);
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    (h, r.bytes().await.unwrap().to_vec())
}

fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(data).unwrap(),
        other => panic!("{other}"),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_compressed_as_negotiated_and_only_when_it_helps() {
    let app = App::start().await;
    let gw = Gateway::start(&compression_config(&app, true));
    let c = client();
    let big = big_json().into_bytes();
    for (accept, want) in [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("zstd", "zstd"),
        ("br;q=0.5, zstd;q=0.9", "zstd"),
        ("*", "br"),
    ] {
        let (h, body) = fetch(&c, gw.url("/big.json"), Some(accept)).await;
        assert_eq!(h["content-encoding"], want, "{accept}");
        assert!(h.get("content-length").is_none_or(|l| l != "65536"));
        assert_eq!(decode(want, &body), big, "{accept}");
        assert!(body.len() < big.len() / 4, "{want}: {} bytes", body.len());
        assert_eq!(h["etag"], "W/\"v1\"", "the ETag is weakened");
        assert!(h.get_all("vary").iter().any(|v| v == "Accept-Encoding"));
    }
    // Not accepted, too small, not a listed type, already encoded: untouched.
    let (h, body) = fetch(&c, gw.url("/big.json"), None).await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(h["etag"], "\"v1\"");
    assert_eq!(body, big);
    let (h, body) = fetch(&c, gw.url("/big.json"), Some("identity")).await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(body.len(), big.len());
    let (h, body) = fetch(&c, gw.url("/small.json"), Some("gzip")).await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(body.len(), 100);
    let (h, body) = fetch(&c, gw.url("/image.png"), Some("gzip")).await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(body.len(), 8192);
    let (h, body) = fetch(&c, gw.url("/pre-encoded"), Some("br, gzip")).await;
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(
        decode("gzip", &body),
        big,
        "passed through as the app encoded it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_are_not_held_back_and_compression_is_off_by_default() {
    let app = App::start().await;
    let gw = Gateway::start(&compression_config(&app, true));
    let c = client();
    let started = Instant::now();
    let mut r = c
        .get(gw.url("/sse"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: event 0"));
    let mut rest = Vec::new();
    while let Some(ch) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&ch);
    }
    let all_at = started.elapsed();
    assert!(String::from_utf8_lossy(&rest).contains("data: event 2"));
    assert!(
        first_at < Duration::from_millis(350) && all_at >= Duration::from_millis(800),
        "first event after {first_at:?}, last after {all_at:?}"
    );

    let off = Gateway::start(&compression_config(&app, false));
    let (h, _) = fetch(&c, off.url("/big.json"), Some("gzip, br")).await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(h["etag"], "\"v1\"");
}

// --------------------------------------------------------------- header rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_add_and_remove_after_the_gateways_own_headers() {
    let app = App::start().await;
    let gw = Gateway::start(&format!(
        "{}routes:\n  - path: \"/kline/*\"\n    upstream: app\n    auth_required: false\n    request_headers:  {{ add: {{ X-Service: kline }}, remove: [X-Debug] }}\n    response_headers: {{ add: {{ Cache-Control: no-store, X-Frame-Options: DENY }}, remove: [X-Powered-By] }}\n  - {{ path: \"/plain/*\", upstream: app, auth_required: false }}\n",
        upstream(&app)
    ));
    let c = client();
    let r = c
        .get(gw.url("/kline/x"))
        .header("x-debug", "1")
        .header("x-service", "spoofed")
        .send()
        .await
        .unwrap();
    let h = r.headers().clone();
    assert_eq!(
        h["cache-control"], "no-store",
        "replaces the app's max-age=60"
    );
    assert_eq!(
        h["x-frame-options"], "DENY",
        "after the gateway's SAMEORIGIN default"
    );
    assert!(h.get("x-powered-by").is_none());
    assert!(h.contains_key("x-request-id"));
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-service"], "kline");
    assert!(echo["headers"].get("x-debug").is_none());
    assert!(echo["headers"]["x-forwarded-for"].is_string());
    // Rules are per route.
    let r = c
        .get(gw.url("/plain/x"))
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-powered-by"], "php");
    assert_eq!(r.headers()["x-frame-options"], "SAMEORIGIN");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-debug"], "1");
}

// ----------------------------------------------------------------- access log

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_line_has_client_host_protocol_agent_and_a_redacted_query() {
    let app = App::start().await;
    let gw = Gateway::start(&format!(
        "{}routes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n",
        upstream(&app)
    ));
    let r = client()
        .get(gw.url("/logged?page=2&access_token=eyJhbGciOi.secret.sig&id_token=x"))
        .header("user-agent", "edge-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = gw.wait_log("\"path\":\"/logged\"");
    let line = line
        .lines()
        .find(|l| l.contains("\"path\":\"/logged\""))
        .unwrap()
        .to_string();
    assert!(
        !line.contains("eyJhbGciOi") && !line.contains("secret.sig"),
        "{line}"
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["client_ip"], "127.0.0.1");
    assert_eq!(v["host"], format!("127.0.0.1:{}", gw.port));
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["user_agent"], "edge-test/1.0");
    assert_eq!(v["query"], "page=2&access_token=REDACTED&id_token=REDACTED");
    assert!(v.get("tls_version").is_none(), "plain HTTP: {line}");
}
