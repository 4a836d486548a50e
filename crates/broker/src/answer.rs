//! The one place where the broker's errors become HTTP answers, for the API, the admin socket
//! and the web pages alike: the status comes from the error's code, the body is DESIGN.md's
//! error body, and an internal error is logged here and answered without its detail.
//!
//! [`ApiError`] wraps `crate::error::Error` so this shell can implement axum's traits for it;
//! `?` converts one into the other.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use grantwire_proto::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// An [`Error`] as an HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub Error);

/// A handler's result.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The HTTP status of an error's code.
pub fn status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Self(e) = self;
        let code = e.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "request failed");
        }
        let mut response = (status(code), axum::Json(e.body())).into_response();
        if let Error::RateLimited { retry_after: secs }
        | Error::Unavailable {
            retry_after: secs, ..
        } = e
        {
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
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(from_json_rejection(rejection).into()),
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
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::PayloadTooLarge.into())
            }
            Err(_) => Err(Error::Unauthorized.into()),
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
pub async fn not_found() -> ApiError {
    Error::NotFound("not found".into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_429_with_retry_after() {
        let response = ApiError(Error::RateLimited { retry_after: 1 }).into_response();
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
