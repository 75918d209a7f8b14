//! The write side of [`ServerTls`]: application data encrypted into
//! `outgoing`, vectored writes, `close_notify`.

use super::{
    GATHER, MAX_WRITE, RECORD_OVERHEAD, ServerTls, encode_into_sized, encode_message, invalid,
};
use rustls::server::ServerConnectionData;
use rustls::unbuffered::{
    ConnectionState, EncryptError, InsufficientSizeError, UnbufferedStatus, WriteTraffic,
};
use std::io;
use std::mem::take;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> ServerTls<S> {
    /// Runs `f` (an encrypting or encoding step of rustls) on the state
    /// that allows writing application data, handling whatever rustls has
    /// to do first.
    fn with_write_traffic(
        &mut self,
        mut f: impl FnMut(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut incoming = take(&mut self.incoming);
        let done = self.write_traffic_on(&mut incoming, &mut f);
        self.incoming = incoming;
        done
    }

    fn write_traffic_on(
        &mut self,
        incoming: &mut Vec<u8>,
        f: &mut impl FnMut(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut incoming[..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    incoming.drain(..discard);
                    self.fail(&mut incoming[..]);
                    return Err(invalid(e));
                }
            };
            let result = match state {
                ConnectionState::WriteTraffic(mut w) => Some(f(&mut w, &mut self.outgoing)),
                ConnectionState::ReadTraffic(mut records) => {
                    // Data the reader has not asked for yet: kept for it.
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(r) => self.plain.extend_from_slice(r.payload),
                            Err(e) => {
                                drop(records);
                                incoming.drain(..discard);
                                self.fail(&mut incoming[..]);
                                return Err(invalid(e));
                            }
                        }
                    }
                    None
                }
                ConnectionState::EncodeTlsData(msg) => {
                    encode_message(&mut self.outgoing, msg);
                    None
                }
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.read_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Err(io::ErrorKind::BrokenPipe.into())),
                _ => Some(Err(io::ErrorKind::NotConnected.into())),
            };
            incoming.drain(..discard);
            if let Some(result) = result {
                return result;
            }
        }
    }

    /// Encrypts `data` (one or more records) onto `outgoing`.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        self.with_write_traffic(|w, out| {
            let estimate = data.len() + (data.len() / 16384 + 1) * RECORD_OVERHEAD;
            let mut failed = None;
            encode_into_sized(out, estimate, |buf| match w.encrypt(data, buf) {
                Ok(n) => Ok(n),
                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    Err(Some(required_size))
                }
                Err(e) => {
                    failed = Some(io::Error::other(e.to_string()));
                    Err(None)
                }
            });
            failed.map_or(Ok(()), Err)
        })
    }

    /// Queues ciphertext for `data` and tries to send it; how much of
    /// `data` was taken.
    fn poll_write_plain(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if self.outgoing.len() - self.out_pos >= MAX_WRITE {
            ready!(self.poll_flush_out(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(MAX_WRITE);
        self.encrypt(&data[..n])?;
        // The bytes are taken either way; a socket that is full now is
        // waited for by the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plain(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        let (Some(first), Some(_)) = (parts.next(), parts.next()) else {
            // One slice (or none): no copy.
            let one = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return this.poll_write_plain(cx, one);
        };
        if total > GATHER {
            // Large: the first slice alone (callers loop over the rest).
            return this.poll_write_plain(cx, first);
        }
        // Small pieces (a chunk's size line, data, CRLF): one record.
        let mut gather = [0u8; GATHER];
        let mut n = 0;
        for b in bufs {
            gather[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        }
        this.poll_write_plain(cx, &gather[..n])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            let queued = this.with_write_traffic(|w, out| {
                encode_into_sized(out, 64, |buf| match w.queue_close_notify(buf) {
                    Ok(n) => Ok(n),
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) => Err(Some(required_size)),
                    Err(_) => Err(None),
                });
                Ok(())
            });
            // A connection that cannot say goodbye still closes.
            drop(queued);
        }
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
