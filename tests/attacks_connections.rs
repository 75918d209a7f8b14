//! Connection-level attacks (issue 12): slow and oversized request heads,
//! header floods, connection exhaustion, the admin listener, tokens in debug
//! logs, and the noise and blind spots of refused heads. One test per class,
//! against the real binary on 127.0.0.1.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(server: &str, up: &Upstream) -> String {
    format!(
        "server:\n{server}upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nhealth_check: {{ enabled: false }}\n",
        up.addr
    )
}

async fn downstream_errors(gw: &Gateway, kind: &str) -> f64 {
    let m = scrape(gw).await;
    m.get(&format!(
        "gateway_downstream_errors_total{{kind=\"{kind}\"}}"
    ))
    .copied()
    .unwrap_or(0.0)
}

/// Reads until the peer closes (or `limit` passes); returns what came and
/// whether it closed.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_at_the_header_deadline() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("  request_header_timeout_seconds: 2\n", &up));
    // 50 clients, each sending one header byte every 500 ms: the keep-alive
    // limit (60 s) is never reached by any single wait.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let port = gw.port;
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.write_all(format!("GET /slow/{i} HTTP/1.1\r\nHost: a\r\n").as_bytes())
                .await
                .unwrap();
            let (mut rd, mut wr) = s.into_split();
            let drip = tokio::spawn(async move {
                for _ in 0..40 {
                    if wr.write_all(b"X").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut out)).await;
            drip.abort();
            (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
        }));
    }
    let mut worst = Duration::ZERO;
    for t in tasks {
        let (text, took) = t.await.unwrap();
        assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
        assert!(text.contains("\"request header timeout\""), "{text}");
        worst = worst.max(took);
    }
    assert!(
        worst >= Duration::from_secs(2) && worst < Duration::from_millis(3500),
        "closed after {worst:?}"
    );
    println!("slowloris: 50 connections closed after at most {worst:?} (limit 2 s)");
    assert_eq!(up.requests(), 0);
    assert_eq!(downstream_errors(&gw, "header_timeout").await, 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_gets_431_and_a_large_legal_one_passes() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("  max_request_header_bytes: 16384\n", &up));
    let big = "a".repeat(20_000);
    let (status, text) = raw_get(gw.port, "/x", &format!("X-Big: {big}\r\n"));
    assert_eq!(status, 431, "{text}");
    assert_eq!(raw_json(&text)["error"], "request header too large");
    // Just under the cap, in several pieces: served.
    let fits = "b".repeat(15_000);
    let (status, text) = raw_get(gw.port, "/x", &format!("X-Big: {fits}\r\n"));
    assert_eq!(status, 200, "{text}");
    assert_eq!(up.requests(), 1);
    assert_eq!(downstream_errors(&gw, "header_too_large").await, 1.0);

    // The default cap is 64 KiB.
    let gw = Gateway::start(&config("", &up));
    let (status, _) = raw_get(gw.port, "/x", &format!("X-Big: {}\r\n", "c".repeat(70_000)));
    assert_eq!(status, 431);
    let (status, _) = raw_get(gw.port, "/x", &format!("X-Big: {}\r\n", "c".repeat(60_000)));
    assert_eq!(status, 200);
}

/// A bounded version of the 2,000 × 1 MB flood: 200 connections
/// each send a 1 MB header line that never ends. The release-binary figure
/// for 2,000 is measured with `examples/header_flood.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_flood_is_bounded_in_memory() {
    raise_fd_limit();
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("", &up));
    let pid = gw.pid();
    let before = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (peak, watching) = (peak.clone(), watching.clone());
        std::thread::spawn(move || {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let line = std::sync::Arc::new(vec![b'a'; 1 << 20]);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (port, line) = (gw.port, line.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Flood: ").await;
            let _ = tokio::time::timeout(Duration::from_secs(10), s.write_all(&line)).await;
            let (text, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
            text
        }));
    }
    let mut answered = 0;
    for t in tasks {
        if t.await.unwrap().starts_with("HTTP/1.1 431 ") {
            answered += 1;
        }
    }
    let settled = wait_for(Duration::from_secs(10), || {
        rss_kib(pid) < before + 32 * 1024
    });
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let (peak, after) = (
        peak.load(std::sync::atomic::Ordering::Relaxed),
        rss_kib(pid),
    );
    println!(
        "header flood 200 x 1 MB: RSS before {before} KiB, peak {peak} KiB, after {after} KiB"
    );
    assert!(answered > 150, "only {answered} of 200 got 431");
    // 200 connections may each hold at most one 64 KiB head buffer.
    assert!(
        peak < before + 64 * 1024,
        "peak {peak} KiB from {before} KiB"
    );
    assert!(
        settled.is_ok(),
        "RSS {after} KiB 10 s after, from {before} KiB"
    );
    assert_eq!(up.requests(), 0);
}

