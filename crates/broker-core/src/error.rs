//! The broker's one error type. Each error has a stable [`Error::code`] (DESIGN.md's error
//! codes) and a message safe to show the caller ([`Error::body`]); it knows nothing of HTTP,
//! which the shell maps it to in one place (`crate::answer`).
//!
//! Refusals carry a message safe to show the caller; everything else (database, I/O, TLS) is
//! answered with a bare "internal error", so no answer leaks internals.

use grantwire_proto::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Deliberately carries no detail: wrong user, password, code or token all look alike.
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// The grant holds its most live leases.
    #[error("lease cap: {0}")]
    LeaseCap(String),
    #[error("request body is too large")]
    PayloadTooLarge,
    /// Too many requests from this source, or the password-hashing queue is full.
    #[error("rate limited; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("background task: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Internal(String),
    /// Something the request needs is out of reach for now; the message says what.
    #[error("unavailable: {message}")]
    Unavailable { message: String, retry_after: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::LeaseCap(_) => ErrorCode::LeaseCap,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// The message shown to the caller.
    pub fn public_message(&self) -> String {
        match self {
            Self::BadRequest(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::LeaseCap(m) => m.clone(),
            Self::Unauthorized => "unauthorized".into(),
            Self::PayloadTooLarge => "request body is too large".into(),
            Self::RateLimited { .. } => "too many requests; retry later".into(),
            Self::Unavailable { message, .. } => message.clone(),
            _ => "internal error".into(),
        }
    }

    /// Builds the error body without converting to a response, for the admin client and tests.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak() {
        let e = Error::Internal("sqlite file /secret/path is locked".into());
        let body = e.body();
        assert_eq!(body.error.code, ErrorCode::Internal);
        assert_eq!(body.error.message, "internal error");
    }
}
