//! Process start: check and compile the config, then hand the proxy service
//! to a Pingora `Server`, which owns listeners, workers, daemonizing,
//! graceful upgrade (SIGQUIT + `--upgrade`) and graceful shutdown (SIGTERM).

use crate::admin::{AdminApp, AdminState};
use crate::auth::JwksRefresher;
use crate::config::{ConfigErrors, FileConfig};
use crate::downstream::{ConnLimits, SummaryService};
use crate::idle::{HeadLimits, ParkIdle};
use crate::lifecycle::{self, PortError, Signals, StopWhenIdle};
use crate::logging;
use crate::proxy::Gateway;
use crate::reload::{ReloadService, Reloader};
use crate::runtime::RouteTable;
use crate::runtime::{CompileContext, Prepared, prepare};
use crate::tls::acme::{Acme, AcmeService, OrderCounters};
use crate::tls::{Acceptor, CertWatchService};
use arc_swap::ArcSwap;
use pingora_core::listeners::{ListenerConfig, TcpSocketOptions};
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{ExecutionPhase, RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_load_balancing::HealthCheckService;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How `gateway run` was invoked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    pub daemon: bool,
    pub upgrade: bool,
    /// What `gateway --version` prints (logged at start).
    pub version: &'static str,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Port(#[from] PortError),
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
    let log = logging::init(&config.logging);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // A successor receives its listeners over the upgrade socket.
    if !opts.upgrade {
        check_ports(&config)?;
    }
    lifecycle::exit_on_listener_panic();

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
    server.add_service(background_service("log flusher", logging::FlusherService));

    let table: Arc<ArcSwap<RouteTable>> = Arc::new(ArcSwap::from_pointee(table));
    let draining = Arc::new(AtomicBool::new(false));
    server.add_service(background_service(
        "drain watch",
        DrainWatch {
            phases: std::sync::Mutex::new(Some(server.watch_execution_phase())),
            flag: draining.clone(),
        },
    ));
    let proxy_app = pingora_proxy::http_proxy(
        &server.configuration,
        Gateway::new(table.clone(), draining.clone()),
    );
    crate::proxy::set_unexpected_data_counter(proxy_app.unexpected_data_connection_counter());
    let limits = Arc::new(ConnLimits::new(
        config.server.max_connections,
        config.server.max_connections_per_ip,
        ctx.metrics.downstream.clone(),
    ));
    let head_limits = HeadLimits {
        timeout: config.server.request_header_timeout_seconds.duration(),
        max_bytes: config.server.max_request_header_bytes,
    };
    let certs = ctx.certs.clone();
    let mut app = ParkIdle::new(
        proxy_app,
        config.server.keepalive_timeout_seconds.duration(),
    )
    .with_head_limits(head_limits)
    .with_write_buffer(config.server.write_buffer_bytes)
    .with_limits(limits.clone());
    // The HTTPS listener is a TCP listener of the same service (so Pingora
    // owns it and hands it over on upgrade); the application tells its
    // connections by their local port and runs the TLS handshake first.
    if let Some(t) = &config.tls {
        let port = t
            .bind_address
            .parse::<std::net::SocketAddr>()
            .map_err(|e| StartError::Server(format!("tls.bind_address: {e}")))?
            .port();
        let acceptor = Acceptor::new(
            certs.store().clone(),
            t.min_version,
            head_limits.timeout,
            ctx.metrics.tls.clone(),
        )
        .map_err(|e| StartError::Server(format!("TLS settings: {e}")))?;
        app = app.with_tls(port, Arc::new(acceptor));
    }
    let mut proxy = Service::new("pingora-gateway".to_string(), app);
    let mut sock = TcpSocketOptions::default();
    if config.server.reuse_port {
        sock.so_reuseport = Some(true);
    }
    let listeners = std::iter::once(config.server.bind_address.as_str())
        .chain(config.tls.as_ref().map(|t| t.bind_address.as_str()));
    for addr in listeners {
        proxy.add_listener(
            ListenerConfig::tcp(addr)
                .tcp_socket_options(sock.clone())
                // No write buffer for a connection's whole life: the
                // application gathers each response's writes instead.
                .l4_buffer(L4BufferSettings::new(config.server.read_buffer_bytes, 0)),
        );
    }
    server.add_service(proxy);
    server.add_service(background_service(
        "stop when idle",
        StopWhenIdle {
            limits: limits.clone(),
        },
    ));
    if let Some(acme) = config.tls.as_ref().and_then(|t| t.acme.as_ref()) {
        // Serves a stored certificate now; orders in the background.
        let counters = OrderCounters {
            success: ctx.metrics.acme_orders.with_label_values(&["success"]),
            failure: ctx.metrics.acme_orders.with_label_values(&["failure"]),
        };
        let plain = config.server.bind_address.parse().ok();
        let acme = Acme::start(
            acme,
            certs.store().clone(),
            ctx.challenges.clone(),
            counters,
            plain,
        )
        .map_err(|e| StartError::Server(format!("tls.acme.storage_dir: {e}")))?;
        server.add_service(background_service("acme", AcmeService(acme)));
    }
    if config.tls.is_some() {
        server.add_service(background_service(
            "certificate files",
            CertWatchService(certs.clone()),
        ));
    }
    server.add_service(background_service(
        "downstream error summary",
        SummaryService {
            counters: ctx.metrics.downstream.clone(),
        },
    ));
    server.add_service(background_service(
        "jwks refresh",
        JwksRefresher(ctx.jwks.clone()),
    ));

    let mut checks = HealthCheckService::new(ctx.health.clone());
    checks.health_check_frequency = Some(crate::health::TICK);
    checks.parallel_health_check = true;
    server.add_service(background_service("health checks", checks));

    let (checker, metrics) = (ctx.checker.clone(), ctx.metrics.clone());
    let reloader = Arc::new(Reloader::new(
        opts.config.clone(),
        ctx,
        table.clone(),
        config.clone(),
        log,
    ));
    if config.metrics.enabled {
        let addr = config.metrics.bind_address.as_str();
        let state = Arc::new(AdminState {
            metrics,
            checker,
            reloads: reloader.stats.clone(),
            table,
            draining: draining.clone(),
            limits: limits.clone(),
            metrics_path: config.metrics.path.clone(),
            certs: config.tls.is_some().then(|| certs.store().clone()),
        });
        let mut admin = Service::new(
            "metrics".to_string(),
            AdminApp {
                state,
                header_timeout: head_limits.timeout,
            },
        );
        admin.threads = Some(1);
        admin.add_listener(ListenerConfig::tcp(addr).tcp_socket_options(sock));
        server.add_service(admin);
    }
    server.add_service(background_service(
        "config reload",
        ReloadService {
            reloader,
            poll: config.server.config_poll_interval_seconds.duration(),
        },
    ));

    tracing::info!(
        version = opts.version,
        config = %opts.config.display(),
        listen = %config.server.bind_address,
        https = config.tls.as_ref().map(|t| t.bind_address.as_str()),
        certificates = certs.store().snapshot().entries().len(),
        max_connections = limits.max_total(),
        routes = config.routes.len(),
        upstreams = config.upstreams.len(),
        "pingora-gateway starting"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            draining,
            delay: config.server.shutdown_delay_seconds.duration(),
        }),
    });
    crate::logging::flush();
    std::process::exit(0)
}

