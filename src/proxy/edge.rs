//! Edge policies on the request path: CORS preflights answered here, and
//! [`EdgeModule`], the one downstream module every response of the
//! request goes through, proxied or written by the gateway itself (a 401, a
//! 429): it adds the route's CORS headers and `Vary: Origin`, applies the
//! route's `response_headers` rules (after the gateway's own headers) and
//! compresses the body when `compression` says so (weakening an `ETag`, as
//! Pingora's compression module and nginx do). It replaces Pingora's
//! default (disabled) compression module, so a request costs one module
//! either way.

use super::Ctx;
use super::respond::decorate_response;
use crate::config::edge::Algorithm;
use crate::policy::Encoder;
use crate::policy::cors::add_vary;
use crate::runtime::{Route, RouteTable};
use bytes::Bytes;
use http::{HeaderValue, Method, header};
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::sync::Arc;

/// The route for a request; a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) is matched with the method it asks for,
/// and is `true` in the result when that route has `cors`.
pub(super) fn lookup<'t>(
    table: &'t RouteTable,
    path: &str,
    host: Option<&str>,
    req: &RequestHeader,
) -> Option<(usize, &'t Route, bool)> {
    if req.method == Method::OPTIONS
        && req.headers.contains_key(header::ORIGIN)
        && let Some(asked) = req
            .headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        && let Some((i, route)) = table.lookup(path, host, &asked)
        && route.edge.cors.is_some()
    {
        return Some((i, route, true));
    }
    table
        .lookup(path, host, &req.method)
        .map(|(i, r)| (i, r, false))
}

/// Gives the module what it needs for this request's responses.
pub(super) fn start(session: &mut Session, table: &Arc<RouteTable>, idx: usize, preflight: bool) {
    let route = &table.routes[idx];
    let req = session.req_header();
    let encoding = match &table.compression {
        Some(c) if req.method != Method::HEAD => {
            c.negotiate(req.headers.get(header::ACCEPT_ENCODING))
        }
        _ => None,
    };
    if !route.edge.decorates_responses() && table.compression.is_none() {
        return;
    }
    let origin = route
        .edge
        .cors
        .as_ref()
        .and_then(|_| req.headers.get(header::ORIGIN).cloned());
    if let Some(m) = session.downstream_modules_ctx.get_mut::<EdgeModule>() {
        *m = EdgeModule {
            table: Some(table.clone()),
            route: idx,
            origin,
            preflight,
            encoding,
            encoder: None,
        };
    }
}

/// Answers a preflight: `204` with the `Access-Control-Allow-*` headers
/// when the origin and method are allowed, without them otherwise; never
/// authenticated, never forwarded.
pub(super) async fn preflight(session: &mut Session, ctx: &Ctx, route: &Route) -> Result<bool> {
    let mut resp = ResponseHeader::build(204, Some(10))?;
    if let Some(cors) = &route.edge.cors {
        let req = session.req_header();
        let empty = HeaderValue::from_static("");
        let origin = req.headers.get(header::ORIGIN).unwrap_or(&empty);
        let method = req
            .headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .map_or(&b""[..], |m| m.as_bytes());
        cors.preflight(&mut resp, origin, method);
    }
    decorate_response(&mut resp, &ctx.request_id, ctx.response_headers())?;
    session.write_response_header(Box::new(resp), true).await?;
    Ok(true)
}

/// Per-request state of the edge policies' response side.
#[derive(Default)]
pub struct EdgeModule {
    table: Option<Arc<RouteTable>>,
    route: usize,
    origin: Option<HeaderValue>,
    preflight: bool,
    encoding: Option<Algorithm>,
    encoder: Option<Encoder>,
}

/// The response headers of a body the gateway encodes: its length and
/// ranges no longer apply, the `ETag` is weakened (a strong one names exact
/// bytes; nginx does the same) or dropped when malformed.
fn encoded_headers(resp: &mut ResponseHeader, a: Algorithm) {
    resp.remove_header(&header::CONTENT_LENGTH);
    resp.remove_header(&header::ACCEPT_RANGES);
    let _ = resp.insert_header(header::CONTENT_ENCODING, a.as_str());
    if resp.headers.get(header::TRANSFER_ENCODING).is_none() {
        let _ = resp.insert_header(header::TRANSFER_ENCODING, "chunked");
    }
    if let Some(etag) = resp
        .headers
        .get(header::ETAG)
        .map(|v| v.as_bytes().to_vec())
    {
        if etag.starts_with(b"\"") {
            if let Ok(weak) = HeaderValue::from_bytes(&[b"W/", &etag[..]].concat()) {
                let _ = resp.insert_header(header::ETAG, weak);
            }
        } else if !etag.starts_with(b"W/") {
            resp.remove_header(&header::ETAG);
        }
    }
}

#[async_trait::async_trait]
impl HttpModule for EdgeModule {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, end: bool) -> Result<()> {
        let Some(table) = &self.table else {
            return Ok(());
        };
        if resp.status.is_informational() {
            return Ok(());
        }
        let edge = &table.routes[self.route].edge;
        if let Some(cors) = &edge.cors
            && !self.preflight
        {
            cors.decorate(resp, self.origin.as_ref());
        }
        edge.response_headers.apply_response(resp);
        if let Some(c) = &table.compression
            && c.wants(resp)
        {
            add_vary(resp, "Accept-Encoding");
            if let Some(a) = self.encoding
                && !end
            {
                self.encoder = Encoder::new(a);
                if self.encoder.is_some() {
                    encoded_headers(resp, a);
                }
            }
        }
        Ok(())
    }

    fn response_body_filter(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<()> {
        if let Some(enc) = &mut self.encoder {
            let input = body.as_deref().unwrap_or(&[]);
            match enc.encode(input, end) {
                Ok(out) => *body = Some(out),
                // Encoding into memory does not fail; if it ever did, the
                // response cannot be completed correctly.
                Err(_) => {
                    return Err(pingora_error::Error::explain(
                        pingora_error::ErrorType::InternalError,
                        "response encoding failed",
                    ));
                }
            }
        }
        Ok(())
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        Ok(self
            .encoder
            .as_mut()
            .and_then(|e| e.encode(&[], true).ok())
            .filter(|b| !b.is_empty()))
    }
}

/// Registers [`EdgeModule`] (`init_downstream_modules`).
pub(super) struct EdgeModuleBuilder;

impl HttpModuleBuilder for EdgeModuleBuilder {
    fn init(&self) -> Module {
        Box::new(EdgeModule::default())
    }

    fn order(&self) -> i16 {
        // After other filters, as Pingora's compression module.
        i16::MIN / 2
    }
}
