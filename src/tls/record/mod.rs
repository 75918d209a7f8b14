//! Server-side TLS over an async stream with rustls's unbuffered API: the
//! connection owns its record buffers, so that a connection waiting for its
//! next request holds none.
//!
//! rustls's buffered `ServerConnection` (what tokio-rustls drives) keeps a
//! read buffer of at least 4 KiB from its first read on, by design, with no
//! way to release it; with 10,000 idle keep-alive connections that alone is
//! 44 MB. Here the buffers are plain `Vec`s of this type:
//!
//! - a read that finds nothing buffered goes into a buffer on the stack
//!   (one TLS record's worth); complete records are decrypted in place there
//!   and only the tail of a record cut in two is copied to `incoming`;
//! - encrypted output collects in `outgoing` until the socket takes it;
//! - plaintext the reader's buffer had no room for waits in `plain`.
//!
//! Each is released (capacity and all) when a read finds the socket empty
//! and the buffer drained: the point where a connection starts to wait.
//! A busy connection keeps them between records, so large bodies do not
//! reallocate per record.
//!
//! Behaviour kept from tokio-rustls: the handshake flushes its last flight
//! (session tickets included) before it completes, and a failed one sends
//! rustls's alert on a best-effort basis; errors are `io::Error`s of kind
//! `InvalidData` carrying the `rustls::Error`, and a peer that closes
//! without `close_notify` ends the stream with `UnexpectedEof`; a
//! `close_notify` ends it cleanly. Shutdown sends `close_notify` and shuts
//! the socket's write side.

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError, UnbufferedStatus};
use std::io;
use std::mem::{MaybeUninit, take};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod write;

/// The largest TLS record on the wire: 16 KiB of payload, the 2 KiB of
/// expansion TLS 1.2 allows, the 5-byte header.
const MAX_RECORD: usize = 16384 + 2048 + 5;
/// Handshake messages may span records (rustls caps one at 64 KiB): the
/// most ciphertext buffered before a record completes.
const MAX_INCOMING: usize = 0xffff + MAX_RECORD;
/// Plaintext encrypted per write call (four full records), and the
/// unwritten ciphertext a write may queue behind.
const MAX_WRITE: usize = 4 * 16384;
/// Plaintext gathered from several slices of a vectored write into one
/// record (on the stack).
const GATHER: usize = 16384;
/// Ciphertext per record beyond its payload, a generous estimate (header,
/// nonce, tag, content type); rustls says when it needs more.
const RECORD_OVERHEAD: usize = 64;

/// What processing the buffered records led to.
enum Drive {
    /// No complete record left; the connection wants more bytes.
    NeedData,
    /// The reader's buffer is full (records may be left).
    Filled,
    /// The peer sent `close_notify`: the end of its data.
    PeerClosed,
}

/// A server-side TLS stream over `S`; see the module documentation.
pub struct ServerTls<S> {
    io: S,
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed: the start of a record
    /// (or of a handshake message spanning records).
    incoming: Vec<u8>,
    /// Ciphertext to send, from `out_pos` on.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// Decrypted bytes not yet read, from `plain_pos` on.
    plain: Vec<u8>,
    plain_pos: usize,
    /// The peer's data ended with `close_notify`.
    read_closed: bool,
    /// `close_notify` is queued (or the connection failed: nothing more is
    /// sent but what is queued).
    write_closed: bool,
}

