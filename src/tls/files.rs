//! Certificates from files (`tls.certificates`), kept live.
//!
//! ```text
//!  start / config reload ─► runtime::compile ─► check_pair (each pair) ─┬─ errors: the file is refused
//!                                                                      └─ CertFiles::install ─► CertStore::set_files
//!  notify (the files' directories, `..data` swaps included) ─┐
//!  poll (every second) ──────────────────────────────────────┴─► CertFiles::refresh: bytes changed?
//!        ─► check_pair ─┬─ ok: that pair replaced ─► CertStore::set_files (new handshakes only)
//!                       └─ broken: ERROR in the `gateway validate` form, counted, previous pair kept
//! ```
//!
//! [`check_pair`] is the one check for `gateway validate`, a start, a
//! config reload and a file change: unreadable file, no or bad PEM, a key
//! that does not match, an expired certificate → error; expiring within
//! [`EXPIRY_WARNING_DAYS`] → warning. Open connections keep the certificate
//! they were handed; nothing here touches them.

use super::pem::{self, CertInfo, LoadedPair, PemError};
use super::store::{CertStore, Entry, Source};
use crate::config::diag::Diagnostic;
use crate::config::tls::CertificateConfig;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::IntCounter;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// A certificate expiring within this many days is reported (a warning).
pub const EXPIRY_WARNING_DAYS: i64 = 14;
/// How often the files are re-read when no file event arrives.
pub const POLL: Duration = Duration::from_secs(1);
/// Quiet time after a file event before re-reading (a cert and its key are
/// often written one after the other).
const SETTLE: Duration = Duration::from_millis(150);

/// Which field of a pair a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    CertFile,
    KeyFile,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::CertFile => "cert_file",
            Field::KeyFile => "key_file",
        }
    }
}

/// A pair that passed [`check_pair`], a warning about it if any, and the
/// contents it was read from (cert, key).
pub struct Checked {
    pub pair: LoadedPair,
    pub warning: Option<String>,
    pub pem: (Vec<u8>, Vec<u8>),
}

/// Reads and checks one pair from its files.
pub fn check_pair(c: &CertificateConfig) -> Result<Checked, (Field, String)> {
    let (cert, key) = (Path::new(&c.cert_file), Path::new(&c.key_file));
    let cert_pem = std::fs::read(cert).map_err(|e| (Field::CertFile, read_error(cert, e)))?;
    let key_pem = std::fs::read(key).map_err(|e| (Field::KeyFile, read_error(key, e)))?;
    check_pem(cert_pem, key_pem, c)
}

fn read_error(path: &Path, source: std::io::Error) -> String {
    PemError::Read {
        path: path.to_path_buf(),
        source,
    }
    .to_string()
}

/// [`check_pair`] on contents already read.
pub fn check_pem(
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    c: &CertificateConfig,
) -> Result<Checked, (Field, String)> {
    let (cert, key) = (Path::new(&c.cert_file), Path::new(&c.key_file));
    let certs = pem::parse_certs(&cert_pem, cert).map_err(|e| (Field::CertFile, e.to_string()))?;
    let k = pem::parse_key(&key_pem, key).map_err(|e| (Field::KeyFile, e.to_string()))?;
    let pair = pem::pair(certs, k, cert, key).map_err(|e| {
        let field = match &e {
            PemError::BadKey { .. } | PemError::Mismatch { .. } => Field::KeyFile,
            _ => Field::CertFile,
        };
        (field, e.to_string())
    })?;
    let warning = expiry(&pair.info).map_err(|m| (Field::CertFile, m))?;
    Ok(Checked {
        pair,
        warning,
        pem: (cert_pem, key_pem),
    })
}

