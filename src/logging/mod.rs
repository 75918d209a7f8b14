//! Logging through `tracing`: JSON or text lines on stderr, level from the
//! config (changeable at run time, see [`LogHandle`]) unless `RUST_LOG` is set.
//! Pingora's own `log` records are bridged in by [`pingora`], at most at INFO
//! whatever the level (its DEBUG and TRACE lines dump request heads, tokens
//! included), with levels that follow one rule: ERROR means an operator must act.
//!
//! Lines are handed to a flusher thread through a lock-free queue without
//! waking it; every [`FLUSH_EVERY`] it writes everything queued in one
//! `write`. A proxy worker never makes a system call to log and never waits
//! on the log's destination; more than [`MAX_PENDING`] bytes waiting (a stuck
//! stderr) drops lines instead of growing without bound. The flusher starts
//! with the Pingora server's services, i.e. after a `--daemon` fork (threads
//! do not survive it); lines before that are written directly. Up to 50 ms
//! of lines can be lost when the process exits.
//!
//! The access log is the one line per request, so it does not go through
//! `tracing`'s formatter: [`AccessLine`] writes the same fields (JSON or
//! text, as configured) straight into the line it queues. It still obeys the
//! level filter (target `access`, level INFO).

use crate::config::model::{LogFormat, LoggingConfig};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub mod pingora;

/// The format the subscriber was installed with (for [`AccessLine`]).
static TEXT_FORMAT: AtomicBool = AtomicBool::new(false);

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
            set_log_max_level(&f);
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
    set_log_max_level(&filter);
    let (filter, handle) = reload::Layer::new(filter);
    let result = match cfg.format {
        LogFormat::Json => tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(filter)
                .with(tracing_subscriber::filter::filter_fn(secret_free))
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_writer(writer),
                ),
        ),
        LogFormat::Text => tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(filter)
                .with(tracing_subscriber::filter::filter_fn(secret_free))
                .with(tracing_subscriber::fmt::layer().with_writer(writer)),
        ),
    };
    if result.is_ok() {
        TEXT_FORMAT.store(cfg.format == LogFormat::Text, Ordering::Relaxed);
        let _ = log::set_logger(&pingora::Bridge);
    }
    LogHandle {
        handle: (result.is_ok() && from_env.is_none()).then_some(handle),
    }
}

/// Whatever the level (`logging.level`, `RUST_LOG`): Pingora's own DEBUG
/// and TRACE lines are never written. They dump request and response heads
/// (`Authorization`, `Cookie`) and, for a head it refuses, the raw bytes of
/// the request. Decided per call site from its metadata (cached by
/// `tracing`; Pingora's `log` records are checked only when they pass the
/// level filter, i.e. at `debug` or `trace`).
fn secret_free(meta: &tracing::Metadata<'_>) -> bool {
    let t = meta.target();
    *meta.level() <= tracing::Level::INFO
        || !t.starts_with("pingora")
        || t == pingora::TARGET
        || t.starts_with("pingora_gateway")
}

/// `log` records above INFO are skipped before they are formatted unless
/// the filter wants them (Pingora's are dropped by the bridge anyway).
fn set_log_max_level(filter: &EnvFilter) {
    let verbose = filter
        .max_level_hint()
        .is_none_or(|l| l > tracing::level_filters::LevelFilter::INFO);
    log::set_max_level(if verbose {
        log::LevelFilter::Trace
    } else {
        log::LevelFilter::Info
    });
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
    /// Flush rounds done (see [`flush`]).
    rounds: std::sync::atomic::AtomicU64,
}

/// Waits (at most a few rounds) until what was queued before the call is
/// written: for a process about to exit.
pub fn flush() {
    let guard = QUEUE.load();
    let Some(q) = guard.as_ref() else {
        return;
    };
    let start = q.rounds.load(Ordering::Acquire);
    let deadline = std::time::Instant::now() + 10 * FLUSH_EVERY;
    // Two rounds: the one running now may have started before our lines.
    while q.rounds.load(Ordering::Acquire) < start + 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(FLUSH_EVERY / 5);
    }
}

/// Starts the flusher thread. Call it where the process will live: after
/// Pingora's `--daemon` fork (from a background service).
pub fn start_flusher() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let queue = std::sync::Arc::new(Queue {
        tx,
        pending: std::sync::atomic::AtomicUsize::new(0),
        rounds: std::sync::atomic::AtomicU64::new(0),
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
                q.rounds.fetch_add(1, Ordering::Release);
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

/// Hands one whole line to the flusher (or writes it while there is none).
fn enqueue(line: Vec<u8>) {
    let guard = QUEUE.load();
    match guard.as_ref() {
        Some(q) => {
            if q.pending.fetch_add(line.len(), Ordering::Relaxed) > MAX_PENDING {
                // Dropped: the destination is stuck.
                q.pending.fetch_sub(line.len(), Ordering::Relaxed);
                return;
            }
            let _ = q.tx.send(line);
        }
        None => {
            let _ = std::io::stderr().write_all(&line);
        }
    }
}

impl std::io::Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        enqueue(buf.to_vec());
        Ok(buf.len())
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
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        start_flusher();
        // Lives as long as the server: a service that returns is logged as
        // "exited", which reads like a failure.
        let _ = shutdown.changed().await;
    }
}

