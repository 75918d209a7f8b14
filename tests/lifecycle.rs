//! Process lifecycle as an operator meets it: a start that fails fast and
//! says why, a stop that ends as soon as the work is done, a lame-duck
//! period for rolling updates, quiet logs during an upgrade, and the small
//! command-line conveniences (`--version`, completions, a bare `gateway`).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn body(up: &Upstream) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n",
        up.addr
    )
}

/// Runs `gateway run --config` on `config` until it exits (at most 15 s):
/// exit status, stderr, how long it ran.
fn run_to_exit(config: &str) -> (Option<i32>, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    let _ = wait_for(Duration::from_secs(15), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let elapsed = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.map(|s| s.code().unwrap_or(-1)), err, elapsed)
}

fn assert_one_line_quick_failure(
    (code, stderr, elapsed): (Option<i32>, String, Duration),
    field: &str,
) {
    assert!(code.is_some(), "still running after 15 s: {stderr}");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    assert!(
        stderr.starts_with(&format!("gateway: {field}: cannot listen on 127.0.0.1:"))
            && stderr.contains("address already in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_proxy_port_in_use_fails_the_start_in_one_line_at_once() {
    let up = Upstream::start("app").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let metrics = reserve_port();
    let dir = tempfile::tempdir().unwrap();
    let config = Gateway::render(&body(&up), port, metrics.port, dir.path(), 1);
    assert_one_line_quick_failure(run_to_exit(&config), "server.bind_address");
}

#[tokio::test]
async fn a_metrics_port_in_use_fails_the_start_in_one_line_at_once() {
    let up = Upstream::start("app").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let proxy = reserve_port();
    let dir = tempfile::tempdir().unwrap();
    let config = Gateway::render(&body(&up), proxy.port, port, dir.path(), 1);
    assert_one_line_quick_failure(run_to_exit(&config), "metrics.bind_address");
}

#[tokio::test]
async fn an_https_port_in_use_fails_the_start_in_one_line_at_once() {
    let up = Upstream::start("app").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (proxy, metrics) = (reserve_port(), reserve_port());
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "tls:\n  bind_address: \"127.0.0.1:{port}\"\n  certificates:\n    - {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
        cert_file.display(),
        key_file.display()
    );
    let config = Gateway::render(
        &format!("{}{tls}", body(&up)),
        proxy.port,
        metrics.port,
        dir.path(),
        1,
    );
    assert_one_line_quick_failure(run_to_exit(&config), "tls.bind_address");
}

#[tokio::test]
async fn a_second_instance_cannot_share_the_metrics_port() {
    let up = Upstream::start("app").await;
    let first = Gateway::start(&body(&up));
    first.wait_metrics_listening();
    // A second gateway with the default `reuse_port: false`; its own proxy
    // port is any free one.
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "server:\n  bind_address: \"127.0.0.1:0\"\n  pid_file: \"{d}/gw.pid\"\n  upgrade_sock: \"{d}/up.sock\"\n{}metrics:\n  bind_address: \"127.0.0.1:{}\"\n",
        body(&up),
        first.metrics_port,
        d = dir.path().display()
    );
    assert_one_line_quick_failure(run_to_exit(&config), "metrics.bind_address");
    // Every scrape still reaches the first process.
    for _ in 0..5 {
        let r = client()
            .get(first.metrics_url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn an_idle_gateway_stops_at_once_whatever_the_grace_period() {
    let up = Upstream::start("app").await;
    let mut gw = Gateway::launch(&body(&up), &[], 10);
    gw.wait_listening();
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let stopped = Instant::now();
    kill(gw.pid(), "TERM");
    let status = gw.wait_exit(Duration::from_secs(15)).expect("exits");
    let took = stopped.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "idle stop took {took:?}");
    assert!(gw.log().contains("no client connection left: exiting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_a_slow_request_and_no_longer() {
    let up = Upstream::start("app").await;
    let mut gw = Gateway::launch(&body(&up), &[], 10);
    gw.wait_listening();
    let url = gw.url("/sleep/1500");
    let sent = Instant::now();
    let slow = tokio::spawn(async move {
        let r = client().get(url).send().await.unwrap();
        (r.status(), r.text().await.unwrap(), Instant::now())
    });
    assert!(
        eventually(Duration::from_secs(5), || async { up.requests() == 1 }).await,
        "the request reached the upstream"
    );
    kill(gw.pid(), "TERM");
    let (status, _, done) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request was finished");
    let exit = tokio::task::spawn_blocking(move || {
        let s = gw.wait_exit(Duration::from_secs(15));
        (s, Instant::now())
    });
    let (exit_status, exited) = exit.await.unwrap();
    assert!(exit_status.expect("exits").success());
    assert!(exited >= done, "exited before the response was done");
    let total = exited - sent;
    assert!(
        total < Duration::from_secs(4),
        "stop took {total:?} for a 1.5 s request (grace period 10 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_starts_a_lame_duck_period_with_readyz_503_while_the_proxy_serves() {
    let up = Upstream::start("app").await;
    let mut gw = Gateway::launch(
        &format!("server:\n  shutdown_delay_seconds: 2\n{}", body(&up)),
        &[],
        10,
    );
    gw.wait_listening();
    gw.wait_metrics_listening();
    let ready = client()
        .get(gw.metrics_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let stopped = Instant::now();
    kill(gw.pid(), "TERM");
    let url = gw.metrics_url("/readyz");
    assert!(
        eventually(Duration::from_millis(500), || {
            let url = url.clone();
            async move {
                client()
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 503)
            }
        })
        .await,
        "/readyz did not turn 503 at once"
    );
    // New connections are still served during the delay.
    let proxy = gw.url("/x");
    for _ in 0..3 {
        let r = client().get(&proxy).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(stopped.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.wait_exit(Duration::from_secs(15));
        (s, gw.log())
    });
    let (status, log) = status.await.unwrap();
    let took = stopped.elapsed();
    assert!(status.expect("exits").success(), "{log}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "exit {took:?} after SIGTERM with a 2 s delay"
    );
    assert!(log.contains("SIGTERM: /readyz answers 503"), "{log}");
}

fn lines_at(log: &str, level: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("\"level\":\"{level}\"")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_logs_no_error_and_pingora_lines_carry_no_file_paths() {
    let up = Upstream::start("app").await;
    let mut old = Gateway::start(&body(&up));
    old.wait_metrics_listening();
    // The successor starts first and waits for the sockets (the line
    // Pingora logs as an ERROR each second).
    let new = old.spawn_upgrade();
    assert!(
        wait_for(Duration::from_secs(10), || new
            .log()
            .contains("No incoming socket transfer"))
        .is_ok(),
        "{}",
        new.log()
    );
    kill(old.pid(), "QUIT");
    let port = old.port;
    assert!(
        wait_for(Duration::from_secs(20), || new
            .log()
            .contains("pingora-gateway starting"))
        .is_ok()
    );
    let r = client()
        .get(format!("http://127.0.0.1:{port}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The old process leaves once idle; the successor took the metrics
    // listener over with the proxy's.
    assert!(
        old.wait_exit(Duration::from_secs(15)).is_some(),
        "old exits"
    );
    let r = client()
        .get(old.metrics_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the successor answers on the metrics port");
    let (old_log, new_log) = (old.log(), new.log());
    for log in [&old_log, &new_log] {
        assert!(lines_at(log, "ERROR").is_empty(), "{log}");
        assert!(
            !log.contains(".cargo/registry") && !log.contains("log.file"),
            "{log}"
        );
    }
    let waiting = new_log
        .lines()
        .find(|l| l.contains("No incoming socket transfer"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(waiting).unwrap();
    assert_eq!(v["level"], "INFO", "{waiting}");
    assert_eq!(v["target"], "pingora", "{waiting}");
    assert!(v["module"].as_str().unwrap().starts_with("pingora_core"));
    assert!(
        !old_log.contains("service 'log flusher' exited"),
        "a service that ends by design is not news: {old_log}"
    );
}

fn gateway(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_names_the_commit_and_pingora() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = gateway(&["--version"], dir.path());
    assert_eq!(code, 0);
    let line = out.trim();
    assert!(
        line.starts_with(&format!("gateway {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains(", pingora 0.9."), "{line}");
    // Built in a git checkout git can read: the commit is HEAD's (a build
    // without one, e.g. from a source tarball, says "unknown").
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(h) => assert!(line.contains(&format!("(commit {h},")), "HEAD {h}: {line}"),
        None => assert!(line.contains("(commit unknown,"), "{line}"),
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = gateway(&["completions", shell], dir.path());
        assert_eq!(code, 0, "{err}");
        for word in ["validate", "schema", "completions", "config"] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (_, bash, _) = gateway(&["completions", "bash"], dir.path());
    let script = dir.path().join("gateway.bash");
    std::fs::write(&script, bash).unwrap();
    let ok = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(ok.success(), "the bash script parses");
}

#[test]
fn a_bare_gateway_without_a_config_says_where_it_looked_and_how_to_pass_one() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = gateway(&[], dir.path());
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in [
        "config/default.yaml",
        "/etc/pingora-gateway/gateway.yaml",
        "--config FILE",
    ] {
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn systemd_credentials_fill_the_config_variables() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("JWT_SECRET"), format!("{}\n", "k".repeat(40))).unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "upstreams:\n  app: { servers: [\"127.0.0.1:1\"] }\nroutes:\n  - { path: \"/*\", upstream: app }\nauth:\n  jwt_secret: \"${JWT_SECRET}\"\n",
    )
    .unwrap();
    let run = |creds: Option<&std::path::Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
        c.arg("validate").arg(&config).env_remove("JWT_SECRET");
        match creds {
            Some(d) => c.env("CREDENTIALS_DIRECTORY", d),
            None => c.env_remove("CREDENTIALS_DIRECTORY"),
        };
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = run(None);
    assert!(!ok && out.contains("JWT_SECRET"), "{out}");
    let (ok, out) = run(Some(&creds));
    assert!(ok, "{out}");
    assert!(
        !out.contains("warning"),
        "the 40-byte secret, newline removed: {out}"
    );
}
