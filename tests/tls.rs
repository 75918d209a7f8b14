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
    certs: tempfile::TempDir,
}

impl Https {
    /// Starts a gateway whose `tls:` section serves the pairs made by
    /// `pairs` in a fresh directory, and waits for the HTTPS listener.
    fn start(
        up: &Upstream,
        pairs: impl FnOnce(&Path) -> Vec<(PathBuf, PathBuf)>,
        extra: &str,
    ) -> Https {
        let routes = routes(up);
        Self::launch(|tls| format!("{routes}{tls}"), pairs, extra, 1)
    }

    /// [`Https::start`] with the whole body from `body(tls_section)` and a
    /// graceful-upgrade grace period.
    fn launch(
        body: impl FnOnce(&str) -> String,
        pairs: impl FnOnce(&Path) -> Vec<(PathBuf, PathBuf)>,
        extra: &str,
        grace_seconds: u64,
    ) -> Https {
        init();
        let reserved = reserve_port();
        let port = reserved.port;
        let certs = tempfile::tempdir().unwrap();
        let pairs = pairs(certs.path());
        let gw = Gateway::launch(&body(&tls_section(port, &pairs, extra)), &[], grace_seconds);
        gw.wait_listening();
        common::wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .unwrap_or_else(|_| panic!("no HTTPS listener; log:\n{}", gw.log()));
        Https {
            gw,
            port,
            _port: reserved,
            certs,
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

/// A TLS connection to `port`, offering `alpn`, kept open by the caller.
async fn open_tls(
    port: u16,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(TLS12_13)
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(c))
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn https_connections_count_in_gateway_downstream_connections() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let h = Https::start(
        &up,
        |d| vec![write_pair(d, "a", &ca.leaf(&["a.test"], 0xa1))],
        "",
    );
    let open = |n: f64| {
        let gw = &h.gw;
        async move {
            common::eventually(Duration::from_secs(5), || async move {
                common::scrape(gw).await["gateway_downstream_connections"] == n
            })
            .await
        }
    };
    assert!(open(0.0).await, "the harness's probes have closed");
    // HTTP/1.1 and HTTP/2 over TLS, and one plain: the gateway's own count.
    let h1 = open_tls(h.port, b"http/1.1").await;
    let h2 = open_tls(h.port, b"h2").await;
    let plain = std::net::TcpStream::connect(("127.0.0.1", h.gw.port)).unwrap();
    assert!(open(3.0).await, "{:?}", common::scrape(&h.gw).await);
    drop((h1, h2, plain));
    assert!(open(0.0).await, "all closed");
}

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
    // The access line says how the request came: HTTP/2 over TLS 1.3.
    let log = h.gw.wait_log("\"query\":\"q=1\"");
    let line = log
        .lines()
        .find(|l| l.contains("\"query\":\"q=1\""))
        .unwrap();
    let access: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(access["protocol"], "HTTP/2", "{line}");
    assert_eq!(access["tls_version"], "TLSv1.3", "{line}");
    assert_eq!(access["host"], format!("gw.test:{}", h.port), "{line}");

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

/// Replaces a file the way deploy tools do: write aside, rename over.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A client that opens a new connection (a full handshake: no session
/// resumption, which would keep the old certificate) per request.
fn fresh_client(ca: &Ca, names: &[&str], port: u16) -> reqwest::Client {
    let mut tls = client_config(ca, &[b"http/1.1"]);
    tls.resumption = rustls::client::Resumption::disabled();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .tls_info(true)
        .http1_only()
        .tls_backend_preconfigured(tls);
    for n in names {
        b = b.resolve(n, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    b.build().unwrap()
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_handshakes_within_2s_without_failing_a_request() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let h = Https::start(
        &up,
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "",
    );
    let (cert, key) = (h.certs.path().join("gw.crt"), h.certs.path().join("gw.key"));
    // A keep-alive connection opened before the rotation.
    let kept = https_client(&ca, &["gw.test"], h.port, false);
    let r = kept.get(h.url("gw.test", "/before")).send().await.unwrap();
    assert_eq!(response_serial(&r), 1);

    // Load: new connections, one after another, in 4 tasks.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (c, url, stop) = (
            fresh_client(&ca, &["gw.test"], h.port),
            h.url("gw.test", "/load"),
            stop.clone(),
        );
        load.spawn(async move {
            let (mut ok, mut failed, mut serials) =
                (0u32, Vec::new(), std::collections::BTreeSet::new());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
            {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        serials.insert(response_serial(&r));
                        ok += 1;
                    }
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (ok, failed, serials)
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = ca.leaf(&["gw.test"], 2);
    let rotated = std::time::Instant::now();
    // The key first, then the cert: in between the pair does not match,
    // which must never be served.
    replace(&key, &next.key);
    replace(&cert, &next.cert);
    let probe = fresh_client(&ca, &["gw.test"], h.port);
    let mut seen_after = None;
    while rotated.elapsed() < Duration::from_secs(5) {
        let r = probe.get(h.url("gw.test", "/probe")).send().await.unwrap();
        if response_serial(&r) == 2 {
            seen_after = Some(rotated.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut total, mut serials) = (0, std::collections::BTreeSet::new());
    while let Some(r) = load.join_next().await {
        let (ok, failed, s) = r.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests: {failed:?}\n{}",
            h.gw.log()
        );
        total += ok;
        serials.extend(s);
    }
    let took =
        seen_after.unwrap_or_else(|| panic!("new serial never served; log:\n{}", h.gw.log()));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(total > 10, "only {total} requests under load");
    assert_eq!(serials, [1, 2].into(), "the load saw both certificates");

    // The connection opened before still works, on its old certificate.
    let r = kept.get(h.url("gw.test", "/after")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(response_serial(&r), 1);
    let m = common::scrape(&h.gw).await;
    assert!(m[r#"gateway_tls_certificate_reloads_total{result="success"}"#] >= 1.0);
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_previous_certificate_and_says_why() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let h = Https::start(
        &up,
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "",
    );
    let key = h.certs.path().join("gw.key");
    // The key of another certificate.
    replace(&key, &ca.leaf(&["gw.test"], 9).key);
    let log = h.gw.wait_log("does not match");
    let line = log.lines().find(|l| l.contains("does not match")).unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&format!("{}:", h.gw.config_path.display()))
            && line.contains("tls.certificates[0].key_file"),
        "not in the validate form: {line}"
    );
    assert_eq!(handshake(h.port, "gw.test", TLS12_13).await, Ok(1));
    let m = common::scrape(&h.gw).await;
    assert_eq!(
        m[r#"gateway_tls_certificate_reloads_total{result="failure"}"#],
        1.0
    );

    // Garbage in the cert file: refused too.
    replace(&h.certs.path().join("gw.crt"), "not a certificate\n");
    assert!(common::eventually(Duration::from_secs(5), || async {
        common::scrape(&h.gw).await[r#"gateway_tls_certificate_reloads_total{result="failure"}"#] >= 2.0
    })
    .await);
    assert_eq!(handshake(h.port, "gw.test", TLS12_13).await, Ok(1));

    // A good pair again is picked up.
    let next = ca.leaf(&["gw.test"], 3);
    replace(&key, &next.key);
    replace(&h.certs.path().join("gw.crt"), &next.cert);
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            handshake(h.port, "gw.test", TLS12_13).await == Ok(3)
        })
        .await
    );
}

#[tokio::test]
async fn a_kubernetes_secret_volume_swap_is_picked_up() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    // kubelet's layout: tls.crt → ..data/tls.crt, ..data → ..TIMESTAMP/.
    let h = Https::start(
        &up,
        |d| {
            let v1 = d.join("..2026_12_02_v1");
            std::fs::create_dir(&v1).unwrap();
            write_pair(&v1, "tls", &ca.leaf(&["gw.test"], 1));
            std::os::unix::fs::symlink("..2026_12_02_v1", d.join("..data")).unwrap();
            for f in ["tls.crt", "tls.key"] {
                std::os::unix::fs::symlink(format!("..data/{f}"), d.join(f)).unwrap();
            }
            vec![(d.join("tls.crt"), d.join("tls.key"))]
        },
        "",
    );
    let d = h.certs.path();
    let v2 = d.join("..2026_12_02_v2");
    std::fs::create_dir(&v2).unwrap();
    write_pair(&v2, "tls", &ca.leaf(&["gw.test"], 2));
    std::os::unix::fs::symlink("..2026_12_02_v2", d.join("..data_tmp")).unwrap();
    let swapped = std::time::Instant::now();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            handshake(h.port, "gw.test", TLS12_13).await == Ok(2)
        })
        .await
    );
    assert!(
        swapped.elapsed() < Duration::from_secs(2),
        "{:?}",
        swapped.elapsed()
    );
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2_and_counts_it() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let h = Https::start(
        &up,
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "  min_version: \"1.3\"\n",
    );
    let e = handshake(h.port, "gw.test", &[&rustls::version::TLS12])
        .await
        .unwrap_err();
    assert!(
        e.contains("ProtocolVersion") || e.contains("protocol"),
        "{e}"
    );
    assert_eq!(handshake(h.port, "gw.test", TLS12_13).await, Ok(1));
    let c = https_client(&ca, &["gw.test"], h.port, true);
    assert_eq!(
        c.get(h.url("gw.test", "/")).send().await.unwrap().status(),
        200
    );

    let m = common::scrape(&h.gw).await;
    assert_eq!(
        m[r#"gateway_tls_handshake_errors_total{reason="protocol_version"}"#],
        1.0
    );
    assert!(m[r#"gateway_tls_handshakes_total{alpn="h2",version="1.3"}"#] >= 1.0);
    assert!(m[r#"gateway_tls_handshakes_total{alpn="none",version="1.3"}"#] >= 1.0);
    let expiry = m[&format!(
        r#"gateway_tls_certificate_expiry_timestamp_seconds{{name="{}",source="file"}}"#,
        h.certs.path().join("gw.crt").display()
    )];
    assert!(expiry > common::now() as f64 + 80.0 * 86_400.0, "{expiry}");

    let ready: serde_json::Value = client()
        .get(h.gw.metrics_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cert = &ready["certificates"][0];
    assert_eq!(cert["names"], serde_json::json!(["gw.test"]));
    assert_eq!(cert["source"], "file");
    assert_eq!(cert["not_after"].as_f64().unwrap(), expiry);
}

/// `gateway validate` on a config whose `tls:` names `pairs`.
fn validate(pairs: &[(PathBuf, PathBuf)], dir: &Path) -> (i32, String) {
    let body = format!(
        "upstreams:\n  app:\n    servers: [\"127.0.0.1:9\"]\nroutes:\n  - path: /*\n    upstream: app\n    auth_required: false\n{}",
        tls_section(6443, pairs, "")
    );
    common::validate_config(dir, &body, &[])
}

#[test]
fn validate_loads_every_pair_and_reports_each_problem() {
    let ca = Ca::new();
    let d = tempfile::tempdir().unwrap();
    let good = write_pair(d.path(), "good", &ca.leaf(&["a.test"], 1));
    let soon = write_pair(d.path(), "soon", &ca.leaf_for(&["s.test"], 2, 5));
    let (code, out) = validate(&[good.clone(), soon.clone()], d.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("tls.certificates[1].cert_file: warning: certificate expires in "),
        "{out}"
    );

    let expired = write_pair(d.path(), "expired", &ca.leaf_for(&["e.test"], 3, -1));
    let mismatched = (good.0.clone(), soon.1.clone());
    let missing = (d.path().join("nope.crt"), good.1.clone());
    let (code, out) = validate(&[expired, mismatched, missing], d.path());
    assert_ne!(code, 0, "{out}");
    for needle in [
        "tls.certificates[0].cert_file: certificate expired on",
        "tls.certificates[1].key_file: key",
        "does not match certificate",
        "tls.certificates[2].cert_file: cannot read",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[tokio::test]
async fn websockets_work_over_https() {
    use futures_util::{SinkExt, StreamExt};
    let up = Upstream::start("app").await;
    let ws = common::ws::ws_echo_server().await;
    let ca = Ca::new();
    let routes = format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\n  ws: {{ servers: [\"{ws}\"] }}\nroutes:\n  - {{ path: \"/ws/*\", upstream: ws, auth_required: false }}\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\n",
        up.addr
    );
    let h = Https::launch(
        |tls| format!("{routes}{tls}"),
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "",
        1,
    );
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", h.port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, &[b"http/1.1"])))
        .connect(ServerName::try_from("gw.test").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sock, resp) = tokio_tungstenite::client_async("wss://gw.test/ws/x", tls)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", h.gw.log()));
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        let m = tokio_tungstenite::tungstenite::Message::text(format!("m{i}"));
        sock.send(m).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), sock.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), format!("m{i}"));
    }
}

/// HTTPS clients until stopped: `fresh` ones handshake per request, the
/// others keep their connection (HTTP/1.1 or HTTP/2). Each records the
/// `X-Config-Version`s it saw and every failure.
fn https_load(
    ca: &Ca,
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinSet<(u32, Vec<String>, std::collections::BTreeSet<String>)> {
    let mut set = tokio::task::JoinSet::new();
    let clients = [
        ("fresh", fresh_client(ca, &["gw.test"], port)),
        ("fresh", fresh_client(ca, &["gw.test"], port)),
        ("h1", https_client(ca, &["gw.test"], port, false)),
        ("h1", https_client(ca, &["gw.test"], port, false)),
        ("h2", https_client(ca, &["gw.test"], port, true)),
        ("h2", https_client(ca, &["gw.test"], port, true)),
    ];
    for (kind, c) in clients {
        let (stop, url) = (stop.clone(), format!("https://gw.test:{port}/x"));
        set.spawn(async move {
            let (mut ok, mut failed, mut seen) = (0, Vec::new(), std::collections::BTreeSet::new());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
            {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        if let Some(v) = r.headers().get("x-config-version") {
                            seen.insert(v.to_str().unwrap().to_string());
                        }
                        match r.bytes().await {
                            Ok(_) => ok += 1,
                            Err(e) => failed.push(format!("{kind} body: {e:?}")),
                        }
                    }
                    Ok(r) => failed.push(format!("{kind}: status {}", r.status())),
                    Err(e) => failed.push(format!("{kind}: {e:?}")),
                }
            }
            (ok, failed, seen)
        });
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_upgrade_hands_the_https_listener_over_without_a_failed_request() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let body = |version: &str, tls: &str| {
        format!(
            "{}response_headers:\n  X-Config-Version: \"{version}\"\n{tls}",
            routes(&up)
        )
    };
    let h = Https::launch(
        |tls| body("old", tls),
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "",
        2,
    );
    let mut old = h.gw;
    let tls = tls_section(
        h.port,
        &[(h.certs.path().join("gw.crt"), h.certs.path().join("gw.key"))],
        "",
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = https_load(&ca, h.port, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    old.write_config(&body("new", &tls));
    let new = old.spawn_upgrade();
    let sock = old.dir.path().join("upgrade.sock");
    common::wait_for(Duration::from_secs(10), || sock.exists())
        .expect("new process waits on the upgrade socket");
    common::kill(old.pid(), "QUIT");

    let probe = fresh_client(&ca, &["gw.test"], h.port);
    let url = h_url(h.port, "/x");
    assert!(
        common::eventually(Duration::from_secs(15), || async {
            probe.get(&url).send().await.is_ok_and(|r| {
                r.headers()
                    .get("x-config-version")
                    .is_some_and(|v| v == "new")
            })
        })
        .await,
        "the new process never answered over HTTPS:\n{}",
        new.log()
    );
    let status = old
        .wait_exit(Duration::from_secs(20))
        .expect("old process exits after its grace period");
    assert!(status.success(), "{status:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut total, mut seen) = (0, std::collections::BTreeSet::new());
    while let Some(r) = load.join_next().await {
        let (ok, failed, s) = r.unwrap();
        assert!(
            failed.is_empty(),
            "{} failed: {:?}\nnew log:\n{}",
            failed.len(),
            &failed[..failed.len().min(5)],
            new.log()
        );
        total += ok;
        seen.extend(s);
    }
    assert!(total > 50, "only {total} requests");
    assert_eq!(seen, ["new".to_string(), "old".to_string()].into());
}

fn h_url(port: u16, path: &str) -> String {
    format!("https://gw.test:{port}{path}")
}

#[tokio::test]
async fn http2_requests_are_authenticated_like_http1() {
    let up = Upstream::start("app").await;
    let ca = Ca::new();
    let routes = format!(
        "upstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/api/*\", upstream: app }}\nauth:\n  jwt_secret: \"{}\"\n",
        up.addr,
        common::SECRET
    );
    let h = Https::launch(
        |tls| format!("{routes}{tls}"),
        |d| vec![write_pair(d, "gw", &ca.leaf(&["gw.test"], 1))],
        "",
        1,
    );
    let c = https_client(&ca, &["gw.test"], h.port, true);
    let r = c.get(h.url("gw.test", "/api/x")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let token = common::token(serde_json::json!({"sub": "alice", "exp": common::now() + 600}));
    let r = c
        .get(h.url("gw.test", "/api/x"))
        .bearer_auth(&token)
        .header("x-user-id", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-user-id"], "alice");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
}
