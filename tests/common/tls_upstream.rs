//! HTTPS upstreams for tests: a test CA (rcgen), and the stand-in app behind
//! a rustls listener that counts the TLS connections it accepted and can
//! require client certificates (mutual TLS).

use super::standin::{StandinState, serve_connection};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        TestCa {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf for `names` (DNS names or IPs), valid from an hour ago for 90 days.
    pub fn leaf(&self, names: &[&str]) -> Pem {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        p.not_before = epoch + (now - Duration::from_secs(3600));
        p.not_after = epoch + (now + Duration::from_secs(90 * 86_400));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate as `DIR/NAME.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!("{name}.pem"));
        std::fs::write(&p, self.pem()).unwrap();
        p
    }
}

impl Pem {
    /// Writes `DIR/STEM.crt` and `DIR/STEM.key`.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, &self.cert).unwrap();
        std::fs::write(&k, &self.key).unwrap();
        (c, k)
    }

    pub fn server_config(&self, client_ca: Option<&TestCa>) -> rustls::ServerConfig {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).unwrap();
        let b = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der()).unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .unwrap();
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let mut c = b.with_single_cert(certs, key).unwrap();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    }
}

/// The stand-in app over TLS on an ephemeral port, stopped when dropped.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub state: Arc<StandinState>,
    /// TLS connections whose handshake completed.
    pub handshakes: Arc<AtomicU64>,
    /// Handshakes that failed (a client that refused our certificate, or
    /// brought none when one is required).
    pub refused: Arc<AtomicU64>,
    config: Arc<rustls::ServerConfig>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    pub async fn start(name: &str, config: rustls::ServerConfig) -> TlsUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = StandinState::new(name);
        let config = Arc::new(config);
        let (handshakes, refused) = (Arc::default(), Arc::default());
        let task = tokio::spawn(serve_tls(
            listener,
            state.clone(),
            config.clone(),
            Arc::clone(&handshakes),
            Arc::clone(&refused),
        ));
        TlsUpstream {
            addr,
            state,
            handshakes,
            refused,
            config,
            task,
        }
    }

    /// Stops listening and closes every connection.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Serves again on the same address.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.task = tokio::spawn(serve_tls(
            listener,
            self.state.clone(),
            self.config.clone(),
            Arc::clone(&self.handshakes),
            Arc::clone(&self.refused),
        ));
    }

    /// Requests served, health checks excluded.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
            - self.state.health_checks.load(Ordering::Relaxed)
    }

    pub fn health_checks(&self) -> u64 {
        self.state.health_checks.load(Ordering::Relaxed)
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: Arc<StandinState>,
    config: Arc<rustls::ServerConfig>,
    handshakes: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let (acceptor, state) = (acceptor.clone(), state.clone());
        let (handshakes, refused) = (handshakes.clone(), refused.clone());
        connections.spawn(async move {
            match acceptor.accept(stream).await {
                Ok(tls) => {
                    handshakes.fetch_add(1, Ordering::Relaxed);
                    serve_connection(tls, state, port).await;
                }
                Err(_) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}
