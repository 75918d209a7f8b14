//! End to end with real Next.js apps: the app in `tests/e2e` is built twice
//! (`node tests/e2e/build.mjs`, cached by a hash of its inputs) and started
//! with `next start` twice, as admin-portal at `/` and as kline-service with
//! `basePath: "/kline"`, behind the real gateway binary.
//!
//! Needs Node.js, `npm ci` in `tests/e2e` and Debian's `chromium`; `tests/run`
//! installs them. Missing pieces fail these tests loudly: they never skip.
//!
//! The stories run one at a time (a shared lock): each starts two Next.js
//! servers, and the streaming and failover timings should not compete with
//! each other for the machine's two cores.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const E2E_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");

/// One Next.js deployment of the e2e app.
#[derive(Clone, Copy)]
struct AppSpec {
    name: &'static str,
    base_path: &'static str,
    dist_dir: &'static str,
}

// Must match APPS in tests/e2e/build.mjs.
const ADMIN: AppSpec = AppSpec {
    name: "admin-portal",
    base_path: "",
    dist_dir: ".next-admin",
};
const KLINE: AppSpec = AppSpec {
    name: "kline-service",
    base_path: "/kline",
    dist_dir: ".next-kline",
};

/// Serializes the stories; a failed one must not block the rest.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks the prerequisites and builds both apps once per test run.
fn ensure_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let node = Command::new("node").arg("--version").output();
        if !node.is_ok_and(|o| o.status.success()) {
            return Err(
                "`node` not found: run ./tests/run, which installs what the e2e suite needs".into(),
            );
        }
        if !Path::new(E2E_DIR).join("node_modules/next").is_dir() {
            return Err(
                "tests/e2e/node_modules is missing: run ./tests/run (or `npm ci` in tests/e2e)"
                    .into(),
            );
        }
        let started = Instant::now();
        let out = Command::new("node")
            .arg("build.mjs")
            .current_dir(E2E_DIR)
            .output()
            .map_err(|e| format!("node build.mjs: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "next build failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        eprintln!(
            "e2e build ({:.1} s):\n{}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A `next start` process, killed (with its process group) when dropped.
struct NextApp {
    spec: AppSpec,
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NextApp {
    /// Starts the app on a free port and waits until its health route answers.
    ///
    /// `next start` cannot listen on port 0 nor take a listening socket, so
    /// the port cannot be held race-free as the harness does for the
    /// gateway: a free port is learned by binding 127.0.0.1:0 and closing,
    /// and if someone takes it before Next.js listens (EADDRINUSE), the
    /// start is retried on a fresh one.
    fn start(spec: AppSpec) -> NextApp {
        let dir = tempfile::tempdir().unwrap();
        let mut app = NextApp {
            spec,
            port: 0,
            child: None,
            log_path: dir.path().join("next.log"),
            _dir: dir,
        };
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            app.port = port;
            match app.launch() {
                Ok(()) => return app,
                Err(log) if log.contains("EADDRINUSE") => continue,
                Err(log) => panic!("{} did not start:\n{log}", spec.name),
            }
        }
        panic!("{}: no free port after 5 tries", spec.name);
    }

    /// Spawns `next start` on `self.port`; Err(log) if it exited or never
    /// became healthy.
    fn launch(&mut self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(&self.log_path).unwrap();
        let child = Command::new("node")
            .args([
                "node_modules/next/dist/bin/next",
                "start",
                "-H",
                "127.0.0.1",
                "-p",
            ])
            .arg(self.port.to_string())
            .current_dir(E2E_DIR)
            // Same basePath and dist dir as the build it serves.
            .env("BASE_PATH", self.spec.base_path)
            .env("NEXT_DIST_DIR", self.spec.dist_dir)
            .env("APP_NAME", self.spec.name)
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn next start");
        self.child = Some(child);
        let health = format!("{}/health", self.spec.base_path);
        let port = self.port;
        let mut exited = false;
        let ready = wait_for(Duration::from_secs(60), || {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                exited = true;
                return true;
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && raw_get(port, &health, "").0 == 200
        });
        if exited || ready.is_err() {
            self.stop();
            return Err(self.log());
        }
        Ok(())
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the server: its port refuses connections.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The whole group, in case a Next.js version forks workers.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (after [`NextApp::stop`]).
    fn restart(&mut self) {
        if let Err(log) = self.launch() {
            panic!("{} did not restart:\n{log}", self.spec.name);
        }
    }
}

impl Drop for NextApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Both apps and the gateway in front of them.
struct Stack {
    admin: NextApp,
    kline: NextApp,
    gw: Gateway,
    _serial: MutexGuard<'static, ()>,
}

/// `/kline/*` → kline-service (protected, prefix kept, health at
/// `/kline/health`), `/api/*` → admin-portal (protected), everything else →
/// admin-portal (public). Fast health checks so failover shows in seconds.
fn gateway_config(admin: &NextApp, kline: &NextApp, extra_auth: &str) -> String {
    format!(
        "upstreams:
  admin-portal:
    servers: [\"{admin}\"]
  kline-service:
    servers: [\"{kline}\"]
    health_check: {{ path: /kline/health }}
routes:
  - {{ path: \"/kline/*\", upstream: kline-service, auth_required: true, strip_prefix: false }}
  - {{ path: \"/api/*\", upstream: admin-portal, auth_required: true }}
  - {{ path: \"/*\", upstream: admin-portal, auth_required: false }}
health_check:
  enabled: true
  path: /health
  interval_seconds: 0.5
  timeout_seconds: 1
  healthy_threshold: 1
  unhealthy_threshold: 2
auth:
  jwt_secret: \"{SECRET}\"
{extra_auth}",
        admin = admin.addr(),
        kline = kline.addr(),
    )
}

impl Stack {
    fn start() -> Stack {
        Self::start_with("")
    }

    /// `extra_auth`: more lines (indented two spaces) for the `auth:` section.
    fn start_with(extra_auth: &str) -> Stack {
        let serial = serial();
        ensure_built();
        let (admin, kline) = std::thread::scope(|s| {
            let a = s.spawn(|| NextApp::start(ADMIN));
            let k = s.spawn(|| NextApp::start(KLINE));
            (a.join().unwrap(), k.join().unwrap())
        });
        let gw = Gateway::start(&gateway_config(&admin, &kline, extra_auth));
        Stack {
            admin,
            kline,
            gw,
            _serial: serial,
        }
    }
}

fn bearer() -> String {
    format!(
        "Bearer {}",
        token(json!({"sub": "alice", "scope": "read write", "client_id": "e2e"}))
    )
}

async fn get(url: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Every `/_next/static/…` URL the HTML references (script src, link href,
/// and the chunk lists in the inline RSC payload), with `prefix` in front.
fn static_assets(html: &str, prefix: &str) -> BTreeSet<String> {
    let needle = format!("{prefix}/_next/static/");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i..];
            let end = rest
                .find(|c: char| "\"'\\ )>,?#".contains(c))
                .unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

fn expected_content_type(path: &str) -> Option<&'static str> {
    [
        (".js", "application/javascript"),
        (".css", "text/css"),
        (".woff2", "font/woff2"),
        (".json", "application/json"),
    ]
    .into_iter()
    .find(|(ext, _)| path.ends_with(ext))
    .map(|(_, ct)| ct)
}

/// The page and each asset it references load with 200 and the right type.
async fn page_and_assets(gw: &Gateway, page: &str, prefix: &str, auth: Option<&str>, app: &str) {
    let resp = get(&gw.url(page), auth).await;
    assert_eq!(resp.status(), 200, "{page}");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains(&format!("id=\"app-name\">{app}<")), "{html}");
    let assets = static_assets(&html, prefix);
    let js = assets.iter().filter(|a| a.ends_with(".js")).count();
    let css = assets.iter().filter(|a| a.ends_with(".css")).count();
    assert!(js >= 3 && css >= 1, "{page}: assets {assets:?}");
    if prefix.is_empty() {
        assert!(
            !html.contains("/kline/_next/"),
            "admin references kline assets"
        );
    } else {
        // A basePath app puts every asset under its prefix.
        for (i, _) in html.match_indices("/_next/static/") {
            assert!(
                html[..i].ends_with(prefix),
                "{page}: an asset outside {prefix}"
            );
        }
    }
    for asset in &assets {
        let resp = get(&gw.url(asset), auth).await;
        assert_eq!(resp.status(), 200, "{asset}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        if let Some(want) = expected_content_type(asset) {
            assert!(ct.starts_with(want), "{asset}: content-type {ct}");
        }
        assert!(!resp.bytes().await.unwrap().is_empty(), "{asset}: empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apps_serve_their_page_and_every_static_asset_through_the_gateway() {
    let s = Stack::start();
    page_and_assets(&s.gw, "/", "", None, "admin-portal").await;
    page_and_assets(&s.gw, "/kline", "/kline", Some(&bearer()), "kline-service").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_see_forwarded_request_id_and_identity_headers() {
    let s = Stack::start();
    let port = s.gw.port;
    for (path, app) in [
        ("/api/echo", "admin-portal"),
        ("/kline/api/echo", "kline-service"),
    ] {
        let resp = client()
            .get(s.gw.url(path))
            .header("authorization", bearer())
            .header("x-request-id", "e2e-trace-42")
            // Spoofed identity: the gateway replaces it with the token's.
            .header("x-user-id", "mallory")
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(id, "e2e-trace-42", "a client's own id is replaced");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["app"], app);
        let h = &body["headers"];
        assert_eq!(h["host"], format!("127.0.0.1:{port}"), "{path}: Host kept");
        assert_eq!(h["x-forwarded-host"], format!("127.0.0.1:{port}"));
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["x-forwarded-for"], "127.0.0.1",
            "{path}: a client's own X-Forwarded-For is replaced (no trusted proxies)"
        );
        assert_eq!(h["x-request-id"], id.as_str());
        assert_eq!(h["x-user-id"], "alice", "{path}: {h}");
        assert_eq!(h["x-user-scopes"], "read write");
        assert_eq!(h["x-client-id"], "e2e");
    }
    // Without a client id, the app and the client see the same generated one.
    let resp = get(&s.gw.url("/kline/api/echo"), Some(&bearer())).await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert!(id.len() >= 16);
    assert_eq!(body["headers"]["x-request-id"], id.as_str());
}

/// A real OAuth 2.1 server issues the token: oidc-provider's RS256
/// client-credentials JWT, its keys discovered from the issuer by the
/// gateway, reaches the kline app's protected API with its identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_real_oauth_server_reaches_the_app() {
    let oidc = common::oidc::start_oidc().await;
    let s = Stack::start_with(&format!(
        "  oauth_service_url: \"{iss}\"\n  issuer: \"{iss}\"\n",
        iss = oidc.issuer
    ));
    let jwt = common::oidc::client_credentials(&oidc, "&resource=urn%3Agateway").await;
    for path in ["/kline/api/echo", "/api/echo"] {
        let resp = get(&s.gw.url(path), Some(&format!("Bearer {jwt}"))).await;
        assert_eq!(resp.status(), 200, "{path}: {}", s.gw.log());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["headers"]["x-client-id"], "svc", "{path}: {body}");
        assert_eq!(body["headers"]["x-user-scopes"], "api:read");
    }
    assert_eq!(get(&s.gw.url("/kline/api/echo"), None).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_routes_refuse_without_a_token_and_admit_with_one() {
    let s = Stack::start();
    let forged = format!(
        "Bearer {}",
        token_with(
            "another-secret-0123456789abcdef-012345",
            json!({"sub": "alice"})
        )
    );
    let expired = format!(
        "Bearer {}",
        token(json!({"sub": "alice", "exp": now() - 3600}))
    );
    for path in ["/kline", "/kline/api/echo", "/kline/stream", "/api/echo"] {
        for auth in [None, Some(forged.as_str()), Some(expired.as_str())] {
            let resp = get(&s.gw.url(path), auth).await;
            assert_eq!(resp.status(), 401, "{path} with {auth:?}");
            assert!(resp.headers().get("www-authenticate").is_some());
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].is_string() && body["request_id"].is_string());
        }
        assert_eq!(
            get(&s.gw.url(path), Some(&bearer())).await.status(),
            200,
            "{path}"
        );
    }
    // Public pages need none.
    assert_eq!(get(&s.gw.url("/"), None).await.status(), 200);
    assert_eq!(get(&s.gw.url("/target"), None).await.status(), 200);
}

/// Seconds from the request until each of the five `chunk N` lines arrived.
async fn chunk_times(url: &str) -> Vec<Duration> {
    use futures_util::StreamExt;
    let started = Instant::now();
    let resp = get(url, Some(&bearer())).await;
    assert_eq!(resp.status(), 200, "{url}");
    let mut body = String::new();
    let mut times = vec![];
    let mut stream = resp.bytes_stream();
    while let Some(bytes) = stream.next().await {
        body.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
        while times.len() < 5 && body.contains(&format!("chunk {} ", times.len() + 1)) {
            times.push(started.elapsed());
        }
    }
    assert_eq!(times.len(), 5, "{url}: {body}");
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_arrive_as_the_app_writes_them() {
    let s = Stack::start();
    for path in ["/stream", "/kline/stream"] {
        let t = chunk_times(&s.gw.url(path)).await;
        // The app writes them 200 ms apart: 800 ms from first to last.
        assert!(t[4] - t[0] >= Duration::from_millis(650), "{path}: {t:?}");
        for w in t.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(100), "{path}: {t:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_next_points_at_the_gateway_not_the_app() {
    let s = Stack::start();
    let port = s.gw.port;
    for (path, auth, target) in [
        ("/go", None, "/target"),
        ("/kline/go", Some(bearer()), "/kline/target"),
    ] {
        let resp = get(&s.gw.url(path), auth.as_deref()).await;
        assert_eq!(resp.status(), 307, "{path}");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        // Next.js wrote http://localhost:<app port>/…; the gateway rewrote it.
        assert_eq!(loc, format!("http://127.0.0.1:{port}{target}"), "{path}");
        let followed = get(&loc, auth.as_deref()).await;
        assert_eq!(followed.status(), 200, "{loc}");
        assert!(followed.text().await.unwrap().contains("redirect target"));
    }
}

/// Polls `url` until it answers `status`.
async fn until_status(url: &str, auth: Option<&str>, status: u16, within: Duration) -> bool {
    eventually(within, || async {
        let mut req = client().get(url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.is_ok_and(|r| r.status() == status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_app_makes_its_routes_503_while_the_other_keeps_serving() {
    let mut s = Stack::start();
    let auth = bearer();
    let kline = s.gw.url("/kline/api/echo");
    let admin = s.gw.url("/api/echo");
    assert_eq!(get(&kline, Some(&auth)).await.status(), 200);

    s.kline.stop();
    let stopped = Instant::now();
    assert!(
        until_status(&kline, Some(&auth), 503, Duration::from_secs(10)).await,
        "kline never answered 503; gateway log:\n{}",
        s.gw.log()
    );
    eprintln!("kline out of rotation after {:?}", stopped.elapsed());
    let resp = get(&kline, Some(&auth)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(get(&s.gw.url("/kline"), Some(&auth)).await.status(), 503);
    // admin-portal is untouched, page and API.
    for _ in 0..5 {
        assert_eq!(get(&admin, Some(&auth)).await.status(), 200);
        assert_eq!(get(&s.gw.url("/"), None).await.status(), 200);
    }

    s.kline.restart();
    assert!(
        until_status(&kline, Some(&auth), 200, Duration::from_secs(10)).await,
        "kline never came back; gateway log:\n{}",
        s.gw.log()
    );

    // And the other way round.
    s.admin.stop();
    assert!(until_status(&admin, Some(&auth), 503, Duration::from_secs(10)).await);
    assert_eq!(get(&s.gw.url("/"), None).await.status(), 503);
    assert_eq!(get(&kline, Some(&auth)).await.status(), 200);
    s.admin.restart();
    assert!(until_status(&s.gw.url("/"), None, 200, Duration::from_secs(10)).await);
}

/// Where screenshots go: `target/e2e/`.
fn artifact_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_gateway"));
    let dir = bin.parent().unwrap().parent().unwrap().join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `url` in headless Chromium (tests/e2e/browser.mjs) and returns what
/// the page showed.
fn browse(url: &str, screenshot: &Path, cookie: Option<&str>) -> Value {
    browse_trusting(url, screenshot, cookie, None)
}

/// [`browse`], with Chromium trusting the certificate whose public key has
/// this base64 SHA-256 (`--ignore-certificate-errors-spki-list`).
fn browse_trusting(
    url: &str,
    screenshot: &Path,
    cookie: Option<&str>,
    spki: Option<&str>,
) -> Value {
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "/usr/bin/chromium is missing: run ./tests/run (apt-get install chromium)"
    );
    let out = Command::new("node")
        .arg("browser.mjs")
        .arg(url)
        .arg(screenshot)
        .args(cookie)
        .envs(spki.map(|k| ("TRUST_SPKI", k)))
        .current_dir(E2E_DIR)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("browser.mjs printed: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_renders_the_admin_page_and_runs_its_javascript() {
    let s = Stack::start();
    let shot = artifact_dir().join("admin.png");
    let _ = std::fs::remove_file(&shot);
    let seen = tokio::task::spawn_blocking({
        let (url, shot) = (s.gw.url("/"), shot.clone());
        move || browse(&url, &shot, None)
    })
    .await
    .unwrap();
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["heading"], "admin-portal", "{seen}");
    assert_eq!(
        seen["hydrated"], true,
        "client JavaScript did not run: {seen}"
    );
    assert_eq!(seen["jsStatus"], "client JavaScript ran: yes");
    assert_eq!(seen["failed"], json!([]), "failed requests: {seen}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 2000);
    eprintln!("screenshot: {}", shot.display());
}

/// Browsers send cookies, not headers: `auth.cookie_name` admits them, and
/// `auth.login_redirect` sends a navigation without a token to the login page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_use_the_session_cookie_and_are_sent_to_login_without_it() {
    let s = Stack::start_with("  cookie_name: gw_session\n  login_redirect: { url: \"/login\" }\n");
    let port = s.gw.port;
    let t = token(json!({"sub": "alice", "scope": "read"}));
    let cookie = format!("theme=dark; gw_session={t}");

    // The cookie admits, like the bearer token, and carries the identity.
    let page = client()
        .get(s.gw.url("/kline"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let echo: Value = client()
        .get(s.gw.url("/kline/api/echo"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-user-id"], "alice");

    // A browser navigation without a token goes to the login page ...
    let nav = client()
        .get(s.gw.url("/kline?tab=2"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(nav.status(), 302);
    let loc = nav.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!("/login?return_to=http%3A%2F%2F127.0.0.1%3A{port}%2Fkline%3Ftab%3D2")
    );
    let login = get(&s.gw.url(&loc), None).await;
    assert_eq!(login.status(), 200);
    assert!(login.text().await.unwrap().contains("id=\"login\""));
    // ... while an API call gets the 401 challenge.
    let api = client()
        .get(s.gw.url("/kline/api/echo"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);

    // In Chromium: with the cookie the kline page renders and hydrates
    // (its assets under /kline/_next pass auth by the cookie too) ...
    let dir = artifact_dir();
    let seen = tokio::task::spawn_blocking({
        let (url, shot, c) = (
            s.gw.url("/kline"),
            dir.join("kline.png"),
            format!("gw_session={t}"),
        );
        move || browse(&url, &shot, Some(&c))
    })
    .await
    .unwrap();
    assert_eq!(seen["heading"], "kline-service", "{seen}");
    assert_eq!(seen["hydrated"], true, "{seen}");
    assert_eq!(seen["failed"], json!([]), "{seen}");
    // ... and without it the browser lands on the login page.
    let seen = tokio::task::spawn_blocking({
        let (url, shot) = (s.gw.url("/kline"), dir.join("kline-login.png"));
        move || browse(&url, &shot, None)
    })
    .await
    .unwrap();
    assert_eq!(seen["heading"], "login", "{seen}");
    assert!(seen["url"].as_str().unwrap().contains("/login?return_to="));
}

/// The HTTPS listener in front of the real apps: Chromium negotiates HTTP/2
/// (ALPN) over TLS 1.3 with the gateway, loads and hydrates both apps with
/// every asset over it, and the kline page passes auth by its cookie; the
/// apps themselves still speak plain HTTP/1.1 behind the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_both_apps_over_https_and_http2() {
    use base64::Engine;
    use rcgen::PublicKeyData;
    use sha2::Digest;
    let serial = serial();
    ensure_built();
    let (admin, kline) = std::thread::scope(|s| {
        let a = s.spawn(|| NextApp::start(ADMIN));
        let k = s.spawn(|| NextApp::start(KLINE));
        (a.join().unwrap(), k.join().unwrap())
    });
    let certs = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let spki = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(
        cert.signing_key.subject_public_key_info(),
    ));
    let (crt, key) = (certs.path().join("gw.crt"), certs.path().join("gw.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let https = reserve_port();
    let config = format!(
        "{}  cookie_name: gw_session\ntls:\n  bind_address: \"127.0.0.1:{}\"\n  certificates:\n    - {{ cert_file: \"{}\", key_file: \"{}\" }}\n  hsts: \"max-age=600\"\n",
        gateway_config(&admin, &kline, ""),
        https.port,
        crt.display(),
        key.display()
    );
    // Held in a Stack like the other stories (the serial lock included).
    let stack = Stack {
        admin,
        kline,
        gw: Gateway::start(&config),
        _serial: serial,
    };
    let gw = &stack.gw;
    wait_for(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", https.port)).is_ok()
    })
    .unwrap_or_else(|_| panic!("no HTTPS listener:\n{}", gw.log()));
    let base = format!("https://localhost:{}", https.port);
    let dir = artifact_dir();

    let seen = tokio::task::spawn_blocking({
        let (url, shot, spki) = (format!("{base}/"), dir.join("admin-h2.png"), spki.clone());
        move || browse_trusting(&url, &shot, None, Some(&spki))
    })
    .await
    .unwrap();
    assert_eq!(seen["status"], 200, "{seen}\n{}", gw.log());
    assert_eq!(seen["heading"], "admin-portal", "{seen}");
    assert_eq!(seen["hydrated"], true, "{seen}");
    assert_eq!(seen["failed"], json!([]), "{seen}");
    assert_eq!(seen["protocols"], json!(["h2"]), "{seen}");
    assert_eq!(seen["tls"], "TLS 1.3", "{seen}");

    let t = token(json!({"sub": "alice", "scope": "read"}));
    let seen = tokio::task::spawn_blocking({
        let (url, shot, c) = (
            format!("{base}/kline"),
            dir.join("kline-h2.png"),
            format!("gw_session={t}"),
        );
        move || browse_trusting(&url, &shot, Some(&c), Some(&spki))
    })
    .await
    .unwrap();
    assert_eq!(seen["heading"], "kline-service", "{seen}");
    assert_eq!(seen["hydrated"], true, "{seen}");
    assert_eq!(seen["failed"], json!([]), "{seen}");
    assert_eq!(seen["protocols"], json!(["h2"]), "{seen}");
    // The access log saw them as HTTP/2 over TLS.
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"protocol\":\"HTTP/2\"") && l.contains("/kline/_next/static/")),
        "{log}"
    );
}
