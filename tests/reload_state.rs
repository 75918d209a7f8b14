//! Operator stories about what a reload leaves behind: the hash an operator
//! compares with `sha256sum`, a broken edit reverted, and the one warning
//! a restart-needed change deserves.

mod common;

use common::*;
use std::time::Duration;

fn body(up: &Upstream, version: &str) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nresponse_headers:\n  X-Config-Version: \"{version}\"\n",
        up.addr
    )
}

/// `sha256sum FILE`'s digest.
fn sha256sum(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The `hash` label of `gateway_config_info`.
async fn info_hash(gw: &Gateway) -> String {
    let m = scrape(gw).await;
    let key = m
        .keys()
        .find(|k| k.starts_with("gateway_config_info{"))
        .expect("gateway_config_info");
    key.split('"').nth(1).unwrap().to_string()
}

async fn reloads(gw: &Gateway, result: &str) -> f64 {
    scrape(gw)
        .await
        .get(&format!(
            "gateway_config_reloads_total{{result=\"{result}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
}

async fn wait_reloads(gw: &Gateway, result: &str, n: f64) {
    assert!(
        eventually(Duration::from_secs(5), || async {
            reloads(gw, result).await == n
        })
        .await,
        "reloads {{result={result}}} never reached {n}; log:\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_hash_is_what_sha256sum_prints() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&body(&up, "1"));
    assert_eq!(info_hash(&gw).await, sha256sum(&gw.config_path));
    let ready: serde_json::Value = client()
        .get(gw.metrics_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["config_hash"], sha256sum(&gw.config_path));

    gw.write_config(&body(&up, "2"));
    wait_reloads(&gw, "success", 1.0).await;
    assert_eq!(info_hash(&gw).await, sha256sum(&gw.config_path));
    let log = gw.wait_log("config reloaded");
    assert!(
        log.contains(&sha256sum(&gw.config_path)),
        "the INFO line names the hash: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverting_a_broken_edit_is_a_successful_reload() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&body(&up, "1"));
    let good = std::fs::read(&gw.config_path).unwrap();
    let hash = info_hash(&gw).await;

    gw.write_config("routes: [oops");
    wait_reloads(&gw, "failure", 1.0).await;
    let m = scrape(&gw).await;
    assert_eq!(m["gateway_config_last_reload_successful"], 0.0);

    // The exact last-good bytes again: the failure is over.
    std::fs::write(&gw.config_path, &good).unwrap();
    wait_reloads(&gw, "success", 1.0).await;
    let log = gw.wait_log("config restored");
    let m = scrape(&gw).await;
    assert_eq!(m["gateway_config_last_reload_successful"], 1.0, "{log}");
    assert_eq!(info_hash(&gw).await, hash);
    assert_eq!(reloads(&gw, "failure").await, 1.0);
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.headers()["x-config-version"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_needed_change_is_warned_about_once() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&body(&up, "1"));
    let warning = "server.max_connections_per_ip changed";
    let with_limit = |v: &str| format!("server:\n  max_connections_per_ip: 50\n{}", body(&up, v));

    gw.write_config(&with_limit("2"));
    wait_reloads(&gw, "success", 1.0).await;
    let log = gw.wait_log(warning);
    assert!(log.contains("restart"), "names the generic action: {log}");
    assert!(
        log.contains("\"setting\":\"server.max_connections_per_ip\""),
        "{log}"
    );
    // Later reloads that keep the change say nothing more about it.
    gw.write_config(&with_limit("3"));
    wait_reloads(&gw, "success", 2.0).await;
    gw.write_config(&with_limit("4"));
    wait_reloads(&gw, "success", 3.0).await;
    wait_for(Duration::from_secs(5), || {
        gw.log().matches("config reloaded").count() == 3
    })
    .expect("three INFO lines");
    assert_eq!(gw.log().matches(warning).count(), 1, "{}", gw.log());
    // Everything else applied at once.
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.headers()["x-config-version"], "4");
}
