//! Operator stories for live config reload and graceful binary upgrade:
//! edits under load never fail a request, every valid version shows, no
//! invalid one ever does, and an upgrade drops nothing.

mod common;

use common::ws::{ws_connect, ws_echo_server, ws_roundtrip};
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A config whose responses carry `X-Config-Version: {version}` and whose
/// `/v{version}/*` route exists only in that version.
fn versioned(up: &Upstream, version: &str) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n  - {{ path: \"/v{version}/*\", upstream: app, auth_required: false, strip_prefix: true }}\nresponse_headers:\n  X-Config-Version: \"{version}\"\n",
        up.addr
    )
}

/// Clients hammering the gateway until stopped; they record failures and
/// every config version they saw.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(vec![]));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60); // hard bound
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failures, seen) =
                    (stop.clone(), ok.clone(), failures.clone(), seen.clone());
                tokio::spawn(async move {
                    let cl = client();
                    let url = format!("http://127.0.0.1:{port}/x");
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match cl.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                let v = r
                                    .headers()
                                    .get("x-config-version")
                                    .map(|v| v.to_str().unwrap().to_string());
                                let _ = r.bytes().await;
                                if let Some(v) = v {
                                    seen.lock().unwrap().insert(v);
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures.lock().unwrap().push(format!(
                                "at {:?}: status {}",
                                started.elapsed(),
                                r.status()
                            )),
                            Err(e) => failures
                                .lock()
                                .unwrap()
                                .push(format!("at {:?}: {e:?}", started.elapsed())),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            seen,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let seen = self.seen.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures, seen)
    }
}

