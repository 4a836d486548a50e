//! The broker's one error type, and the one place where errors become HTTP responses.
//!
//! Refusals carry a message safe to show the caller; everything else (database, I/O, TLS) is
//! logged here and answered with a bare 500, so no response leaks internals.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use grantwire_proto::{ErrorBody, ErrorCode, ErrorDetail};
use serde::de::DeserializeOwned;

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
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("background task: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Internal(String),
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
            _ => ErrorCode::Internal,
        }
    }

    /// The message shown to the caller.
    fn public_message(&self) -> String {
        match self {
            Self::BadRequest(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::LeaseCap(m) => m.clone(),
            Self::Unauthorized => "unauthorized".into(),
            Self::PayloadTooLarge => "request body is too large".into(),
            Self::RateLimited { .. } => "too many requests; retry later".into(),
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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %self, "request failed");
        }
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Self::RateLimited { retry_after: secs } = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON body extractor whose rejections use our error shape. axum's own `Json` deserializes
/// through `serde_path_to_error`, so its messages name the offending field; we keep that part.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(from_json_rejection(rejection)),
        }
    }
}

/// The body of an unauthenticated route (login, enrolment). Whatever is wrong with it comes
/// back as the same 401 a wrong password or token gets: naming a missing or mistyped field would
/// tell a stranger the shape of the API (DESIGN.md: an unauthenticated request learns nothing
/// about what the service is). Only an oversized body keeps its 413, which every HTTP server
/// gives.
pub struct GuardedJson<T>(pub T);

impl<S, T> FromRequest<S> for GuardedJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::PayloadTooLarge)
            }
            Err(_) => Err(Error::Unauthorized),
        }
    }
}

fn from_json_rejection(rejection: JsonRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::PayloadTooLarge;
    }
    match rejection {
        JsonRejection::JsonDataError(e) => Error::BadRequest(strip_prefix(&e.body_text())),
        JsonRejection::JsonSyntaxError(e) => Error::BadRequest(strip_prefix(&e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            Error::BadRequest("expected a JSON body (Content-Type: application/json)".into())
        }
        other => Error::BadRequest(format!("unreadable request body: {}", other.body_text())),
    }
}

/// axum's text opens with a fixed sentence; what follows is serde's `path: problem at line..`.
fn strip_prefix(text: &str) -> String {
    let detail = text
        .split_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or(text)
        .to_owned();
    format!("invalid request body: {detail}")
}

/// Unknown routes and methods: a 404 in our shape that says nothing about what answers.
pub async fn not_found() -> Error {
    Error::NotFound("not found".into())
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

    #[test]
    fn overload_is_429_with_retry_after() {
        let response = Error::RateLimited { retry_after: 1 }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body = Error::RateLimited { retry_after: 1 }.body();
        assert_eq!(body.error.message, "too many requests; retry later");
    }

    #[test]
    fn prefix_is_stripped_but_field_kept() {
        let text = "Failed to deserialize the JSON body into the target type: public_key: key must be 32 bytes, got 3 at line 1 column 9";
        let msg = strip_prefix(text);
        assert!(
            msg.starts_with("invalid request body: public_key:"),
            "{msg}"
        );
    }
}
