//! JSON Web Key Sets: fetched from the authority, cached, kept fresh.
//!
//! ```text
//! compile (start, every reload) ─► JwksRegistry::source(location) ─► Arc<JwksSource>
//!                                   (same location → same source: keys survive reloads)
//! JwksRefresher (Pingora background service) ─► every second: refresh the sources that are due
//! request ─► JwksSource::current() (lock-free load) ─► key known? verify, no network
//!        └─► unknown kid ─► refetch_unknown(): one fetch shared by all waiting
//!            requests, at most once per `min_refetch`, bounded by `timeout`
//! ```
//!
//! Guarantees: a request never waits on the network when its key is known;
//! a failed fetch keeps the last good key set; symmetric (`oct`) and
//! encryption keys from a JWKS are ignored, so a published secret can never
//! verify an HS token. While no key set was ever fetched because the
//! authority cannot be reached, an unknown key is the authority's outage
//! ([`JwksSource::unavailable`]: 503), not the token's fault (401). A failing
//! fetch is logged once per cause (with its URL), not once per attempt.
//!
//! Fetches go over `https` (rustls, the process's one TLS stack) trusting
//! the system's roots plus `auth.ca_file`, or over plain `http`.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a key set comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksLocation {
    /// The JWKS URL itself.
    Url(String),
    /// An authority's base URL: the JWKS URL is discovered from its metadata.
    Discover(String),
}

/// Timing of one key set (from the latest compiled config).
#[derive(Debug, Clone, Copy)]
pub struct JwksSettings {
    /// Background refresh period.
    pub refresh: Duration,
    /// Minimum time between fetches triggered by an unknown `kid`.
    pub min_refetch: Duration,
    /// Bound on one fetch (discovery plus key set).
    pub timeout: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            refresh: Duration::from_secs(300),
            min_refetch: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

/// One verification key from a JWKS.
pub struct Key {
    pub kid: Option<String>,
    pub family: AlgorithmFamily,
    /// The JWK's `alg`, when it names one: then only that algorithm.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// An immutable snapshot of a key set.
#[derive(Default)]
pub struct KeySet {
    /// Changes whenever the content changes; results cached under an older
    /// epoch are verified again.
    pub epoch: u64,
    pub keys: Vec<Key>,
    digest: [u8; 32],
}

impl KeySet {
    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Parses a JWKS document, skipping keys that cannot verify signatures.
    pub fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        for raw in doc.keys {
            if raw
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let alg = match raw.get("alg").and_then(|a| a.as_str()) {
                Some(a) => match Algorithm::from_str(a) {
                    Ok(a) => Some(a),
                    Err(_) => continue,
                },
                None => None,
            };
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                continue;
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let family = decoding.family();
            if family == AlgorithmFamily::Hmac || alg.is_some_and(|a| a.family() != family) {
                continue;
            }
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                family,
                alg,
                decoding,
            });
        }
        Ok(keys)
    }
}

/// All key sets of the process, shared by every compiled config (it lives
/// in the `CompileContext`), keyed by location.
#[derive(Default)]
pub struct JwksRegistry {
    sources: Mutex<HashMap<JwksLocation, Arc<JwksSource>>>,
    /// One HTTP client per set of extra roots (`auth.ca_file`'s content, by
    /// digest), so that a reload keeps its pooled connections.
    clients: Mutex<Vec<([u8; 32], reqwest::Client)>>,
}

