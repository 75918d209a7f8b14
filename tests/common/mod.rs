//! Test harness: real upstream servers on 127.0.0.1:0, the real `gateway`
//! binary as a child process, temp config files, and condition waits.
//!
//! Ports: upstreams bind port 0 and report `local_addr()`. The gateway's own
//! ports are reserved race-free by a socket bound (not listening) with
//! `SO_REUSEPORT`; the gateway binds the same port with `server.reuse_port`.
#![allow(dead_code)]

pub mod faulty;
pub mod oidc;
pub mod tls_upstream;
pub mod ws;

pub mod standin;

use standin::{StandinState, serve};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// A stand-in app on an ephemeral port, stopped when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<StandinState>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = StandinState::new(name);
        let task = tokio::spawn(serve(listener, state.clone()));
        Upstream { addr, state, task }
    }

    /// Stops listening and closes every connection: the server is down.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Serves again on the same address (after [`Upstream::stop`]).
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.task = tokio::spawn(serve(listener, self.state.clone()));
    }

    pub fn requests(&self) -> u64 {
        self.state
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            - self
                .state
                .health_checks
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port held by a bound, non-listening `SO_REUSEPORT` socket: nothing
/// else can take it, connections to it are refused until the gateway listens.
pub struct ReservedPort {
    pub port: u16,
    _socket: socket2::Socket,
}

pub fn reserve_port() -> ReservedPort {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    ReservedPort { port, _socket: s }
}

/// A port nothing listens on: connections are refused (502 tests).
pub fn refused_addr() -> (SocketAddr, ReservedPort) {
    let r = reserve_port();
    (SocketAddr::from(([127, 0, 0, 1], r.port)), r)
}

/// The gateway binary running on a temp config.
pub struct Gateway {
    pub port: u16,
    /// `server.grace_period_seconds` of the rendered configs.
    pub grace_seconds: u64,
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    _ports: Vec<ReservedPort>,
}

/// The `server:` section the harness adds to every test config.
pub fn server_section(port: u16, dir: &Path, grace_seconds: u64) -> String {
    format!(
        "server:\n  bind_address: \"127.0.0.1:{port}\"\n  worker_threads: 2\n  reuse_port: true\n  pid_file: \"{d}/gw.pid\"\n  upgrade_sock: \"{d}/upgrade.sock\"\n  grace_period_seconds: {grace_seconds}\n  graceful_shutdown_timeout_seconds: 1\n",
        d = dir.display()
    )
}

impl Gateway {
    /// Starts the gateway on `body` (a config without `server:`; a
    /// `metrics:` section is added on a reserved port unless present) and
    /// waits until it accepts connections.
    pub fn start(body: &str) -> Gateway {
        let gw = Self::spawn(body, &[]);
        gw.wait_listening();
        gw
    }

    /// Like [`Gateway::start`] with extra environment, without waiting.
    pub fn spawn(body: &str, env: &[(&str, &str)]) -> Gateway {
        Self::launch(body, env, 1)
    }

    /// Spawns with a given graceful-upgrade grace period, without waiting.
    pub fn launch(body: &str, env: &[(&str, &str)], grace_seconds: u64) -> Gateway {
        Self::launch_with(body, env, &[], grace_seconds)
    }

    /// Spawns `gateway run ARGS --config …`, without waiting.
    pub fn launch_args(body: &str, args: &[&str], grace_seconds: u64) -> Gateway {
        Self::launch_with(body, &[], args, grace_seconds)
    }

    /// Spawns on a plain port reserved by the caller (who had to name it
    /// somewhere first, e.g. to an ACME server), without waiting.
    pub fn spawn_on(proxy: ReservedPort, body: &str) -> Gateway {
        Self::launch_ports(proxy, body, &[], &[], 1)
    }

    fn launch_with(body: &str, env: &[(&str, &str)], args: &[&str], grace_seconds: u64) -> Gateway {
        Self::launch_ports(reserve_port(), body, env, args, grace_seconds)
    }

    fn launch_ports(
        proxy: ReservedPort,
        body: &str,
        env: &[(&str, &str)],
        args: &[&str],
        grace_seconds: u64,
    ) -> Gateway {
        let metrics = reserve_port();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.yaml");
        let log_path = dir.path().join("gateway.log");
        std::fs::write(
            &config_path,
            Self::render(body, proxy.port, metrics.port, dir.path(), grace_seconds),
        )
        .unwrap();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.arg("run")
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Gateway {
            port: proxy.port,
            grace_seconds,
            metrics_port: metrics.port,
            dir,
            config_path,
            log_path,
            child: Some(child),
            _ports: vec![proxy, metrics],
        }
    }

    /// The full config text for `body`. A `server:` section at the start of
    /// `body` adds its keys to the harness's own.
    pub fn render(
        body: &str,
        port: u16,
        metrics_port: u16,
        dir: &Path,
        grace_seconds: u64,
    ) -> String {
        let mut text = server_section(port, dir, grace_seconds);
        let mut body = body;
        if let Some(rest) = body.strip_prefix("server:\n") {
            let end = rest
                .match_indices('\n')
                .map(|(i, _)| i + 1)
                .find(|&i| !rest[i..].starts_with("  "))
                .unwrap_or(rest.len());
            text.push_str(&rest[..end]);
            body = &rest[end..];
        }
        text.push_str(&body.replace("{metrics_port}", &metrics_port.to_string()));
        if !body.contains("metrics:") {
            text.push_str(&format!(
                "\nmetrics:\n  enabled: true\n  bind_address: \"127.0.0.1:{metrics_port}\"\n"
            ));
        }
        text
    }

    /// Rewrites the config file (for reload tests), keeping the harness's sections.
    pub fn write_config(&self, body: &str) {
        std::fs::write(&self.config_path, self.render_body(body)).unwrap();
    }

    /// The full config text for `body` with this gateway's harness sections.
    pub fn render_body(&self, body: &str) -> String {
        Self::render(
            body,
            self.port,
            self.metrics_port,
            self.dir.path(),
            self.grace_seconds,
        )
    }

    /// Starts a second process on the same config with `--upgrade`: it waits
    /// on the upgrade socket for this process's listeners.
    pub fn spawn_upgrade(&self) -> Process {
        let log_path = self.dir.path().join("gateway-upgraded.log");
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--upgrade", "--config"])
            .arg(&self.config_path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        Process { child, log_path }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.metrics_port, path)
    }

    pub fn wait_listening(&self) {
        let port = self.port;
        wait_for(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .unwrap_or_else(|_| panic!("gateway did not listen; log:\n{}", self.log()));
    }

    /// The admin listener starts beside the proxy, not before it: wait for it.
    pub fn wait_metrics_listening(&self) {
        let port = self.metrics_port;
        wait_for(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .unwrap_or_else(|_| panic!("metrics listener never came up; log:\n{}", self.log()));
    }

    /// Waits until the log (written in batches every 50 ms) contains
    /// `needle`, and returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let mut log = String::new();
        let found = wait_for(Duration::from_secs(5), || {
            log = self.log();
            log.contains(needle)
        });
        assert!(found.is_ok(), "the log never showed {needle:?}:\n{log}");
        log
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child process killed when dropped.
pub struct Process {
    pub child: Child,
    pub log_path: PathBuf,
}

impl Process {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (e.g. "QUIT", "HUP") to `pid`.
pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls `cond` until it holds or `timeout` passes.
/// Writes `body` as `dir/gateway.yaml` and runs `gateway validate ARGS FILE`
/// on it: the exit code and stdout + stderr.
pub fn validate_config(dir: &Path, body: &str, args: &[&str]) -> (i32, String) {
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .args(args)
        .arg(&path)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async version of [`wait_for`].
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a rustls provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// An HS256 token signed with [`SECRET`].
pub fn token(claims: serde_json::Value) -> String {
    token_with(SECRET, claims)
}

pub fn token_with(secret: &str, mut claims: serde_json::Value) -> String {
    if claims.get("exp").is_none() {
        claims["exp"] = (now() + 3600).into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends `request` verbatim (paths no client library would send) and
/// returns the status and the whole response text.
pub fn raw_request(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// `GET path` with `Connection: close` and optional extra header lines.
pub fn raw_get(port: u16, path: &str, extra: &str) -> (u16, String) {
    raw_request(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"
        ),
    )
}

/// The JSON body at the end of a raw response.
pub fn raw_json(text: &str) -> serde_json::Value {
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// Reads one HTTP/1.1 response with a Content-Length body from a raw stream.
pub fn read_response(s: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, text[end + 4..end + 4 + len].to_string());
            }
        }
        let n = s.read(&mut chunk).expect("response");
        assert!(n > 0, "connection closed mid-response: {text}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The admin listener's `/metrics` text, once it listens.
pub async fn metrics_text(gw: &Gateway) -> String {
    gw.wait_metrics_listening();
    client()
        .get(gw.metrics_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Samples of the admin listener's exposition: `name{labels}` → value.
pub async fn scrape(gw: &Gateway) -> std::collections::BTreeMap<String, f64> {
    metrics_text(gw)
        .await
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The gateway's resident memory in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Raises this process's soft open-file limit (to the hard one, at most
/// 20,000); a gateway it starts inherits it.
pub fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max.min(20_000);
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}
