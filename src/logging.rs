//! Logging through `tracing`: JSON or text lines on stderr, level from the
//! config (changeable at run time, see [`LogHandle`]) unless `RUST_LOG` is set.
//! Pingora's own `log` records are bridged in.
//!
//! Lines are handed to a flusher thread through a lock-free queue without
//! waking it; every [`FLUSH_EVERY`] it writes everything queued in one
//! `write`. A proxy worker never makes a system call to log and never waits
//! on the log's destination; more than [`MAX_PENDING`] bytes waiting (a stuck
//! stderr) drops lines instead of growing without bound. The flusher starts
//! with the Pingora server's services, i.e. after a `--daemon` fork (threads
//! do not survive it); lines before that are written directly. Up to 50 ms
//! of lines can be lost when the process exits.

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
/// Lines are written directly until [`FlusherService`] starts the flusher.
pub fn init(cfg: &LoggingConfig) -> LogHandle {
    let writer = BatchWriter;
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

/// How often queued log lines are written out.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
/// Bytes that may wait for the flusher before lines are dropped.
pub const MAX_PENDING: usize = 64 * 1024 * 1024;

/// The flusher's queue, once [`start_flusher`] ran; until then lines are
/// written directly.
static QUEUE: arc_swap::ArcSwapOption<Queue> = arc_swap::ArcSwapOption::const_empty();

struct Queue {
    tx: std::sync::mpsc::Sender<Vec<u8>>,
    pending: std::sync::atomic::AtomicUsize,
}

/// Starts the flusher thread. Call it where the process will live: after
/// Pingora's `--daemon` fork (from a background service).
pub fn start_flusher() {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let queue = std::sync::Arc::new(Queue {
        tx,
        pending: std::sync::atomic::AtomicUsize::new(0),
    });
    let q = queue.clone();
    let spawned = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(64 * 1024);
            loop {
                // Never block in recv(): a blocked receiver makes every send
                // wake this thread, which is what batching avoids.
                std::thread::sleep(FLUSH_EVERY);
                while let Ok(line) = rx.try_recv() {
                    q.pending.fetch_sub(line.len(), Ordering::Relaxed);
                    batch.extend_from_slice(&line);
                }
                if !batch.is_empty() {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&batch);
                    let _ = err.flush();
                    batch.clear();
                }
            }
        });
    if spawned.is_ok() {
        QUEUE.store(Some(queue));
    }
}

/// A `MakeWriter` that queues each line for the flusher (or writes it
/// directly while there is none).
#[derive(Clone, Copy)]
struct BatchWriter;

impl std::io::Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        let guard = QUEUE.load();
        match guard.as_ref() {
            Some(q) => {
                if q.pending.fetch_add(buf.len(), Ordering::Relaxed) > MAX_PENDING {
                    q.pending.fetch_sub(buf.len(), Ordering::Relaxed);
                    return Ok(buf.len()); // dropped: the destination is stuck
                }
                let _ = q.tx.send(buf.to_vec());
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Starts the flusher once the Pingora server runs (after `--daemon` forks).
pub struct FlusherService;

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for FlusherService {
    async fn start(&self, _shutdown: pingora_core::server::ShutdownWatch) {
        start_flusher();
    }
}
