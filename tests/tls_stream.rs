//! The HTTPS listener's TLS stream (`gateway::tls::record::ServerTls`,
//! rustls's unbuffered API) against a tokio-rustls client: bodies across
//! many records, records cut into tiny reads, close_notify both ways,
//! garbage after the handshake, and an idle connection that holds no
//! buffer and still answers.

mod common;

use common::tls_upstream::TestCa;
use pingora_gateway::tls::record::ServerTls;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream as ClientTls;

const LIMIT: Duration = Duration::from_secs(20);

fn configs(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new("stream test CA");
    let server = ca.leaf(&["localhost"]).server_config(None);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let client = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    client: Arc<rustls::ClientConfig>,
) -> ClientTls<S> {
    tokio_rustls::TlsConnector::from(client)
        .connect(ServerName::try_from("localhost").unwrap(), io)
        .await
        .unwrap()
}

/// A TLS pair over loopback TCP.
async fn tcp_pair(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (ServerTls<TcpStream>, ClientTls<TcpStream>) {
    let (server, client) = configs(versions);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let s = tokio::spawn(async move {
        let (io, _) = l.accept().await.unwrap();
        ServerTls::accept(io, server).await.unwrap()
    });
    let c = connect(TcpStream::connect(addr).await.unwrap(), client).await;
    (s.await.unwrap(), c)
}

/// A TLS pair over an in-memory pipe that moves at most `chunk` bytes per
/// read or write: every record (and the handshake) arrives in pieces.
async fn tiny_pair(chunk: usize) -> (ServerTls<DuplexStream>, ClientTls<DuplexStream>) {
    let (server, client) = configs(&[&rustls::version::TLS13]);
    let (a, b) = tokio::io::duplex(chunk);
    let s = tokio::spawn(async move { ServerTls::accept(a, server).await.unwrap() });
    let c = connect(b, client).await;
    (s.await.unwrap(), c)
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn large_bodies_cross_many_records_both_ways() {
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let (mut server, mut client) = within(tcp_pair(versions)).await;
        let up = body(3 << 20);
        let sent = up.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.flush().await.unwrap();
            let mut back = vec![0u8; 3 << 20];
            client.read_exact(&mut back).await.unwrap();
            back
        });
        // Odd read sizes: records end in the middle of the reader's buffer.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 7001];
        while got.len() < up.len() {
            let n = within(server.read(&mut buf)).await.unwrap();
            assert!(n > 0, "early EOF after {}", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == up, "the upload arrived changed");
        within(server.write_all(&got)).await.unwrap();
        within(server.flush()).await.unwrap();
        let back = within(writer).await.unwrap();
        assert!(back == up, "the download arrived changed");
    }
}

