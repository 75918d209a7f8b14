//! Idle HTTP/1 connections wait outside Pingora's request state.
//!
//! Pingora's proxy waits for the next request on a keep-alive connection
//! inside its per-request future (several KiB, allocated for the whole
//! request) and behind the listener's L4 read buffer. With 10,000 idle
//! client connections that is most of the process's memory. [`ParkIdle`]
//! wraps the proxy as the listening service's application: between requests
//! a connection is only its socket and a read of up to 512 bytes into a
//! buffer of its task; the proxy's state is created when the first bytes of
//! a request arrive, and those bytes are handed to it as the start of the
//! request (Pingora's "pipelined prefix"), so no byte is read twice. A
//! request that is already there when the previous one ends is read straight
//! into its header buffer; a longer one that had to wait costs one more read.
//! The measured figures are in the README ("Performance", idle
//! connections): 10,000 idle keep-alive connections take 59.1 MB of RSS in
//! the gateway against 209 MB in bare Pingora with the same settings.
//!
//! Mirrors pingora-core 0.9.1's own loop: `impl<T: HttpServerApp> ServerApp
//! for T`, `process_new`, in `pingora-core/src/apps/mod.rs` (re-check it when
//! Pingora is upgraded; the test `pingora_parses_a_pipelined_prefix_without_reading`
//! fails if the prefix hand-over it relies on changes).
//! Behaviour kept from Pingora's own loop (`ServerApp for HttpServerApp`):
//! a keep-alive limit for the wait (`server.keepalive_timeout_seconds`,
//! 60 s by default), the keep-alive settings carried from
//! one request to the next, and idle connections closed when the service
//! shuts down (`cleanup`), here after a quiet second ([`DRAIN_IDLE`]) rather
//! than at once. On the HTTPS listener the TLS handshake comes
//! first ([`crate::tls::Acceptor`]): HTTP/1.1 over TLS is then parked the
//! same way (its TLS stream holds no record buffer while it waits, see
//! [`crate::tls::record`]), HTTP/2 is handed to Pingora's HTTP/2 server (which keeps its
//! own per-stream state). h2c and custom protocols go to the proxy untouched
//! (the gateway enables neither).
//!
//! The whole request head is read here before it is handed over (see
//! [`read_head`]): it must end (blank line) within
//! `server.request_header_timeout_seconds` of its first byte (else `408` and
//! close) and within `server.max_request_header_bytes` (else `431` and close);
//! the buffer starts at 4 KiB and grows, by copying, only up to that cap.
//! Pingora then parses the complete head from its prefix without reading
//! again. Each accepted connection first takes a place under the connection
//! caps ([`crate::downstream::ConnLimits`]); a head Pingora refuses while
//! parsing is counted (see [`crate::downstream`]).
//!
//! An HTTP/1 connection (plain or over TLS) is handed to Pingora inside
//! [`Coalescing`] (`server.write_buffer_bytes`, 4 KiB by default): a
//! response's header and body leave in one send, with a buffer that exists
//! only while the response is being written, not between requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::FutureExt;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::Stream;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::downstream::{ConnLimits, Counters, REACHED_PROXY};
use crate::tls::Acceptor;
use pingora_core::protocols::ALPN;

mod coalesce;
mod head;
pub use coalesce::Coalescing;
pub use head::{HeadError, head_end, read_head};

/// A connection that has to wait reads the first bytes of its next request
/// into a buffer of this size, part of its task for as long as it lives.
const FIRST_READ: usize = 512;
/// The header buffer handed to Pingora (its own initial size).
pub(crate) const HEADER_BUFFER: usize = 4096;
/// Shutdown waiters are spread over this many queues so that worker threads
/// rarely touch the same lock.
const SHARDS: usize = 16;
/// Once the service shuts down, how long a parked connection still waits
/// for a request before it is closed. Closing at once races a client that
/// is sending its next request on the kept-alive connection (or the first
/// one on a connection accepted just before): it would see a reset instead
/// of an answer. The request that arrives in time is answered with
/// `Connection: close` (Pingora turns keep-alive off once shut down).
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// After a `408`/`431`, how long the rest of what the client sends is read
/// and dropped before the socket closes (so that the close does not reset
/// the connection before the client read the answer), and how much of it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Limits on one request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// The whole head must arrive within this, from its first byte.
    pub timeout: Duration,
    /// The head may take at most this many bytes.
    pub max_bytes: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            timeout: crate::config::HEADER_TIMEOUT.duration(),
            max_bytes: crate::config::MAX_HEADER_BYTES,
        }
    }
}

/// A listening application that parks idle HTTP/1 connections; see the
/// module documentation.
pub struct ParkIdle<A> {
    inner: Arc<A>,
    keepalive: Duration,
    head: HeadLimits,
    limits: Option<Arc<ConnLimits>>,
    counters: Option<Arc<Counters>>,
    /// Streams accepted on this local port are TLS: handshake first.
    tls: Option<(u16, Arc<Acceptor>)>,
    /// HTTP/1 writes are gathered up to this many bytes ([`Coalescing`]);
    /// 0: each write is sent on its own.
    write_buffer: usize,
    shutdown: Shutdown,
}

