//! Stand-in upstream app: a small HTTP server that plays one of the five
//! Next.js apps in the demo stack (`cargo run --example standin`) and in the
//! integration tests.
//!
//! - `GET …/health` answers `{"status":"ok"}` (status and delay adjustable
//!   through [`StandinState`], for health-check tests);
//! - `…/stream?n=5&interval_ms=100` streams server-sent events;
//! - `…/sleep/MS` answers after MS milliseconds;
//! - `…/status/CODE` answers with CODE;
//! - `…/redirect` answers 302 to `http://localhost:PORT/target`, as Next.js does;
//! - anything else echoes method, path, query, headers and body size as JSON
//!   (`?respond_header=NAME:VALUE` adds a response header).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// Adjustable behaviour of one stand-in server.
#[derive(Debug)]
pub struct StandinState {
    pub name: String,
    /// Status `/health` answers with. Default 200.
    pub health_status: AtomicU16,
    /// Milliseconds `/health` waits before answering. Default 0.
    pub health_delay_ms: AtomicU64,
    /// Requests served, health checks included.
    pub requests: AtomicU64,
    /// Health checks served.
    pub health_checks: AtomicU64,
    /// Method and path of the last health check, e.g. `HEAD /kline/health`.
    pub last_health_check: std::sync::Mutex<String>,
}

impl StandinState {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(StandinState {
            name: name.to_string(),
            health_status: AtomicU16::new(200),
            health_delay_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            last_health_check: std::sync::Mutex::new(String::new()),
        })
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Serves `listener` until the task is dropped or aborted; its connections
/// end with it (a stopped stand-in is down, not half-alive).
pub async fn serve(listener: TcpListener, state: Arc<StandinState>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(stream, state.clone(), port));
    }
}

/// Serves one connection (plain, or a TLS stream already accepted) until
/// it closes; `port` is the listener's (for redirects).
pub async fn serve_connection<S>(io: S, state: Arc<StandinState>, port: u16)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(req, state.clone(), port));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<StandinState>,
    port: u16,
) -> Result<Response<Body>, Infallible> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();

    if path.ends_with("/health") {
        state.health_checks.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = state.last_health_check.lock() {
            *last = format!("{} {path}", req.method());
        }
        let delay = state.health_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let status = StatusCode::from_u16(state.health_status.load(Ordering::Relaxed))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"status": if status.is_success() {"ok"} else {"failing"}, "app": state.name});
        return Ok(json(status, &body));
    }
    if path.ends_with("/stream") {
        return Ok(stream(&query));
    }
    if let Some(ms) = segment_after(&path, "sleep") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = segment_after(&path, "status") {
        let status = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(json(
            status,
            &serde_json::json!({"app": state.name, "status": code}),
        ));
    }
    if path.ends_with("/redirect") {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut().insert(
            "location",
            format!("http://localhost:{port}/target")
                .parse()
                .expect("valid"),
        );
        return Ok(r);
    }

    let method = req.method().to_string();
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_string(), v.into());
            }
        }
    }
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let echo = serde_json::json!({
        "app": state.name,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_bytes": body_len,
    });
    let mut r = json(StatusCode::OK, &echo);
    // `?respond_header=NAME:VALUE` sets a response header (header-precedence tests).
    for kv in query.split('&') {
        if let Some((name, value)) = kv
            .strip_prefix("respond_header=")
            .and_then(|v| v.split_once(':'))
            && let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            )
        {
            r.headers_mut().insert(n, v);
        }
    }
    Ok(r)
}

fn segment_after(path: &str, name: &str) -> Option<u64> {
    let mut it = path.split('/');
    it.by_ref().find(|s| *s == name)?;
    it.next()?.parse().ok()
}

fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    r
}

/// `n` server-sent events `interval_ms` apart (defaults 5 and 100).
fn stream(query: &str) -> Response<Body> {
    let param = |k: &str, default: u64| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(key, _)| *key == k)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(default)
    };
    let n = param("n", 5);
    let interval = Duration::from_millis(param("interval_ms", 100));
    let events = futures_util::stream::unfold(0u64, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let frame = Frame::data(Bytes::from(format!("id: {i}\ndata: {{\"seq\":{i}}}\n\n")));
        Some((Ok::<_, Infallible>(frame), i + 1))
    });
    let mut r = Response::new(StreamBody::new(events).boxed());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("valid"));
    r.headers_mut()
        .insert("cache-control", "no-cache".parse().expect("valid"));
    r
}
