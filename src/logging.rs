//! Logging through `tracing`: JSON or text lines on stderr, level from the
//! config (changeable at run time, see [`LogHandle`]) unless `RUST_LOG` is set.
//! Pingora's own `log` records are bridged in.

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

/// Installs the global subscriber. Calling it twice keeps the first.
pub fn init(cfg: &LoggingConfig) -> LogHandle {
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
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    LogHandle {
        handle: (result.is_ok() && from_env.is_none()).then_some(handle),
    }
}