impl<A> ParkIdle<A> {
    /// `keepalive`: how long a connection may wait for its next request.
    pub fn new(inner: A, keepalive: Duration) -> Self {
        ParkIdle {
            inner: Arc::new(inner),
            keepalive: keepalive.max(Duration::from_secs(1)),
            head: HeadLimits::default(),
            limits: None,
            counters: None,
            tls: None,
            write_buffer: 0,
            shutdown: Shutdown::default(),
        }
    }

    /// Gathers the small writes of each HTTP/1 response into one send, in
    /// a buffer of up to `bytes` that exists only while a response is
    /// being written ([`Coalescing`]). 0: no gathering.
    pub fn with_write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes;
        self
    }

    /// Limits on each request head.
    pub fn with_head_limits(mut self, head: HeadLimits) -> Self {
        self.head = HeadLimits {
            timeout: head.timeout.max(Duration::from_millis(1)),
            max_bytes: head.max_bytes.max(1),
        };
        self
    }

    /// Streams accepted on local port `port` (the HTTPS listener) start
    /// with a TLS handshake by `acceptor`; HTTP/1.1 over it is parked like
    /// plain HTTP, HTTP/2 (ALPN `h2`) goes to Pingora's HTTP/2 server.
    pub fn with_tls(mut self, port: u16, acceptor: Arc<Acceptor>) -> Self {
        self.tls = Some((port, acceptor));
        self
    }

    /// Connection caps; their counters also count refused heads.
    pub fn with_limits(mut self, limits: Arc<ConnLimits>) -> Self {
        self.counters = Some(limits.counters().clone());
        self.limits = Some(limits);
        self
    }
}

#[async_trait]
impl<A> ServerApp for ParkIdle<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.inner.server_options();
        if stream.get_ssl_digest().is_some() || options.is_some_and(|o| o.h2c || o.force_custom) {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let _permit = match &self.limits {
            Some(limits) => {
                let ip = (limits.per_ip_enabled())
                    .then(|| {
                        stream
                            .get_socket_digest()
                            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
                    })
                    .flatten();
                Some(limits.admit(ip).ok()?)
            }
            None => None,
        };
        let mut stream = stream;
        if let Some((port, acceptor)) = &self.tls
            && local_port(&stream) == Some(*port)
        {
            stream = Box::pin(acceptor.accept(stream)).await?;
            if stream.selected_alpn_proto() == Some(ALPN::H2) {
                return ServerApp::process_new(&self.inner, stream, shutdown).await;
            }
        }
        if self.write_buffer > 0 {
            stream = Box::new(Coalescing::new(stream, self.write_buffer));
        }
        let reuse_limit = options.and_then(|o| o.keepalive_request_limit);
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            let mut first = self
                .shutdown
                .wait_for_request(&mut stream, self.keepalive)
                .await?;
            if !head_end(&first, 0).is_ok_and(|end| end <= self.head.max_bytes) {
                // Rare: the head came in pieces (or is too long). Boxed so
                // that an idle connection's task does not carry its state.
                first = match Box::pin(read_head(&mut stream, first, self.head)).await {
                    Ok(head) => head,
                    Err(e) => {
                        Box::pin(self.refuse(stream, e)).await;
                        return None;
                    }
                };
            }
            let mut session = ServerSession::new_http1(stream);
            match carried.take() {
                // Pipelining stays off in this gateway (Pingora's default),
                // so the carried settings never hold a prefix of their own;
                // turning it on would need this loop to skip the wait when
                // they do. The wait uses the configured keep-alive, which
                // the proxy never changes per request.
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    let keepalive = (!*shutdown.borrow()).then_some(self.keepalive.as_secs());
                    session.set_keepalive(keepalive);
                    session.set_keepalive_reuses_remaining(reuse_limit);
                }
            }
            session.set_pipelined_prefix(first);
            // The proxy's `new_ctx` marks the task-local: a complete head
            // that never reached it was refused by Pingora's parser.
            let handled = REACHED_PROXY.scope(
                std::cell::Cell::new(false),
                self.inner.process_new_http(session, shutdown),
            );
            let mut handled = std::pin::pin!(handled);
            let reused = handled.as_mut().await;
            let Some(reused) = reused else {
                let reached = handled.as_mut().take_value().is_some_and(|c| c.get());
                if !reached
                    && !*shutdown.borrow()
                    && !self.shutdown.fired.load(Ordering::Relaxed)
                    && let Some(c) = &self.counters
                {
                    c.bad_request.inc();
                }
                return None;
            };
            (stream, carried) = reused.consume();
        }
    }

    async fn cleanup(&self) {
        self.shutdown.fire();
        ServerApp::cleanup(&*self.inner).await;
    }
}

