//! The admin listener (`/metrics`, `/healthz`, `/readyz`): cold path, on
//! `127.0.0.1` by default. It reads the runtime snapshot, the health checker
//! and the reload stats at scrape time and hands plain values to
//! [`Metrics::render`]; the open client connections are the gateway's own
//! count ([`ConnLimits::open`], the places taken by admitted connections).

use crate::downstream::ConnLimits;
use crate::health::Checker;
use crate::metrics::{Metrics, Scrape};
use crate::reload::ReloadStats;
use crate::runtime::RouteTable;
use crate::tls::store::CertStore;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the admin listener reports on.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub checker: Checker,
    pub reloads: Arc<ReloadStats>,
    pub table: Arc<ArcSwap<RouteTable>>,
    pub draining: Arc<AtomicBool>,
    /// The connection caps' count of open client connections (plain and
    /// HTTPS: both listeners admit through the same [`ConnLimits`]).
    pub limits: Arc<ConnLimits>,
    pub metrics_path: String,
    /// The certificates the HTTPS listener serves (none without `tls`).
    pub certs: Option<Arc<CertStore>>,
}

impl AdminState {
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if path == self.metrics_path {
            return text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(&self.scrape()),
            );
        }
        match path {
            "/healthz" => text(
                StatusCode::OK,
                "application/json",
                r#"{"status":"alive"}"#.into(),
            ),
            "/readyz" => self.ready(),
            _ => text(
                StatusCode::NOT_FOUND,
                "application/json",
                r#"{"error":"not found"}"#.into(),
            ),
        }
    }

    /// What a scrape copies into the registry.
    fn scrape(&self) -> Scrape {
        let r = &self.reloads;
        Scrape {
            servers: self
                .checker
                .snapshot()
                .into_iter()
                .map(|s| (s.upstream, s.server, s.healthy))
                .collect(),
            health_transitions: self.checker.transitions(),
            reloads_succeeded: r.succeeded.load(Ordering::Relaxed),
            reloads_failed: r.failed.load(Ordering::Relaxed),
            last_reload_ok: r.last_successful.load(Ordering::Relaxed),
            last_success_timestamp: r.last_success_timestamp.load(Ordering::Relaxed),
            config_hash: r.config_hash.load(Ordering::Relaxed).to_string(),
            downstream_connections: self.limits.open(),
            certificates: self.certs.as_ref().map_or_else(Vec::new, |c| {
                c.snapshot()
                    .entries()
                    .iter()
                    .map(|e| (e.name.clone(), e.source.as_str(), e.info.not_after))
                    .collect()
            }),
        }
    }

    /// Ready: a config is loaded and the process is not draining. The body
    /// summarizes upstream health (informational: a gateway with a dead
    /// upstream still serves the others).
    fn ready(&self) -> Response<Full<Bytes>> {
        let draining = self.draining.load(Ordering::Relaxed);
        let mut upstreams = serde_json::Map::new();
        for s in self.checker.snapshot() {
            let e = upstreams
                .entry(s.upstream.clone())
                .or_insert_with(|| serde_json::json!({"healthy": 0, "total": 0, "servers": {}}));
            e["total"] = (e["total"].as_u64().unwrap_or(0) + 1).into();
            if s.healthy {
                e["healthy"] = (e["healthy"].as_u64().unwrap_or(0) + 1).into();
            }
            e["servers"][&s.server] = s.healthy.into();
        }
        let table = self.table.load();
        let body = serde_json::json!({
            "status": if draining { "draining" } else { "ready" },
            "config_hash": table.hash.to_string(),
            "routes": table.routes.len(),
            "upstreams": upstreams,
        });
        let mut body = body;
        if let Some(certs) = &self.certs {
            body["certificates"] = certs
                .snapshot()
                .entries()
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "name": e.name,
                        "source": e.source.as_str(),
                        "names": e.info.names,
                        "serial": e.info.serial,
                        "not_after": e.info.not_after,
                        "expires": crate::tls::files::utc(e.info.not_after),
                    })
                })
                .collect();
        }
        let status = if draining {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        text(status, "application/json", body.to_string())
    }
}

/// The admin listener's read buffer per connection (and so its longest head).
const ADMIN_MAX_BUF: usize = 16 * 1024;

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// The admin listener as a Pingora listening application: Pingora binds
/// it (exclusive unless `server.reuse_port`), stops it with the proxy and
/// hands it to the successor on a graceful upgrade, so only that successor
/// ever shares the port.
///
/// Each request head must arrive within `header_timeout` of the moment the
/// connection starts waiting for it (hyper's header read timeout), so a
/// connection idle or half-sent that long is closed; a head may take at
/// most 16 KiB.
pub struct AdminApp {
    pub state: Arc<AdminState>,
    /// `server.request_header_timeout_seconds`: also the idle limit.
    pub header_timeout: Duration,
}

#[async_trait::async_trait]
impl pingora_core::apps::ServerApp for AdminApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora_core::protocols::Stream,
        shutdown: &pingora_core::server::ShutdownWatch,
    ) -> Option<pingora_core::protocols::Stream> {
        let me = self.state.clone();
        let svc = hyper::service::service_fn(move |req| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.handle(req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(ADMIN_MAX_BUF)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
        let mut conn = std::pin::pin!(conn);
        let mut shutdown = shutdown.clone();
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
        None
    }
}