impl<S> std::fmt::Debug for ServerTls<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("incoming", &self.incoming.len())
            .field("outgoing", &(self.outgoing.len() - self.out_pos))
            .field("plain", &(self.plain.len() - self.plain_pos))
            .finish()
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerTls<S> {
    /// Runs the handshake over `io` with `config`.
    pub async fn accept(io: S, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let mut tls = ServerTls {
            io,
            conn: UnbufferedServerConnection::new(config).map_err(invalid)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            out_pos: 0,
            plain: Vec::new(),
            plain_pos: 0,
            read_closed: false,
            write_closed: false,
        };
        std::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
        Ok(tls)
    }

    /// The rustls connection (version, cipher suite, ALPN, SNI).
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Heap bytes held by the record buffers (0 while idle).
    pub fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plain.capacity()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut incoming = take(&mut self.incoming);
            let done = self.absorb_vec(&mut incoming, None);
            self.incoming = incoming;
            match done {
                Err(e) => {
                    let _ = self.poll_flush_out(cx);
                    return Poll::Ready(Err(e));
                }
                Ok(Drive::PeerClosed) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tls handshake eof",
                    )));
                }
                Ok(_) if !self.conn.is_handshaking() => {
                    // The last flight (the session tickets) is sent now if
                    // the socket takes it, else before the next read or
                    // with the next write: the client need not read it
                    // before it sends a request.
                    if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(_) => {}
            }
            ready!(self.poll_flush_out(cx))?;
            if self.incoming.len() >= MAX_INCOMING {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS handshake message too large",
                )));
            }
            if ready!(self.poll_read_incoming(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tls handshake eof",
                )));
            }
        }
    }

    /// Reads more ciphertext onto the end of `incoming`.
    fn poll_read_incoming(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let want = MAX_RECORD.min(MAX_INCOMING.saturating_sub(self.incoming.len()));
        self.incoming.reserve(want);
        let spare = self.incoming.spare_capacity_mut();
        let mut rb = ReadBuf::uninit(&mut spare[..want]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        // SAFETY: `ReadBuf` initialised (filled) the first `n` bytes of the
        // spare capacity.
        unsafe { self.incoming.set_len(self.incoming.len() + n) };
        Poll::Ready(Ok(n))
    }

    /// Processes the records at the start of `buf`, drops what rustls is
    /// done with from its front.
    fn absorb_vec(
        &mut self,
        buf: &mut Vec<u8>,
        dst: Option<&mut ReadBuf<'_>>,
    ) -> io::Result<Drive> {
        let (used, done) = self.absorb(buf, dst);
        buf.drain(..used);
        done
    }

    /// Processes the records in `data`: handshake messages, alerts, and
    /// application data into `dst` (the rest of a record that does not fit
    /// into `plain`). Returns how many bytes from the front of `data` are
    /// done with; the rest must be handed in again, at the front, with more
    /// after it.
    fn absorb(
        &mut self,
        data: &mut [u8],
        mut dst: Option<&mut ReadBuf<'_>>,
    ) -> (usize, io::Result<Drive>) {
        let mut used = 0;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut data[used..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    used += discard;
                    self.fail(&mut data[used..]);
                    return (used, Err(invalid(e)));
                }
            };
            let done = match state {
                ConnectionState::ReadTraffic(mut records) => loop {
                    if dst.as_ref().is_some_and(|d| d.remaining() == 0) {
                        break Some(Drive::Filled);
                    }
                    let Some(record) = records.next_record() else {
                        break None;
                    };
                    let payload = match record {
                        Ok(record) => record.payload,
                        Err(e) => {
                            drop(records);
                            used += discard;
                            self.fail(&mut data[used..]);
                            return (used, Err(invalid(e)));
                        }
                    };
                    let n = dst.as_ref().map_or(0, |d| d.remaining().min(payload.len()));
                    if let Some(d) = dst.as_mut() {
                        d.put_slice(&payload[..n]);
                    }
                    self.plain.extend_from_slice(&payload[n..]);
                },
                ConnectionState::EncodeTlsData(msg) => {
                    encode_message(&mut self.outgoing, msg);
                    None
                }
                // Queued in `outgoing`, which goes out before the next read
                // and with the next write.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    None
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(Drive::PeerClosed),
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => {
                    Some(Drive::NeedData)
                }
                // Early data is off (the config's default); anything new is
                // refused rather than guessed at.
                _ => {
                    used += discard;
                    return (
                        used,
                        Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "unexpected TLS state",
                        )),
                    );
                }
            };
            used += discard;
            if let Some(done) = done {
                return (used, Ok(done));
            }
        }
    }

    /// After an error: queues the alert rustls prepared (if any); nothing
    /// else is sent. Called once more, rustls hands the alert out first;
    /// it must not be called again after that (it would process the input
    /// that failed a second time).
    fn fail(&mut self, rest: &mut [u8]) {
        self.write_closed = true;
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(rest);
        if let Ok(ConnectionState::EncodeTlsData(msg)) = state {
            encode_message(&mut self.outgoing, msg);
        }
    }

    /// Writes `outgoing` to the socket.
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.outgoing.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Copies buffered plaintext into `buf`; `false`: there was none.
    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.plain_pos == self.plain.len() {
            return false;
        }
        let n = buf.remaining().min(self.plain.len() - self.plain_pos);
        buf.put_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain.clear();
            self.plain_pos = 0;
        }
        true
    }

    /// The connection waits: gives back the buffers that hold nothing.
    fn release(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        if self.out_pos == self.outgoing.len() {
            self.outgoing = Vec::new();
            self.out_pos = 0;
        }
        if self.plain_pos == self.plain.len() {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
    }
}