/// The local port a stream was accepted on.
fn local_port(stream: &Stream) -> Option<u16> {
    let digest = stream.get_socket_digest()?;
    Some(digest.local_addr()?.as_inet()?.port())
}

impl<A> ParkIdle<A> {
    /// Answers a head that broke a limit (or counts a client that left in
    /// the middle of one) and closes the connection.
    async fn refuse(&self, mut stream: Stream, e: HeadError) {
        let (counter, status, reason, msg) = match e {
            HeadError::Closed => {
                if let Some(c) = &self.counters {
                    c.incomplete_header.inc();
                }
                return;
            }
            HeadError::Timeout => (
                self.counters.as_ref().map(|c| &c.header_timeout),
                408,
                "Request Timeout",
                "request header timeout",
            ),
            HeadError::TooLarge => (
                self.counters.as_ref().map(|c| &c.header_too_large),
                431,
                "Request Header Fields Too Large",
                "request header too large",
            ),
        };
        if let Some(c) = counter {
            c.inc();
        }
        refuse_and_close(&mut stream, status, reason, msg).await;
    }
}

/// Writes a minimal JSON error response (the gateway's error shape), closes
/// the write side and reads what the client still sends for a while, so
/// that the client gets the answer instead of a reset.
async fn refuse_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    reason: &str,
    msg: &str,
) {
    let body = format!(r#"{{"error":"{msg}","request_id":""}}"#);
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let deadline = tokio::time::Instant::now() + LINGER;
    let sent = tokio::time::timeout_at(deadline, async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let mut sink = vec![0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Wakes parked connections when the service shuts down.
#[derive(Default)]
struct Shutdown {
    fired: AtomicBool,
    queues: [Notify; SHARDS],
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl Shutdown {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        for queue in &self.queues {
            queue.notify_waiters();
        }
    }

    /// Waits for the first bytes of the next request. `None`: the client
    /// closed, the keep-alive limit passed, or the service is shutting down
    /// and no request came within [`DRAIN_IDLE`].
    async fn wait_for_request(&self, stream: &mut Stream, limit: Duration) -> Option<BytesMut> {
        // Under load the next request is often here already: read it straight
        // into the header buffer, without arming a timer or a shutdown waiter
        // (a read that is not ready costs no system call: the reactor knows
        // the socket has nothing). The buffer is not kept while waiting.
        let mut buf = BytesMut::with_capacity(HEADER_BUFFER);
        match stream.read_buf(&mut buf).now_or_never() {
            Some(Ok(n)) if n > 0 => return Some(buf),
            Some(_) => return None,
            None => drop(buf),
        }
        let mut first = [0u8; FIRST_READ];
        let mut read = std::pin::pin!(stream.read(&mut first));
        let read = if self.fired.load(Ordering::Acquire) {
            pingora_timeout::timeout(limit.min(DRAIN_IDLE), read).await
        } else {
            let notified = self.queues[SHARD.with(|s| *s)].notified();
            tokio::select! {
                biased;
                read = pingora_timeout::timeout(limit, &mut read) => read,
                // Shutting down: a request already on its way (or a new
                // connection's first one) is still served, with
                // `Connection: close`; a connection that stays quiet closes.
                _ = notified => pingora_timeout::timeout(DRAIN_IDLE, read).await,
            }
        };
        let n = match read {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        let mut buf = BytesMut::with_capacity(HEADER_BUFFER.max(n));
        buf.extend_from_slice(&first[..n]);
        if n == FIRST_READ {
            // More may already be here: take it now rather than one parse later.
            let _ = stream.read_buf(&mut buf).now_or_never();
        }
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this module relies on in pingora-core 0.9.1: a session given a
    /// pipelined prefix that holds a complete head parses it without
    /// reading the socket (the client here sends nothing and stays open, so
    /// a read would hang until the timeout).
    #[tokio::test]
    async fn pingora_parses_a_pipelined_prefix_without_reading() {
        let (client, server) = tokio::io::duplex(1024);
        let mut session = ServerSession::new_http1(Box::new(server));
        session.set_pipelined_prefix(BytesMut::from(
            &b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        ));
        let read = tokio::time::timeout(Duration::from_secs(2), session.read_request()).await;
        assert!(
            matches!(read, Ok(Ok(true))),
            "the prefix was not parsed on its own: {read:?}"
        );
        assert_eq!(session.req_header().uri.path(), "/x");
        assert_eq!(session.req_header().headers["host"], "a");
        drop(client);
    }

    #[tokio::test]
    async fn refusals_are_json_and_close() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let t = tokio::spawn(async move {
            refuse_and_close(
                &mut server,
                431,
                "Request Header Fields Too Large",
                "request header too large",
            )
            .await;
        });
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        drop(client);
        t.await.unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(out.contains("Connection: close\r\n"));
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "request header too large");
        assert_eq!(v["request_id"], "");
    }
}
