//! The verified identity and the headers that carry it upstream.
//!
//! Identity headers are removed from every incoming request (see
//! [`IdentityHeaders::stripped`]) and set from verified claims only. A
//! configured claim that is present but cannot be a header value refuses
//! the token rather than leaving the header silently missing.

use super::AuthError;
use super::jwt::Claims;
use http::{HeaderName, HeaderValue};
use std::collections::BTreeMap;

/// The default identity headers. They (and any configured ones) are removed
/// from every incoming request first, so a client can never spoof them.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-user-id", "x-user-scopes", "x-client-id"];

/// The verified identity of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// The configured identity headers, rendered once per token.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// Whether every scope in `required` was granted.
    pub fn has_scopes(&self, required: &[Box<str>]) -> bool {
        required
            .iter()
            .all(|s| self.scopes.iter().any(|have| have == &**s))
    }
}

/// Where an identity header's value comes from.
enum ClaimSource {
    Subject,
    Scopes,
    ClientId,
    Other(Box<str>),
}

/// Which claims become which upstream headers (`auth.identity_headers`).
pub struct IdentityHeaders {
    claim_headers: Box<[(ClaimSource, HeaderName)]>,
    strip: Box<[HeaderName]>,
}

impl IdentityHeaders {
    /// From a checked `identity_headers` map (claim → header name).
    pub fn from_config(map: &BTreeMap<String, String>) -> Self {
        let claim_headers: Box<[_]> = map
            .iter()
            .filter_map(|(claim, header)| {
                let src = match claim.as_str() {
                    "sub" => ClaimSource::Subject,
                    "scopes" => ClaimSource::Scopes,
                    "client_id" => ClaimSource::ClientId,
                    other => ClaimSource::Other(other.into()),
                };
                Some((src, HeaderName::from_bytes(header.as_bytes()).ok()?))
            })
            .collect();
        let mut strip: Vec<HeaderName> = IDENTITY_HEADERS
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        for (_, h) in claim_headers.iter() {
            if !strip.contains(h) {
                strip.push(h.clone());
            }
        }
        IdentityHeaders {
            claim_headers,
            strip: strip.into(),
        }
    }

    /// Headers removed from every incoming request.
    pub fn stripped(&self) -> &[HeaderName] {
        &self.strip
    }

    /// The identity passed upstream. A configured claim that is present
    /// but cannot be a header value (a newline, an object) refuses the
    /// token: the upstream must not see the header silently missing.
    pub fn render(&self, c: &Claims) -> Result<Identity, AuthError> {
        let scopes = c.scopes();
        // `scp: ["read admin"]` is one scope here, two once space-joined upstream.
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(AuthError::Claims);
        }
        let client_id = c.client_id.clone().or_else(|| c.azp.clone());
        let mut headers = Vec::with_capacity(self.claim_headers.len());
        for (src, name) in &self.claim_headers {
            let text = match src {
                ClaimSource::Subject => c.sub.clone(),
                ClaimSource::Scopes => (!scopes.is_empty()).then(|| scopes.join(" ")),
                ClaimSource::ClientId => client_id.clone(),
                ClaimSource::Other(n) => claim_text(c, n)?,
            };
            if let Some(text) = text {
                // A tab or surrounding space is valid in a header but read
                // differently once an upstream trims it ("admin\t").
                if text.trim() != text || text.chars().any(char::is_control) {
                    return Err(AuthError::Claims);
                }
                let value = HeaderValue::from_str(&text).map_err(|_| AuthError::Claims)?;
                headers.push((name.clone(), value));
            }
        }
        Ok(Identity {
            subject: c.sub.clone(),
            client_id,
            scopes,
            headers,
        })
    }
}

/// The text of claim `name` for a header: strings as they are, numbers and
/// booleans printed, arrays of strings space-separated. `Ok(None)`: the
/// claim is absent; an error: it is there but has no text form.
fn claim_text(c: &Claims, name: &str) -> Result<Option<String>, AuthError> {
    use serde_json::Value;
    let v = match name {
        "azp" => return Ok(c.azp.clone()),
        "scope" => return Ok(c.scope.clone()),
        "exp" => return Ok(c.exp.map(|n| n.to_string())),
        "iat" => return Ok(c.iat.map(|n| n.to_string())),
        "scp" => c.scp.as_ref(),
        n => c.extra.get(n),
    };
    let Some(v) = v else { return Ok(None) };
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => {
            let words: Option<Vec<&str>> = a.iter().map(|x| x.as_str()).collect();
            words.ok_or(AuthError::Claims)?.join(" ")
        }
        Value::Object(_) => return Err(AuthError::Claims),
    }))
}
