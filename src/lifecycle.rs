//! How the process starts and stops, beside what Pingora does itself.
//!
//! - **Start**: [`check_free`] probes each listening address before Pingora
//!   builds its listeners, so a port in use is one line and a non-zero exit
//!   at once (Pingora retries for ≈28 s, then panics in a service thread and
//!   leaves the process half alive). A graceful-upgrade successor receives
//!   the listeners over the upgrade socket and skips the probe.
//!   [`exit_on_listener_panic`] covers the race the probe cannot (the port
//!   taken between probe and bind): that panic ends the process.
//! - **SIGTERM** ([`Signals`]): `/readyz` turns 503 at once (the `draining`
//!   flag), the proxy keeps serving for `server.shutdown_delay_seconds`
//!   (lame duck), then Pingora's graceful shutdown starts. SIGQUIT (upgrade)
//!   and SIGINT (fast stop) go to Pingora unchanged.
//! - **Stop** ([`StopWhenIdle`]): once Pingora stopped accepting, the
//!   process exits as soon as no client connection is left, instead of
//!   sleeping the whole `server.grace_period_seconds`.
//! - **Secrets** ([`credentials_env`]): systemd's `LoadCredential=` files
//!   become environment variables for the config's `${VAR}`.

use crate::downstream::ConnLimits;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// A listening address that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("{field}: cannot listen on {addr} for the {what}: {reason}")]
pub struct PortError {
    pub what: &'static str,
    pub field: &'static str,
    pub addr: String,
    pub reason: String,
}

/// Binds (without listening) a socket the way Pingora's listener will be
/// bound (`SO_REUSEADDR`, `SO_REUSEPORT` when `reuse_port`), then lets it go.
pub fn check_free(
    what: &'static str,
    field: &'static str,
    addr: &str,
    reuse_port: bool,
) -> Result<(), PortError> {
    let err = |reason: String| PortError {
        what,
        field,
        addr: addr.to_string(),
        reason,
    };
    let sa: SocketAddr = addr.parse().map_err(|e| err(format!("{e}")))?;
    let probe = || -> std::io::Result<()> {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::for_address(sa), Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        s.bind(&sa.into())
    };
    probe().map_err(|e| {
        err(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "address already in use (another process listens there: stop it or change {field})"
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("permission denied (ports below 1024 need CAP_NET_BIND_SERVICE): {e}")
            }
            _ => e.to_string(),
        })
    })
}

/// Ends the process when a Pingora listening service panics because it
/// could not bind ("Failed to build listeners"): a process without its
/// listener must not look alive. Other panics keep the default hook.
pub fn exit_on_listener_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Failed to build listeners") {
            tracing::error!("cannot listen, exiting: {msg}");
            crate::logging::flush();
            eprintln!("gateway: cannot listen: {msg}");
            std::process::exit(1);
        }
        default(info);
    }));
}

/// Pingora's shutdown signals with a lame-duck period in front of SIGTERM.
pub struct Signals {
    /// `/readyz` answers 503 (and responses close their connections) once set.
    pub draining: Arc<AtomicBool>,
    /// `server.shutdown_delay_seconds`.
    pub delay: Duration,
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers: stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = term.recv() => {}
        }
        self.draining.store(true, Ordering::Relaxed);
        if self.delay.is_zero() {
            tracing::info!("SIGTERM: stopping");
            return ShutdownSignal::GracefulTerminate;
        }
        tracing::info!(
            shutdown_delay_seconds = self.delay.as_secs(),
            "SIGTERM: /readyz answers 503; serving on until the shutdown delay ends"
        );
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => {}
            _ = term.recv() => tracing::info!("second SIGTERM: shutdown delay cut short"),
            _ = int.recv() => return ShutdownSignal::FastShutdown,
        }
        tracing::info!("shutdown delay over: stopping");
        ShutdownSignal::GracefulTerminate
    }
}

/// Once Pingora stops accepting, exits the process as soon as no client
/// connection is open (checked every [`IDLE_POLL`], twice in a row so a
/// connection accepted just before the listener closed is seen). Without
/// this Pingora sleeps the full grace period, idle or not; connections still
/// open then are Pingora's to end as before.
pub struct StopWhenIdle {
    pub limits: Arc<ConnLimits>,
}

/// How often [`StopWhenIdle`] looks at the open-connection count.
pub const IDLE_POLL: Duration = Duration::from_millis(50);

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for StopWhenIdle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let started = std::time::Instant::now();
        let mut idle_polls = 0;
        loop {
            tokio::time::sleep(IDLE_POLL).await;
            if self.limits.open() == 0 {
                idle_polls += 1;
            } else {
                idle_polls = 0;
            }
            if idle_polls >= 2 {
                break;
            }
        }
        tracing::info!(
            drained_ms = started.elapsed().as_millis() as u64,
            "no client connection left: exiting"
        );
        crate::logging::flush();
        std::process::exit(0);
    }
}

/// The environment variables to set from systemd credentials
/// (`LoadCredential=NAME:path`, found in `$CREDENTIALS_DIRECTORY/NAME`):
/// every credential whose name is an environment variable name
/// (`JWT_SECRET`) and that is not set already, one trailing newline removed.
pub fn credentials_env() -> Vec<(String, String)> {
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        return vec![];
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = vec![];
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let valid = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_uppercase() || (i > 0 && b.is_ascii_digit()));
        if !valid || name.is_empty() || std::env::var_os(&name).is_some() {
            continue;
        }
        if let Ok(mut value) = std::fs::read_to_string(e.path()) {
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_with_a_listener_is_reported_in_one_line() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let e = check_free("proxy listener", "server.bind_address", &addr, false).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("server.bind_address: cannot listen on "),
            "{text}"
        );
        assert!(text.contains("address already in use"), "{text}");
        assert!(!text.contains('\n'));
        drop(l);
        check_free("proxy listener", "server.bind_address", &addr, false).unwrap();
    }
}
