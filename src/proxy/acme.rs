//! ACME HTTP-01 answers (RFC 8555 §8.3): with `tls.acme` set, requests for
//! `/.well-known/acme-challenge/TOKEN` are answered here from the pending
//! challenges, before routing, authentication or the HTTPS redirect; an
//! unknown token is a 404. Other paths cost one prefix comparison.

use super::Ctx;
use super::respond::{ErrorResponse, respond, send};
use crate::tls::challenge::is_challenge_path;
use bytes::Bytes;
use http::{StatusCode, header};
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// `Ok(true)`: the request was a challenge and has been answered.
pub(super) async fn answer(session: &mut Session, ctx: &Ctx) -> Result<bool> {
    let Some(challenges) = &ctx.table.acme_challenges else {
        return Ok(false);
    };
    let path = session.req_header().uri.path();
    if !is_challenge_path(path) {
        return Ok(false);
    }
    let Some(key_authorization) = challenges.answer(path) else {
        let r = ErrorResponse::new(StatusCode::NOT_FOUND, "no such ACME challenge");
        respond(session, &ctx.request_id, ctx.response_headers(), &r).await?;
        return Ok(true);
    };
    tracing::debug!("answering an ACME HTTP-01 challenge");
    let mut resp = ResponseHeader::build(StatusCode::OK, Some(4))?;
    resp.insert_header(header::CONTENT_TYPE, "application/octet-stream")?;
    resp.insert_header(header::CONTENT_LENGTH, key_authorization.len())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    send(
        session,
        resp,
        Bytes::from(key_authorization),
        &ctx.request_id,
        ctx.response_headers(),
    )
    .await?;
    Ok(true)
}
