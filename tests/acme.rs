//! Automatic certificates against a real ACME server: Debian's `pebble`
//! (Let's Encrypt's test CA) validating HTTP-01 challenges on the gateway's
//! plain listener, its DNS questions answered with 127.0.0.1 by
//! `pebble-challtestsrv`. Every port is ephemeral; pebble's own API
//! certificate comes from a test CA made here (rcgen), trusted through
//! `tls.acme.ca_file`.

mod common;

use common::{Gateway, ReservedPort, Upstream, reserve_port, scrape, wait_for};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

const DOMAINS: [&str; 2] = ["gw.acme.test", "www.acme.test"];

/// A port free right now for TCP and UDP (for programs that cannot be
/// handed a bound socket).
fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {cmd:?} ({e}): install Debian's pebble package (./tests/run does)"
                )
            });
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// pebble and its DNS server, with the test CA its API certificate is from.
struct Pebble {
    dns_port: u16,
    api: u16,
    management: u16,
    ca_file: PathBuf,
    running: Option<(Proc, Proc)>,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts both, pebble validating HTTP-01 on `http_port`, and waits
    /// until the ACME directory answers.
    fn start(http_port: u16) -> Pebble {
        let mut p = Self::prepare(http_port);
        p.run();
        p
    }

    /// Writes the certificates and config and picks the ports, without
    /// starting anything (a gateway can then be pointed at it first).
    fn prepare(http_port: u16) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "pebble API test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        std::fs::write(path("cert.pem"), cert.pem()).unwrap();
        std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
        let (api, management) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": path("cert.pem"),
            "privateKey": path("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(path("pebble.json"), config.to_string()).unwrap();
        Pebble {
            dns_port: free_port(),
            api,
            management,
            ca_file: path("ca.pem"),
            running: None,
            dir,
        }
    }

    /// Starts the DNS server and pebble and waits until both answer.
    fn run(&mut self) {
        let path = |n: &str| self.dir.path().join(n);
        let dns_port = self.dns_port;
        let dns = Proc::spawn(
            Command::new("pebble-challtestsrv").args([
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]),
            path("challtestsrv.log"),
        );
        let pebble = Proc::spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(path("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            path("pebble.log"),
        );
        let (api, management) = (self.api, self.management);
        // The management interface (roots) starts after the API: wait for both.
        wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", management)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", dns_port)).is_ok()
        })
        .unwrap_or_else(|_| panic!("pebble did not start:\n{}\n{}", pebble.log(), dns.log()));
        self.running = Some((dns, pebble));
    }

    /// Stops both servers (their files stay).
    fn stop(&mut self) {
        self.running = None;
    }

    fn log(&self) -> String {
        self.running
            .as_ref()
            .map_or_else(String::new, |(_, p)| p.log())
    }

    /// The root pebble issues under (random per start), from its
    /// management interface.
    async fn root(&self) -> CertificateDer<'static> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca_file).unwrap()).unwrap();
        let c = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([ca])
            .build()
            .unwrap();
        let pem = c
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(&pem).unwrap()
    }
}

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The gateway's config: an HTTPS listener with only ACME certificates, the
/// plain listener redirecting to it (challenges excepted).
fn config(up: &Upstream, tls_port: u16, api: u16, storage: &Path, ca_file: &Path) -> String {
    config_with(up, tls_port, api, storage, ca_file, "")
}

/// [`config`] with `extra` lines in the `tls:` section.
fn config_with(
    up: &Upstream,
    tls_port: u16,
    api: u16,
    storage: &Path,
    ca_file: &Path,
    extra: &str,
) -> String {
    format!(
        "upstreams:\n  app:\n    servers: [\"{up}\"]\nroutes:\n  - path: /*\n    upstream: app\n    auth_required: false\n\
         tls:\n  bind_address: \"127.0.0.1:{tls_port}\"\n  redirect_http: true\n{extra}  acme:\n    \
         directory_url: \"https://127.0.0.1:{api}/dir\"\n    contact: [\"mailto:ops@acme.test\"]\n    \
         domains: [\"{d0}\", \"{d1}\"]\n    storage_dir: \"{storage}\"\n    ca_file: \"{ca}\"\n",
        up = up.addr,
        d0 = DOMAINS[0],
        d1 = DOMAINS[1],
        storage = storage.display(),
        ca = ca_file.display(),
    )
}

/// Handshakes with `sni` on `port`, verifying the chain against `root`;
/// the leaf's serial (hex) or why not.
async fn verified_serial(
    port: u16,
    sni: &str,
    root: &CertificateDer<'static>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    leaf_serial(c, port, sni).await
}

