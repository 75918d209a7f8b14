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
    /// The cause of the last failure: logged once until it changes or an
    /// answer comes (not once per request while the authority is down).
    pub last_error: std::sync::Mutex<Option<String>>,
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
        let resp = resp.map_err(|e| self.failed(format!("failed: {}", error_chain(e))))?;
        if !resp.status().is_success() {
            return Err(self.failed(format!("refused: status {}", resp.status().as_u16())));
        }
        let answer: Answer = resp
            .json()
            .await
            .map_err(|e| self.failed(format!("answer is not JSON: {}", error_chain(e))))?;
        if self.lock().take().is_some() {
            tracing::info!(url = %self.url, "introspection answers again");
        }
        let expired = answer
            .claims
            .exp
            .is_some_and(|exp| exp <= jsonwebtoken::get_current_timestamp());
        Ok((answer.active && !expired).then_some(answer.claims))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a failure once per cause (with the URL): the request gets 503.
    fn failed(&self, cause: String) -> AuthError {
        let mut last = self.lock();
        if last.as_deref() != Some(cause.as_str()) {
            tracing::warn!(url = %self.url, error = %cause, "introspection unavailable");
            *last = Some(cause);
        }
        AuthError::Unavailable
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
