//! A fault-injecting HTTP/1.1 upstream on raw tokio sockets. Every request
//! picks its behaviour by its path's first segment; `n=NONCE` in the query
//! names the request, and a normal answer's body is `nonce=NONCE`, so a
//! client can tell whether the response it got was produced for it.
//!
//! | path | behaviour |
//! |---|---|
//! | `/ok` | 200, body `nonce=N`, echoes `X-Request-Id` |
//! | `/stray?d=MS` | normal answer, then `MS` ms later a second, unrequested response |
//! | `/straybytes?d=MS` | normal answer, then `MS` ms later garbage bytes |
//! | `/early` | answers on the request head, before reading the body; then answers the body as a request (stray) |
//! | `/head?d=MS` | a HEAD answered with `Content-Length` and then (after `MS` ms) a body |
//! | `/garbage` | normal answer with garbage in the same write |
//! | `/cut` | `Content-Length: 100`, 10 bytes, close |
//! | `/up101` | `101 Switching Protocols` to any request |
//! | `/endless1xx?d=MS` | `102 Processing` every `MS` ms, never a final response |
//! | `/dupcl` | two identical `Content-Length` headers |
//! | `/self` | `201` with `Location`, `Content-Location`, `Refresh` pointing at this server |
//! | `/ka` | `Keep-Alive: timeout=1` (the server closes idle connections after [`Faulty::idle_close`]) |
//! | `/secret` | a malformed response head carrying a `Set-Cookie` and a token |
//! | `/bighead` | a 900 KB malformed response head |
//! | `/wrongid` | a normal answer with another `X-Request-Id` |
//! | `/closeafter?us=US` | normal answer; the connection is closed when idle for `US` µs (a stale keep-alive race) |
//! | `/crash` | reads the request, closes without answering |
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SECRET_COOKIE: &str = "sessionid=S3CR3T-COOKIE-VALUE-7f1c";
pub const SECRET_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.LEAKED-TOKEN.sig";

/// What the server saw.
#[derive(Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Requests read (complete heads).
    pub requests: AtomicU64,
    /// Stray responses / bytes written.
    pub strays: AtomicU64,
}

pub struct Faulty {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Server-wide settings.
#[derive(Clone, Copy)]
pub struct Options {
    /// Idle keep-alive connections are closed after this long.
    pub idle_close: Duration,
    /// Answers carry the `X-Request-Id` of their request.
    pub echo: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_close: Duration::from_secs(30),
            echo: true,
        }
    }
}

impl Faulty {
    pub async fn start() -> Faulty {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, addr, st, opts).await;
                });
            }
        });
        Faulty { addr, stats, task }
    }

    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    request_id: String,
    body_len: usize,
}

impl Request {
    fn param(&self, k: &str) -> Option<&str> {
        self.query.split('&').find_map(|p| {
            let (a, b) = p.split_once('=')?;
            (a == k).then_some(b)
        })
    }
    fn nonce(&self) -> &str {
        self.param("n").unwrap_or("")
    }
    fn num(&self, k: &str, default: u64) -> u64 {
        self.param(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// Reads one request head from `buf`+socket; `None` on EOF or idle timeout.
async fn read_head(
    sock: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> Option<Request> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let first = lines.next()?;
            let mut parts = first.split(' ');
            let method = parts.next()?.to_string();
            let target = parts.next()?.to_string();
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_string(), q.to_string()),
                None => (target, String::new()),
            };
            let mut request_id = String::new();
            let mut body_len = 0;
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "x-request-id" => request_id = v.trim().to_string(),
                        "content-length" => body_len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            return Some(Request {
                method,
                path,
                query,
                request_id,
                body_len,
            });
        }
        let mut chunk = [0u8; 8192];
        let n = match tokio::time::timeout(idle, sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_body(
    sock: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
    len: usize,
) -> Option<Vec<u8>> {
    while buf.len() < len {
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf.drain(..len).collect())
}

/// `X-Request-Id: <the request's>` unless the server does not echo.
fn id_line(req: &Request) -> String {
    if req.request_id.is_empty() {
        String::new()
    } else {
        format!("X-Request-Id: {}\r\n", req.request_id)
    }
}

fn ok_response(req: &Request, extra: &str) -> String {
    let body = format!("nonce={}", req.nonce());
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{}{extra}Content-Length: {}\r\n\r\n{body}",
        id_line(req),
        body.len()
    )
}

/// A complete response nobody asked for, as a confused server would send it.
fn stray_response(req: &Request) -> String {
    let body = format!("stray-after={}", req.nonce());
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{}Content-Length: {}\r\n\r\n{body}",
        id_line(req),
        body.len()
    )
}

