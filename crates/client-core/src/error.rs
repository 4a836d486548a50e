//! The one error type of client-core, and the two places errors come from the network: a
//! transport failure (`reqwest`/`rustls`) and a broker's `{"error": {...}}` answer.
//!
//! Each variant's `Display` is the complete message for a person (the essential cause is part
//! of it), so front ends print it as is rather than appending the `source()` chain, which is
//! kept for logs and for programs that want to look deeper.

use std::error::Error as StdError;
use std::path::PathBuf;

use grantwire_proto::{ErrorBody, ErrorCode};
use reqwest::Url;

use crate::time::format_unix_time;
use crate::tls::PinMismatch;

/// What kind of failure an [`Error`] is, for front ends that choose an exit code or a screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller passed something unusable (broker URL, edge name): fix the input.
    Usage,
    /// The broker could not be reached or the connection broke.
    Network,
    /// The broker's TLS certificate is not the pinned one, or not trusted at all.
    Trust,
    /// No session is stored on this device.
    NotLoggedIn,
    /// The broker refused the user name, password or TOTP code (HTTP 401 on login).
    Unauthorized,
    /// The session ended, by its local expiry or because the broker refused its token, or the
    /// stored session cannot be read (another version's format, a damaged file): log in again.
    SessionExpired,
    /// Authenticated, but no live grant for the edge (HTTP 403).
    Forbidden,
    /// The broker knows no such edge (HTTP 404).
    NotFound,
    /// The lease to renew is gone (expired, replaced, or its grant revoked; HTTP 404 or 403
    /// on renew): get a new profile.
    LeaseGone,
    /// The broker found the request malformed (HTTP 400); the message names the field.
    BadRequest,
    /// The broker refused because of its state, e.g. the edge's subnet is full (HTTP 409).
    Conflict,
    /// The grant already holds its most live leases (HTTP 409 `lease_cap`): revoke one first.
    LeaseCap,
    /// The broker failed or refused the size of the request (HTTP 413, 5xx).
    Server,
    /// The broker's answer was not what the API defines.
    Protocol,
    /// A local file or output could not be read or written.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid broker URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },

    #[error(
        "invalid edge name {name:?}: an edge's name is {}",
        grantwire_proto::EdgeName::RULE
    )]
    InvalidEdgeName { name: String },

    #[error("invalid lease id {lease_id:?}: lease ids look like l-0123456789abcdef (see `grantwire leases`)")]
    InvalidLeaseId { lease_id: String },

    #[error("the stored session belongs to broker {session_broker}, not {broker}: run `grantwire login` again")]
    SessionBrokerMismatch {
        session_broker: String,
        broker: String,
    },

    #[error("cannot reach the broker at {url}: {detail}")]
    Network {
        url: String,
        detail: String,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "{mismatch}: something may be intercepting the connection; if the broker's admin \
         confirms its certificate was regenerated, run `grantwire login --fingerprint {}` (a \
         broker with ACME certificates prints its key's fingerprint instead: pin that one)",
        .mismatch.presented
    )]
    PinMismatch {
        mismatch: PinMismatch,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "the broker's certificate is not trusted ({detail}); a broker with its own self-signed \
         certificate must be pinned by the SHA-256 fingerprint it printed at start (also in \
         <data-dir>/tls-cert.sha256)"
    )]
    Untrusted {
        detail: String,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "the certificate of broker {broker} has CHANGED: this device trusts fingerprint {known}, \
         the broker now presents {presented}; something may be intercepting the connection. \
         If the broker's admin confirms its certificate was regenerated, run \
         `grantwire login --fingerprint {presented}`"
    )]
    FingerprintChanged {
        broker: String,
        known: crate::tls::Fingerprint,
        presented: crate::tls::Fingerprint,
    },

    #[error(
        "broker {broker} has a certificate no public CA signed, with SHA-256 fingerprint \
         {fingerprint}, and this device does not trust it yet: compare it with the fingerprint \
         the broker printed at start (also in <data-dir>/tls-cert.sha256), then run \
         `grantwire login` on a terminal to accept it, or pass `--fingerprint {fingerprint}`"
    )]
    UnknownBroker {
        broker: String,
        fingerprint: crate::tls::Fingerprint,
    },

    #[error("not logged in: run `grantwire login`")]
    NotLoggedIn,

    #[error("your session expired at {}: run `grantwire login` again", format_unix_time(*.expires_at))]
    SessionExpired { expires_at: i64 },

    #[error("the broker no longer accepts your session ({message}): run `grantwire login` again")]
    SessionRejected { message: String },

    #[error(
        "login refused ({message}): the user name, password or TOTP code is wrong, or the code \
         was already used (wait for the next one)"
    )]
    LoginRefused { message: String },

    #[error("no grant for edge {edge:?} ({message}): ask the broker's admin for one")]
    Forbidden { edge: String, message: String },

    #[error("the broker knows no edge {edge:?} ({message})")]
    NotFound { edge: String, message: String },

    #[error("lease {lease_id} is gone ({message}): it expired, was replaced by a newer profile, or its grant was revoked")]
    LeaseGone { lease_id: String, message: String },

    #[error("lease {lease_id} is not yours ({message}): only its own user can revoke it")]
    NotYourLease { lease_id: String, message: String },

    #[error("you hold no live lease {lease_id} ({message}): see `grantwire leases`")]
    UnknownLease { lease_id: String, message: String },

    #[error("the broker rejected the request: {message}")]
    BadRequest { message: String },

    #[error("the broker refused: {message}")]
    Conflict { message: String },

    #[error("the broker refused a new lease: {message}")]
    LeaseCap { message: String },

    #[error("the broker failed (HTTP {status}): {message}")]
    Server { status: u16, message: String },

    #[error("unexpected answer from the broker: {detail}")]
    Protocol {
        detail: String,
        #[source]
        source: Option<serde_json::Error>,
    },

    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "session file {} is unreadable ({source}): run `grantwire login` again to replace it \
         (the file is left as it is until then)",
        .path.display()
    )]
    CorruptSession {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "session file {} was written by another version of grantwire (format version {found}; \
         this one reads format {supported}): run `grantwire login` again to replace it (the \
         file is left as it is until then)",
        .path.display()
    )]
    SessionFormat {
        path: PathBuf,
        found: String,
        supported: u64,
    },

    #[error(
        "the lease kept for edge {edge} in {} {detail}: run `grantwire profile {edge}` to make \
         a new profile (the file is left as it is until then)",
        .path.display()
    )]
    StoredLeaseUnreadable {
        edge: String,
        path: PathBuf,
        detail: String,
    },

    /// The known-brokers file is damaged or of another format: no broker can be checked
    /// against it, so nothing is trusted (fail closed) and the file is left as it is.
    #[error(
        "cannot check brokers against {}: it {detail}; it is left untouched: update grantwire, \
         or move it aside and log in again with --fingerprint",
        .path.display()
    )]
    KnownBrokersUnreadable { path: PathBuf, detail: String },

    #[error("cannot show the profile as a QR code: {0}")]
    Qr(#[source] qrcode::types::QrError),

    #[error("cannot draw the profile's QR code as a PNG image: {0}")]
    QrPng(#[source] png::EncodingError),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidUrl { .. }
            | Self::InvalidEdgeName { .. }
            | Self::InvalidLeaseId { .. } => ErrorKind::Usage,
            Self::SessionBrokerMismatch { .. } => ErrorKind::Usage,
            Self::Network { .. } => ErrorKind::Network,
            Self::PinMismatch { .. }
            | Self::Untrusted { .. }
            | Self::FingerprintChanged { .. }
            | Self::UnknownBroker { .. }
            | Self::KnownBrokersUnreadable { .. } => ErrorKind::Trust,
            Self::NotLoggedIn => ErrorKind::NotLoggedIn,
            // A session this client cannot read is handled like an expired one: log in again.
            Self::SessionExpired { .. }
            | Self::SessionRejected { .. }
            | Self::CorruptSession { .. }
            | Self::SessionFormat { .. } => ErrorKind::SessionExpired,
            Self::LoginRefused { .. } => ErrorKind::Unauthorized,
            Self::Forbidden { .. } | Self::NotYourLease { .. } => ErrorKind::Forbidden,
            Self::NotFound { .. } | Self::UnknownLease { .. } => ErrorKind::NotFound,
            Self::LeaseGone { .. } => ErrorKind::LeaseGone,
            Self::BadRequest { .. } => ErrorKind::BadRequest,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::LeaseCap { .. } => ErrorKind::LeaseCap,
            Self::Server { .. } => ErrorKind::Server,
            Self::Protocol { .. } => ErrorKind::Protocol,
            Self::Io { .. } | Self::StoredLeaseUnreadable { .. } | Self::Qr(_) | Self::QrPng(_) => {
                ErrorKind::Io
            }
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Which call an HTTP error answered: the same code means different things to the user on
/// login (wrong credentials) and on a lease request (the session ended).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call<'a> {
    Login,
    Lease { edge: &'a str },
    Renew { lease_id: &'a str },
    Whoami,
    Logout,
    ListLeases,
    Revoke { lease_id: &'a str },
}

/// Maps a non-success answer from the broker. The JSON body's code is authoritative; a body
/// that is not an [`ErrorBody`] (a proxy's error page, a newer code) falls back on the status.
pub(crate) fn from_response(status: u16, body: &[u8], call: Call<'_>) -> Error {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => (error.code, sanitize(&error.message)),
        Err(source) => match code_for_status(status) {
            Some(code) => (code, format!("HTTP {status}")),
            None => {
                return Error::Protocol {
                    detail: format!("HTTP {status} without a grantwire error body"),
                    source: Some(source),
                }
            }
        },
    };
    match (code, call) {
        (ErrorCode::Unauthorized, Call::Login) => Error::LoginRefused { message },
        (
            ErrorCode::Unauthorized,
            Call::Lease { .. }
            | Call::Renew { .. }
            | Call::Whoami
            | Call::Logout
            | Call::ListLeases
            | Call::Revoke { .. },
        ) => Error::SessionRejected { message },
        (ErrorCode::Forbidden, Call::Revoke { lease_id }) => Error::NotYourLease {
            lease_id: sanitize(lease_id),
            message,
        },
        (ErrorCode::NotFound, Call::Revoke { lease_id }) => Error::UnknownLease {
            lease_id: sanitize(lease_id),
            message,
        },
        (ErrorCode::Forbidden, Call::Lease { edge }) => Error::Forbidden {
            edge: edge.to_owned(),
            message,
        },
        (ErrorCode::NotFound, Call::Lease { edge }) => Error::NotFound {
            edge: edge.to_owned(),
            message,
        },
        (ErrorCode::Forbidden | ErrorCode::NotFound, Call::Renew { lease_id }) => {
            Error::LeaseGone {
                lease_id: sanitize(lease_id),
                message,
            }
        }
        (ErrorCode::BadRequest, _) => Error::BadRequest { message },
        (ErrorCode::Conflict, _) => Error::Conflict { message },
        (ErrorCode::LeaseCap, _) => Error::LeaseCap { message },
        (
            ErrorCode::PayloadTooLarge
            | ErrorCode::RateLimited
            | ErrorCode::Internal
            | ErrorCode::Unavailable,
            _,
        ) => Error::Server { status, message },
        // Login has no grant or named resource to miss: such an answer means the URL does not
        // lead to a grantwire broker's API.
        (ErrorCode::Forbidden | ErrorCode::NotFound, Call::Login) => Error::Protocol {
            detail: format!("HTTP {status} on login ({message}): is the broker URL right?"),
            source: None,
        },
        (ErrorCode::Forbidden | ErrorCode::NotFound, Call::Logout) => Error::Protocol {
            detail: format!("HTTP {status} on logout ({message}): is the broker URL right?"),
            source: None,
        },
        (ErrorCode::Forbidden | ErrorCode::NotFound, Call::Whoami) => Error::Protocol {
            detail: format!("HTTP {status} on whoami ({message}): is the broker URL right?"),
            source: None,
        },
        (ErrorCode::Forbidden | ErrorCode::NotFound, Call::ListLeases) => Error::Protocol {
            detail: format!(
                "HTTP {status} on listing leases ({message}): is the broker URL right, \
                 and does the broker have this version's API?"
            ),
            source: None,
        },
    }
}

fn code_for_status(status: u16) -> Option<ErrorCode> {
    [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
    ]
    .into_iter()
    .find(|c| c.http_status() == status)
    .or((500..600).contains(&status).then_some(ErrorCode::Internal))
}

/// The broker's message goes to a terminal: drop control characters so an answer cannot move
/// the cursor or recolour the screen, and bound its length.
pub(crate) fn sanitize(message: &str) -> String {
    const MAX_CHARS: usize = 300;
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_CHARS)
        .collect()
}

/// Classifies a transport failure. TLS errors are found inside the `io::Error` that hyper
/// wraps them in, so a pin mismatch reads as one and not as "connection reset".
pub(crate) fn from_reqwest(url: &Url, err: reqwest::Error) -> Error {
    let tls = causes(&err).find_map(|e| e.downcast_ref::<rustls::Error>().cloned());
    if let Some(tls) = tls {
        if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = &tls {
            if let Some(mismatch) = other.0.downcast_ref::<PinMismatch>() {
                return Error::PinMismatch {
                    mismatch: *mismatch,
                    source: err,
                };
            }
        }
        if matches!(tls, rustls::Error::InvalidCertificate(_)) {
            return Error::Untrusted {
                detail: tls.to_string(),
                source: err,
            };
        }
        return Error::Network {
            url: url.to_string(),
            detail: format!("TLS handshake failed: {tls}"),
            source: err,
        };
    }
    let detail = if err.is_timeout() {
        "timed out".to_owned()
    } else {
        causes(&err)
            .last()
            .map_or_else(|| err.to_string(), ToString::to_string)
    };
    Error::Network {
        url: url.to_string(),
        detail,
        source: err,
    }
}

/// The error and its causes. `io::Error::source` skips the error it wraps (it returns that
/// error's own source), so the wrapped error is visited explicitly.
fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn StdError + 'static)| {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                return Some(inner as &(dyn StdError + 'static));
            }
        }
        e.source()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"error": {"code": code, "message": message}}))
            .unwrap()
    }

    const LEASE: Call<'static> = Call::Lease { edge: "home" };
    const RENEW: Call<'static> = Call::Renew {
        lease_id: "l-0123456789abcdef",
    };

    const REVOKE: Call<'static> = Call::Revoke {
        lease_id: "l-0123456789abcdef",
    };

    #[test]
    fn each_broker_code_maps_to_its_kind() {
        let cases = [
            (400, "bad_request", Call::Login, ErrorKind::BadRequest),
            (400, "bad_request", LEASE, ErrorKind::BadRequest),
            (401, "unauthorized", Call::Login, ErrorKind::Unauthorized),
            (401, "unauthorized", LEASE, ErrorKind::SessionExpired),
            (403, "forbidden", LEASE, ErrorKind::Forbidden),
            (404, "not_found", LEASE, ErrorKind::NotFound),
            (404, "not_found", Call::Login, ErrorKind::Protocol),
            (409, "conflict", LEASE, ErrorKind::Conflict),
            (409, "lease_cap", LEASE, ErrorKind::LeaseCap),
            (413, "payload_too_large", LEASE, ErrorKind::Server),
            (500, "internal", Call::Login, ErrorKind::Server),
            (401, "unauthorized", RENEW, ErrorKind::SessionExpired),
            (403, "forbidden", RENEW, ErrorKind::LeaseGone),
            (404, "not_found", RENEW, ErrorKind::LeaseGone),
            (409, "conflict", RENEW, ErrorKind::Conflict),
            (401, "unauthorized", Call::Whoami, ErrorKind::SessionExpired),
            (404, "not_found", Call::Whoami, ErrorKind::Protocol),
            (
                401,
                "unauthorized",
                Call::ListLeases,
                ErrorKind::SessionExpired,
            ),
            (404, "not_found", Call::ListLeases, ErrorKind::Protocol),
            (401, "unauthorized", REVOKE, ErrorKind::SessionExpired),
            (403, "forbidden", REVOKE, ErrorKind::Forbidden),
            (404, "not_found", REVOKE, ErrorKind::NotFound),
        ];
        for (status, code, call, want) in cases {
            let err = from_response(status, &body(code, "msg"), call);
            assert_eq!(err.kind(), want, "{status} {code} {call:?}: {err}");
            assert!(err.to_string().contains("msg"), "{err}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let bad = from_response(400, &body("bad_request", "public_key: bad base64"), LEASE);
        assert!(bad.to_string().contains("public_key"), "{bad}");
        let forbidden = from_response(403, &body("forbidden", "no grant"), LEASE);
        assert!(forbidden.to_string().contains("\"home\""), "{forbidden}");
        let expired = from_response(401, &body("unauthorized", "unauthorized"), LEASE);
        assert!(expired.to_string().contains("grantwire login"), "{expired}");
        let login = from_response(401, &body("unauthorized", "unauthorized"), Call::Login);
        assert!(login.to_string().contains("TOTP"), "{login}");
        let theirs = from_response(403, &body("forbidden", "another user's"), REVOKE);
        assert!(theirs.to_string().contains("not yours"), "{theirs}");
        let unknown = from_response(404, &body("not_found", "no live lease"), REVOKE);
        assert!(
            unknown.to_string().contains("grantwire leases"),
            "{unknown}"
        );
    }

    #[test]
    fn body_without_error_shape_falls_back_on_status() {
        let err = from_response(403, b"<html>nginx</html>", LEASE);
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        let err = from_response(502, b"Bad Gateway", LEASE);
        assert_eq!(err.kind(), ErrorKind::Server);
        let err = from_response(418, b"teapot", LEASE);
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert!(err.to_string().contains("418"), "{err}");
    }

    #[test]
    fn broker_message_loses_control_characters() {
        let err = from_response(400, &body("bad_request", "edge\u{1b}[2J: too long"), LEASE);
        assert!(!err.to_string().contains('\u{1b}'), "{err:?}");
        assert_eq!(sanitize(&"x".repeat(1000)).len(), 300);
    }
}
