//! Metrics and the admin endpoints, read the way Prometheus and an
//! orchestrator read them.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Samples of a text exposition: `name{labels}` → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(gw: &Gateway) -> BTreeMap<String, f64> {
    gw.wait_metrics_listening();
    let r = client()
        .get(gw.metrics_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    parse(&r.text().await.unwrap())
}

/// The value of the one series of `name` whose labels include all of `labels`.
fn value(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let hits: Vec<_> = samples
        .iter()
        .filter(|(k, _)| {
            (k.as_str() == name || k.starts_with(&format!("{name}{{")))
                && labels
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
        })
        .collect();
    assert_eq!(hits.len(), 1, "{name} {labels:?}: {hits:?}");
    *hits[0].1
}

/// `down` (not health-checked) answers 502; `dead` (checked, unrouted) is taken out.
fn config(app: &Upstream, refused: std::net::SocketAddr, dead: std::net::SocketAddr) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\n  down: {{ servers: [\"{refused}\"], retries: 0, health_check: {{ enabled: false }} }}\n  dead: {{ servers: [\"{dead}\"] }}\nroutes:\n  - {{ path: \"/pub/*\", upstream: app, auth_required: false }}\n  - {{ path: \"/priv/*\", upstream: app }}\n  - {{ path: \"/down/*\", upstream: down, auth_required: false }}\nauth:\n  jwt_secret: \"{SECRET}\"\nhealth_check:\n  interval_seconds: 0.2\n  timeout_seconds: 0.5\n  unhealthy_threshold: 1\n  healthy_threshold: 1\n",
        app.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_histograms_and_labels_after_a_mix_of_traffic() {
    let app = Upstream::start("app").await;
    let (refused, _hold) = refused_addr();
    let (dead, _hold2) = refused_addr();
    let gw = Gateway::start(&config(&app, refused, dead));
    let cl = client();
    for _ in 0..3 {
        assert_eq!(cl.get(gw.url("/pub/a")).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        cl.post(gw.url("/pub/a"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for _ in 0..2 {
        assert_eq!(
            cl.get(gw.url("/nowhere")).send().await.unwrap().status(),
            404
        );
        assert_eq!(
            cl.get(gw.url("/priv/a")).send().await.unwrap().status(),
            401
        );
    }
    let t = token(json!({"sub": "u"}));
    assert_eq!(
        cl.get(gw.url("/priv/a"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        cl.get(gw.url("/priv/a"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        cl.get(gw.url("/down/a")).send().await.unwrap().status(),
        502
    );

    let m = scrape(&gw).await;
    let req = |route, method, status| {
        value(
            &m,
            "gateway_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(req("/pub/*", "GET", "200"), 3.0);
    assert_eq!(req("/pub/*", "POST", "200"), 1.0);
    assert_eq!(req("(unmatched)", "GET", "404"), 2.0);
    assert_eq!(req("/priv/*", "GET", "401"), 3.0);
    assert_eq!(req("/priv/*", "GET", "200"), 1.0);
    assert_eq!(req("/down/*", "GET", "502"), 1.0);
    assert_eq!(
        value(
            &m,
            "gateway_requests_total",
            &[
                ("route", "/pub/*"),
                ("status", "200"),
                ("method", "GET"),
                ("upstream", "app")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_auth_rejections_total",
            &[("route", "/priv/*"), ("reason", "missing")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_auth_rejections_total",
            &[("route", "/priv/*"), ("reason", "malformed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_request_duration_seconds_count",
            &[("route", "/pub/*")]
        ),
        4.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_request_duration_seconds_bucket",
            &[("route", "/pub/*"), ("le", "+Inf")]
        ),
        4.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_upstream_duration_seconds_count",
            &[("route", "/pub/*")]
        ),
        4.0
    );
    assert!(
        value(
            &m,
            "gateway_request_duration_seconds_sum",
            &[("route", "/pub/*")]
        ) > 0.0
    );
    assert_eq!(value(&m, "gateway_requests_in_flight", &[]), 0.0);
    assert_eq!(
        value(
            &m,
            "gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(value(&m, "gateway_config_last_reload_successful", &[]), 1.0);
    assert_eq!(
        value(&m, "gateway_config_reloads_total", &[("result", "success")]),
        0.0
    );
    assert!(
        value(
            &m,
            "gateway_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
    assert!(value(&m, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&m, "process_open_fds", &[]) > 0.0);
    assert_eq!(
        value(
            &m,
            "gateway_upstream_server_healthy",
            &[("upstream", "app")]
        ),
        1.0
    );

    // The dead upstream is taken out and counted as a transition of that
    // server (labels `upstream` and `server`, as the README says).
    assert!(
        eventually(Duration::from_secs(3), || async {
            value(
                &scrape(&gw).await,
                "gateway_upstream_server_healthy",
                &[("upstream", "dead")],
            ) == 0.0
        })
        .await
    );
    let m = scrape(&gw).await;
    let dead_server = dead.to_string();
    let transitions = |upstream: &str, server: &str| {
        value(
            &m,
            "gateway_upstream_health_transitions_total",
            &[("upstream", upstream), ("server", server)],
        )
    };
    assert!(transitions("dead", &dead_server) >= 1.0);
    assert_eq!(
        transitions("app", &app.addr.to_string()),
        0.0,
        "healthy all along"
    );

    // Open client connections are the gateway's own count: exactly the
    // ones held (once the harness's probes and the client's kept-alive
    // connections are gone), and none after.
    drop(cl);
    let gw = &gw;
    let open = |n: f64| async move {
        eventually(Duration::from_secs(3), || async move {
            value(&scrape(gw).await, "gateway_downstream_connections", &[]) == n
        })
        .await
    };
    assert!(open(0.0).await, "the harness's probes have closed");
    let held: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap())
        .collect();
    assert!(open(2.0).await, "two held connections");
    drop(held);
    assert!(open(0.0).await, "closed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_distinct_paths_add_no_series() {
    let app = Upstream::start("app").await;
    let (refused, _hold) = refused_addr();
    let (dead, _hold2) = refused_addr();
    let gw = Gateway::start(&config(&app, refused, dead));
    let cl = client();
    // Warm up every label combination used below, then count series.
    cl.get(gw.url("/pub/warm")).send().await.unwrap();
    cl.get(gw.url("/warm")).send().await.unwrap();
    let invented = |i: usize| reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
    cl.request(invented(0), gw.url("/pub/warm"))
        .send()
        .await
        .unwrap();
    let series = |m: &BTreeMap<String, f64>| m.keys().filter(|k| k.starts_with("gateway_")).count();
    let before = series(&scrape(&gw).await);
    // Invented methods do not mint series either: they all count as OTHER.
    for i in 1..50 {
        cl.request(invented(i), gw.url("/pub/x"))
            .send()
            .await
            .unwrap();
    }
    for i in 0..1000 {
        let path = if i % 2 == 0 {
            format!("/pub/{i}/x")
        } else {
            format!("/unrouted/{i}")
        };
        cl.get(gw.url(&path)).send().await.unwrap();
    }
    let after = scrape(&gw).await;
    assert_eq!(
        series(&after),
        before,
        "the route label must be the pattern, not the path"
    );
    assert_eq!(
        value(
            &after,
            "gateway_requests_total",
            &[("route", "(unmatched)"), ("status", "404")]
        ),
        501.0
    );
    assert_eq!(
        value(
            &after,
            "gateway_requests_total",
            &[("route", "/pub/*"), ("method", "OTHER")]
        ),
        50.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_uses_exists_in_a_real_scrape() {
    let app = Upstream::start("app").await;
    let (refused, _hold) = refused_addr();
    let (dead, _hold2) = refused_addr();
    let gw = Gateway::start(&config(&app, refused, dead));
    client().get(gw.url("/pub/a")).send().await.unwrap();
    client().get(gw.url("/priv/a")).send().await.unwrap();
    let m = scrape(&gw).await;
    let names: std::collections::BTreeSet<&str> =
        m.keys().map(|k| k.split('{').next().unwrap()).collect();

    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/grafana-dashboard.json"
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&dashboard).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("gateway_") || word.starts_with("process_") {
                    used.insert(word.to_string());
                }
            }
        }
    }
    assert!(used.len() >= 12, "{used:?}");
    for name in &used {
        assert!(
            names.contains(name.as_str()),
            "dashboard uses {name}, which the gateway does not export"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_and_the_config_hash_follows() {
    let app = Upstream::start("app").await;
    let (refused, _hold) = refused_addr();
    let (dead, _hold2) = refused_addr();
    let gw = Gateway::start(&config(&app, refused, dead));
    let hash = |m: &BTreeMap<String, f64>| {
        m.keys()
            .find(|k| k.starts_with("gateway_config_info{"))
            .cloned()
            .unwrap()
    };
    let first = hash(&scrape(&gw).await);
    gw.write_config(&format!(
        "{}\nresponse_headers: {{}}\n",
        config(&app, refused, dead)
    ));
    assert!(
        eventually(Duration::from_secs(5), || async {
            value(
                &scrape(&gw).await,
                "gateway_config_reloads_total",
                &[("result", "success")],
            ) == 1.0
        })
        .await
    );
    let m = scrape(&gw).await;
    assert_ne!(hash(&m), first);
    gw.write_config("routes: [oops");
    assert!(
        eventually(Duration::from_secs(5), || async {
            value(
                &scrape(&gw).await,
                "gateway_config_reloads_total",
                &[("result", "failure")],
            ) == 1.0
        })
        .await
    );
    let m = scrape(&gw).await;
    assert_eq!(value(&m, "gateway_config_last_reload_successful", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_for_orchestrators() {
    let mut app = Upstream::start("app").await;
    let (refused, _hold) = refused_addr();
    let (dead, _hold2) = refused_addr();
    let gw = Gateway::start(&config(&app, refused, dead));
    gw.wait_metrics_listening();
    let get = |path: &'static str| {
        let url = gw.metrics_url(path);
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, json!({"status": "alive"})));
    let (status, v) = get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["routes"], 3);
    assert_eq!(v["upstreams"]["app"]["total"], 1);
    assert_eq!(v["upstreams"]["app"]["servers"][app.addr.to_string()], true);

    app.stop().await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            get("/readyz").await.1["upstreams"]["app"]["healthy"] == 0
        })
        .await
    );
    assert_eq!(
        get("/readyz").await.0,
        200,
        "a dead upstream does not make the gateway unready"
    );
    assert_eq!(
        client()
            .get(gw.metrics_url("/other"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_metrics_listen_nowhere() {
    let app = Upstream::start("app").await;
    let body = format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nmetrics:\n  enabled: false\n  bind_address: \"127.0.0.1:{{metrics_port}}\"\n",
        app.addr
    );
    let gw = Gateway::start(&body);
    assert_eq!(
        client().get(gw.url("/x")).send().await.unwrap().status(),
        200
    );
    let refused = std::net::TcpStream::connect(("127.0.0.1", gw.metrics_port));
    assert!(refused.is_err(), "something listens on the metrics port");
}
