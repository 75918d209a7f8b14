//! Operator stories for health checks, failover, retries and timeouts.

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two servers behind `app`, fast checks: 0.2 s interval, 0.3 s timeout,
/// down after 2 failures, back after 2 passes.
fn pair_config(a: &Upstream, b: &Upstream, extra_upstream: &str) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\", \"{}\"]{extra_upstream} }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nhealth_check:\n  interval_seconds: 0.2\n  timeout_seconds: 0.3\n  healthy_threshold: 2\n  unhealthy_threshold: 2\n",
        a.addr, b.addr
    )
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = client().get(url).send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_server_leaves_rotation_without_client_errors_and_comes_back() {
    let mut a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = Gateway::start(&pair_config(&a, &b, ""));

    // Continuous GETs from a few clients, recording every failure.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicU64::new(0));
    let mut load = vec![];
    for _ in 0..3 {
        let (stop, failures, count, url) =
            (stop.clone(), failures.clone(), count.clone(), gw.url("/x"));
        load.push(tokio::spawn(async move {
            let cl = client();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match cl.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.requests() > 5 && b.requests() > 5
        })
        .await
    );

    a.stop().await;
    let stopped = Instant::now();
    // Out of rotation within unhealthy_threshold × interval + timeout (plus a tick).
    let a_before = a.requests();
    assert!(
        eventually(Duration::from_secs(3), || async {
            gw.log().contains("server is unhealthy")
        })
        .await,
        "{}",
        gw.log()
    );
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(2 * 200 + 300 + 400 + 500),
        "took {took:?}"
    );
    assert_eq!(a.requests(), a_before);

    a.restart().await;
    let b_now = b.requests();
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.requests() > a_before + 5
        })
        .await,
        "a never came back; log:\n{}",
        gw.log()
    );
    assert!(b.requests() > b_now, "b keeps serving too");
    gw.wait_log("server is healthy again");

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "clients saw errors: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(count.load(Ordering::Relaxed) > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_server_left_answers_503_at_once_with_retry_after() {
    let mut a = Upstream::start("a").await;
    let mut b = Upstream::start("b").await;
    let gw = Gateway::start(&pair_config(&a, &b, ", connect_timeout_seconds: 5"));
    assert_eq!(get(&gw.url("/x")).await.0, 200);
    a.stop().await;
    b.stop().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.log().matches("server is unhealthy").count() == 2
        })
        .await,
        "{}",
        gw.log()
    );
    let started = Instant::now();
    let (status, headers, body) = get(&gw.url("/x")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(headers["retry-after"], "5");
    assert!(body.contains("no healthy server"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_status_or_a_slow_answer_fails_the_check() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = Gateway::start(&pair_config(&a, &b, ""));
    assert!(
        eventually(Duration::from_secs(3), || async {
            a.state.health_checks.load(Ordering::Relaxed) > 2
        })
        .await
    );

    a.state.health_status.store(500, Ordering::Relaxed);
    b.state.health_delay_ms.store(1000, Ordering::Relaxed); // over the 0.3 s timeout
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.log().matches("server is unhealthy").count() == 2
        })
        .await,
        "{}",
        gw.log()
    );
    let log = gw.log();
    assert!(log.contains("unexpected status"), "{log}");
    assert!(log.contains("no answer within"), "{log}");
    assert_eq!(get(&gw.url("/x")).await.0, 503);

    a.state.health_status.store(200, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&gw.url("/x")).await.0 == 200
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_path_and_expected_codes_are_honoured_per_upstream() {
    let k = Upstream::start("kline").await;
    let other = Upstream::start("other").await;
    let body = format!(
        "upstreams:\n  kline:\n    servers: [\"{}\"]\n    health_check: {{ path: /kline/health, method: HEAD, expected_status_codes: [204] }}\n  other: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/kline/*\", upstream: kline, auth_required: false }}\n  - {{ path: \"/*\", upstream: other, auth_required: false }}\nhealth_check:\n  interval_seconds: 0.2\n  timeout_seconds: 0.5\n  healthy_threshold: 1\n  unhealthy_threshold: 1\n",
        k.addr, other.addr
    );
    let gw = Gateway::start(&body);
    let last = |u: &Upstream| u.state.last_health_check.lock().unwrap().clone();
    assert!(
        eventually(Duration::from_secs(3), || async {
            last(&k) == "HEAD /kline/health"
        })
        .await,
        "{}",
        last(&k)
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            last(&other) == "GET /health"
        })
        .await,
        "{}",
        last(&other)
    );
    // The stand-in answers 200, not the expected 204: out of rotation.
    assert!(
        eventually(Duration::from_secs(3), || async {
            get(&gw.url("/kline/x")).await.0 == 503
        })
        .await
    );
    assert_eq!(get(&gw.url("/x")).await.0, 200);
    k.state.health_status.store(204, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(3), || async {
            get(&gw.url("/kline/x")).await.0 == 200
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_body_went_upstream_is_not_retried() {
    // `breaker` reads the whole request, then hangs up without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let breaker = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if got.ends_with(b"payload") {
                        seen.fetch_add(1, Ordering::Relaxed);
                        return; // drop: no response
                    }
                    if got.windows(4).any(|w| w == b"\r\n\r\n") && got.starts_with(b"GET") {
                        return;
                    }
                }
            });
        }
    });
    let good = Upstream::start("good").await;
    let body = format!(
        "upstreams:\n  app: {{ servers: [\"{breaker}\", \"{}\"], retries: 1 }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nhealth_check: {{ enabled: false }}\n",
        good.addr
    );
    let gw = Gateway::start(&body);
    let cl = client();
    let mut bad_gateway = 0;
    for _ in 0..6 {
        let r = cl
            .post(gw.url("/orders"))
            .body("payload")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", gw.log()));
        if r.status() == 502 {
            bad_gateway += 1;
        } else {
            assert_eq!(r.status(), 200);
        }
    }
    let broken = seen.load(Ordering::Relaxed);
    assert!(broken >= 1, "round robin never reached the breaking server");
    assert_eq!(
        bad_gateway, broken,
        "each POST the breaker swallowed is a 502, not a retry"
    );
    assert_eq!(
        good.requests(),
        6 - broken,
        "no POST reached the good server twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_idle_stream_survives_on_a_route_whose_timeout_allows_it() {
    let up = Upstream::start("kline").await;
    let body = format!(
        "upstreams:\n  kline: {{ servers: [\"{}\"], read_timeout_seconds: 0.4 }}\nroutes:\n  - {{ path: \"/stream/*\", upstream: kline, auth_required: false, read_timeout_seconds: 5 }}\n  - {{ path: \"/*\", upstream: kline, auth_required: false }}\n",
        up.addr
    );
    let gw = Gateway::start(&body);
    // Events 800 ms apart: longer than the upstream's 0.4 s read timeout.
    let text = client()
        .get(gw.url("/stream/candles/stream?n=3&interval_ms=800"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.matches("data:").count(), 3, "{text}");
    // The same stream on an ordinary route is cut by the read timeout.
    let r = client()
        .get(gw.url("/candles/stream?n=3&interval_ms=800"))
        .send()
        .await
        .unwrap();
    // It started as a 200, so the gateway must break the connection rather
    // than end the stream cleanly (or append an error body to it).
    assert_eq!(r.status(), 200);
    let body = r.text().await;
    assert!(
        body.is_err(),
        "a timed-out stream must not look complete: {body:?}"
    );
    // An ordinary call still fails fast.
    let started = Instant::now();
    assert_eq!(get(&gw.url("/sleep/3000")).await.0, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_state_survives_a_reload_and_new_servers_are_checked_at_once() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let slow_checks = |servers: &[&Upstream]| {
        let list: Vec<String> = servers.iter().map(|u| format!("\"{}\"", u.addr)).collect();
        format!(
            "upstreams:\n  app: {{ servers: [{}] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nhealth_check:\n  interval_seconds: 0.2\n  timeout_seconds: 0.3\n  healthy_threshold: 1\n  unhealthy_threshold: 1\n",
            list.join(", ")
        )
    };
    let gw = Gateway::start(&slow_checks(&[&a]));
    a.state.health_status.store(500, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(3), || async {
            get(&gw.url("/x")).await.0 == 503
        })
        .await
    );

    // Reload with a longer interval: `a` must stay out (its state is kept),
    // and `b`, new in this version, must be probed right away, not 30 s later.
    gw.write_config(
        &slow_checks(&[&a, &b]).replace("interval_seconds: 0.2", "interval_seconds: 30"),
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            b.state.health_checks.load(Ordering::Relaxed) > 0
        })
        .await
    );
    for _ in 0..5 {
        let (status, _, body) = get(&gw.url("/x")).await;
        assert_eq!(status, 200);
        assert!(
            body.contains("\"app\":\"b\""),
            "the unhealthy server came back with the reload: {body}"
        );
    }
    gw.wait_log("config reloaded");
}