impl JwksRegistry {
    /// The HTTP client for the authority, trusting the system's roots plus
    /// `extra_roots` (built on first use: no runtime is needed before a
    /// request is actually sent).
    pub fn client(&self, extra_roots: &[CertificateDer<'static>]) -> reqwest::Client {
        let mut digest = sha2::Sha256::default();
        for c in extra_roots {
            sha2::Digest::update(&mut digest, (c.len() as u64).to_le_bytes());
            sha2::Digest::update(&mut digest, c.as_ref());
        }
        let digest: [u8; 32] = sha2::Digest::finalize(digest).into();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = clients.iter().find(|(d, _)| *d == digest) {
            return c.clone();
        }
        // reqwest is built without a provider of its own: the process's
        // one (ring, as everywhere) must be installed before a client is.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::limited(3))
                .pool_idle_timeout(Duration::from_secs(30))
        };
        let extra: Vec<reqwest::Certificate> = extra_roots
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c).ok())
            .collect();
        let client = match builder().tls_certs_merge(extra).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %super::introspect::error_chain(e), "auth.ca_file cannot be used by the HTTP client; trusting the system's roots only");
                builder()
                    .build()
                    .expect("a client with the default TLS settings builds")
            }
        };
        clients.push((digest, client.clone()));
        client
    }

    /// The key set at `location`, created (empty, due now) on first use;
    /// `settings` of the latest config win.
    pub fn source(
        &self,
        location: JwksLocation,
        settings: JwksSettings,
        client: reqwest::Client,
    ) -> Arc<JwksSource> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let src = sources.entry(location.clone()).or_insert_with(|| {
            // A configured URL is fetched right away; a discovered one only
            // once a token needs it (an authority may publish no keys).
            let active = matches!(location, JwksLocation::Url(_));
            Arc::new(JwksSource {
                location,
                keys: arc_swap::ArcSwap::from_pointee(KeySet::default()),
                state: Mutex::new(FetchState {
                    settings,
                    client: client.clone(),
                    active,
                    last_attempt: None,
                    next_refresh: Instant::now(),
                    jwks_uri: None,
                    last_error: None,
                }),
                unavailable: AtomicBool::new(true),
                attempts: AtomicU64::new(0),
                flight: tokio::sync::Mutex::new(()),
            })
        });
        let mut st = src.lock_state();
        st.settings = settings;
        st.client = client;
        drop(st);
        src.clone()
    }

    /// One round of background work: refresh due sources, forget the ones
    /// no compiled config uses any more.
    pub async fn tick(&self) {
        let due: Vec<Arc<JwksSource>> = {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            sources.retain(|_, s| Arc::strong_count(s) > 1);
            let now = Instant::now();
            sources
                .values()
                .filter(|s| {
                    let st = s.lock_state();
                    st.active && st.next_refresh <= now
                })
                .cloned()
                .collect()
        };
        for s in due {
            if let Ok(_g) = s.flight.try_lock() {
                s.fetch_logged().await;
            }
        }
    }
}

