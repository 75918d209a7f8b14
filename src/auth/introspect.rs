//! RFC 7662 token introspection at the authority. Fails closed: an
//! unreachable or misbehaving authority is [`AuthError::Unavailable`]
//! (503), never an admission.

use super::AuthError;
use super::jwt::Claims;
use std::time::Duration;

pub struct Introspector {
    pub url: String,
    /// Client credentials (HTTP Basic, RFC 6749 §2.3.1 encoding).
    pub basic: Option<(String, String)>,
    pub timeout: Duration,
    pub client: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    active: bool,
    #[serde(flatten)]
    claims: Claims,
}

impl Introspector {
    /// `Ok(Some(claims))` for an active token, `Ok(None)` for an inactive one.
    pub async fn introspect(&self, token: &str) -> Result<Option<Claims>, AuthError> {
        // One retry: a pooled connection the authority just closed is not
        // an outage (introspection is idempotent).
        let resp = match self.send(token).await {
            Err(e) if !e.is_timeout() => self.send(token).await,
            r => r,
        };
        let resp = resp.map_err(|e| {
            tracing::warn!(url = %self.url, error = %error_chain(e), "introspection failed");
            AuthError::Unavailable
        })?;
        if !resp.status().is_success() {
            tracing::warn!(url = %self.url, status = resp.status().as_u16(), "introspection refused");
            return Err(AuthError::Unavailable);
        }
        let answer: Answer = resp.json().await.map_err(|e| {
            tracing::warn!(url = %self.url, error = %e, "introspection answer is not JSON");
            AuthError::Unavailable
        })?;
        let expired = answer
            .claims
            .exp
            .is_some_and(|exp| exp <= jsonwebtoken::get_current_timestamp());
        Ok((answer.active && !expired).then_some(answer.claims))
    }

    async fn send(&self, token: &str) -> Result<reqwest::Response, reqwest::Error> {
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let mut req = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if let Some((id, secret)) = &self.basic {
            req = req.basic_auth(form_encode(id), Some(form_encode(secret)));
        }
        req.send().await
    }
}

/// An error with its causes (reqwest's own message hides them).
pub fn error_chain(e: reqwest::Error) -> String {
    format!("{:#}", anyhow::Error::from(e))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encodes() {
        assert_eq!(form_encode("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
        assert_eq!(form_encode("abc.DEF-_"), "abc.DEF-_");
    }
}
