//! Sends counted under Pingora's own HTTP/1 server session: what reaches the
//! socket for a small response, a header alone, a chunk, a large body.

use super::*;
use bytes::Bytes;
use pingora_core::protocols::http::HttpTask;
use pingora_core::protocols::http::v1::server::HttpSession;
use pingora_http::ResponseHeader;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, DuplexStream};

/// The socket under test: counts the writes that sent something (each one
/// a system call on a real socket; a vectored one is a single `writev`).
#[derive(Debug)]
struct Counting {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl Counting {
    fn count(&self, sent: &Poll<std::io::Result<usize>>) {
        if matches!(sent, Poll::Ready(Ok(n)) if *n > 0) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let sent = Pin::new(&mut self.io).poll_write(cx, buf);
        self.count(&sent);
        sent
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // Like `writev`: all slices in one call (the pipe is large enough
        // for every response here).
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let sent = Pin::new(&mut self.io).poll_write(cx, &all);
        self.count(&sent);
        sent
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Counting {
    async fn shutdown(&mut self) {}
}
impl UniqueID for Counting {
    fn id(&self) -> UniqueIDType {
        0
    }
}
impl Ssl for Counting {}
impl GetTimingDigest for Counting {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![]
    }
}
impl GetProxyDigest for Counting {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}
impl GetSocketDigest for Counting {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}
impl Peek for Counting {}

const LIMIT: usize = 4096;

/// A session that has read `GET / HTTP/1.1`, over a counted socket, with
/// or without coalescing; the client's end; the write count.
async fn session(coalesce: bool) -> (HttpSession, DuplexStream, Arc<AtomicUsize>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted: Stream = Box::new(Counting {
        io: server,
        writes: writes.clone(),
    });
    let stream: Stream = if coalesce {
        Box::new(Coalescing::new(counted, LIMIT))
    } else {
        counted
    };
    let mut session = HttpSession::new(stream);
    session.set_pipelined_prefix(BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]));
    session.read_request().await.unwrap();
    (session, client, writes)
}

fn header(content_length: Option<usize>) -> Box<ResponseHeader> {
    let mut h = ResponseHeader::build(200, None).unwrap();
    match content_length {
        Some(n) => h.insert_header("Content-Length", n.to_string()).unwrap(),
        None => h.insert_header("Transfer-Encoding", "chunked").unwrap(),
    }
    Box::new(h)
}

/// Reads a response head (up to its blank line) and then `body` bytes
/// from `client` (two seconds at most).
async fn read_response(client: &mut DuplexStream, body: usize) -> (String, Vec<u8>) {
    let read = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(client.read_u8().await.unwrap());
        }
        let mut rest = vec![0u8; body];
        client.read_exact(&mut rest).await.unwrap();
        (String::from_utf8(head).unwrap(), rest)
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .expect("the response did not arrive")
}

/// Reads from `client` until `want` bytes arrived (or two seconds passed).
async fn read_n(client: &mut DuplexStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut got))
        .await
        .expect("the bytes did not arrive")
        .unwrap();
    got
}

/// The gateway's own answers: header, body, end (`respond::send`).
async fn small_response(coalesce: bool) -> (usize, Vec<u8>, HttpSession) {
    let (mut session, mut client, writes) = session(coalesce).await;
    session
        .write_response_header(header(Some(5)))
        .await
        .unwrap();
    session.write_body(b"hello").await.unwrap();
    session.finish_body().await.unwrap();
    let (head, body) = read_response(&mut client, 5).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    (writes.load(Ordering::Relaxed), body, session)
}

#[tokio::test]
async fn a_small_response_leaves_in_one_write() {
    let (writes, body, session) = small_response(true).await;
    assert_eq!(body, b"hello");
    assert_eq!(writes, 1, "header and body were sent separately");
    // Between responses the connection holds no buffer.
    let conn = session.stream().as_any().downcast_ref::<Coalescing>();
    assert_eq!(conn.unwrap().buffer_capacity(), 0);
}

