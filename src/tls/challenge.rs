//! ACME HTTP-01 challenge answers (RFC 8555 §8.3).
//!
//! The ACME client publishes `token → key authorization` while an order is
//! pending; the plain-HTTP listener answers
//! `GET /.well-known/acme-challenge/TOKEN` from here before routing, auth or
//! the HTTPS redirect. The request path only looks here when the path has
//! the challenge prefix, and then reads the map lock-free.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// The path prefix of every HTTP-01 challenge request.
pub const PREFIX: &str = "/.well-known/acme-challenge/";

/// Whether `path` is an HTTP-01 challenge request (those are never
/// redirected to HTTPS, authenticated or routed).
pub fn is_challenge_path(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// Pending challenge answers, shared by the ACME client and the listener.
#[derive(Debug, Default)]
pub struct Challenges {
    answers: ArcSwap<HashMap<String, String>>,
}

impl Challenges {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The key authorization to answer for `path`, if it is a pending
    /// challenge's.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(PREFIX)?;
        self.answers.load().get(token).cloned()
    }

    /// Publishes an answer (called before telling the ACME server it is ready).
    pub fn publish(&self, token: &str, key_authorization: &str) {
        self.answers.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(token.to_string(), key_authorization.to_string());
            m
        });
    }

    /// Withdraws an answer once its authorization is settled.
    pub fn withdraw(&self, token: &str) {
        self.answers.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(token);
            m
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_published_tokens_under_the_prefix() {
        let c = Challenges::default();
        assert!(is_challenge_path("/.well-known/acme-challenge/abc"));
        assert!(!is_challenge_path("/.well-known/other"));
        assert_eq!(c.answer("/.well-known/acme-challenge/abc"), None);
        c.publish("abc", "abc.thumb");
        assert_eq!(
            c.answer("/.well-known/acme-challenge/abc").as_deref(),
            Some("abc.thumb")
        );
        assert_eq!(c.answer("/abc"), None);
        c.withdraw("abc");
        assert_eq!(c.answer("/.well-known/acme-challenge/abc"), None);
    }
}
