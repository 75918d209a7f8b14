//! The real OAuth 2.1 server of the tests: `oidc-provider` (npm, pinned in
//! `tests/oidc`), started on an ephemeral port; it prints `READY <port>`.

use super::client;
use serde_json::Value;
use std::time::Duration;

/// The real `oidc-provider` server from `tests/oidc`, on an ephemeral port.
pub struct Oidc {
    pub issuer: String,
    _child: tokio::process::Child,
}

pub const OIDC_CLIENT: (&str, &str) = ("svc", "svc-secret-0123456789abcdef");

pub async fn start_oidc() -> Oidc {
    launch(None).await
}

/// [`start_oidc`] over HTTPS with the PEM certificate and key at these paths.
pub async fn start_oidc_tls(cert: &std::path::Path, key: &std::path::Path) -> Oidc {
    launch(Some((cert, key))).await
}

async fn launch(tls: Option<(&std::path::Path, &std::path::Path)>) -> Oidc {
    use tokio::io::AsyncBufReadExt;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    assert!(
        std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok(),
        "node is not installed: run ./tests/run (it installs nodejs and npm)"
    );
    if !dir.join("node_modules/oidc-provider").exists() {
        let ok = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(ok.success(), "npm ci in tests/oidc failed");
    }
    let mut cmd = tokio::process::Command::new("node");
    if let Some((cert, key)) = tls {
        cmd.env("TLS_CERT", cert).env("TLS_KEY", key);
    }
    let mut child = cmd
        .arg("server.mjs")
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(p) = l.strip_prefix("READY ") {
                return p.trim().to_string();
            }
        }
        panic!("oidc-provider exited before listening");
    })
    .await
    .expect("oidc-provider listens within 20 s");
    // Keep draining its output: a closed pipe would kill node on its next write.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let scheme = if tls.is_some() { "https" } else { "http" };
    Oidc {
        issuer: format!("{scheme}://127.0.0.1:{port}"),
        _child: child,
    }
}

pub async fn client_credentials(oidc: &Oidc, extra: &str) -> String {
    client_credentials_with(&client(), oidc, extra).await
}

/// A token from `oidc` asked for with `http` (e.g. a client trusting a test CA).
pub async fn client_credentials_with(http: &reqwest::Client, oidc: &Oidc, extra: &str) -> String {
    let resp = http
        .post(format!("{}/token", oidc.issuer))
        .basic_auth(OIDC_CLIENT.0, Some(OIDC_CLIENT.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope=api%3Aread{extra}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}
