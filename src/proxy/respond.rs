//! Responses the gateway writes itself. Whoever refuses or fails builds an
//! [`ErrorResponse`]; [`respond`] is the one writer (JSON body
//! `{"error", "request_id"}`, `Cache-Control: no-store`, the gateway's
//! response headers). [`ErrorResponse::for_proxy_error`] is the one place a
//! proxy error becomes a status.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// The message of a 413.
pub const BODY_TOO_LARGE: &str = "request body too large";

/// An error response: status, message for the JSON body, and extra headers
/// (`Retry-After`, a `WWW-Authenticate` challenge, the rate-limit headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse<'a> {
    pub status: StatusCode,
    pub message: &'a str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl<'a> ErrorResponse<'a> {
    pub fn new(status: StatusCode, message: &'a str) -> Self {
        ErrorResponse {
            status,
            message,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl ErrorResponse<'static> {
    /// What the client sees for a proxy error (503s ask to retry in 5 s).
    pub fn for_proxy_error(e: &Error) -> Self {
        use ErrorType::*;
        let (status, message) = match e.etype() {
            HTTPStatus(503) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no healthy server available",
            ),
            HTTPStatus(413) => (StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE),
            HTTPStatus(code) => (
                StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY),
                "request failed",
            ),
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            }
            ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => {
                (StatusCode::BAD_GATEWAY, "upstream refused the connection")
            }
            TLSHandshakeFailure | InvalidCert | HandshakeError => (
                StatusCode::BAD_GATEWAY,
                "TLS handshake with the upstream failed",
            ),
            _ => match e.esource() {
                ErrorSource::Upstream => (StatusCode::BAD_GATEWAY, "upstream broke the protocol"),
                ErrorSource::Downstream => (StatusCode::BAD_REQUEST, "bad request"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            },
        };
        let r = ErrorResponse::new(status, message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
        } else {
            r
        }
    }
}

/// Writes `r` as `{"error": message, "request_id": id}` (no body to a HEAD).
pub async fn respond(
    session: &mut Session,
    request_id: &HeaderValue,
    response_headers: &[(HeaderName, HeaderValue)],
    r: &ErrorResponse<'_>,
) -> Result<()> {
    let body = serde_json::json!({
        "error": r.message,
        "request_id": request_id.to_str().unwrap_or(""),
    })
    .to_string();
    let mut resp = ResponseHeader::build(r.status, Some(4 + r.headers.len()))?;
    resp.insert_header(header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    for (k, v) in &r.headers {
        resp.insert_header(k.clone(), v.clone())?;
    }
    send(session, resp, body.into(), request_id, response_headers).await
}

/// Writes a response the gateway makes itself: decorated like every
/// response (request id, configured headers), the body left out for a HEAD.
pub async fn send(
    session: &mut Session,
    mut resp: ResponseHeader,
    body: Bytes,
    request_id: &HeaderValue,
    response_headers: &[(HeaderName, HeaderValue)],
) -> Result<()> {
    decorate_response(&mut resp, request_id, response_headers)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Answers the request with an error of the gateway's own; `Ok(true)`
/// tells Pingora the request is done.
pub(super) async fn refuse(
    session: &mut Session,
    ctx: &super::Ctx,
    status: StatusCode,
    message: &str,
) -> Result<bool> {
    let r = ErrorResponse::new(status, message);
    respond(session, &ctx.request_id, ctx.response_headers(), &r).await?;
    Ok(true)
}

/// The gateway's response headers: `X-Request-Id` and the configured
/// `response_headers` (security headers by default), never over a header
/// the upstream set.
pub fn decorate_response(
    resp: &mut ResponseHeader,
    request_id: &HeaderValue,
    extra: &[(HeaderName, HeaderValue)],
) -> Result<()> {
    resp.insert_header("x-request-id", request_id.clone())?;
    for (name, value) in extra {
        if !resp.headers.contains_key(name) {
            resp.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}

/// The client went away: nothing can be written.
pub fn downstream_gone(e: &Error) -> bool {
    matches!(e.esource(), ErrorSource::Downstream)
        && matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
        )
}

/// Why a started response was cut off (`aborted` in the access line).
pub fn abort_reason(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        ErrorType::ConnectionClosed => "closed",
        ErrorType::ReadError => "reset",
        _ if e.esource() == &ErrorSource::Upstream => "protocol",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: Box<Error>) -> (u16, &'static str, bool) {
        let r = ErrorResponse::for_proxy_error(&e);
        (r.status.as_u16(), r.message, !r.headers.is_empty())
    }

    #[test]
    fn proxy_errors_map_to_statuses() {
        let e = |t| Error::new(t);
        assert_eq!(
            status(e(ErrorType::HTTPStatus(503))),
            (503, "no healthy server available", true)
        );
        assert_eq!(
            status(e(ErrorType::HTTPStatus(413))),
            (413, BODY_TOO_LARGE, false)
        );
        assert_eq!(
            status(e(ErrorType::ReadTimedout)),
            (504, "upstream timed out", false)
        );
        assert_eq!(
            status(e(ErrorType::ConnectRefused)),
            (502, "upstream refused the connection", false)
        );
        assert_eq!(
            status(e(ErrorType::InvalidHTTPHeader).into_up()),
            (502, "upstream broke the protocol", false)
        );
        assert_eq!(
            status(e(ErrorType::InvalidHTTPHeader).into_down()),
            (400, "bad request", false)
        );
        assert_eq!(
            status(e(ErrorType::InternalError)),
            (500, "internal error", false)
        );
        let r = ErrorResponse::for_proxy_error(&e(ErrorType::HTTPStatus(503)));
        assert_eq!(r.headers[0].0, header::RETRY_AFTER);
    }

    #[test]
    fn a_gone_client_and_abort_reasons() {
        assert!(downstream_gone(
            &Error::new(ErrorType::WriteError).into_down()
        ));
        assert!(!downstream_gone(
            &Error::new(ErrorType::WriteError).into_up()
        ));
        assert_eq!(
            abort_reason(&Error::new(ErrorType::ReadTimedout)),
            "timeout"
        );
        assert_eq!(abort_reason(&Error::new(ErrorType::ReadError)), "reset");
        assert_eq!(
            abort_reason(&Error::new(ErrorType::H1Error).into_up()),
            "protocol"
        );
    }

    #[test]
    fn upstream_headers_win_over_configured_ones() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("x-frame-options", "SAMEORIGIN").unwrap();
        let extra = [(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        )];
        decorate_response(&mut r, &HeaderValue::from_static("id"), &extra).unwrap();
        assert_eq!(r.headers["x-frame-options"], "SAMEORIGIN");
        assert_eq!(r.headers["x-request-id"], "id");
    }
}