/// The control: what the count sees without coalescing (so the test above
/// can tell one write from two).
#[tokio::test]
async fn without_coalescing_a_small_response_takes_two_writes() {
    let (writes, _, _) = small_response(false).await;
    assert_eq!(writes, 2);
}

/// The proxy's path: upstream header and body handed over in one batch.
#[tokio::test]
async fn a_proxied_small_response_leaves_in_one_write() {
    let (mut session, mut client, writes) = session(true).await;
    let tasks = vec![
        HttpTask::Header(header(Some(5)), false),
        HttpTask::Body(Some(Bytes::from_static(b"hello")), true),
    ];
    assert!(session.response_duplex_vec(tasks).await.unwrap());
    assert_eq!(read_response(&mut client, 5).await.1, b"hello");
    assert_eq!(writes.load(Ordering::Relaxed), 1);
}

/// A body larger than the buffer goes with the held header in one vectored
/// write.
#[tokio::test]
async fn a_large_body_leaves_with_its_header_in_one_write() {
    let (mut session, mut client, writes) = session(true).await;
    let body = vec![b'x'; 64 * 1024];
    session
        .write_response_header(header(Some(body.len())))
        .await
        .unwrap();
    session.write_body(&body).await.unwrap();
    session.finish_body().await.unwrap();
    let (head, got) = read_response(&mut client, body.len()).await;
    assert!(head.contains("Content-Length: 65536\r\n"), "{head}");
    assert_eq!(got, body);
    assert_eq!(writes.load(Ordering::Relaxed), 1);
}

/// Pingora does not flush a `Content-Length` header on its own; it leaves
/// as soon as the session waits on the client (as the proxy does while it
/// waits for the upstream's body), not with the body.
#[tokio::test]
async fn a_header_waiting_for_its_body_leaves_when_the_session_reads() {
    let (mut session, mut client, writes) = session(true).await;
    session
        .write_response_header(header(Some(5)))
        .await
        .unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 0);
    tokio::select! {
        (head, _) = read_response(&mut client, 0) => assert!(head.contains("Content-Length: 5\r\n")),
        _ = session.read_body_or_idle(true) => panic!("the client sent nothing"),
    }
}

/// Streamed (chunked, e.g. server-sent events): every chunk leaves at once.
#[tokio::test]
async fn chunks_are_not_held() {
    let (mut session, mut client, writes) = session(true).await;
    session.write_response_header(header(None)).await.unwrap();
    let (head, _) = read_response(&mut client, 0).await;
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    for event in [&b"data: 1\n\n"[..], b"data: 2\n\n"] {
        session.write_body(event).await.unwrap();
        let chunk = [&b"9\r\n"[..], event, b"\r\n"].concat();
        assert_eq!(read_n(&mut client, chunk.len()).await, chunk);
    }
    // Header, then each chunk (size line, data, end) in one write.
    assert_eq!(writes.load(Ordering::Relaxed), 3);
}

/// Through a pipe that takes a few bytes at a time (sends cut short, the
/// socket full): every byte arrives, in order, whatever the piece sizes.
#[tokio::test]
async fn partial_sends_keep_every_byte_in_order() {
    let (mut client, server) = tokio::io::duplex(7);
    let counted: Stream = Box::new(Counting {
        io: server,
        writes: Arc::new(AtomicUsize::new(0)),
    });
    let mut conn = Coalescing::new(counted, 64);
    let mut sent = Vec::new();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        got
    });
    for (i, size) in [1usize, 30, 100, 3, 63, 64, 65, 0, 200, 5]
        .iter()
        .enumerate()
    {
        let piece: Vec<u8> = (0..*size).map(|j| (i * 31 + j) as u8).collect();
        if i % 2 == 0 {
            conn.write_all(&piece).await.unwrap();
        } else {
            let (a, b) = piece.split_at(size / 2);
            let mut chain = Bytes::copy_from_slice(a).chain(Bytes::copy_from_slice(b));
            conn.write_all_buf(&mut chain).await.unwrap();
        }
        sent.extend_from_slice(&piece);
    }
    AsyncWriteExt::shutdown(&mut conn).await.unwrap();
    drop(conn);
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, sent);
}
