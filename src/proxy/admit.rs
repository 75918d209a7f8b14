//! Authentication on a protected route: check the token and pass the
//! identity on ([`authenticate`]), or answer a request that was not admitted
//! ([`reject`]).

use super::Ctx;
use super::request::{is_navigation, strip_cookie};
use super::respond::{ErrorResponse, decorate_response, respond};
use crate::auth::{self, AuthError};
use crate::host::Host;
use crate::runtime::{Route, RouteTable};
use http::{HeaderValue, StatusCode, header};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

/// Checks the token of a protected route and passes the identity on.
pub async fn authenticate(
    session: &mut Session,
    table: &RouteTable,
    route: &Route,
    ctx: &mut Ctx,
) -> std::result::Result<(), AuthError> {
    let auth = table.auth.as_ref().ok_or(AuthError::Missing)?;
    let token = auth
        .token(&session.req_header().headers)
        .ok_or(AuthError::Missing)?;
    let id = auth.authenticate(token).await?;
    ctx.subject = id.subject.clone();
    ctx.client_id = id.client_id.clone();
    if !id.has_scopes(&route.required_scopes) {
        return Err(AuthError::Scope);
    }
    ctx.identity = Some(id);
    let from_header = auth::bearer_token(&session.req_header().headers).is_some();
    let req = session.req_header_mut();
    if !auth.forward_authorization {
        req.remove_header(&header::AUTHORIZATION);
    }
    // The upstream sees only the credential that was checked: a token
    // cookie beside a verified header (or any, when credentials are not
    // forwarded) is removed.
    if let Some(name) = auth.cookie_name()
        && (from_header || !auth.forward_authorization)
    {
        strip_cookie(req, name);
    }
    Ok(())
}

/// Answers a request that was not admitted: 401 / 403 with a
/// `WWW-Authenticate` challenge (RFC 6750 §3), 503 when the authority could
/// not be asked, or a redirect to the login page for a browser navigation.
pub async fn reject(
    session: &mut Session,
    table: &RouteTable,
    route: &Route,
    ctx: &Ctx,
    e: AuthError,
) -> Result<()> {
    // The one place a rejection is seen.
    table.metrics.auth_rejection(&route.pattern, e.reason());
    tracing::info!(
        request_id = ctx.request_id.to_str().unwrap_or(""),
        route = %route.pattern,
        reason = e.reason(),
        user = ctx.subject.as_deref().unwrap_or(""),
        client = ctx.client_id.as_deref().unwrap_or(""),
        "request not authenticated"
    );
    let auth = table.auth.as_ref();
    if let Some(login) = auth.and_then(|a| a.login_redirect.as_ref())
        && !matches!(e, AuthError::Scope | AuthError::Unavailable)
        && is_navigation(session.req_header())
    {
        // Only the validated host: a `Host` is the client's word, and the
        // login page sends the browser back to `return_to`.
        let req = session.req_header();
        let original = format!(
            "{}://{}{}",
            ctx.scheme(),
            ctx.host.as_ref().map_or("localhost", Host::as_str),
            req.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut resp = ResponseHeader::build(StatusCode::FOUND, Some(5))?;
        resp.insert_header(header::LOCATION, login.location(&original))?;
        resp.insert_header(header::CONTENT_LENGTH, 0)?;
        resp.insert_header(header::CACHE_CONTROL, "no-store")?;
        decorate_response(&mut resp, &ctx.request_id, ctx.response_headers())?;
        return session.write_response_header(Box::new(resp), true).await;
    }
    let (name, value) = match (auth, e) {
        (_, AuthError::Unavailable) => (header::RETRY_AFTER, HeaderValue::from_static("5")),
        (Some(a), e) => (
            header::WWW_AUTHENTICATE,
            a.challenge(e, &route.required_scopes),
        ),
        (None, _) => (
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pingora-gateway\""),
        ),
    };
    let message = e.to_string();
    let r = ErrorResponse::new(e.status(), &message).with_header(name, value);
    respond(session, &ctx.request_id, ctx.response_headers(), &r).await
}

/// Removes identity headers a client sent: they come from the gateway only.
pub fn strip_identity_headers(req: &mut RequestHeader, auth: Option<&auth::Authenticator>) {
    match auth {
        Some(a) => {
            for h in a.stripped_headers() {
                req.remove_header(h);
            }
        }
        None => {
            for h in auth::IDENTITY_HEADERS {
                req.remove_header(h);
            }
        }
    }
}
