//! Live config reload.
//!
//! ```text
//!  notify (watches the file's directory) ─┐
//!  poll (content hash every few seconds) ─┼─► debounce ─► Reloader::reload
//!  SIGHUP ────────────────────────────────┘                │
//!        read file once ─► SHA-256 of those bytes               │
//!            ├─ the bytes in force ─► no-op (after a failure: "config restored")
//!            ├─ the bytes that last failed ─► no-op (reported once)
//!            └─ runtime::prepare_bytes of the same bytes (what `gateway validate` runs)
//!                ├─ errors ─► one ERROR line each; the running table keeps serving
//!                └─ ok ─► one ArcSwap store of the whole new RouteTable; INFO summary
//! ```
//!
//! Guarantees: a reload is applied entirely or not at all (one `store` of a
//! fully compiled table); a request keeps the table it started with until it
//! ends, so a swap never fails an in-flight request, stream or WebSocket;
//! health state lives in the shared registry of the `CompileContext`, so it
//! survives reloads for every server present before and after.
//! Settings that only a new process can apply (listeners, workers, metrics
//! address: see [`restart`]) are reported with one WARN per change naming
//! the way to apply them (a restart or a graceful upgrade); the rest of the
//! file still applies.

pub mod restart;

use crate::config::model::{FileConfig, RouteConfig};
use crate::config::{ConfigErrors, ConfigHash, read_file};
use crate::logging::LogHandle;
use crate::runtime::RouteTable;
use crate::runtime::{CompileContext, Prepared, prepare_bytes};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Quiet time after the last file event before reloading: a burst of
/// writes (truncate, write, rename) gives one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A directory that never goes quiet still gets a reload this often.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Reload results, for the metrics listener.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub last_successful: AtomicBool,
    /// Unix seconds of the last successful load (the start counts).
    pub last_success_timestamp: AtomicU64,
    /// Hash of the config in force.
    pub config_hash: HashCell,
}

/// The SHA-256 of the config in force, beside the counters (read with the
/// same `load` call; a mutex orders, so the ordering is not needed).
#[derive(Debug, Default)]
pub struct HashCell(Mutex<ConfigHash>);

impl HashCell {
    pub fn load(&self, _: Ordering) -> ConfigHash {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn store(&self, hash: ConfigHash) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = hash;
    }
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file's bytes are those in force (or those that already failed).
    Unchanged,
    /// The file is back to the bytes in force after a failed reload.
    Restored,
    Applied,
    Rejected,
}

/// The config in force and what is needed to replace it.
pub struct Reloader {
    path: PathBuf,
    ctx: CompileContext,
    table: Arc<ArcSwap<RouteTable>>,
    log: LogHandle,
    pub stats: Arc<ReloadStats>,
    state: Mutex<State>,
    /// Under systemd (`INVOCATION_ID`), the restart WARN names its reload.
    under_systemd: bool,
}

