//! Logging through `tracing`: JSON or text lines on stderr, level from the
//! config (changeable at run time, see [`LogHandle`]) unless `RUST_LOG` is set.
//! Pingora's own `log` records are bridged in.
//!
//! Lines are written by a background thread through a 64 KiB buffer that is
//! flushed whenever the queue runs dry: one `write` per batch instead of one
//! per request, and never a blocking write on a proxy worker. Under a burst
//! beyond 128,000 queued lines, lines are dropped rather than stalling
//! requests. In `--daemon` mode (threads do not survive the fork) lines are
//! written directly.

use crate::config::model::{LogFormat, LoggingConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log level of a running process (config reloads).
#[derive(Clone)]
pub struct LogHandle {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogHandle {
    /// Applies `level` unless `RUST_LOG` pinned the filter at start.
    pub fn set_level(&self, level: &str) {
        if let Some(h) = &self.handle
            && let Ok(f) = EnvFilter::try_new(level)
        {
            let _ = h.reload(f);
        }
    }
}

/// Keeps the background writer alive for the life of the process.
static WRITER_GUARD: std::sync::OnceLock<tracing_appender::non_blocking::WorkerGuard> =
    std::sync::OnceLock::new();

/// Installs the global subscriber. Calling it twice keeps the first.
/// `buffered`: write through the background thread (see the module docs).
pub fn init(cfg: &LoggingConfig, buffered: bool) -> LogHandle {
    let writer = if buffered {
        let (w, guard) = tracing_appender::non_blocking(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
        let _ = WRITER_GUARD.set(guard);
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(w)
    } else {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr)
    };
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = match &from_env {
        Some(v) => EnvFilter::try_new(v).unwrap_or_else(|_| EnvFilter::new(cfg.level.as_str())),
        None => EnvFilter::new(cfg.level.as_str()),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let result = match cfg.format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .try_init(),
    };
    LogHandle {
        handle: (result.is_ok() && from_env.is_none()).then_some(handle),
    }
}