#[tokio::test]
async fn a_request_in_tiny_writes_over_tiny_reads_arrives_whole() {
    let (mut server, mut client) = within(tiny_pair(7)).await;
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    let sent = request.clone();
    let c = tokio::spawn(async move {
        for b in sent.chunks(1) {
            client.write_all(b).await.unwrap();
            client.flush().await.unwrap();
        }
        let mut answer = vec![0u8; 5];
        client.read_exact(&mut answer).await.unwrap();
        answer
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 3];
    while got.len() < request.len() {
        let n = within(server.read(&mut buf)).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, request);
    within(server.write_all(b"hello")).await.unwrap();
    within(server.flush()).await.unwrap();
    assert_eq!(within(c).await.unwrap(), b"hello");
}

#[tokio::test]
async fn close_notify_ends_the_stream_cleanly_both_ways() {
    // The client says goodbye: the server reads the data, then a clean EOF.
    let (mut server, mut client) = within(tcp_pair(&[&rustls::version::TLS13])).await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(server.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"last words");
    // The server says goodbye: the client sees a clean EOF, not an error.
    let (mut server, mut client) = within(tcp_pair(&[&rustls::version::TLS13])).await;
    within(server.write_all(b"bye")).await.unwrap();
    within(server.shutdown()).await.unwrap();
    let mut got = Vec::new();
    within(client.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"bye");
}

#[tokio::test]
async fn vectored_writes_arrive_in_order() {
    let (mut server, mut client) = within(tcp_pair(&[&rustls::version::TLS13])).await;
    let big = body(40_000);
    // Small pieces (a chunk's size line, data, CRLF) are taken whole.
    let small = [&b"5\r\n"[..], b"hello", b"\r\n"].map(std::io::IoSlice::new);
    assert_eq!(within(server.write_vectored(&small)).await.unwrap(), 10);
    // Large ones one slice at a time.
    let large = [std::io::IoSlice::new(b"x"), std::io::IoSlice::new(&big)];
    assert_eq!(within(server.write_vectored(&large)).await.unwrap(), 1);
    within(server.write_all(&big)).await.unwrap();
    within(server.flush()).await.unwrap();
    let mut expected = b"5\r\nhello\r\nx".to_vec();
    expected.extend_from_slice(&big);
    let mut got = vec![0u8; expected.len()];
    within(client.read_exact(&mut got)).await.unwrap();
    assert!(got == expected);
}

#[tokio::test]
async fn garbage_after_the_handshake_is_a_clean_error() {
    let (mut server, mut client) = within(tcp_pair(&[&rustls::version::TLS13])).await;
    client.write_all(b"ok").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 2];
    within(server.read_exact(&mut buf)).await.unwrap();
    // Bytes that are no TLS record, straight onto the socket.
    let tcp = client.get_mut().0;
    tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
        .await
        .unwrap();
    tcp.write_all(&[0xAB; 32]).await.unwrap();
    let mut buf = [0u8; 64];
    let e = within(server.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    assert!(
        matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::DecryptError)
        ),
        "{e:?}"
    );
    // Writing after the failure fails too, and nothing panics.
    assert!(within(server.write_all(b"x")).await.is_err());
}

#[tokio::test]
async fn a_handshake_that_is_not_tls_fails_with_invalid_data() {
    let (server, _) = configs(&[&rustls::version::TLS13]);
    let (a, mut b) = tokio::io::duplex(4096);
    let s = tokio::spawn(async move { ServerTls::accept(a, server).await.map(|_| ()) });
    b.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let e = within(s).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    // A peer that leaves during the handshake: UnexpectedEof.
    let (server, _) = configs(&[&rustls::version::TLS13]);
    let (a, mut b) = tokio::io::duplex(4096);
    let s = tokio::spawn(async move { ServerTls::accept(a, server).await.map(|_| ()) });
    b.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    drop(b);
    let e = within(s).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
}

#[tokio::test]
async fn an_eof_without_close_notify_is_unexpected() {
    let (mut server, mut client) = within(tcp_pair(&[&rustls::version::TLS13])).await;
    // A round trip first, so that the client has read the session tickets
    // (unread data would make its close a reset).
    within(server.write_all(b"x")).await.unwrap();
    within(server.flush()).await.unwrap();
    let mut x = [0u8; 1];
    within(client.read_exact(&mut x)).await.unwrap();
    drop(client);
    let mut buf = [0u8; 16];
    let e = within(server.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
}

#[tokio::test]
async fn an_idle_connection_holds_no_buffer_and_answers_afterwards() {
    let (mut server, mut client) = within(tcp_pair(&[&rustls::version::TLS13])).await;
    for round in 0..3 {
        // One exchange, a large answer included, then the server waits.
        let request = format!("request {round}");
        client.write_all(request.as_bytes()).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = vec![0u8; request.len()];
        within(server.read_exact(&mut buf)).await.unwrap();
        assert_eq!(buf, request.as_bytes());
        let answer = body(100_000);
        within(server.write_all(&answer)).await.unwrap();
        within(server.flush()).await.unwrap();
        let mut got = vec![0u8; answer.len()];
        within(client.read_exact(&mut got)).await.unwrap();
        assert!(got == answer);
        // A read with nothing to read: pending, and no buffer kept.
        let mut one = [0u8; 1];
        let pending = tokio::time::timeout(Duration::from_millis(50), server.read(&mut one)).await;
        assert!(pending.is_err(), "read something: {pending:?}");
        assert_eq!(
            server.buffered_capacity(),
            0,
            "an idle connection keeps a buffer"
        );
    }
}
