//! The stand-in stack: five small HTTP apps on 127.0.0.1:3001-3005 (the
//! five Next.js apps of the design) and the gateway in front of them on
//! `config/default.yaml`.
//!
//! ```text
//! cargo run --release --example standin            # or: -- --config other.yaml
//! ```
//! It prints a banner with curl commands and a development token.

use jsonwebtoken::{EncodingKey, Header, encode};
use pingora_gateway::server::{RunOptions, StartError};
// The demo server lives with the tests (not in the production library).
#[path = "../tests/common/standin.rs"]
mod standin;
use standin::{StandinState, serve};
use std::path::PathBuf;
use std::process::ExitCode;

const APPS: [(&str, u16); 5] = [
    ("oauth-service", 3001),
    ("admin-portal", 3002),
    ("kline-service", 3003),
    ("flow-service", 3004),
    ("test-service", 3005),
];

fn main() -> ExitCode {
    let config = std::env::args()
        .skip_while(|a| a != "--config")
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.yaml"))
        });

    let loaded = match pingora_gateway::config::load_file(&config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };

    // The five apps run on their own runtime; the gateway owns the main thread.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            for (name, port) in APPS {
                match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => {
                        tokio::spawn(serve(l, StandinState::new(name)));
                    }
                    Err(e) => eprintln!("stand-in {name}: cannot listen on 127.0.0.1:{port}: {e}"),
                }
            }
            let _ = ready_tx.send(());
            std::future::pending::<()>().await;
        });
    });
    let _ = ready_rx.recv();

    let c = &loaded.config;
    let port = c.server.bind_address.rsplit(':').next().unwrap_or("6188");
    let gw = format!("http://127.0.0.1:{port}");
    let token = c
        .auth
        .jwt_secret
        .as_deref()
        .map(dev_token)
        .unwrap_or_default();
    eprintln!(
        r#"
pingora-gateway stand-in stack
  apps:    {apps}
  gateway: {gw}   (config: {config})

Try:
  curl -i {gw}/test/hello                      # public route -> test-service
  curl -i {gw}/admin/users                     # protected: 401 without a token
  TOKEN={token}
  curl -i -H "Authorization: Bearer $TOKEN" {gw}/admin/users
  curl -N -H "Authorization: Bearer $TOKEN" {gw}/kline/stream   # server-sent events
  curl -i {gw}/test/../admin/x                 # normalized to /admin/x before auth
  gateway validate {config}
"#,
        apps = APPS
            .iter()
            .map(|(n, p)| format!("{n}:{p}"))
            .collect::<Vec<_>>()
            .join(" "),
        config = config.display(),
    );

    match pingora_gateway::server::run(RunOptions {
        config,
        daemon: false,
        upgrade: false,
        version: env!("CARGO_PKG_VERSION"),
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// A one-hour HS256 token for a developer, signed with the config's secret.
fn dev_token(secret: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = serde_json::json!({
        "sub": "dev-user",
        "client_id": "standin",
        "scope": "read write",
        "exp": exp,
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}