async fn version_of(url: &str) -> Option<String> {
    let r = client().get(url).send().await.ok()?;
    r.headers()
        .get("x-config-version")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn wait_version(gw: &Gateway, v: &str) {
    let url = gw.url("/x");
    assert!(
        eventually(Duration::from_secs(5), || async {
            version_of(&url).await.as_deref() == Some(v)
        })
        .await,
        "version {v} never became visible; log:\n{}",
        gw.log()
    );
}

/// Saves like an editor: write a temp file, rename it over the config.
fn atomic_save(gw: &Gateway, text: &str) {
    let tmp = gw.dir.path().join(".gateway.yaml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &gw.config_path).unwrap();
}

/// Kubernetes ConfigMap style: `gateway.yaml -> ..data/gateway.yaml`, and a
/// new version is a new directory behind an atomically swapped `..data` link.
fn configmap_swap(gw: &Gateway, text: &str, n: usize) {
    let dir = gw.dir.path();
    let version_dir = dir.join(format!("..v{n}"));
    std::fs::create_dir(&version_dir).unwrap();
    std::fs::write(version_dir.join("gateway.yaml"), text).unwrap();
    let tmp_link = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..v{n}"), &tmp_link).unwrap();
    std::fs::rename(&tmp_link, dir.join("..data")).unwrap();
    if !std::fs::symlink_metadata(&gw.config_path)
        .unwrap()
        .file_type()
        .is_symlink()
    {
        let link_tmp = dir.join("gateway.yaml.link");
        std::os::unix::fs::symlink("..data/gateway.yaml", &link_tmp).unwrap();
        std::fs::rename(&link_tmp, &gw.config_path).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_edits_under_load_never_fail_a_request() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&versioned(&up, "0"));
    wait_version(&gw, "0").await;
    let load = Load::start(gw.port, 6);

    let render = |body: &str| gw.render_body(body);
    let mut valid = vec!["0".to_string()];
    for n in 1..=12 {
        let version = n.to_string();
        let good = render(&versioned(&up, &version));
        match n % 4 {
            0 => configmap_swap(&gw, &good, n),
            1 => gw.write_config(&versioned(&up, &version)),
            2 => atomic_save(&gw, &good),
            _ => {
                // In place, the way `>` redirection writes: truncate, then write.
                std::fs::write(&gw.config_path, "").unwrap();
                std::fs::write(&gw.config_path, &good).unwrap();
            }
        }
        wait_version(&gw, &version).await;
        valid.push(version.clone());

        // Broken edits in between: never applied, the previous version keeps serving.
        let bad = match n % 3 {
            0 => render(&versioned(&up, &format!("bad{n}")))
                .replace("upstream: app", "upstream: nope"),
            1 => format!(
                "{}\n  - {{ path: [unclosed\n",
                render(&versioned(&up, &format!("bad{n}")))
            ),
            _ => render(&versioned(&up, &format!("bad{n}")))
                .replace("auth_required: false", "auth_requird: false"),
        };
        atomic_save(&gw, &bad);
        assert!(
            eventually(Duration::from_secs(5), || async {
                gw.log().matches("config rejected").count() >= n
            })
            .await,
            "broken edit {n} was not reported; log:\n{}",
            gw.log()
        );
        assert_eq!(
            version_of(&gw.url("/x")).await.as_deref(),
            Some(version.as_str())
        );
    }

    let (ok, failures, seen) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests ran");
    assert!(
        seen.iter().all(|v| !v.starts_with("bad")),
        "an invalid config served: {seen:?}"
    );
    let log = gw.wait_log("routes added: /v1/*; routes removed: /v0/*");
    assert!(
        log.contains("routes added: /v1/*; routes removed: /v0/*"),
        "summary line missing:\n{log}"
    );
    // Each rejected file is reported in the `gateway validate` form.
    assert!(
        log.contains(&format!("{}:", gw.config_path.display())),
        "{log}"
    );
    assert!(
        log.contains("routes[0].upstream: unknown upstream \\\"nope\\\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_route_answers_within_a_second_of_the_write() {
    // No catch-all here: a route answers only once its version is in force.
    let only = |up: &Upstream, v: &str| {
        versioned(up, v).replace(
            "  - { path: \"/*\", upstream: app, auth_required: false }\n",
            "",
        )
    };
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&only(&up, "0"));
    let cl = client();
    assert_eq!(
        cl.get(gw.url("/v1/hello")).send().await.unwrap().status(),
        404
    );
    for n in 1..=3 {
        let written = Instant::now();
        gw.write_config(&only(&up, &n.to_string()));
        let url = gw.url(&format!("/v{n}/hello"));
        assert!(
            eventually(Duration::from_secs(5), || async {
                cl.get(&url).send().await.is_ok_and(|r| r.status() == 200)
            })
            .await
        );
        let took = written.elapsed();
        assert!(took < Duration::from_secs(1), "reload {n} took {took:?}");
    }
    // Unchanged bytes are a no-op: no reload line for a rewrite of the same content.
    // Every reload so far is in the log (lines are flushed in batches).
    assert!(
        wait_for(Duration::from_secs(5), || gw
            .log()
            .matches("config reloaded")
            .count()
            == 3)
        .is_ok()
    );
    let before = 3;
    gw.write_config(&only(&up, "3"));
    tokio::time::sleep(Duration::from_millis(500)).await; // nothing to wait for: proving an absence
    assert_eq!(
        gw.log().matches("config reloaded").count(),
        before,
        "{}",
        gw.log()
    );
}

/// [`versioned`] plus a WebSocket echo upstream under `/ws/*`.
fn versioned_with_ws(up: &Upstream, ws: std::net::SocketAddr, version: &str) -> String {
    format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\n  ws: {{ servers: [\"{ws}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n  - {{ path: \"/ws/*\", upstream: ws, auth_required: false }}\n  - {{ path: \"/v{version}/*\", upstream: app, auth_required: false }}\nresponse_headers:\n  X-Config-Version: \"{version}\"\n",
        up.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_websockets_survive_a_reload() {
    let up = Upstream::start("app").await;
    let ws_addr = ws_echo_server().await;
    let gw = Gateway::start(&versioned_with_ws(&up, ws_addr, "0"));

    let mut ws = ws_connect(gw.port).await;
    ws_roundtrip(&mut ws, 1, || gw.log()).await;
    let sse = client()
        .get(gw.url("/events/stream?n=8&interval_ms=150"))
        .send()
        .await
        .unwrap();
    let sse_task = tokio::spawn(async move { sse.text().await.unwrap() });

    gw.write_config(&versioned_with_ws(&up, ws_addr, "1"));
    wait_version(&gw, "1").await;

    ws_roundtrip(&mut ws, 3, || gw.log()).await;
    let events = sse_task.await.unwrap();
    assert_eq!(events.matches("data:").count(), 8, "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_upgrade_under_load_drops_nothing() {
    let up = Upstream::start("app").await;
    let ws_addr = ws_echo_server().await;
    // A grace period long enough for the in-flight stream below to finish on the old process.
    let mut old = Gateway::launch(&versioned_with_ws(&up, ws_addr, "old"), &[], 4);
    old.wait_listening();
    wait_version(&old, "old").await;

    let load = Load::start(old.port, 6);
    let mut ws = ws_connect(old.port).await;
    ws_roundtrip(&mut ws, 1, || old.log()).await;
    let stream = client()
        .get(old.url("/s/stream?n=10&interval_ms=200"))
        .send()
        .await
        .unwrap();
    let stream_task = tokio::spawn(async move { stream.text().await.unwrap() });
    assert!(
        eventually(Duration::from_secs(5), || async {
            load.ok.load(Ordering::Relaxed) > 50
        })
        .await
    );

    // The new binary (on a new config version) waits on the upgrade socket;
    // SIGQUIT makes the old one hand its listeners over.
    old.write_config(&versioned_with_ws(&up, ws_addr, "new"));
    let new = old.spawn_upgrade();
    let sock = old.dir.path().join("upgrade.sock");
    wait_for(Duration::from_secs(10), || sock.exists())
        .expect("new process waits on the upgrade socket");
    kill(old.pid(), "QUIT");
    let quit_at = Instant::now();

    wait_version(&old, "new").await; // same port, now answered by the new process
    ws_roundtrip(&mut ws, 3, || old.log()).await; // the open WebSocket stays on the old process meanwhile
    let events = stream_task.await.unwrap();
    assert_eq!(
        events.matches("data:").count(),
        10,
        "in-flight stream cut: {events}"
    );
    let status = old
        .wait_exit(Duration::from_secs(20))
        .expect("old process exits after its grace period");
    assert!(status.success(), "{status:?}");

    let (ok, failures, seen) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed: {:?} (SIGQUIT {:?} ago)\nnew log:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        quit_at.elapsed(),
        new.log()
    );
    assert!(ok > 100, "only {ok} requests");
    assert!(seen.contains("old") && seen.contains("new"), "{seen:?}");
    // The new process serves on its own.
    let (status, _) = raw_get(old.port, "/x", "");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_mode_writes_its_pid_file_and_sigterm_finishes_in_flight_requests() {
    let up = Upstream::start("app").await;
    let mut launcher = Gateway::launch_args(&versioned(&up, "d"), &["--daemon"], 3);
    let status = launcher
        .wait_exit(Duration::from_secs(10))
        .expect("the launching process returns");
    assert!(status.success(), "{status:?}: {}", launcher.log());
    launcher.wait_listening();
    let pid_file = launcher.dir.path().join("gw.pid");
    wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty())
    })
    .expect("pid file written");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pid));
    wait_version(&launcher, "d").await;

    let stream = client()
        .get(launcher.url("/s/stream?n=6&interval_ms=200"))
        .send()
        .await
        .unwrap();
    let stream_task = tokio::spawn(async move { stream.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await; // the stream is under way
    kill(pid, "TERM");
    let events = stream_task.await.unwrap();
    assert_eq!(
        events.matches("data:").count(),
        6,
        "SIGTERM cut an in-flight response: {events}"
    );
    wait_for(Duration::from_secs(15), || !alive(pid)).expect("the daemon exits after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_even_an_unchanged_file() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&versioned(&up, "0"));
    wait_version(&gw, "0").await;
    kill(gw.pid(), "HUP");
    gw.wait_log("\"trigger\":\"SIGHUP\"");
    assert_eq!(
        version_of(&gw.url("/x")).await.as_deref(),
        Some("0"),
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_as_soon_as_the_gateway_stops() {
    use std::io::{Read, Write};
    let up = Upstream::start("app").await;
    // A long grace period: the process is still there when the connection must close.
    let mut gw = Gateway::launch(&versioned(&up, "0"), &[], 10);
    gw.wait_listening();
    let port = gw.port;
    let mut s = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let (status, body) = read_response(&mut s);
        assert_eq!(status, 200, "{body}");
        s
    })
    .await
    .unwrap();
    let stopped = Instant::now();
    kill(gw.pid(), "TERM");
    let got = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 64];
        s.read(&mut buf).map_err(|e| e.kind())
    })
    .await
    .unwrap();
    assert_eq!(got, Ok(0), "closed without a response");
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "closed after {:?}, not when the service stopped",
        stopped.elapsed()
    );
    assert!(
        gw.wait_exit(Duration::from_millis(1)).is_none(),
        "the process is still in its grace period"
    );
}