/// One access-log line: what the proxy knows when a request ends.
pub struct AccessLine<'a> {
    pub method: &'a str,
    /// The client's address (through trusted proxies, see `server.trusted_proxies`).
    pub client_ip: Option<std::net::IpAddr>,
    pub path: &'a str,
    pub route: &'a str,
    pub upstream: &'a str,
    pub server: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub bytes: usize,
    pub request_id: &'a str,
    pub user: &'a str,
    pub error: &'a str,
    /// Why the upstream's response was cut off (`closed`, `reset`,
    /// `timeout`, `protocol`), empty when it was not.
    pub aborted: &'a str,
    /// The request host (validated), empty without one.
    pub host: &'a str,
    /// `HTTP/1.1`, `HTTP/2`, `HTTP/1.0`.
    pub protocol: &'a str,
    /// `User-Agent`, at most [`FIELD_CAP`] bytes.
    pub user_agent: &'a str,
    /// The query string, credentials redacted ([`redact_query`]), at most
    /// [`FIELD_CAP`] bytes.
    pub query: &'a str,
    /// `TLSv1.3` / `TLSv1.2` on the HTTPS listener; the field is left out
    /// of plain-HTTP lines.
    pub tls_version: &'a str,
}

/// Longest `user_agent` and `query` written to an access line, in bytes.
pub const FIELD_CAP: usize = 512;

/// Query parameters whose values never reach a log (ASCII case-insensitive
/// names): tokens, keys, passwords, signatures, OAuth codes.
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "code",
    "client_secret",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "signature",
    "sig",
    "jwt",
    "x-amz-signature",
    "x-amz-security-token",
];

/// `query` with the values of [`SECRET_PARAMS`] replaced by `REDACTED`,
/// cut to [`FIELD_CAP`] bytes. Borrows when nothing changes.
pub fn redact_query(query: &str) -> std::borrow::Cow<'_, str> {
    let secret = |pair: &str| {
        let name = pair.split('=').next().unwrap_or("");
        pair.contains('=') && SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
    };
    let out: std::borrow::Cow<'_, str> = if query.split('&').any(secret) {
        let mut s = String::with_capacity(query.len());
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                s.push('&');
            }
            if secret(pair) {
                s.push_str(pair.split('=').next().unwrap_or(""));
                s.push_str("=REDACTED");
            } else {
                s.push_str(pair);
            }
        }
        s.into()
    } else {
        query.into()
    };
    match out {
        std::borrow::Cow::Borrowed(b) => cap(b).into(),
        std::borrow::Cow::Owned(o) => cap(&o).to_string().into(),
    }
}