async fn serve(
    sock: TcpStream,
    me: SocketAddr,
    st: Arc<Stats>,
    opts: Options,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    // The write half is shared with delayed writers (stray responses).
    let (mut rd, wr) = sock.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let sock = &mut rd;
    let mut idle = opts.idle_close;
    loop {
        let Some(mut req) = read_head(sock, &mut buf, idle).await else {
            // Closed for idleness: one close(), no half-close first (as a
            // Node server's keep-alive timeout destroys its socket).
            if let Ok(w) = Arc::try_unwrap(wr) {
                w.into_inner().forget();
            }
            return Ok(());
        };
        if !opts.echo {
            req.request_id.clear();
        }
        idle = opts.idle_close;
        st.requests.fetch_add(1, Ordering::Relaxed);
        let kind = req
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        if kind == "early" {
            // Answer on the head, then treat the body as another request.
            wr.lock()
                .await
                .write_all(ok_response(&req, "").as_bytes())
                .await?;
            let _ = read_body(sock, &mut buf, req.body_len).await;
            st.strays.fetch_add(1, Ordering::Relaxed);
            wr.lock()
                .await
                .write_all(stray_response(&req).as_bytes())
                .await?;
            continue;
        }
        if req.body_len > 0 && read_body(sock, &mut buf, req.body_len).await.is_none() {
            return Ok(());
        }
        let delay = Duration::from_millis(req.num("d", 1));
        match kind.as_str() {
            "stray" | "straybytes" => {
                wr.lock()
                    .await
                    .write_all(ok_response(&req, "").as_bytes())
                    .await?;
                let extra = if kind == "stray" {
                    stray_response(&req)
                } else {
                    "\u{0}\u{1}GARBAGE-AFTER-RESPONSE\r\n".to_string()
                };
                let (wr, st) = (wr.clone(), st.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    st.strays.fetch_add(1, Ordering::Relaxed);
                    let _ = wr.lock().await.write_all(extra.as_bytes()).await;
                });
            }
            "head" => {
                let body = format!("stray-head-body={}", req.nonce());
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Request-Id: {}\r\nContent-Length: {}\r\n\r\n",
                    req.request_id,
                    body.len()
                );
                wr.lock().await.write_all(head.as_bytes()).await?;
                // A HEAD answer with a body: the body is bytes nobody asked for.
                let (wr, st) = (wr.clone(), st.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    st.strays.fetch_add(1, Ordering::Relaxed);
                    let _ = wr.lock().await.write_all(body.as_bytes()).await;
                });
            }
            "garbage" => {
                let mut r = ok_response(&req, "");
                r.push_str("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwrong");
                st.strays.fetch_add(1, Ordering::Relaxed);
                wr.lock().await.write_all(r.as_bytes()).await?;
            }
            "cut" => {
                let r = format!(
                    "HTTP/1.1 200 OK\r\nX-Request-Id: {}\r\nContent-Length: 100\r\n\r\n0123456789",
                    req.request_id
                );
                let mut w = wr.lock().await;
                w.write_all(r.as_bytes()).await?;
                w.flush().await?;
                return Ok(());
            }
            "up101" => {
                wr.lock()
                    .await
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nraw-after-101",
                    )
                    .await?;
                // Whatever the gateway does, this connection is done after a while.
                tokio::time::sleep(Duration::from_secs(5)).await;
                return Ok(());
            }
            "endless1xx" => loop {
                wr.lock()
                    .await
                    .write_all(b"HTTP/1.1 102 Processing\r\n\r\n")
                    .await?;
                tokio::time::sleep(delay).await;
            },
            "dupcl" => {
                let r = format!(
                    "HTTP/1.1 200 OK\r\nX-Request-Id: {}\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
                    req.request_id
                );
                wr.lock().await.write_all(r.as_bytes()).await?;
            }
            "self" => {
                let here = format!("http://{me}");
                let extra = format!(
                    "Location: {here}/created/1\r\nContent-Location: {here}/created/1?v=2\r\nRefresh: 3; url={here}/next\r\n"
                );
                let r = ok_response(&req, &extra).replacen("200 OK", "201 Created", 1);
                wr.lock().await.write_all(r.as_bytes()).await?;
            }
            "ka" => {
                wr.lock()
                    .await
                    .write_all(ok_response(&req, "Keep-Alive: timeout=1\r\n").as_bytes())
                    .await?;
            }
            "secret" => {
                let r = format!(
                    "HTTP/1.1 200 OK\r\nSet-Cookie: {SECRET_COOKIE}\r\nAuthorization: Bearer {SECRET_TOKEN}\r\nthis is not a header\r\n\r\n"
                );
                wr.lock().await.write_all(r.as_bytes()).await?;
                return Ok(());
            }
            "bighead" => {
                let mut r = String::from("HTTP/1.1 200 OK\r\n");
                r.push_str(&format!("X-Big: {}\r\n", "a".repeat(900_000)));
                r.push_str("not a header at all\r\n\r\n");
                let _ = wr.lock().await.write_all(r.as_bytes()).await;
                return Ok(());
            }
            "wrongid" => {
                let mut r = ok_response(&req, "");
                r = r.replacen(&id_line(&req), "X-Request-Id: somebody-else\r\n", 1);
                wr.lock().await.write_all(r.as_bytes()).await?;
            }
            "closeafter" => {
                // This connection's idle timeout becomes `us` µs: a request
                // arriving before it is served, as a real server would.
                wr.lock()
                    .await
                    .write_all(ok_response(&req, "").as_bytes())
                    .await?;
                idle = Duration::from_micros(req.num("us", 0).max(1));
            }
            "crash" => return Ok(()),
            _ => {
                let head_only = req.method == "HEAD";
                let mut r = ok_response(&req, "");
                if head_only {
                    let cut = r.find("\r\n\r\n").unwrap() + 4;
                    r.truncate(cut);
                }
                wr.lock().await.write_all(r.as_bytes()).await?;
            }
        }
    }
}
