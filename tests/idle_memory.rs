//! What an idle keep-alive connection costs the gateway in memory, plain and
//! over TLS: many connections, one request each, then held open; the growth
//! of the gateway's resident memory per connection is bounded.
//!
//! The bound is set for this (debug) test build, where futures are larger
//! than in a release build; it fails when a connection keeps a request's
//! state, a read buffer, or Pingora's handshake future (several KiB with
//! rustls, inline in the connection's task unless boxed:
//! `vendor/pingora-core`) for as long as it is idle. The release figures
//! for 10,000 connections are `benches/compare.py`'s (README, Performance).

mod common;

use common::{Gateway, Upstream, raise_fd_limit, reserve_port, rss_kib};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections opened before the first reading (thread arenas, pools and
/// caches warmed), then the connections whose cost is measured.
const WARM: usize = 300;
const MEASURED: usize = 2_000;

/// One GET on `s`, its whole response read (Content-Length framed); the
/// connection stays open.
async fn one_request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}

/// `n` connections opened by `open`, 100 at a time, each after one request.
async fn hold<S, F, Fut>(n: usize, open: F) -> Vec<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S> + Send + 'static,
{
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let batch: Vec<_> = (0..100.min(n - held.len()))
            .map(|_| {
                let conn = open();
                tokio::spawn(async move {
                    let mut s = conn.await;
                    one_request(&mut s).await;
                    s
                })
            })
            .collect();
        for t in batch {
            held.push(t.await.unwrap());
        }
    }
    held
}

/// KiB of resident memory per connection for `MEASURED` connections.
async fn per_connection<S, F, Fut>(pid: u32, open: F) -> (f64, Vec<S>, Vec<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S> + Send + 'static,
{
    let warm = hold(WARM, &open).await;
    let before = rss_kib(pid);
    let measured = hold(MEASURED, &open).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / MEASURED as f64;
    eprintln!("{MEASURED} idle connections: RSS {before} -> {after} KiB, {per:.2} KiB each");
    (per, warm, measured)
}

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "upstreams:\n  app:\n    servers: [\"{}\"]\nroutes:\n  - path: /*\n    upstream: app\n    auth_required: false\n{extra}",
        up.addr
    )
}

/// The bound per idle connection in this debug build. Measured here: 3.8
/// KiB plain and 7.4 KiB over TLS; 11.5 and 15.4 KiB with Pingora's
/// handshake future inline in the connection's task (the unpatched
/// pingora-core).
const PLAIN_KIB: f64 = 6.0;
const TLS_KIB: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plain_connection_costs_a_few_kib() {
    raise_fd_limit();
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&config(&up, ""));
    let addr = format!("127.0.0.1:{}", gw.port);
    let (per, _w, _m) = per_connection(gw.pid(), || {
        let addr = addr.clone();
        async move { TcpStream::connect(addr).await.unwrap() }
    })
    .await;
    assert!(per < PLAIN_KIB, "{per:.2} KiB per idle connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_costs_a_few_kib() {
    raise_fd_limit();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let up = Upstream::start("app").await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("gw.crt"), dir.path().join("gw.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let tls_port = reserve_port();
    let tls = format!(
        "tls:\n  bind_address: \"127.0.0.1:{}\"\n  certificates:\n    - cert_file: \"{}\"\n      key_file: \"{}\"\n",
        tls_port.port,
        crt.display(),
        key.display()
    );
    let gw = Gateway::start(&config(&up, &tls));
    let addr = format!("127.0.0.1:{}", tls_port.port);
    common::wait_for(std::time::Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).is_ok()
    })
    .unwrap_or_else(|_| panic!("no HTTPS listener; log:\n{}", gw.log()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut c = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(c));
    let (per, _w, _m) = per_connection(gw.pid(), || {
        let (addr, connector) = (addr.clone(), connector.clone());
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        }
    })
    .await;
    assert!(per < TLS_KIB, "{per:.2} KiB per idle TLS connection");
}
