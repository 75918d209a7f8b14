//! Process start: check and compile the config, then hand the proxy service
//! to a Pingora `Server`, which owns listeners, workers, daemonizing,
//! graceful upgrade (SIGQUIT + `--upgrade`) and graceful shutdown (SIGTERM).

use crate::auth::JwksRefresher;
use crate::config::compile::{CompileContext, Prepared, prepare};
use crate::config::{ConfigErrors, FileConfig};
use crate::logging;
use crate::proxy::Gateway;
use crate::routing::RouteTable;
use arc_swap::ArcSwap;
use pingora_core::listeners::TcpSocketOptions;
use pingora_core::server::Server;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::services::background::background_service;
use std::path::PathBuf;
use std::sync::Arc;

/// How `gateway run` was invoked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    pub daemon: bool,
    pub upgrade: bool,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot start the server: {0}")]
    Server(String),
}

/// Checks the config, starts the proxy and serves until shut down.
/// Returns only on a start failure; a running server exits the process.
pub fn run(opts: RunOptions) -> Result<(), StartError> {
    let ctx = CompileContext::default();
    let Prepared {
        table,
        config,
        warnings,
    } = prepare(&opts.config, &ctx)?;
    let _log = logging::init(&config.logging);
    for w in &warnings {
        tracing::warn!("{w}");
    }

    let mut server = Server::new_with_opt_and_conf(
        Opt {
            upgrade: opts.upgrade,
            daemon: opts.daemon,
            nocapture: false,
            test: false,
            conf: None,
        },
        server_conf(&config),
    );
    server.bootstrap();

    let table: Arc<ArcSwap<RouteTable>> = Arc::new(ArcSwap::from_pointee(table));
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(table.clone()),
        "pingora-gateway",
    );
    let mut sock = TcpSocketOptions::default();
    if config.server.reuse_port {
        sock.so_reuseport = Some(true);
    }
    proxy.add_tcp_with_settings(&config.server.bind_address, sock);
    server.add_service(proxy);
    server.add_service(background_service(
        "jwks refresh",
        JwksRefresher(ctx.jwks.clone()),
    ));

    tracing::info!(
        config = %opts.config.display(),
        listen = %config.server.bind_address,
        routes = config.routes.len(),
        upstreams = config.upstreams.len(),
        "pingora-gateway starting"
    );
    server.run_forever()
}

/// Pingora's server settings from our `server:` section.
fn server_conf(c: &FileConfig) -> ServerConf {
    let s = &c.server;
    ServerConf {
        threads: s.worker_threads,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        ..ServerConf::default()
    }
}