/// Expired (or not yet valid) → error; expiring soon → warning.
fn expiry(info: &CertInfo) -> Result<Option<String>, String> {
    let left = info.seconds_left();
    let now = info.not_after - left;
    if left <= 0 {
        return Err(format!(
            "certificate expired on {} (serial {})",
            utc(info.not_after),
            info.serial
        ));
    }
    if info.not_before > now {
        return Err(format!(
            "certificate is not valid before {} (serial {})",
            utc(info.not_before),
            info.serial
        ));
    }
    let days = left / 86_400;
    Ok((days < EXPIRY_WARNING_DAYS).then(|| {
        format!(
            "certificate expires in {days} days, on {} (serial {})",
            utc(info.not_after),
            info.serial
        )
    }))
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One configured pair as last seen.
struct Watched {
    config: CertificateConfig,
    /// Where the pair is in the config file (message left empty), for
    /// errors in the `gateway validate` form.
    at: [Diagnostic; 2],
    /// The contents last looked at (served, or refused once).
    seen: (Vec<u8>, Vec<u8>),
    entry: Entry,
}

/// Reload counters (`gateway_tls_certificate_reloads_total{result}`).
pub struct ReloadCounters {
    pub success: IntCounter,
    pub failure: IntCounter,
}

/// The file half of the [`CertStore`]; see the module docs.
pub struct CertFiles {
    store: Arc<CertStore>,
    watched: Mutex<Vec<Watched>>,
    /// The list of files changed (the watcher re-arms on it).
    changed: Notify,
    counters: ReloadCounters,
}

impl CertFiles {
    pub fn new(store: Arc<CertStore>, counters: ReloadCounters) -> Arc<Self> {
        Arc::new(CertFiles {
            store,
            watched: Mutex::new(Vec::new()),
            changed: Notify::new(),
            counters,
        })
    }

    /// The store every handshake resolves from.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// Serves `pairs` (checked by [`check_pair`], in config order) from now
    /// on and watches their files. `at[i]`: where pair `i`'s `cert_file`
    /// and `key_file` are in the config file.
    pub fn install(&self, pairs: Vec<(CertificateConfig, [Diagnostic; 2], Checked)>) {
        let mut watched = Vec::with_capacity(pairs.len());
        for (config, at, checked) in pairs {
            // What was checked is what is served; a change after the read
            // shows up at the next refresh.
            let Checked {
                pair, pem: seen, ..
            } = checked;
            let entry = Entry::new(pair, Source::File, config.cert_file.clone());
            watched.push(Watched {
                config,
                at,
                seen,
                entry,
            });
        }
        let entries = watched.iter().map(|w| w.entry.clone()).collect();
        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = watched;
        self.store.set_files(entries);
        self.changed.notify_one();
    }

    /// Re-reads every pair whose files changed; publishes the good ones.
    pub fn refresh(&self) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        for w in watched.iter_mut() {
            let (Ok(cert), Ok(key)) = (
                std::fs::read(&w.config.cert_file),
                std::fs::read(&w.config.key_file),
            ) else {
                // Missing for a moment (a rename in progress) or gone: the
                // served pair stays; a file that stays unreadable is
                // reported by the next start, reload or `validate`.
                continue;
            };
            if (&cert, &key) == (&w.seen.0, &w.seen.1) {
                continue;
            }
            let seen = (cert.clone(), key.clone());
            match check_pem(cert, key, &w.config) {
                Ok(Checked { pair, warning, .. }) => {
                    self.counters.success.inc();
                    tracing::info!(
                        cert_file = %w.config.cert_file,
                        serial = %pair.info.serial,
                        not_after = %utc(pair.info.not_after),
                        "certificate reloaded (new handshakes use it)"
                    );
                    if let Some(m) = warning {
                        tracing::warn!("{}", at(&w.at[0], m));
                    }
                    w.entry = Entry::new(pair, Source::File, w.config.cert_file.clone());
                    any = true;
                }
                Err((field, m)) => {
                    self.counters.failure.inc();
                    let d = at(&w.at[usize::from(field == Field::KeyFile)], m);
                    tracing::error!("{d}; still serving the previous certificate");
                }
            }
            w.seen = seen;
        }
        if any {
            self.store
                .set_files(watched.iter().map(|w| w.entry.clone()).collect());
        }
    }

    /// The directories holding the watched files.
    fn directories(&self) -> BTreeSet<PathBuf> {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched
            .iter()
            .flat_map(|w| [&w.config.cert_file, &w.config.key_file])
            .filter_map(|f| {
                let dir = Path::new(f).parent()?;
                Some(if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir.to_path_buf()
                })
            })
            .collect()
    }
}

fn at(template: &Diagnostic, message: String) -> Diagnostic {
    Diagnostic {
        message,
        ..template.clone()
    }
}

/// Keeps the file certificates live: file events and a poll.
pub struct CertWatchService(pub Arc<CertFiles>);

#[async_trait]
impl BackgroundService for CertWatchService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let files = &self.0;
        loop {
            let (tx, mut rx) = mpsc::channel(1);
            // Dropped (and re-made) when the list of files changes.
            let _watcher = watch(&files.directories(), tx);
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => files.refresh(),
                    Some(()) = rx.recv() => {
                        tokio::time::sleep(SETTLE).await;
                        while rx.try_recv().is_ok() {}
                        files.refresh();
                    }
                    _ = files.changed.notified() => break,
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Watches `dirs` (not the files: editors and Kubernetes replace files by
/// rename and symlink swaps); any change there triggers a re-read.
fn watch(dirs: &BTreeSet<PathBuf>, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|ev| !matches!(ev.kind, notify::EventKind::Access(_))) {
            let _ = tx.try_send(());
        }
    })
    .inspect_err(|e| tracing::warn!(error = %e, "cannot watch certificate files; polling only"))
    .ok()?;
    for d in dirs {
        if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch a certificate directory; polling it");
        }
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599), "2025-12-31T23:59:59Z");
    }
}
