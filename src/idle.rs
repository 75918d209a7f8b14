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
//! Measured: with no L4 buffers an idle connection holds ≈4.7 KB of RSS
//! (Pingora's tokio task and stream ≈3.3 KB of it) instead of ≈22 KB.
//!
//! Behaviour kept from Pingora's own loop (`ServerApp for HttpServerApp`):
//! a keep-alive limit for the wait (`server.keepalive_timeout_seconds`,
//! 60 s by default), the keep-alive settings carried from
//! one request to the next, and idle connections closed when the service
//! shuts down (`cleanup`). HTTP/2, TLS and custom protocols are handed to the
//! proxy untouched (the gateway enables none of them).

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
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// How long a connection may sit idle between requests, unless configured
/// (Pingora's default).
pub const KEEPALIVE_SECONDS: u64 = 60;
/// A connection that has to wait reads the first bytes of its next request
/// into a buffer of this size, part of its task for as long as it lives.
const FIRST_READ: usize = 512;
/// The header buffer handed to Pingora (its own initial size).
const HEADER_BUFFER: usize = 4096;
/// Shutdown waiters are spread over this many queues so that worker threads
/// rarely touch the same lock.
const SHARDS: usize = 16;

/// A listening application that parks idle HTTP/1 connections; see the
/// module documentation.
pub struct ParkIdle<A> {
    inner: Arc<A>,
    keepalive: Duration,
    shutdown: Shutdown,
}

impl<A> ParkIdle<A> {
    /// `keepalive`: how long a connection may wait for its next request.
    pub fn new(inner: A, keepalive: Duration) -> Self {
        ParkIdle {
            inner: Arc::new(inner),
            keepalive: keepalive.max(Duration::from_secs(1)),
            shutdown: Shutdown::default(),
        }
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
        let plain_h1 = stream.get_ssl_digest().is_none()
            && stream.selected_alpn_proto().is_none()
            && !options.is_some_and(|o| o.h2c || o.force_custom);
        if !plain_h1 {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let reuse_limit = options.and_then(|o| o.keepalive_request_limit);
        let mut stream = stream;
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            let first = self
                .shutdown
                .wait_for_request(&mut stream, self.keepalive)
                .await?;
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
            let reused = self.inner.process_new_http(session, shutdown).await?;
            (stream, carried) = reused.consume();
        }
    }

    async fn cleanup(&self) {
        self.shutdown.fire();
        ServerApp::cleanup(&*self.inner).await;
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
    /// closed, the keep-alive limit passed, or the service is shutting down.
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
        let read = pingora_timeout::timeout(limit, stream.read(&mut first));
        let notified = self.queues[SHARD.with(|s| *s)].notified();
        let n = tokio::select! {
            biased;
            read = read => match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            },
            _ = notified => return None,
            _ = std::future::ready(()), if self.fired.load(Ordering::Acquire) => return None,
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
