//! TLS from the gateway to upstream servers: the compiled form of
//! `upstreams.NAME.tls`, applied to Pingora peers (its rustls connector does
//! the handshakes; connections are pooled by peer like plain ones).
//!
//! Trust: without `ca_file`, Pingora's connector trusts the system's roots.
//! With it, the peer carries its own root list, which *replaces* the
//! connector's; so that list is the system's roots plus the file's.
//!
//! Everything that can fail (files, keys, names) fails here, at compile
//! time, with the file named: nothing Pingora later unwraps can panic.

use super::pem::{self, PemError};
use crate::config::upstream_tls::UpstreamTlsConfig;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509, parse_x509};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// One upstream's TLS settings, ready for its peers and health checks.
pub struct UpstreamTls {
    /// `tls.sni`; `None`: each server's host.
    sni: Option<String>,
    verify: bool,
    /// System roots plus `ca_file` (only when `ca_file` is set).
    ca: Option<Arc<[WrappedX509]>>,
    client: Option<Arc<CertKey>>,
    /// Changes with any setting, files' contents included: folded into the
    /// pool key, so a reload that changes them never reuses a connection
    /// verified under the old ones.
    pub digest: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client", &self.client.is_some())
            .finish()
    }
}

impl UpstreamTls {
    /// TLS with the defaults (system roots, verified, SNI the host): for a
    /// plain upstream whose health checks have `use_https`.
    pub fn defaults() -> Self {
        UpstreamTls {
            sni: None,
            verify: true,
            ca: None,
            client: None,
            digest: 0,
        }
    }

    /// Loads `tls`'s files. Errors name the field and the file.
    pub fn load(tls: &UpstreamTlsConfig) -> Result<Self, (&'static str, String)> {
        let UpstreamTlsConfig {
            sni,
            verify,
            ca_file,
            client_cert_file,
            client_key_file,
        } = tls;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (sni, verify).hash(&mut h);
        let ca = match ca_file {
            Some(path) => {
                let extra = load_ca_file(Path::new(path)).map_err(|e| ("ca_file", e))?;
                extra.hash(&mut h);
                let mut all: Vec<WrappedX509> = system_roots()
                    .iter()
                    .chain(&extra)
                    .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
                    .collect();
                all.shrink_to_fit();
                Some(Arc::from(all))
            }
            None => None,
        };
        let client = match (client_cert_file, client_key_file) {
            (Some(c), Some(k)) => {
                let (c, k) = (Path::new(c), Path::new(k));
                let pair = pem::load_pair(c, k).map_err(|e| (pair_field(&e, k), e.to_string()))?;
                let key = pem::read_key(k).map_err(|e| ("client_key_file", e.to_string()))?;
                let der = key.secret_der().to_vec();
                // Pingora re-reads the key from its DER: it must tell the kind.
                PrivateKeyDer::try_from(der.clone()).map_err(|_| {
                    (
                        "client_key_file",
                        format!("{}: key encoding not recognized", k.display()),
                    )
                })?;
                let certs: Vec<Vec<u8>> = pair.key.cert.iter().map(|c| c.to_vec()).collect();
                certs.hash(&mut h);
                Some(Arc::new(CertKey::new(certs, der)))
            }
            _ => None, // both or neither: the checks refused the rest
        };
        Ok(UpstreamTls {
            sni: sni.clone(),
            verify: *verify,
            ca,
            client,
            digest: h.finish(),
        })
    }

    /// Makes `peer` (a server `host:port`) a TLS peer with these settings.
    pub fn apply(&self, peer: &mut HttpPeer, server: &str) {
        peer.scheme = pingora_core::upstreams::peer::Scheme::HTTPS;
        peer.sni = self
            .sni
            .clone()
            .unwrap_or_else(|| crate::config::server_host(server).to_string());
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = self.client.clone();
    }
}

/// Which field a pair error belongs to (`key`: the key file's path).
fn pair_field(e: &PemError, key: &Path) -> &'static str {
    match e {
        PemError::NoKey { .. } | PemError::BadKey { .. } | PemError::Mismatch { .. } => {
            "client_key_file"
        }
        PemError::Read { path, .. } if path == key => "client_key_file",
        _ => "client_cert_file",
    }
}

/// A CA file's certificates, each usable as a root. For `tls.ca_file` of
/// upstreams and `auth.ca_file`.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    pem::read_roots(path).map_err(|e| e.to_string())?;
    pem::read_certs(path).map_err(|e| e.to_string())
}

/// The system's roots (read once per process; certificates that do not
/// parse are skipped, as Pingora's own loader does).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .filter(|c| x509_parser::parse_x509_certificate(c).is_ok())
            .collect()
    })
}
