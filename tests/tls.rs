//! The HTTPS listener: SNI certificates from files, HTTP/2 and HTTP/1.1 by
//! ALPN, what the upstream learns about TLS, the plain listener's redirect,
//! HSTS, live certificate rotation and a graceful upgrade. A test CA and its
//! certificates are made at test time (rcgen).

mod common;

use common::{Gateway, Upstream, client, reserve_port};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// reqwest (rustls without a built-in provider) needs the process default.
fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "gateway test CA");
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf for `names` with `serial`, valid for `days` from now.
    fn leaf_for(&self, names: &[&str], serial: u64, days: i64) -> Leaf {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.serial_number = Some(serial.into());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        p.not_before = epoch + (now - Duration::from_secs(3600));
        p.not_after = epoch + Duration::from_secs((now.as_secs() as i64 + days * 86_400) as u64);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn leaf(&self, names: &[&str], serial: u64) -> Leaf {
        self.leaf_for(names, serial, 90)
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

/// Writes a pair as `DIR/STEM.crt` and `DIR/STEM.key`.
fn write_pair(dir: &Path, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, &leaf.cert).unwrap();
    std::fs::write(&k, &leaf.key).unwrap();
    (c, k)
}

/// A `tls:` section on `port` serving `pairs` (first = default).
fn tls_section(port: u16, pairs: &[(PathBuf, PathBuf)], extra: &str) -> String {
    let mut s = format!("tls:\n  bind_address: \"127.0.0.1:{port}\"\n  certificates:\n");
    for (c, k) in pairs {
        s.push_str(&format!(
            "    - cert_file: \"{}\"\n      key_file: \"{}\"\n",
            c.display(),
            k.display()
        ));
    }
    s.push_str(extra);
    s
}

fn routes(up: &Upstream) -> String {
    format!(
        "upstreams:\n  app:\n    servers: [\"{}\"]\nroutes:\n  - path: /*\n    upstream: app\n    auth_required: false\n",
        up.addr
    )
}

/// A gateway with a TLS listener (its port reserved in the returned value).
struct Https {
    gw: Gateway,
    port: u16,
    _port: common::ReservedPort,
    _certs: tempfile::TempDir,
}

impl Https {
    /// Starts a gateway whose `tls:` section serves the pairs made by
    /// `pairs` in a fresh directory, and waits for the HTTPS listener.
    fn start(
        up: &Upstream,
        pairs: impl FnOnce(&Path) -> Vec<(PathBuf, PathBuf)>,
        extra: &str,
    ) -> Https {
        init();
        let reserved = reserve_port();
        let port = reserved.port;
        let certs = tempfile::tempdir().unwrap();
        let pairs = pairs(certs.path());
        let gw = Gateway::start(&format!(
            "{}{}",
            routes(up),
            tls_section(port, &pairs, extra)
        ));
        common::wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .unwrap_or_else(|_| panic!("no HTTPS listener; log:\n{}", gw.log()));
        Https {
            gw,
            port,
            _port: reserved,
            _certs: certs,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }
}

fn client_config(ca: &Ca, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    c
}

/// An HTTPS client trusting `ca`, resolving `names` to 127.0.0.1; HTTP/2
/// by ALPN when `h2`, else HTTP/1.1 only.
fn https_client(ca: &Ca, names: &[&str], port: u16, h2: bool) -> reqwest::Client {
    let alpn: &[&[u8]] = if h2 {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"http/1.1"]
    };
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .tls_info(true)
        .tls_backend_preconfigured(client_config(ca, alpn));
    if !h2 {
        b = b.http1_only();
    }
    for n in names {
        b = b.resolve(n, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    b.build().unwrap()
}

/// Accepts any server certificate: for looking at what is served to a
/// name the certificate does not cover.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a handshake with `sni` on `port` got: the leaf's serial, or the error.
async fn handshake(
    port: u16,
    sni: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<u64, String> {
    let c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(c))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(serial_of(&leaf))
}

fn serial_of(der: &[u8]) -> u64 {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    c.raw_serial()
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// The serial of the certificate a reqwest response came with.
fn response_serial(r: &reqwest::Response) -> u64 {
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    serial_of(info.peer_certificate().unwrap())
}

const TLS12_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn sni_picks_the_certificate_by_name_and_unknown_names_get_the_first() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let h = Https::start(
        &up,
        |d| {
            vec![
                write_pair(d, "a", &ca.leaf(&["a.test"], 0xa1)),
                write_pair(d, "b", &ca.leaf(&["b.test", "*.w.test"], 0xb1)),
            ]
        },
        "",
    );
    let c = https_client(&ca, &["a.test", "b.test", "x.w.test"], h.port, false);
    for (host, serial) in [("a.test", 0xa1), ("b.test", 0xb1), ("x.w.test", 0xb1)] {
        let r = c.get(h.url(host, "/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(response_serial(&r), serial, "{host}");
    }
    assert_eq!(handshake(h.port, "unknown.test", TLS12_13).await, Ok(0xa1));
    assert_eq!(
        handshake(h.port, "b.test", &[&rustls::version::TLS12]).await,
        Ok(0xb1),
        "TLS 1.2 is accepted by default"
    );
}

#[tokio::test]
async fn http2_requests_reach_the_upstream_knowing_they_came_over_tls() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let h = Https::start(
        &up,
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "",
    );
    let c = https_client(&ca, &["gw.test"], h.port, true);
    let r = c.get(h.url("gw.test", "/echo?q=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    assert_eq!(v["headers"]["x-forwarded-port"], h.port.to_string());
    assert_eq!(
        v["headers"]["x-forwarded-host"],
        format!("gw.test:{}", h.port)
    );

    // HTTP/1.1 over TLS, and plain HTTP still says http.
    let c1 = https_client(&ca, &["gw.test"], h.port, false);
    let r = c1.get(h.url("gw.test", "/echo")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    let v: serde_json::Value = client()
        .get(h.gw.url("/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    assert_eq!(v["headers"]["x-forwarded-port"], h.gw.port.to_string());

    // Streams (SSE) over HTTP/2 arrive whole; the redirect keeps https.
    let body = c
        .get(h.url("gw.test", "/stream?n=3&interval_ms=20"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.matches("data:").count(), 3, "{body}");
    let r = c.get(h.url("gw.test", "/redirect")).send().await.unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("https://gw.test:{}/target", h.port).as_str()
    );
}

#[tokio::test]
async fn plain_http_redirects_to_https_and_hsts_is_sent_over_https_only() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let h = Https::start(
        &up,
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "  redirect_http: true\n  hsts: \"max-age=31536000; includeSubDomains\"\n",
    );
    let r = client()
        .get(h.gw.url("/some/path?x=1"))
        .header("host", "gw.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://gw.test:{}/some/path?x=1", h.port).as_str()
    );
    assert!(r.headers().get("strict-transport-security").is_none());
    assert_eq!(up.requests(), 0, "a redirected request is not proxied");

    let c = https_client(&ca, &["gw.test"], h.port, true);
    let r = c.get(h.url("gw.test", "/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}
