//! Automatic certificates (ACME, RFC 8555) with HTTP-01 challenges.
//!
//! ```text
//!  start ─► Storage::open (storage_dir created 0700, checked writable)
//!        ─► stored certificate.pem, still valid? ─► CertStore::set_acme  (before any network call)
//!  AcmeService (a background service), forever:
//!        sleep until due  ── due: no certificate, one not covering every domain,
//!                            or a third of its lifetime left
//!        ─► Orderer::obtain (order → HTTP-01 via Challenges → finalize → download)
//!             ├─ ok: store (atomic, 0600) ─► set_acme (new handshakes) ─► orders{result="success"}
//!             └─ failed: WARN with the CA's reason, orders{result="failure"},
//!                retry after a backoff (5 s doubling to 1 h); the current
//!                certificate is served all along
//! ```
//!
//! The ACME half of the store is written only here, so the file loader and
//! config reloads never drop an obtained certificate. `tls.acme` itself is
//! read at start (a change needs a restart, as the reload says).

mod client;
mod order;
pub mod storage;

use super::challenge::Challenges;
use super::files::utc;
use super::pem::{CertInfo, LoadedPair};
use super::store::{CertStore, Entry, Source};
use crate::config::tls::AcmeConfig;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::IntCounter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
pub use storage::{Storage, StorageError, check_dir};

/// First retry after a failed order; doubled after each failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between two failed attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);
/// One attempt (account, order, validation, issuance) may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Order results (`gateway_acme_orders_total{result}`).
pub struct OrderCounters {
    pub success: IntCounter,
    pub failure: IntCounter,
}

/// The ACME client of the process: its settings, storage and the store
/// half it writes.
pub struct Acme {
    directory_url: String,
    contact: Vec<String>,
    domains: Vec<String>,
    ca_file: Option<PathBuf>,
    storage: Storage,
    store: Arc<CertStore>,
    challenges: Arc<Challenges>,
    counters: OrderCounters,
    /// The plain listener, which must answer before the CA is told ready.
    plain: Option<SocketAddr>,
}