struct State {
    /// The config in force (as written), for change summaries.
    config: FileConfig,
    hash: ConfigHash,
    /// Whether the last attempt failed, and the hash of what failed (none
    /// when the file could not be read), so an unchanged broken file is
    /// reported once, not at every poll.
    failed: Option<Option<ConfigHash>>,
    /// The config this process started with: its process-level settings
    /// (listener, workers, metrics address) are the ones in force until a
    /// restart, whatever later files say.
    started_with: FileConfig,
    /// Restart-needed settings already warned about, with the value warned
    /// about: each change is said once, not at every later reload.
    warned: BTreeMap<String, serde_json::Value>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        ctx: CompileContext,
        table: Arc<ArcSwap<RouteTable>>,
        config: FileConfig,
        log: LogHandle,
    ) -> Self {
        let hash = table.load().hash;
        let stats = Arc::new(ReloadStats::default());
        stats.last_successful.store(true, Ordering::Relaxed);
        stats
            .last_success_timestamp
            .store(unix_now(), Ordering::Relaxed);
        stats.config_hash.store(hash);
        Reloader {
            path,
            ctx,
            table,
            log,
            stats,
            state: Mutex::new(State {
                started_with: config.clone(),
                config,
                hash,
                failed: None,
                warned: BTreeMap::new(),
            }),
            under_systemd: std::env::var_os("INVOCATION_ID").is_some(),
        }
    }

    /// Reads the file (once) and swaps in its table if it is valid and new.
    /// Blocking (file I/O, DNS): call it off the request path.
    /// A `SIGHUP` recompiles even unchanged bytes (e.g. to re-resolve
    /// server names); other triggers skip a file whose bytes are in force.
    pub fn reload(&self, trigger: &str) -> Outcome {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = match read_file(&self.path) {
            Ok(b) => b,
            // An unreadable file is reported once too, until it changes.
            Err(_) if state.failed == Some(None) && trigger != "SIGHUP" => {
                return Outcome::Unchanged;
            }
            Err(errors) => {
                self.reject(&mut state, trigger, None, &errors);
                return Outcome::Rejected;
            }
        };
        let hash = ConfigHash::of(&bytes);
        if trigger != "SIGHUP" {
            if hash == state.hash {
                if state.failed.take().is_none() {
                    return Outcome::Unchanged;
                }
                // Reverted to the bytes in force: what failed is gone.
                self.succeeded(hash);
                tracing::info!(
                    file = %self.path.display(),
                    trigger,
                    %hash,
                    "config restored: the file is again the config in force"
                );
                return Outcome::Restored;
            }
            if state.failed == Some(Some(hash)) {
                return Outcome::Unchanged;
            }
        }
        let name = self.path.display().to_string();
        match prepare_bytes(&name, &bytes, &self.ctx, false) {
            Err(errors) => {
                self.reject(&mut state, trigger, Some(hash), &errors);
                Outcome::Rejected
            }
            Ok(Prepared {
                table,
                config,
                warnings,
            }) => {
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                let summary = Summary::between(&state.config, &config);
                self.warn_restart_needed(&mut state, &config);
                if config.logging.level != state.config.logging.level {
                    self.log.set_level(config.logging.level.as_str());
                }
                let restored = state.failed.take().is_some() && hash == state.hash;
                // The one and only publication of the new config.
                self.table.store(Arc::new(table));
                state.config = config;
                state.hash = hash;
                self.succeeded(hash);
                let what = if restored { "restored" } else { "reloaded" };
                tracing::info!(
                    file = %self.path.display(),
                    trigger,
                    %hash,
                    "config {what}: {summary}"
                );
                Outcome::Applied
            }
        }
    }

    fn succeeded(&self, hash: ConfigHash) {
        self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
        self.stats.last_successful.store(true, Ordering::Relaxed);
        self.stats
            .last_success_timestamp
            .store(unix_now(), Ordering::Relaxed);
        self.stats.config_hash.store(hash);
    }

    /// One WARN per restart-needed setting whose value changed since the
    /// last time it was warned about.
    fn warn_restart_needed(&self, state: &mut State, config: &FileConfig) {
        let pending = restart::pending(&state.started_with, config);
        state
            .warned
            .retain(|field, _| pending.iter().any(|(f, _)| f == field));
        for (setting, value) in pending {
            if state.warned.get(&setting) == Some(&value) {
                continue;
            }
            tracing::warn!(
                setting,
                "{setting} changed: only a new process applies it; {}. Everything else in the file is applied now.",
                restart::action(self.under_systemd)
            );
            state.warned.insert(setting, value);
        }
    }

    fn reject(
        &self,
        state: &mut State,
        trigger: &str,
        hash: Option<ConfigHash>,
        errors: &ConfigErrors,
    ) {
        state.failed = Some(hash);
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.stats.last_successful.store(false, Ordering::Relaxed);
        for e in &errors.errors {
            tracing::error!(trigger, "{e}");
        }
        tracing::error!(
            file = %self.path.display(),
            trigger,
            errors = errors.errors.len(),
            "config rejected; the previous config keeps serving"
        );
    }

    /// Watches the file and reloads until `shutdown`.
    pub async fn watch(self: Arc<Self>, mut shutdown: ShutdownWatch, poll: Duration) {
        let (tx, mut rx) = mpsc::channel::<()>(64);
        // Kept alive for the loop's lifetime; without it events still come from polling.
        let _watcher = match watch_directory(&self.path, tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config directory; polling only");
                None
            }
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = rx.recv() => {
                    // Debounce: wait until events stop for DEBOUNCE (at most MAX_DEBOUNCE).
                    let until = tokio::time::Instant::now() + MAX_DEBOUNCE;
                    while let Ok(Some(())) = tokio::time::timeout_at(
                        until.min(tokio::time::Instant::now() + DEBOUNCE),
                        rx.recv(),
                    )
                    .await
                    {}
                    "file event"
                }
                Some(()) = recv_signal(&mut hup) => "SIGHUP",
                _ = ticker.tick() => "poll",
            };
            // Compile does file I/O and may resolve names: off the async workers.
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.reload(trigger)).await {
                // A bug, not a bad file: count it as a failed reload all the same.
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.stats.last_successful.store(false, Ordering::Relaxed);
                tracing::error!(trigger, error = %e, "config reload crashed; the previous config keeps serving");
            }
        }
    }
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Watches the directory of `path` (not the file: editors replace files by
/// rename, Kubernetes swaps a `..data` symlink) and signals on events that
/// concern the file: its own name, or a `..name` entry (ConfigMap volumes).
/// Other files in the directory (a log file, say) are ignored.
fn watch_directory(
    path: &Path,
    tx: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        let relevant = !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| {
                p.file_name().is_some_and(|f| {
                    f == name.as_os_str() || f.as_encoded_bytes().starts_with(b"..")
                })
            });
        if relevant {
            let _ = tx.try_send(());
        }
    })?;
    w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(w)
}

