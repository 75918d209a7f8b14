//! Reading one request head under the whole-head deadline and size cap
//! ([`HeadLimits`]), before Pingora parses it.

use super::{HEADER_BUFFER, HeadLimits};
use crate::downstream::GrownHead;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a request head was not handed to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not complete within the time limit from its first byte.
    Timeout,
    /// Longer than the size limit.
    TooLarge,
    /// The client closed (or reset) the connection in the middle of it.
    Closed,
}

/// Where the request head in `buf` ends (the index after its blank line), or
/// `Err(i)`: not there yet, scan again from `i` once more bytes arrived.
/// Lines end in CRLF or a bare LF, as Pingora's parser (httparse) accepts;
/// empty lines before the request line are skipped as it skips them.
pub fn head_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let start = match buf.iter().position(|&b| b != b'\r' && b != b'\n') {
        Some(i) => i,
        None => return Err(0),
    };
    let mut i = from.max(start);
    while let Some(p) = memchr::memchr(b'\n', &buf[i..]) {
        let nl = i + p;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Ok(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Ok(nl + 3),
            (None, _) | (Some(b'\r'), None) => return Err(nl),
            _ => i = nl + 1,
        }
    }
    Err(buf.len())
}

/// Reads until the head in `buf` is complete: within `limits.timeout` from
/// now, and never holding more than `limits.max_bytes` (the buffer grows by
/// doubling, copied into an exact allocation, up to that cap). What comes
/// after the head in the last read (a body, say) stays in the buffer.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: BytesMut,
    limits: HeadLimits,
) -> Result<BytesMut, HeadError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let max = limits.max_bytes;
    let mut from = 0;
    let mut grown = GrownHead::default();
    loop {
        match head_end(&buf, from) {
            Ok(end) if end <= max => return Ok(buf),
            Ok(_) => return Err(HeadError::TooLarge),
            Err(next) => from = next,
        }
        if buf.len() >= max {
            return Err(HeadError::TooLarge);
        }
        if buf.len() == buf.capacity() {
            let cap = (buf.capacity() * 2).max(HEADER_BUFFER).min(max);
            let mut bigger = BytesMut::with_capacity(cap);
            bigger.extend_from_slice(&buf);
            buf = bigger;
            grown.set(cap);
        }
        let room = (max - buf.len()) as u64;
        let mut limited = (&mut *stream).take(room);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Err(_) => return Err(HeadError::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(HeadError::Closed),
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0), Ok(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Ok(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Ok(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\n\r\n", 0), Ok(23));
        // Empty lines before the request line are skipped, as httparse does.
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0), Ok(22));
        assert!(head_end(b"\r\n\r\n", 0).is_err());
        assert!(head_end(b"", 0).is_err());
        // Not yet: resume at the last line break.
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), Err(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), Err(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a", 0), Err(23));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 24), Ok(27));
    }

    /// A small deterministic generator (no extra dependency).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_head(r: &mut Rng) -> Vec<u8> {
        let eol = |r: &mut Rng| -> &'static [u8] { if r.below(4) == 0 { b"\n" } else { b"\r\n" } };
        let mut h = Vec::new();
        for _ in 0..r.below(3) {
            h.extend_from_slice(eol(r));
        }
        h.extend_from_slice(b"GET /p");
        for _ in 0..r.below(20) {
            h.push(b'a' + r.below(26) as u8);
        }
        h.extend_from_slice(b" HTTP/1.1");
        h.extend_from_slice(eol(r));
        for i in 0..r.below(8) {
            h.extend_from_slice(format!("X-H{i}: ").as_bytes());
            for _ in 0..r.below(40) {
                h.push(b' ' + r.below(94) as u8);
            }
            h.extend_from_slice(eol(r));
        }
        h.extend_from_slice(eol(r));
        h
    }

    /// Property: on every prefix of a valid head (with any body behind it)
    /// the scanner agrees with httparse, Pingora's parser: complete at the
    /// same byte, and never complete earlier. Scanning incrementally from the
    /// returned resume point gives the same answer as from the start.
    #[test]
    fn head_end_agrees_with_httparse_on_every_prefix() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let mut msg = random_head(&mut r);
            let head_len = msg.len();
            msg.extend_from_slice(b"body\r\n\r\nmore");
            let mut from = 0;
            for cut in 0..=msg.len() {
                let buf = &msg[..cut];
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let parsed = httparse::Request::new(&mut headers).parse(buf).unwrap();
                let ours = head_end(buf, 0);
                match parsed {
                    httparse::Status::Complete(n) => {
                        assert_eq!(n, head_len);
                        assert_eq!(ours, Ok(n), "{:?}", String::from_utf8_lossy(buf));
                    }
                    httparse::Status::Partial => {
                        assert!(ours.is_err(), "{:?}", String::from_utf8_lossy(buf))
                    }
                }
                let inc = head_end(buf, from);
                assert_eq!(inc.is_ok(), ours.is_ok());
                if let (Ok(a), Ok(b)) = (inc, ours) {
                    assert_eq!(a, b);
                }
                if let Err(next) = inc {
                    assert!(next <= cut);
                    from = next;
                }
            }
        }
    }

    fn limits(ms: u64, max: usize) -> HeadLimits {
        HeadLimits {
            timeout: Duration::from_millis(ms),
            max_bytes: max,
        }
    }

    #[tokio::test]
    async fn reads_a_head_in_pieces_and_keeps_what_follows() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for piece in ["GET / HT", "TP/1.1\r\nHost: a\r", "\n\r\nbody"] {
                client.write_all(piece.as_bytes()).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let head = read_head(&mut server, BytesMut::new(), limits(5000, 1024))
            .await
            .unwrap();
        assert!(head.starts_with(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        drop(writer.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_times_out_from_its_start() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let _writer = tokio::spawn(async move {
            for _ in 0..100 {
                if client.write_all(b"X").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        });
        let start = tokio::time::Instant::now();
        let r = read_head(
            &mut server,
            BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]),
            limits(2000, 1 << 20),
        )
        .await;
        assert_eq!(r.err(), Some(HeadError::Timeout));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(2000) && took < Duration::from_millis(2100),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn an_endless_header_stops_at_the_cap_without_a_bigger_buffer() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let _writer = tokio::spawn(async move {
            let _ = client.write_all(b"GET / HTTP/1.1\r\nX: ").await;
            let chunk = vec![b'a'; 8192];
            for _ in 0..64 {
                if client.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let r = read_head(
            &mut server,
            BytesMut::with_capacity(HEADER_BUFFER),
            limits(5000, 10_000),
        )
        .await;
        assert_eq!(r.err(), Some(HeadError::TooLarge));

        // The buffer never exceeds the cap: a head of exactly the cap passes.
        let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
        exact.resize(10_000 - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let sent = exact.clone();
        tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client
        });
        let head = read_head(&mut server, BytesMut::new(), limits(5000, 10_000))
            .await
            .unwrap();
        assert_eq!(&head[..], &exact[..]);
        assert!(head.capacity() <= 10_000, "{}", head.capacity());
    }

    #[tokio::test]
    async fn a_client_leaving_mid_head_is_closed_not_an_error_response() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        drop(client);
        let r = read_head(&mut server, BytesMut::new(), limits(5000, 1024)).await;
        assert_eq!(r.err(), Some(HeadError::Closed));
    }
}