/// Every address this process will listen on is free (see
/// [`lifecycle::check_free`]).
fn check_ports(config: &FileConfig) -> Result<(), PortError> {
    let reuse = config.server.reuse_port;
    let s = &config.server.bind_address;
    lifecycle::check_free("proxy listener", "server.bind_address", s, reuse)?;
    if let Some(t) = &config.tls {
        lifecycle::check_free("HTTPS listener", "tls.bind_address", &t.bind_address, reuse)?;
    }
    if config.metrics.enabled {
        let m = &config.metrics.bind_address;
        lifecycle::check_free("metrics listener", "metrics.bind_address", m, reuse)?;
    }
    Ok(())
}

/// Turns `flag` true once this process starts handing over to a new one
/// (SIGQUIT) or shutting down (SIGTERM). Pingora closes idle keep-alive
/// connections the moment it stops accepting; closing each connection after
/// its current response before that keeps clients from racing a close.
/// A service (not a thread) so that it also runs after `--daemon` forks.
struct DrainWatch {
    phases: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<ExecutionPhase>>>,
    flag: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for DrainWatch {
    async fn start(&self, _shutdown: pingora_core::server::ShutdownWatch) {
        let Some(mut phases) = self.phases.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        while let Ok(phase) = phases.recv().await {
            if matches!(
                phase,
                ExecutionPhase::GracefulUpgradeTransferringFds
                    | ExecutionPhase::GracefulTerminate
                    | ExecutionPhase::ShutdownStarted
            ) {
                self.flag.store(true, Ordering::Relaxed);
                tracing::info!(?phase, "draining: responses now close their connections");
                return;
            }
        }
    }
}

/// Pingora's server settings from our `server:` section.
fn server_conf(c: &FileConfig) -> ServerConf {
    let s = &c.server;
    ServerConf {
        threads: s.worker_threads,
        work_stealing: s.work_stealing,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        grace_period_seconds: Some(s.grace_period_seconds.get()),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds.get()),
        ..ServerConf::default()
    }
}