/// Appends what `f` writes to `out`; `f` gets a buffer of `estimate` bytes
/// and says how much it wrote, or how much it needs (`Err(Some)`), or that
/// it will write nothing (`Err(None)`).
fn encode_into_sized(
    out: &mut Vec<u8>,
    estimate: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) {
    let start = out.len();
    let mut size = estimate;
    for _ in 0..3 {
        out.resize(start + size, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return;
            }
            Err(Some(need)) => size = need,
            Err(None) => break,
        }
    }
    out.truncate(start);
}

/// Appends a handshake message (or alert) rustls asks to send to `out`.
fn encode_message<Data>(out: &mut Vec<u8>, mut msg: rustls::unbuffered::EncodeTlsData<'_, Data>) {
    encode_into_sized(out, 1024, |buf| match msg.encode(buf) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Err(Some(required_size))
        }
        Err(_) => Err(None),
    });
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.take_plain(buf) || this.read_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let mut incoming = take(&mut this.incoming);
            let done = this.absorb_vec(&mut incoming, Some(&mut *buf));
            this.incoming = incoming;
            let done = this.after_absorb(cx, done, buf.filled().len() > before)?;
            if let Some(ready) = done {
                return ready;
            }
            if !this.incoming.is_empty() {
                if this.incoming.len() >= MAX_INCOMING {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS message too large",
                    )));
                }
                // A record cut in two: its rest goes after it.
                if ready!(this.poll_read_incoming(cx))? == 0 {
                    return Poll::Ready(Err(eof()));
                }
                continue;
            }
            // Nothing buffered: read onto the stack, keep only a cut record.
            let mut stack = [MaybeUninit::<u8>::uninit(); MAX_RECORD];
            let mut rb = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    this.release();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let data = rb.filled_mut();
            if data.is_empty() {
                return Poll::Ready(Err(eof()));
            }
            let (used, done) = this.absorb(data, Some(&mut *buf));
            this.incoming.extend_from_slice(&data[used..]);
            if let Some(ready) = this.after_absorb(cx, done, buf.filled().len() > before)? {
                return ready;
            }
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed connection without sending TLS close_notify",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerTls<S> {
    /// After records were processed for a read: sends what rustls queued
    /// (a key update's answer), and says whether the read is answered.
    #[allow(clippy::type_complexity)]
    fn after_absorb(
        &mut self,
        cx: &mut Context<'_>,
        done: io::Result<Drive>,
        filled: bool,
    ) -> Result<Option<Poll<io::Result<()>>>, io::Error> {
        if self.out_pos < self.outgoing.len()
            && let Poll::Ready(Err(e)) = self.poll_flush_out(cx)
            && done.is_ok()
        {
            return Err(e);
        }
        let done = done?;
        if matches!(done, Drive::PeerClosed) {
            // After the data before it, if any: the end of the stream.
            self.read_closed = true;
        }
        if filled || self.read_closed {
            return Ok(Some(Poll::Ready(Ok(()))));
        }
        Ok(None)
    }
}