/// The reload service run by the Pingora server.
pub struct ReloadService {
    pub reloader: Arc<Reloader>,
    pub poll: Duration,
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.reloader.clone().watch(shutdown, self.poll).await;
    }
}

/// Routes and upstreams added, removed or changed by a reload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    pub routes_changed: Vec<String>,
    pub upstreams_added: Vec<String>,
    pub upstreams_removed: Vec<String>,
    pub servers_added: Vec<String>,
    pub servers_removed: Vec<String>,
}

impl Summary {
    pub fn between(old: &FileConfig, new: &FileConfig) -> Summary {
        fn key(r: &RouteConfig) -> String {
            let mut k = r.path.clone();
            if let Some(h) = &r.host {
                k.push_str(&format!(" host={h}"));
            }
            if let Some(m) = &r.methods {
                k.push_str(&format!(" methods={}", m.join(",")));
            }
            k
        }
        let routes = |c: &FileConfig| -> BTreeMap<String, RouteConfig> {
            c.routes.iter().map(|r| (key(r), r.clone())).collect()
        };
        let (ro, rn) = (routes(old), routes(new));
        let mut s = Summary::default();
        for (k, r) in &rn {
            match ro.get(k) {
                None => s.routes_added.push(k.clone()),
                Some(o) if o != r => s.routes_changed.push(k.clone()),
                Some(_) => {}
            }
        }
        s.routes_removed = ro
            .keys()
            .filter(|k| !rn.contains_key(*k))
            .cloned()
            .collect();
        for (name, u) in &new.upstreams {
            match old.upstreams.get(name) {
                None => s.upstreams_added.push(name.clone()),
                Some(o) => {
                    let (a, b): (BTreeSet<_>, BTreeSet<_>) =
                        (o.servers.iter().collect(), u.servers.iter().collect());
                    s.servers_added
                        .extend(b.difference(&a).map(|x| format!("{name}:{x}")));
                    s.servers_removed
                        .extend(a.difference(&b).map(|x| format!("{name}:{x}")));
                }
            }
        }
        s.upstreams_removed = old
            .upstreams
            .keys()
            .filter(|k| !new.upstreams.contains_key(*k))
            .cloned()
            .collect();
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            ("routes added", &self.routes_added),
            ("routes removed", &self.routes_removed),
            ("routes changed", &self.routes_changed),
            ("upstreams added", &self.upstreams_added),
            ("upstreams removed", &self.upstreams_removed),
            ("servers added", &self.servers_added),
            ("servers removed", &self.servers_removed),
        ];
        let mut any = false;
        for (label, items) in parts {
            if items.is_empty() {
                continue;
            }
            if any {
                f.write_str("; ")?;
            }
            write!(f, "{label}: {}", items.join(", "))?;
            any = true;
        }
        if !any {
            f.write_str("no route or upstream changes (settings only)")?;
        }
        Ok(())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> FileConfig {
        crate::config::load_str("t.yaml", text, &|_| None)
            .unwrap()
            .config
    }

    #[test]
    fn summarizes_route_and_upstream_changes() {
        let old = cfg(
            "upstreams:\n  a: { servers: [\"127.0.0.1:1\", \"127.0.0.1:2\"] }\n  b: { servers: [\"127.0.0.1:3\"] }\nroutes:\n  - { path: /a/*, upstream: a, auth_required: false }\n  - { path: /b/*, upstream: b, auth_required: false }\n  - { path: /c, upstream: b, auth_required: false }\n",
        );
        let new = cfg(
            "upstreams:\n  a: { servers: [\"127.0.0.1:2\", \"127.0.0.1:4\"] }\n  c: { servers: [\"127.0.0.1:5\"] }\nroutes:\n  - { path: /a/*, upstream: a, auth_required: false }\n  - { path: /c, upstream: c, auth_required: false }\n  - { path: /d/*, upstream: c, auth_required: false }\n",
        );
        let s = Summary::between(&old, &new);
        assert_eq!(s.routes_added, ["/d/*"]);
        assert_eq!(s.routes_removed, ["/b/*"]);
        assert_eq!(s.routes_changed, ["/c"]);
        assert_eq!(s.upstreams_added, ["c"]);
        assert_eq!(s.upstreams_removed, ["b"]);
        assert_eq!(s.servers_added, ["a:127.0.0.1:4"]);
        assert_eq!(s.servers_removed, ["a:127.0.0.1:1"]);
        assert_eq!(
            s.to_string(),
            "routes added: /d/*; routes removed: /b/*; routes changed: /c; upstreams added: c; upstreams removed: b; servers added: a:127.0.0.1:4; servers removed: a:127.0.0.1:1"
        );
        assert_eq!(
            Summary::between(&old, &old).to_string(),
            "no route or upstream changes (settings only)"
        );
    }
}
