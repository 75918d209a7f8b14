//! One send for a small response, without a write buffer per connection.
//!
//! Pingora's HTTP/1 server writes a response's header and its body with
//! separate calls and flushes once the response is complete (also after a
//! header without `Content-Length`, an informational header, each chunk and
//! each piece of an upgraded connection). Unbuffered, each call is its own
//! send; Pingora's L4 write buffer joins them but is allocated for the
//! connection's whole life (1460 bytes by default), idle or not.
//! [`Coalescing`] holds the small pieces of a response in a buffer that the
//! first of them allocates and that is freed as soon as it is sent: an idle
//! connection holds none.
//!
//! Held bytes leave
//! - on every flush, so nothing Pingora flushes (SSE chunks, WebSocket
//!   frames, 1xx headers, the end of every response) waits;
//! - with the next write that does not fit: one vectored send of the held
//!   bytes and the new ones (a piece as large as the buffer is never copied);
//! - before every read: a connection never waits for its peer while holding
//!   bytes the peer may be waiting for. Pingora's proxy polls the client for
//!   a read (to notice it leaving) each time it waits for the upstream, so a
//!   `Content-Length` header or body part that Pingora does not flush goes
//!   out as soon as the proxy waits, not with the next piece;
//! - on shutdown.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The first allocation of the buffer; it grows (up to its limit) only if
/// more small pieces come before a send.
const FIRST_ALLOC: usize = 4096;
/// Slices of one vectored write passed on behind the held bytes (Pingora
/// writes at most three: a chunk's size line, its data and its end).
const MAX_SLICES: usize = 8;

/// A client connection whose small writes are gathered until the next
/// flush, read or larger write; see the module documentation.
pub struct Coalescing {
    inner: Stream,
    /// Bytes accepted but not yet sent; no allocation while empty.
    held: BytesMut,
    /// Pieces that would take `held` past this are not copied.
    limit: usize,
}

impl std::fmt::Debug for Coalescing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescing")
            .field("held", &self.held.len())
            .field("limit", &self.limit)
            .field("inner", &self.inner)
            .finish()
    }
}

impl Coalescing {
    /// Gathers writes of up to `limit` bytes in all (at least 1).
    pub fn new(inner: Stream, limit: usize) -> Self {
        Coalescing {
            inner,
            held: BytesMut::new(),
            limit: limit.max(1),
        }
    }

    /// Bytes of buffer this connection holds now (0 between responses).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.held.capacity()
    }

    fn hold(&mut self, bufs: &[IoSlice<'_>]) {
        if self.held.capacity() == 0 {
            self.held = BytesMut::with_capacity(self.limit.min(FIRST_ALLOC));
        }
        for b in bufs {
            self.held.extend_from_slice(b);
        }
    }

    /// Marks `n` held bytes as sent; frees the buffer once all are.
    fn sent(&mut self, n: usize) {
        self.held.advance(n);
        if self.held.is_empty() {
            self.held = BytesMut::new();
        }
    }

    /// Sends everything held.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Accepts `bufs` (`total` bytes, not empty): held if they fit, else
    /// sent behind the held bytes in one vectored write.
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        total: usize,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            if self.held.len() + total <= self.limit {
                self.hold(bufs);
                return Poll::Ready(Ok(total));
            }
            if self.held.is_empty() {
                return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES + 1];
            slices[0] = IoSlice::new(&self.held);
            let count = bufs.len().min(MAX_SLICES);
            slices[1..=count].copy_from_slice(&bufs[..count]);
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices[..=count]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let held = self.held.len();
            self.sent(n.min(held));
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
            // Only (part of) the held bytes went: try again, new bytes not
            // taken yet.
        }
    }
}

impl AsyncRead for Coalescing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Pending: the socket is full and wakes this task when it is not;
        // an error shows again on the next write or flush.
        let _ = self.poll_send_held(cx);
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalescing {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut()
            .poll_write_slices(cx, &[IoSlice::new(buf)], buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let total = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_write_slices(cx, bufs, total)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Coalescing {
    async fn shutdown(&mut self) {
        // Held bytes first; an error means the peer left, as below.
        let _ = self.flush().await;
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for Coalescing {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Coalescing {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Coalescing {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Coalescing {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Coalescing {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Coalescing {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