/// The flood's worst case for the head reader: 1,000 heads of 60 KB (just
/// under the 64 KiB cap) that stall, so that each holds a 64 KiB buffer
/// until its deadline. The memory must come back after (glibc keeps it
/// unless trimmed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_heads_under_the_cap_give_their_memory_back() {
    raise_fd_limit();
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("  request_header_timeout_seconds: 3\n", &up));
    let pid = gw.pid();
    let before = rss_kib(pid);
    let line = std::sync::Arc::new(vec![b'a'; 60_000]);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (port, line) = (gw.port, line.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Stall: ").await;
            let _ = s.write_all(&line).await;
            read_until_closed(&mut s, Duration::from_secs(15)).await.0
        }));
    }
    let mut peak = before;
    let mut timed_out = 0;
    for t in tasks {
        peak = peak.max(rss_kib(pid));
        if t.await.unwrap().starts_with("HTTP/1.1 408 ") {
            timed_out += 1;
        }
    }
    let settled = wait_for(Duration::from_secs(10), || {
        rss_kib(pid) < before + 32 * 1024
    });
    let after = rss_kib(pid);
    println!(
        "1000 stalled 60 KB heads: RSS before {before} KiB, peak {peak} KiB, after {after} KiB"
    );
    assert_eq!(timed_out, 1000);
    assert!(peak < before + 256 * 1024, "peak {peak} KiB");
    assert!(
        settled.is_ok(),
        "RSS {after} KiB 10 s after, from {before} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_closes_one_more_at_once() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("  max_connections: 5\n", &up));
    gw.wait_metrics_listening();
    // The harness's readiness probes have come and gone once the gateway
    // holds no connection; then 5 kept-alive ones take every place.
    let idle = eventually(Duration::from_secs(5), || async {
        scrape(&gw).await["gateway_downstream_connections"] == 0.0
    })
    .await;
    assert!(idle);
    let held: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut s).0, 200);
            s
        })
        .collect();
    let mut refused = 0;
    let mut extra = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
            .await
            .unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let (text, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        if closed && text.is_empty() {
            refused += 1;
        }
        extra.push(s);
    }
    assert_eq!(refused, 3, "a connection over the cap was served");
    // One place freed: the next connection is served.
    drop(held);
    let served = eventually(Duration::from_secs(5), || async {
        raw_get(gw.port, "/x", "").0 == 200
    })
    .await;
    assert!(served);
    let m = scrape(&gw).await;
    assert!(
        m["gateway_downstream_connections_rejected_total{reason=\"max_connections\"}"] >= 3.0,
        "{m:?}"
    );
    assert!(m["gateway_downstream_errors_total{kind=\"max_connections\"}"] >= 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_cap_counts_each_address() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("  max_connections_per_ip: 2\n", &up));
    let from = |ip: &str| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.connect(&SocketAddr::from(([127, 0, 0, 1], gw.port)).into())
            .unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    };
    // Not 127.0.0.1: the harness's own readiness probes come from there and
    // may still be counted while the gateway notices they closed.
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let served = |s: &mut TcpStream| {
        s.write_all(request).unwrap();
        read_response(s).0 == 200
    };
    let mut a1 = from("127.0.0.3");
    let mut a2 = from("127.0.0.3");
    assert!(served(&mut a1) && served(&mut a2));
    // A third from the same address: closed without an answer.
    let mut a3 = from("127.0.0.3");
    let _ = a3.write_all(request);
    let mut out = Vec::new();
    let n = a3.read_to_end(&mut out);
    assert!(
        n.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset) || out.is_empty(),
        "served over the per-IP cap: {}",
        String::from_utf8_lossy(&out)
    );
    // Another address still gets in, twice.
    let mut b1 = from("127.0.0.4");
    let mut b2 = from("127.0.0.4");
    assert!(served(&mut b1) && served(&mut b2));
    // Closing one of 127.0.0.3's frees its place.
    drop(a1);
    let again = eventually(Duration::from_secs(5), || async {
        let mut s = from("127.0.0.3");
        s.write_all(request).is_ok() && {
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/1.1 200"
        }
    })
    .await;
    assert!(again);
    let m = scrape(&gw).await;
    assert!(
        m["gateway_downstream_connections_rejected_total{reason=\"max_connections_per_ip\"}"]
            >= 1.0
    );
    assert!(m["gateway_downstream_errors_total{kind=\"max_connections_per_ip\"}"] >= 1.0);
    drop((a2, b1, b2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_closes_half_sent_and_idle_connections() {
    raise_fd_limit();
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("  request_header_timeout_seconds: 2\n", &up));
    gw.wait_metrics_listening();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let port = gw.metrics_port;
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            if i % 2 == 0 {
                // Half a request; the other half send nothing at all.
                s.write_all(b"GET /metrics HTTP/1.1\r\nHo").await.unwrap();
            }
            let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
            (closed, start.elapsed())
        }));
    }
    for t in tasks {
        let (closed, took) = t.await.unwrap();
        assert!(closed && took < Duration::from_secs(5), "held {took:?}");
    }
    // Complete requests are still served.
    let r = client()
        .get(gw.metrics_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn the_admin_listener_binds_to_loopback_by_default() {
    use pingora_gateway::config::model::{FileConfig, MetricsConfig};
    assert_eq!(MetricsConfig::default().bind_address, "127.0.0.1:9090");
    let c: FileConfig =
        serde_yaml::from_str("upstreams: {}\nroutes: []\nmetrics: { enabled: true }\n").unwrap();
    assert_eq!(c.metrics.bind_address, "127.0.0.1:9090");
    let schema = pingora_gateway::config::schema();
    assert_eq!(
        schema["$defs"]["MetricsConfig"]["properties"]["bind_address"]["default"],
        "127.0.0.1:9090"
    );
    // The shipped config keeps the explicit all-interfaces address.
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.yaml"))
            .unwrap();
    assert!(shipped.contains("bind_address: \"0.0.0.0:9090\""));
}

/// Requests carrying a token and a cookie, well-formed and not, at `trace`.
async fn send_secrets(gw: &Gateway, tok: &str) {
    let cl = client();
    for path in ["/x", "/y?q=1"] {
        let r = cl
            .get(gw.url(path))
            .header("authorization", format!("Bearer {tok}"))
            .header("cookie", "session=cookie-value-s3cr3t-77")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Refused while parsing: Pingora's debug line dumps the raw head.
    let (status, _) = raw_request(
        gw.port,
        &format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {tok}\r\nCookie: session=cookie-value-s3cr3t-77\r\nBad Header: x\r\n\r\n"
        ),
    );
    assert_eq!(status, 400);
    let bad_token = format!("{tok}x");
    let r = cl
        .get(gw.url("/private/x"))
        .header("authorization", format!("Bearer {bad_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_cookie_or_secret_in_the_log_even_at_trace() {
    let up = Upstream::start("app").await;
    let body = |level: &str| {
        format!(
            "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/private/*\", upstream: app }}\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nhealth_check: {{ enabled: false }}\nauth:\n  jwt_secret: \"{SECRET}\"\nlogging:\n  level: {level}\n",
            up.addr
        )
    };
    let tok = token(serde_json::json!({"sub": "alice"}));
    let signature = tok.rsplit('.').next().unwrap().to_string();
    for (level, env) in [("trace", None), ("info", Some("trace"))] {
        let env: Vec<(&str, &str)> = env.map(|v| ("RUST_LOG", v)).into_iter().collect();
        let gw = Gateway::spawn(&body(level), &env);
        gw.wait_listening();
        send_secrets(&gw, &tok).await;
        // Wait for the access lines (written in batches), then look.
        let log = gw.wait_log("\"/private/x\"");
        assert!(
            log.contains("TRACE") || log.contains("DEBUG"),
            "not at trace ({level}, {env:?}):\n{log}"
        );
        for secret in [
            tok.as_str(),
            signature.as_str(),
            "cookie-value-s3cr3t-77",
            SECRET,
        ] {
            assert!(
                !log.contains(secret),
                "{secret:?} logged at {level}/{env:?}:\n{log}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_rejections_are_counted_and_summarized_once_a_second() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("", &up));
    let bad = [
        "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
        "GET /\x7f HTTP/9.9\r\n\r\n",
        "G\0T / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    let start = Instant::now();
    for i in 0..40 {
        let (status, text) = raw_request(gw.port, bad[i % bad.len()]);
        assert_eq!(status, 400, "{:?}: {text}", bad[i % bad.len()]);
    }
    // Good requests, closed and kept alive, count nothing.
    for _ in 0..5 {
        assert_eq!(raw_get(gw.port, "/ok", "").0, 200);
    }
    let mut keep = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    for _ in 0..5 {
        keep.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut keep).0, 200);
    }
    drop(keep);
    let elapsed = start.elapsed();
    assert_eq!(downstream_errors(&gw, "bad_request").await, 40.0);
    let log = gw.wait_log("downstream errors in the last second");
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("downstream errors in the last second"))
        .collect();
    let total: u64 = summaries
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["level"], "INFO");
            v["bad_request"].as_u64().unwrap()
        })
        .sum();
    assert!(
        summaries.len() as u64 <= elapsed.as_secs() + 2,
        "{summaries:?}"
    );
    assert!(total <= 40);
    assert!(!log.contains("ERROR"), "{log}");
    assert!(!log.contains("Fail to proxy"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_header_is_not_an_error() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config("", &up));
    for i in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        s.write_all(format!("GET /gone/{i} HTTP/1.1\r\nHost: a\r\nX-Par").as_bytes())
            .unwrap();
        s.flush().unwrap();
        drop(s);
    }
    let counted = eventually(Duration::from_secs(5), || async {
        downstream_errors(&gw, "incomplete_header").await == 100.0
    })
    .await;
    assert!(
        counted,
        "{}",
        downstream_errors(&gw, "incomplete_header").await
    );
    gw.wait_log("incomplete_header");
    let log = gw.log();
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(up.requests(), 0);
}