async fn leaf_serial(c: rustls::ClientConfig, port: u16, sni: &str) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(c))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = &tls.get_ref().1.peer_certificates().unwrap()[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    Ok(cert.raw_serial_as_string())
}

/// `GET path` on the plain listener for the first domain.
fn plain_get(port: u16, path: &str) -> u16 {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        DOMAINS[0]
    );
    common::raw_request(port, &req).0
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The gateway with its HTTPS port, once both listeners accept.
fn start_gateway(body: impl FnOnce(u16) -> String, plain: ReservedPort) -> (Gateway, ReservedPort) {
    let tls = reserve_port();
    let gw = Gateway::spawn_on(plain, &body(tls.port));
    gw.wait_listening();
    let port = tls.port;
    wait_for(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap_or_else(|_| panic!("no HTTPS listener; log:\n{}", gw.log()));
    (gw, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_by_http01_stored_privately_and_served_again_after_a_restart() {
    init();
    let up = Upstream::start("app").await;
    let storage_root = tempfile::tempdir().unwrap();
    let storage = storage_root.path().join("acme");
    let plain = reserve_port();
    let mut pebble = Pebble::start(plain.port);
    let root = pebble.root().await;
    let plain_port = plain.port;
    let (gw, tls) = start_gateway(
        |t| config(&up, t, pebble.api, &storage, &pebble.ca_file),
        plain,
    );

    // Ordered, validated over the plain listener (which redirects
    // everything else), issued, served by SNI for every domain.
    let mut serial = Err(String::new());
    for _ in 0..300 {
        serial = verified_serial(tls.port, DOMAINS[0], &root).await;
        if serial.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let serial = serial.unwrap_or_else(|e| {
        panic!(
            "no pebble-issued certificate served ({e}); gateway log:\n{}\npebble log:\n{}",
            gw.log(),
            pebble.log()
        )
    });
    assert_eq!(
        verified_serial(tls.port, DOMAINS[1], &root).await,
        Ok(serial.clone())
    );

    // Stored privately: 0700 directory, 0600 files (account and certificate).
    assert_eq!(mode(&storage), 0o700);
    let files: Vec<_> = std::fs::read_dir(&storage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert!(storage.join("certificate.pem").exists());

    // Metrics: one order, the certificate's expiry with source=acme.
    let m = scrape(&gw).await;
    assert_eq!(
        m.get("gateway_acme_orders_total{result=\"success\"}"),
        Some(&1.0),
        "{m:?}"
    );
    let expiry = m
        .iter()
        .find(|(k, _)| {
            k.starts_with("gateway_tls_certificate_expiry_timestamp_seconds")
                && k.contains("source=\"acme\"")
                && k.contains("gw.acme.test,www.acme.test")
        })
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no acme expiry gauge: {m:?}"));
    assert!(expiry > common::now() as f64 + 86_400.0);

    // Requests over HTTPS reach the upstream; on the plain listener an
    // unknown challenge is a 404 (never redirected), anything else a 308.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_der(&root).unwrap()])
        .resolve(DOMAINS[1], ([127, 0, 0, 1], tls.port).into())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://{}:{}/hello", DOMAINS[1], tls.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = plain_get(plain_port, "/.well-known/acme-challenge/nope");
    assert_eq!(status, 404);
    let status = plain_get(plain_port, "/hello");
    assert_eq!(status, 308);

    // Restart with the CA gone: the stored certificate is served at once,
    // and no order is attempted while it is not due.
    drop(gw);
    drop(tls);
    pebble.stop();
    let (gw, tls) = start_gateway(
        |t| config(&up, t, pebble.api, &storage, &pebble.ca_file),
        reserve_port(),
    );
    assert_eq!(
        verified_serial(tls.port, DOMAINS[0], &root).await,
        Ok(serial)
    );
    gw.wait_metrics_listening();
    let m = scrape(&gw).await;
    assert_eq!(
        m.get("gateway_acme_orders_total{result=\"success\"}"),
        Some(&0.0)
    );
    assert_eq!(
        m.get("gateway_acme_orders_total{result=\"failure\"}"),
        Some(&0.0)
    );
    assert!(
        gw.log().contains("serving the stored ACME certificate"),
        "{}",
        gw.log()
    );
}

/// The serial (hex) of whatever certificate is served to `sni`.
async fn any_serial(port: u16, sni: &str) -> Result<String, String> {
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
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
    let c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Any))
    .with_no_client_auth();
    leaf_serial(c, port, sni).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_is_retried_while_the_file_certificate_keeps_being_served() {
    init();
    let up = Upstream::start("app").await;
    let storage_root = tempfile::tempdir().unwrap();
    let storage = storage_root.path().join("acme");
    let plain = reserve_port();
    // The CA is down when the gateway starts.
    let mut pebble = Pebble::prepare(plain.port);
    let file = rcgen::generate_simple_self_signed(vec!["file.test".to_string()]).unwrap();
    let (cert, key) = (
        storage_root.path().join("f.crt"),
        storage_root.path().join("f.key"),
    );
    std::fs::write(&cert, file.cert.pem()).unwrap();
    std::fs::write(&key, file.signing_key.serialize_pem()).unwrap();
    let (_, file_cert) = x509_parser::parse_x509_certificate(file.cert.der()).unwrap();
    let file_serial = file_cert.raw_serial_as_string();
    let extra = format!(
        "  certificates:\n    - cert_file: \"{}\"\n      key_file: \"{}\"\n",
        cert.display(),
        key.display()
    );
    let (gw, tls) = start_gateway(
        |t| config_with(&up, t, pebble.api, &storage, &pebble.ca_file, &extra),
        plain,
    );
    gw.wait_metrics_listening();
    let failed = common::eventually(Duration::from_secs(10), || async {
        scrape(&gw)
            .await
            .get("gateway_acme_orders_total{result=\"failure\"}")
            .is_some_and(|v| *v >= 1.0)
    })
    .await;
    assert!(failed, "no failed order counted; log:\n{}", gw.log());
    gw.wait_log("ACME order failed");
    // Meanwhile every name gets the file certificate (the default).
    for sni in ["file.test", DOMAINS[0]] {
        assert_eq!(
            any_serial(tls.port, sni).await,
            Ok(file_serial.clone()),
            "{sni}"
        );
    }

    // The CA comes back: the retry (5 s after the first failure) succeeds.
    pebble.run();
    let root = pebble.root().await;
    let mut got = Err(String::new());
    for _ in 0..300 {
        got = verified_serial(tls.port, DOMAINS[0], &root).await;
        if got.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        got.is_ok(),
        "{got:?}; log:\n{}\npebble:\n{}",
        gw.log(),
        pebble.log()
    );
    assert_eq!(any_serial(tls.port, "file.test").await, Ok(file_serial));
    let m = scrape(&gw).await;
    assert_eq!(
        m.get("gateway_acme_orders_total{result=\"success\"}"),
        Some(&1.0)
    );
}

/// `gateway validate --no-resolve` on a config with `acme` as its
/// `tls.acme` body: (exit success, output).
fn validate(acme: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let acme = acme.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("file"), "").unwrap();
    let body = format!(
        "upstreams:\n  app:\n    servers: [\"127.0.0.1:1\"]\nroutes:\n  - path: /*\n    upstream: app\n    auth_required: false\n\
         tls:\n  bind_address: \"127.0.0.1:1\"\n  acme:\n{acme}"
    );
    let (code, text) = common::validate_config(dir.path(), &body, &["--no-resolve"]);
    (code == 0, text)
}

#[test]
fn validate_refuses_wildcards_ip_addresses_no_domains_and_an_unusable_storage_dir() {
    let (ok, text) = validate(
        "    directory_url: \"http://ca.test/dir\"\n    domains: [\"*.example.com\", \"127.0.0.1\"]\n    storage_dir: \"{dir}/acme\"\n",
    );
    assert!(!ok, "{text}");
    for needle in [
        "tls.acme.directory_url: \"http://ca.test/dir\" is not an https:// URL",
        "tls.acme.domains[0]: \"*.example.com\": wildcard names need the DNS-01 challenge",
        "tls.acme.domains[1]: \"127.0.0.1\": an IP address",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }

    let (ok, text) = validate(
        "    directory_url: \"https://ca.test/dir\"\n    domains: []\n    storage_dir: \"{dir}/acme\"\n",
    );
    assert!(
        !ok && text.contains("tls.acme.domains: no domain"),
        "{text}"
    );

    // A file where the directory should be; a missing CA file.
    let (ok, text) = validate(
        "    directory_url: \"https://ca.test/dir\"\n    domains: [gw.example.com]\n    storage_dir: \"{dir}/file/acme\"\n    ca_file: \"{dir}/missing.pem\"\n",
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("tls.acme.storage_dir: ") && text.contains("a file is in the way"),
        "{text}"
    );
    assert!(text.contains("tls.acme.ca_file: cannot read"), "{text}");

    let (ok, text) = validate(
        "    directory_url: \"https://ca.test/dir\"\n    domains: [gw.example.com]\n    storage_dir: \"{dir}/acme\"\n",
    );
    assert!(ok, "{text}");
}
