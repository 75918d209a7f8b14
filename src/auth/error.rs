//! Why a request was not admitted: one type for every refusal, with the
//! status it answers and the label logs and metrics use (never the token).

/// Why a request was not admitted; the label used in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("invalid claims")]
    Claims,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("token not active")]
    Inactive,
    #[error("insufficient scope")]
    Scope,
    #[error("authorization server unavailable")]
    Unavailable,
}

impl AuthError {
    /// Short label for logs and metrics (`reason` of the rejection counter).
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Issuer => "issuer",
            AuthError::Audience => "audience",
            AuthError::Claims => "claims",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Inactive => "inactive",
            AuthError::Scope => "scope",
            AuthError::Unavailable => "unavailable",
        }
    }

    /// The HTTP status of the refusal: 401, 403 for scopes, 503 when the
    /// authority could not be asked (fail closed).
    pub fn status(self) -> http::StatusCode {
        match self {
            AuthError::Scope => http::StatusCode::FORBIDDEN,
            AuthError::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}
