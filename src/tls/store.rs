//! The certificate store the HTTPS listener resolves every handshake from.
//!
//! Process-wide (it outlives config snapshots: open connections keep the
//! certificate they were handed, new handshakes see the latest set).
//! Two writers own one half each — the file loader (`tls.certificates`,
//! reloaded on edits) and the ACME client — and publish by swapping a whole
//! [`Index`]; a handshake reads the index lock-free.
//!
//! SNI resolution: an exact name, then a one-label wildcard, over file
//! certificates first and ACME ones after; anything else (no SNI, an unknown
//! name) gets the default: the first file certificate, else the first ACME one.

use super::pem::{CertInfo, LoadedPair};
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a served certificate came from (the `source` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Acme,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Acme => "acme",
        }
    }
}

/// One served certificate.
#[derive(Clone)]
pub struct Entry {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub source: Source,
    /// What the operator calls it: the cert file's path, or the ACME domain list.
    pub name: String,
}

impl Entry {
    pub fn new(pair: LoadedPair, source: Source, name: impl Into<String>) -> Self {
        Self {
            key: pair.key,
            info: pair.info,
            source,
            name: name.into(),
        }
    }
}

/// A published set of certificates and its lookup tables.
#[derive(Default)]
pub struct Index {
    entries: Vec<Entry>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl Index {
    fn build(files: &[Entry], acme: &[Entry]) -> Self {
        let entries: Vec<Entry> = files.iter().chain(acme).cloned().collect();
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (i, e) in entries.iter().enumerate() {
            for n in &e.info.names {
                match n.strip_prefix("*.") {
                    Some(base) => wildcard.entry(base.to_string()).or_insert(i),
                    None => exact.entry(n.clone()).or_insert(i),
                };
            }
        }
        Self {
            entries,
            exact,
            wildcard,
        }
    }

    /// The certificate for `sni` (lower-case, no trailing dot), or the default.
    pub fn lookup(&self, sni: Option<&str>) -> Option<&Entry> {
        let by_name = sni.and_then(|h| {
            self.exact.get(h).or_else(|| {
                h.split_once('.')
                    .and_then(|(label, rest)| (!label.is_empty()).then_some(rest))
                    .and_then(|base| self.wildcard.get(base))
            })
        });
        by_name
            .and_then(|&i| self.entries.get(i))
            .or_else(|| self.entries.first())
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// See the module docs.
#[derive(Default)]
pub struct CertStore {
    index: ArcSwap<Index>,
    /// Writers only (the file loader, the ACME client): each replaces its half.
    halves: Mutex<(Vec<Entry>, Vec<Entry>)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("certificates", &self.index.load().entries.len())
            .finish()
    }
}

impl CertStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the certificates loaded from `tls.certificates`.
    pub fn set_files(&self, files: Vec<Entry>) {
        self.publish(|h| h.0 = files);
    }

    /// Replaces the certificates obtained by ACME.
    pub fn set_acme(&self, acme: Vec<Entry>) {
        self.publish(|h| h.1 = acme);
    }

    fn publish(&self, change: impl FnOnce(&mut (Vec<Entry>, Vec<Entry>))) {
        let mut halves = self.halves.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut halves);
        self.index
            .store(Arc::new(Index::build(&halves.0, &halves.1)));
    }

    /// The current set (for metrics and `/readyz`).
    pub fn snapshot(&self) -> Arc<Index> {
        self.index.load_full()
    }

    /// Whether any certificate can be served.
    pub fn is_empty(&self) -> bool {
        self.index.load().entries.is_empty()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands SNI over already lower-cased and without a trailing dot.
        let index = self.index.load();
        index.lookup(hello.server_name()).map(|e| e.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str], source: Source) -> Entry {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let p = std::path::Path::new("test.pem");
        let pair = super::super::pem::pair(vec![ck.cert.der().clone()], key, p, p).unwrap();
        Entry::new(pair, source, names.join(","))
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_default() {
        let store = CertStore::default();
        assert!(store.snapshot().lookup(Some("a.test")).is_none());
        store.set_files(vec![
            entry(&["default.test"], Source::File),
            entry(&["a.test"], Source::File),
            entry(&["*.w.test"], Source::File),
        ]);
        store.set_acme(vec![entry(&["acme.test", "a.test"], Source::Acme)]);
        let idx = store.snapshot();
        let name = |sni| idx.lookup(sni).unwrap().name.clone();
        assert_eq!(name(Some("a.test")), "a.test", "a file certificate wins");
        assert_eq!(name(Some("x.w.test")), "*.w.test");
        assert_eq!(name(Some("y.x.w.test")), "default.test");
        assert_eq!(name(Some("acme.test")), "acme.test,a.test");
        assert_eq!(name(Some("unknown.test")), "default.test");
        assert_eq!(name(None), "default.test");
    }

    #[test]
    fn the_acme_certificate_is_the_default_without_files() {
        let store = CertStore::default();
        store.set_acme(vec![entry(&["acme.test"], Source::Acme)]);
        assert_eq!(
            store.snapshot().lookup(Some("other.test")).unwrap().source,
            Source::Acme
        );
        store.set_files(vec![entry(&["f.test"], Source::File)]);
        assert_eq!(
            store.snapshot().lookup(Some("other.test")).unwrap().source,
            Source::File
        );
    }
}
