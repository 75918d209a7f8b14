//! Certificate, key and CA files: read, parse, check, describe.
//!
//! Every caller (the HTTPS listener's certificate store, ACME storage,
//! upstream mutual TLS, CA files for upstreams and identity providers, and
//! `gateway validate`) goes through these functions, so a file `validate`
//! accepts is a file a start or a reload accepts. Errors name the file and
//! say what is wrong with it; nothing here panics on a file's content, and
//! no error text contains key material.

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What is wrong with a certificate, key or CA file.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a valid PEM certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unusable private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("key {} does not match certificate {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// Reads a PEM chain (leaf first). At least one certificate, each parseable.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    parse_certs(&read(path)?, path)
}

/// Parses a PEM chain held in memory; `path` only names it in errors.
pub fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        let c = c.map_err(|e| PemError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        describe(&c).map_err(|reason| PemError::BadCertificate {
            path: path.to_path_buf(),
            reason,
        })?;
        certs.push(c);
    }
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    parse_key(&read(path)?, path)
}

/// Parses the first private key of PEM text held in memory.
pub fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    // The parser's error could quote the input; say only what kind it is.
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PemError::NoKey {
            path: path.to_path_buf(),
        },
        _ => PemError::BadKey {
            path: path.to_path_buf(),
            reason: "malformed PEM".into(),
        },
    })
}

/// A certificate chain and its key, checked to belong together, ready for
/// a rustls resolver, with what the chain's leaf says about itself.
pub struct LoadedPair {
    pub key: std::sync::Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Loads and checks a certificate/key pair from files.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedPair, PemError> {
    pair(
        read_certs(cert_path)?,
        read_key(key_path)?,
        cert_path,
        key_path,
    )
}

/// Checks a parsed chain and key belong together (same public key).
pub fn pair(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedPair, PemError> {
    let info = describe(&certs[0]).map_err(|reason| PemError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason,
    })?;
    let signing = super::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PemError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let ck = CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(PemError::Mismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
    }
    Ok(LoadedPair {
        key: std::sync::Arc::new(ck),
        info,
    })
}

/// Reads a CA file (one or more PEM certificates) into a root store.
pub fn read_roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots.add(c).map_err(|e| PemError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names (subjectAltName; the subject CN when there is none),
    /// lower-cased; may hold wildcards such as `*.example.com`.
    pub names: Vec<String>,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Serial number, hex with colons (as `openssl x509 -serial` without them).
    pub serial: String,
}

impl CertInfo {
    /// Seconds until expiry from now (negative once expired).
    pub fn seconds_left(&self) -> i64 {
        self.not_after - now_unix()
    }

    /// Whether the certificate covers `host` (exact name or one-label wildcard).
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, host))
    }
}

/// `pattern` (a certificate name) matches `host` (lower-case): exactly, or
/// `*.example.com` for one label in front of `example.com`.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => pattern == host,
    }
}

/// Parses a DER certificate's names, validity and serial.
pub fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty()
        && let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
    {
        names.push(cn.to_ascii_lowercase());
    }
    Ok(CertInfo {
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.raw_serial_as_string(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_matching_pair_loads_and_is_described() {
        let dir = tempfile::tempdir().unwrap();
        let ck =
            rcgen::generate_simple_self_signed(vec!["a.test".into(), "*.b.test".into()]).unwrap();
        let c = write(dir.path(), "c.pem", &ck.cert.pem());
        let k = write(dir.path(), "k.pem", &ck.signing_key.serialize_pem());
        let p = load_pair(&c, &k).unwrap();
        assert_eq!(p.info.names, vec!["a.test", "*.b.test"]);
        assert!(p.info.seconds_left() > 0);
        assert!(p.info.covers("a.test") && p.info.covers("x.b.test"));
        assert!(!p.info.covers("b.test") && !p.info.covers("y.x.b.test"));
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let c = write(dir.path(), "c.pem", &one.cert.pem());
        let k = write(dir.path(), "k.pem", &two.signing_key.serialize_pem());
        assert!(matches!(load_pair(&c, &k), Err(PemError::Mismatch { .. })));
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file_and_never_quote_keys() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(read_certs(&missing), Err(PemError::Read { .. })));
        let junk = write(dir.path(), "junk.pem", "hello\n");
        assert!(matches!(
            read_certs(&junk),
            Err(PemError::NoCertificate { .. })
        ));
        assert!(matches!(read_key(&junk), Err(PemError::NoKey { .. })));
        let bad = write(
            dir.path(),
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let e = read_certs(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.pem"), "{e}");
        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
        let k = write(dir.path(), "k.pem", secret);
        let one = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let c = write(dir.path(), "c.pem", &one.cert.pem());
        let e = match load_pair(&c, &k) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a junk key loaded"),
        };
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn a_ca_file_becomes_a_root_store() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let p = write(dir.path(), "ca.pem", &ca.cert.pem());
        assert_eq!(read_roots(&p).unwrap().len(), 1);
    }
}
