//! The Grafana dashboard against a real Prometheus scraping a real gateway:
//! the exposition passes `promtool check metrics`, and every panel's query
//! (its `$variables` expanded as Grafana would) parses and returns series.
//! Needs Debian's `prometheus` package (tests/run installs it).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const JOB: &str = "pingora-gateway";

fn config(app: &Upstream) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/pub/*\", upstream: app, auth_required: false }}\n  - {{ path: \"/priv/*\", upstream: app, auth_required: true }}\nauth:\n  jwt_secret: \"{SECRET}\"\nhealth_check:\n  interval_seconds: 0.5\n",
        app.addr
    )
}

/// TCP ports process `pid` listens on (from /proc: no port is guessed).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = vec![];
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// A Prometheus server on 127.0.0.1 (an ephemeral port) scraping the
/// gateway's admin listener every second; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is needed (tests/run installs Debian's prometheus package)");
        let pid = child.id();
        let mut port = 0;
        wait_for(Duration::from_secs(20), || {
            port = listening_ports(pid).first().copied().unwrap_or(0);
            port != 0
        })
        .unwrap_or_else(|_| {
            panic!(
                "prometheus never listened:\n{}",
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            )
        });
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// `/api/v1/query`: the result vector, or the error Prometheus gave.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .finish();
        let r = client()
            .get(format!("http://127.0.0.1:{}/api/v1/query?{q}", self.port))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(v.to_string());
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_dashboard_provisions_from_a_file() {
    let d = dashboard();
    assert!(
        d.get("__inputs").is_none(),
        "`__inputs` only works through the import UI"
    );
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job", "instance"]);
    for p in d["panels"].as_array().unwrap() {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("job=~\"$job\"") && expr.contains("instance=~\"$instance\""),
                "{}: {expr} ignores the job and instance variables",
                p["title"]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_series_from_a_real_prometheus() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&config(&app));
    gw.wait_metrics_listening();
    let traffic = || async {
        assert_eq!(
            client()
                .get(gw.url("/pub/a"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            client()
                .get(gw.url("/priv/a"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    };
    traffic().await;

    // The exposition as a scraper sees it passes Prometheus's own linter.
    let text = metrics_text(&gw).await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let prom = Prometheus::start(gw.metrics_port);
    // rate() needs two samples in its range: wait for three scrapes.
    let up = format!("count_over_time(up{{job=\"{JOB}\"}}[1m]) >= 3");
    let mut scraped = false;
    for _ in 0..40 {
        traffic().await;
        if prom.query(&up).await.is_ok_and(|r| !r.is_empty()) {
            scraped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(scraped, "prometheus never scraped the gateway three times");
    let health = prom.query(&format!("up{{job=\"{JOB}\"}}")).await.unwrap();
    assert_eq!(health[0]["value"][1], "1", "the target is up: {health:?}");

    let instance = format!("127.0.0.1:{}", gw.metrics_port);
    let mut checked = 0;
    for p in dashboard()["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", &instance)
                .replace("$job", JOB);
            assert!(!expr.contains('$'), "unexpanded variable in {expr}");
            let result = prom
                .query(&expr)
                .await
                .unwrap_or_else(|e| panic!("{}: {expr}: {e}", p["title"]));
            assert!(
                !result.is_empty(),
                "{}: {expr} returned no series",
                p["title"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 19, "{checked} queries");

    // Nothing failed: the error-rate panel says 0, not "No data".
    let error_rate = &dashboard()["panels"][1]["targets"][0]["expr"];
    let expr = error_rate
        .as_str()
        .unwrap()
        .replace("$__rate_interval", "1m")
        .replace("$instance", &instance)
        .replace("$job", JOB);
    let r = prom.query(&expr).await.unwrap();
    assert_eq!(r[0]["value"][1], "0", "{r:?}");
    // Health transitions carry the server's labels, as the README says.
    let t = prom
        .query("gateway_upstream_health_transitions_total")
        .await
        .unwrap();
    assert_eq!(t[0]["metric"]["upstream"], "app");
    assert_eq!(t[0]["metric"]["server"], app.addr.to_string());
}