/// The Pingora background service that keeps every key set fresh.
pub struct JwksRefresher(pub Arc<JwksRegistry>);

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        loop {
            self.0.tick().await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

struct FetchState {
    settings: JwksSettings,
    /// The latest config's client (its `auth.ca_file`).
    client: reqwest::Client,
    /// Refreshed in the background (once a first fetch was wanted).
    active: bool,
    last_attempt: Option<Instant>,
    next_refresh: Instant,
    /// The discovered JWKS URL (for [`JwksLocation::Discover`]).
    jwks_uri: Option<String>,
    /// The cause of the last failure, logged once until it changes or a
    /// fetch succeeds.
    last_error: Option<String>,
}

/// Why a fetch failed, and whether the authority could be asked at all.
struct FetchError {
    message: String,
    /// Network, TLS, timeout or a non-2xx status: the authority's outage.
    /// Otherwise it answered, with nothing usable (no `jwks_uri`, no keys).
    unreachable: bool,
}

impl FetchError {
    fn unreachable(message: String) -> Self {
        FetchError {
            message,
            unreachable: true,
        }
    }

    fn answered(message: String) -> Self {
        FetchError {
            message,
            unreachable: false,
        }
    }
}

/// One key set and its refresh state.
pub struct JwksSource {
    location: JwksLocation,
    keys: arc_swap::ArcSwap<KeySet>,
    state: Mutex<FetchState>,
    /// No key set fetched yet, and no attempt got an answer from the
    /// authority: an unknown key may well exist there.
    unavailable: AtomicBool,
    /// Fetch attempts so far: a waiter that sees it changed knows a fetch
    /// happened while it waited.
    attempts: AtomicU64,
    /// Held for the length of one fetch (single flight).
    flight: tokio::sync::Mutex<()>,
}

impl JwksSource {
    /// The current keys (lock-free).
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    pub fn epoch(&self) -> u64 {
        self.keys.load().epoch
    }

    /// Whether an unknown key should be answered as the authority's outage
    /// (503) rather than the token's fault (401): no key set was ever
    /// fetched, and the authority did not answer (down, TLS refused,
    /// timed out, 5xx).
    pub fn unavailable(&self) -> bool {
        self.unavailable.load(Ordering::Relaxed)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a key set directly (benchmarks and tests without a network).
    pub fn install(&self, body: &[u8]) -> Result<(), String> {
        self.replace(body, KeySet::parse(body)?);
        self.unavailable.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn replace(&self, body: &[u8], keys: Vec<Key>) -> bool {
        let digest = super::cache::token_hash(&String::from_utf8_lossy(body));
        let old = self.keys.load();
        if old.digest == digest {
            return false;
        }
        self.keys.store(Arc::new(KeySet {
            epoch: old.epoch + 1,
            keys,
            digest,
        }));
        true
    }

    /// A token named a key we don't have: fetch again, unless a fetch just
    /// happened. Concurrent callers share one fetch; the wait is bounded.
    pub async fn refetch_unknown(&self) {
        let seen = self.attempts.load(Ordering::Acquire);
        let (timeout, min_refetch) = {
            let mut s = self.lock_state();
            s.active = true;
            (s.settings.timeout, s.settings.min_refetch)
        };
        let work = async {
            let _flight = self.flight.lock().await;
            if self.attempts.load(Ordering::Acquire) != seen {
                return; // someone fetched while we waited
            }
            let recent = self
                .lock_state()
                .last_attempt
                .is_some_and(|t| t.elapsed() < min_refetch);
            if !recent {
                self.fetch_logged().await;
            }
        };
        let _ = tokio::time::timeout(timeout, work).await;
    }

    /// Fetches once (caller holds `flight`), logs the outcome, schedules the next.
    async fn fetch_logged(&self) {
        let settings = {
            let mut s = self.lock_state();
            s.last_attempt = Some(Instant::now());
            s.settings
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let result = match tokio::time::timeout(settings.timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::unreachable(format!(
                "{}: no answer within {:?}",
                self.url_for_logs(),
                settings.timeout
            ))),
        };
        let retry = settings
            .refresh
            .min(Duration::from_secs(30))
            .max(settings.min_refetch);
        let mut s = self.lock_state();
        match result {
            Ok((n, changed)) => {
                s.next_refresh = Instant::now() + settings.refresh;
                self.unavailable.store(false, Ordering::Relaxed);
                if s.last_error.take().is_some() {
                    tracing::info!(jwks = ?self.location, keys = n, "key set fetched again");
                } else {
                    tracing::debug!(jwks = ?self.location, keys = n, changed, "key set fetched");
                }
            }
            Err(e) => {
                s.next_refresh = Instant::now() + retry;
                if matches!(self.location, JwksLocation::Discover(_)) {
                    s.jwks_uri = None;
                }
                // Keys fetched before are still what the authority said;
                // none ever fetched and no answer: its outage.
                let never = self.keys.load().epoch == 0;
                self.unavailable
                    .store(never && e.unreachable, Ordering::Relaxed);
                if s.last_error.as_deref() == Some(e.message.as_str()) {
                    tracing::debug!(jwks = ?self.location, error = %e.message, "key set refresh failed again");
                } else {
                    tracing::warn!(jwks = ?self.location, error = %e.message, "key set refresh failed; keeping the last good keys");
                    s.last_error = Some(e.message);
                }
            }
        }
    }

    /// The URL a failure is about: the JWKS URL, or the authority's base.
    fn url_for_logs(&self) -> String {
        match &self.location {
            JwksLocation::Url(u) => u.clone(),
            JwksLocation::Discover(base) => self
                .lock_state()
                .jwks_uri
                .clone()
                .unwrap_or_else(|| base.clone()),
        }
    }

    async fn fetch(&self) -> Result<(usize, bool), FetchError> {
        let (client, known) = {
            let s = self.lock_state();
            (s.client.clone(), s.jwks_uri.clone())
        };
        let url = match &self.location {
            JwksLocation::Url(u) => u.clone(),
            JwksLocation::Discover(base) => match known {
                Some(u) => u,
                None => {
                    let u = discover(&client, base).await?;
                    self.lock_state().jwks_uri = Some(u.clone());
                    u
                }
            },
        };
        let body = get(&client, &url).await?;
        let keys = KeySet::parse(&body).map_err(|e| FetchError::answered(format!("{url}: {e}")))?;
        if keys.is_empty() {
            return Err(FetchError::answered(format!(
                "{url}: no usable signature keys"
            )));
        }
        let n = keys.len();
        Ok((n, self.replace(&body, keys)))
    }
}

/// The JWKS URL from an authority's metadata: OpenID Connect discovery,
/// then RFC 8414.
async fn discover(client: &reqwest::Client, base: &str) -> Result<String, FetchError> {
    let base = base.trim_end_matches('/');
    let mut last = FetchError::answered(String::new());
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let url = format!("{base}{path}");
        match get(client, &url).await {
            Ok(body) => {
                let meta: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                match meta.get("jwks_uri").and_then(|u| u.as_str()) {
                    Some(u) => {
                        super::fetch_url(u)
                            .map_err(|e| FetchError::answered(format!("{url}: jwks_uri {e}")))?;
                        return Ok(u.to_string());
                    }
                    None => last = FetchError::answered(format!("{url}: no jwks_uri")),
                }
            }
            // An authority that could not be reached on one path is
            // unreachable, whatever the other path answered.
            Err(e) => {
                if e.unreachable || !last.unreachable {
                    last = e;
                }
            }
        }
    }
    last.message = format!("discovery failed: {}", last.message);
    Err(last)
}

async fn get(client: &reqwest::Client, url: &str) -> Result<bytes::Bytes, FetchError> {
    let unreachable = |e: reqwest::Error| {
        FetchError::unreachable(format!("{url}: {}", super::introspect::error_chain(e)))
    };
    let resp = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    if !status.is_success() {
        // 404 and friends are an answer; 5xx (and 429) an outage.
        let message = format!("{url}: status {status}");
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            FetchError::unreachable(message)
        } else {
            FetchError::answered(message)
        });
    }
    resp.bytes().await.map_err(unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signature_keys_and_skips_the_rest() {
        let body = br#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"ec1","use":"sig","alg":"ES256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"oct","kid":"secret","k":"c2VjcmV0"},
            {"kty":"EC","crv":"P-256","kid":"enc","use":"enc",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        let keys = KeySet::parse(body).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ec1"));
        assert!(keys[0].accepts(Algorithm::ES256));
        assert!(!keys[0].accepts(Algorithm::HS256));
        assert!(KeySet::parse(b"[]").is_err());
    }

    #[test]
    fn same_location_same_source_and_epochs_change_with_content() {
        let reg = JwksRegistry::default();
        let loc = JwksLocation::Url("http://127.0.0.1:9/jwks".into());
        let client = reg.client(&[]);
        let a = reg.source(loc.clone(), JwksSettings::default(), client.clone());
        let b = reg.source(loc, JwksSettings::default(), client);
        assert!(Arc::ptr_eq(&a, &b), "a reload finds the keys it had");
        assert_eq!(a.epoch(), 0);
        assert!(
            a.unavailable(),
            "never fetched: an unknown key is an outage"
        );
        let body = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        a.install(body).unwrap();
        assert_eq!(a.epoch(), 1);
        assert!(!a.unavailable());
        a.install(body).unwrap();
        assert_eq!(a.epoch(), 1, "same content, same epoch");
        assert!(a.current().by_kid("k").is_some());
    }
}