/// At most [`FIELD_CAP`] bytes, cut on a character boundary.
pub fn cap(s: &str) -> &str {
    if s.len() <= FIELD_CAP {
        return s;
    }
    let mut end = FIELD_CAP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl AccessLine<'_> {
    /// Queues the line, unless the level filter turns target `access` off.
    pub fn emit(&self) {
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let mut line = Vec::with_capacity(320 + self.path.len());
        self.write(
            &mut line,
            TEXT_FORMAT.load(Ordering::Relaxed),
            SystemTime::now(),
        );
        enqueue(line);
    }

    /// The same fields, names and order as `tracing`'s JSON formatter wrote
    /// for this event (`flatten_event`), or its text layout.
    fn write(&self, out: &mut Vec<u8>, text: bool, now: SystemTime) {
        let ms = self.duration.as_micros();
        let (ms, frac) = (ms / 1000, ms % 1000);
        let strings = [
            ("host", self.host),
            ("protocol", self.protocol),
            ("path", self.path),
            ("query", self.query),
            ("route", self.route),
            ("upstream", self.upstream),
            ("server", self.server),
            ("user_agent", self.user_agent),
        ];
        if text {
            write_timestamp(out, now);
            let _ = write!(out, "  INFO access: method={}", self.method);
            match self.client_ip {
                Some(ip) => _ = write!(out, " client_ip={ip}"),
                None => out.extend_from_slice(b" client_ip=\"\""),
            }
            for (k, v) in strings {
                let _ = write!(out, " {k}={v:?}");
            }
            if !self.tls_version.is_empty() {
                let _ = write!(out, " tls_version={:?}", self.tls_version);
            }
            let _ = write!(
                out,
                " status={} duration_ms={ms}.{frac:03} bytes={} request_id={:?} user={:?} error={:?} aborted={:?}",
                self.status, self.bytes, self.request_id, self.user, self.error, self.aborted
            );
        } else {
            out.extend_from_slice(b"{\"timestamp\":\"");
            write_timestamp(out, now);
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"method\":");
            json_str(out, self.method);
            match self.client_ip {
                Some(ip) => _ = write!(out, ",\"client_ip\":\"{ip}\""),
                None => out.extend_from_slice(b",\"client_ip\":\"\""),
            }
            for (k, v) in strings {
                let _ = write!(out, ",\"{k}\":");
                json_str(out, v);
            }
            if !self.tls_version.is_empty() {
                out.extend_from_slice(b",\"tls_version\":");
                json_str(out, self.tls_version);
            }
            let _ = write!(
                out,
                ",\"status\":{},\"duration_ms\":{ms}.{frac:03},\"bytes\":{},\"request_id\":",
                self.status, self.bytes
            );
            json_str(out, self.request_id);
            out.extend_from_slice(b",\"user\":");
            json_str(out, self.user);
            out.extend_from_slice(b",\"error\":");
            json_str(out, self.error);
            out.extend_from_slice(b",\"aborted\":");
            json_str(out, self.aborted);
            out.extend_from_slice(b",\"target\":\"access\"}");
        }
        out.push(b'\n');
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `2026-11-27T07:02:25.595102Z` (RFC 3339, UTC, microseconds), as
/// `tracing-subscriber` writes it. The date part is computed once a second
/// per thread.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        text = civil_time(secs);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    let _ = write!(out, ".{:06}Z", since.subsec_micros());
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the Unix epoch (H. Hinnant's
/// days-to-civil algorithm).
fn civil_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = [0u8; 19];
    let _ = write!(
        &mut text[..],
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn timestamps_match_rfc3339_utc() {
        for (secs, micros, want) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
            (1_795_680_000, 123_456, "2026-11-26T08:00:00.123456Z"),
            (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z"),
        ] {
            let mut out = vec![];
            write_timestamp(&mut out, at(secs, micros));
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    fn line() -> AccessLine<'static> {
        AccessLine {
            method: "GET",
            client_ip: None,
            path: "/a \"b\"\n",
            route: "/a/*",
            upstream: "app",
            server: "127.0.0.1:8080",
            status: 200,
            duration: Duration::from_micros(24_315),
            bytes: 6,
            request_id: "abc",
            user: "",
            error: "",
            aborted: "",
            host: "api.example.com",
            protocol: "HTTP/1.1",
            user_agent: "curl/8",
            query: "a=1",
            tls_version: "",
        }
    }

    #[test]
    fn credentials_in_queries_are_redacted() {
        assert_eq!(redact_query("a=1&b=2"), "a=1&b=2");
        assert_eq!(
            redact_query("a=1&access_token=eyJ.x.y&Token=t&keyless=1&code"),
            "a=1&access_token=REDACTED&Token=REDACTED&keyless=1&code"
        );
        let long = "x".repeat(2000);
        assert_eq!(redact_query(&long).len(), FIELD_CAP);
        assert_eq!(cap("é".repeat(400).as_str()).len(), FIELD_CAP);
    }

    #[test]
    fn json_lines_are_valid_json_with_every_field_escaped() {
        let mut out = vec![];
        line().write(&mut out, false, at(1_795_680_000, 5));
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["timestamp"], "2026-11-26T08:00:00.000005Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "access");
        assert_eq!(v["path"], "/a \"b\"\n");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 24.315);
        assert_eq!(v["bytes"], 6);
        for k in [
            "method",
            "route",
            "upstream",
            "server",
            "request_id",
            "user",
            "error",
            "aborted",
        ] {
            assert!(v[k].is_string(), "{k}: {v}");
        }
    }

    #[test]
    fn text_lines_quote_what_could_break_the_line() {
        let mut out = vec![];
        line().write(&mut out, true, at(1_795_680_000, 5));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2026-11-26T08:00:00.000005Z  INFO access: method=GET client_ip=\"\" host=\"api.example.com\" protocol=\"HTTP/1.1\" path=\"/a \\\"b\\\"\\n\" query=\"a=1\" route=\"/a/*\" \
             upstream=\"app\" server=\"127.0.0.1:8080\" user_agent=\"curl/8\" status=200 duration_ms=24.315 bytes=6 \
             request_id=\"abc\" user=\"\" error=\"\" aborted=\"\"\n"
        );
    }
}