impl Acme {
    /// Opens the storage and serves a stored, unexpired certificate at
    /// once. Fails only when the storage directory cannot be used.
    pub fn start(
        config: &AcmeConfig,
        store: Arc<CertStore>,
        challenges: Arc<Challenges>,
        counters: OrderCounters,
        plain: Option<SocketAddr>,
    ) -> Result<Arc<Self>, StorageError> {
        let AcmeConfig {
            directory_url,
            contact,
            domains,
            storage_dir,
            ca_file,
        } = config;
        let acme = Acme {
            directory_url: directory_url.clone(),
            contact: contact.clone(),
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            ca_file: ca_file.as_ref().map(PathBuf::from),
            storage: Storage::open(storage_dir.as_ref())?,
            store,
            challenges,
            counters,
            plain,
        };
        match acme.storage.load_certificate() {
            Ok(Some(pair)) if pair.info.seconds_left() > 0 => {
                tracing::info!(
                    domains = %acme.name(),
                    serial = %pair.info.serial,
                    not_after = %utc(pair.info.not_after),
                    "serving the stored ACME certificate"
                );
                acme.serve(pair);
            }
            Ok(Some(pair)) => tracing::warn!(
                not_after = %utc(pair.info.not_after),
                "the stored ACME certificate has expired; ordering a new one"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!("stored ACME certificate unusable ({e}); ordering a new one"),
        }
        Ok(Arc::new(acme))
    }

    /// The `name` of the served entry (and the expiry gauge's label).
    fn name(&self) -> String {
        self.domains.join(",")
    }

    fn serve(&self, pair: LoadedPair) {
        self.store
            .set_acme(vec![Entry::new(pair, Source::Acme, self.name())]);
    }

    /// The ACME certificate served now, if any.
    fn current(&self) -> Option<CertInfo> {
        let index = self.store.snapshot();
        index
            .entries()
            .iter()
            .find(|e| e.source == Source::Acme)
            .map(|e| e.info.clone())
    }

    /// One attempt: order, store, serve.
    async fn renew(&self) -> Result<CertInfo, String> {
        self.wait_for_plain_listener().await;
        let orderer = order::Orderer {
            directory_url: &self.directory_url,
            contact: &self.contact,
            domains: &self.domains,
            ca_file: self.ca_file.as_deref(),
            storage: &self.storage,
            challenges: &self.challenges,
        };
        let issued = tokio::time::timeout(ATTEMPT_TIMEOUT, orderer.obtain())
            .await
            .map_err(|_| format!("no certificate within {}s", ATTEMPT_TIMEOUT.as_secs()))??;
        self.storage
            .save_certificate(&issued.chain, &issued.key)
            .map_err(|e| e.to_string())?;
        let info = issued.pair.info.clone();
        self.serve(issued.pair);
        Ok(info)
    }

    /// The CA validates right after it is told ready: the plain listener
    /// must be accepting by then (it starts beside this service).
    async fn wait_for_plain_listener(&self) {
        let Some(mut addr) = self.plain else { return };
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The checks of `tls.acme` that read the disk (for a start, a reload and
/// `gateway validate`): `(field pointer, message)` of each problem.
pub fn check_files(config: &AcmeConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !config.storage_dir.is_empty()
        && let Err(m) = check_dir(config.storage_dir.as_ref())
    {
        out.push(("/tls/acme/storage_dir", m));
    }
    if let Some(f) = config.ca_file.as_deref().filter(|f| !f.is_empty())
        && let Err(e) = super::pem::read_roots(f.as_ref())
    {
        out.push(("/tls/acme/ca_file", e.to_string()));
    }
    out
}

/// When to order next, from now (Unix seconds), for a certificate `current`.
pub fn due_in(current: Option<&CertInfo>, domains: &[String], now: i64) -> Duration {
    let Some(c) = current else {
        return Duration::ZERO;
    };
    if !domains.iter().all(|d| c.covers(d)) {
        return Duration::ZERO;
    }
    let lifetime = (c.not_after - c.not_before).max(0);
    let renew_at = c.not_after - lifetime / 3;
    Duration::from_secs(u64::try_from(renew_at - now).unwrap_or(0))
}

/// The wait after `failures` consecutive failed attempts (1 = the first).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(20);
    RETRY_FIRST.saturating_mul(factor).min(RETRY_MAX)
}

/// Obtains and renews the certificate in the background.
pub struct AcmeService(pub Arc<Acme>);

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let acme = &self.0;
        let mut failures = 0u32;
        loop {
            let wait = if failures > 0 {
                backoff(failures)
            } else {
                due_in(acme.current().as_ref(), &acme.domains, now_unix())
            };
            if !wait.is_zero() {
                tracing::debug!(seconds = wait.as_secs(), "next ACME order");
                // Long sleeps are cut into pieces: a suspended machine's
                // clock jumps, and the due time is recomputed after each.
                let piece = wait.min(Duration::from_secs(3600));
                tokio::select! {
                    _ = tokio::time::sleep(piece) => {}
                    _ = shutdown.changed() => return,
                }
                if piece < wait {
                    continue;
                }
            }
            tokio::select! {
                r = acme.renew() => match r {
                    Ok(info) => {
                        failures = 0;
                        acme.counters.success.inc();
                        tracing::info!(
                            domains = %acme.name(),
                            serial = %info.serial,
                            not_after = %utc(info.not_after),
                            "ACME certificate obtained (new handshakes use it)"
                        );
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        acme.counters.failure.inc();
                        tracing::warn!(
                            domains = %acme.name(),
                            retry_in_seconds = backoff(failures).as_secs(),
                            serving = acme.current().map_or("nothing", |_| "the current certificate"),
                            "ACME order failed: {e}"
                        );
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str], not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            names: names.iter().map(|s| s.to_string()).collect(),
            not_before,
            not_after,
            serial: "01".into(),
        }
    }

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let d = vec!["a.test".to_string()];
        // 90 days: due at day 60.
        let day = 86_400;
        let c = info(&["a.test"], 0, 90 * day);
        assert_eq!(
            due_in(Some(&c), &d, 0),
            Duration::from_secs(60 * day as u64)
        );
        assert_eq!(
            due_in(Some(&c), &d, 59 * day),
            Duration::from_secs(day as u64)
        );
        assert_eq!(due_in(Some(&c), &d, 60 * day), Duration::ZERO);
        assert_eq!(due_in(Some(&c), &d, 100 * day), Duration::ZERO);
        assert_eq!(due_in(None, &d, 0), Duration::ZERO);
        // A certificate without a newly configured domain is replaced now.
        let more = vec!["a.test".to_string(), "b.test".to_string()];
        assert_eq!(due_in(Some(&c), &more, 0), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(5), Duration::from_secs(80));
        assert_eq!(backoff(11), RETRY_MAX);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }
}
