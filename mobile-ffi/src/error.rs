//! The one error type the apps see, and its mapping from client-core's [`ErrorKind`].
//!
//! The kinds are what an app branches on (which screen to show, whether to retry on the next
//! network change); the message is client-core's own text, written for a person and free of
//! secrets (client-core never puts a password, code, token or key in an error).

use grantwire_client_core::{Error as CoreError, ErrorKind};

/// Why a call failed. Every variant carries client-core's message for a person or a log.
///
/// | kind | client-core kind | what the app does |
/// | --- | --- | --- |
/// | `Network` | Network | retry later, e.g. on the next network change |
/// | `Trust` | Trust | the broker's certificate is not the pinned one: stop, tell the person |
/// | `Auth` | Unauthorized, NotLoggedIn | ask for user, password and a fresh TOTP code |
/// | `Expired` | SessionExpired, LeaseGone | session: log in again; lease: request a new one |
/// | `Grant` | Forbidden | no grant on that edge (or not the user's lease): ask the admin |
/// | `NotFound` | NotFound | no such edge, or no such live lease to revoke |
/// | `Pin` | Conflict | the broker cannot pin a lease for this device where it is now |
/// | `Usage` | Usage, BadRequest | the app passed something malformed: a bug or bad input |
/// | `Broker` | Server, Protocol | the broker failed or is not a grantwire broker |
/// | `Other` | Io | the QR code cannot hold the profile; the runtime failed |
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum GrantwireError {
    #[error("{message}")]
    Network { message: String },
    #[error("{message}")]
    Trust { message: String },
    #[error("{message}")]
    Auth { message: String },
    #[error("{message}")]
    Expired { message: String },
    /// No live grant on the edge (HTTP 403), or the grant already holds its most live leases
    /// (HTTP 409 `lease_cap`): the message says which.
    #[error("{message}")]
    Grant { message: String },
    #[error("{message}")]
    NotFound { message: String },
    /// HTTP 409 from the broker, for a lease. The usual cause on a phone is an edge with no
    /// endpoint of the family the device now has (an IPv6-only mobile network, an IPv4-only
    /// edge); the others are a public key another user holds, a full subnet, or an edge that
    /// has not enrolled yet. The message says which.
    #[error("{message}")]
    Pin { message: String },
    #[error("{message}")]
    Usage { message: String },
    #[error("{message}")]
    Broker { message: String },
    #[error("{message}")]
    Other { message: String },
}

impl GrantwireError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
        }
    }
}

impl From<CoreError> for GrantwireError {
    fn from(err: CoreError) -> Self {
        // The Display of a client-core error is its complete message (see its module docs).
        let message = err.to_string();
        match err.kind() {
            ErrorKind::Network => Self::Network { message },
            ErrorKind::Trust => Self::Trust { message },
            ErrorKind::Unauthorized | ErrorKind::NotLoggedIn => Self::Auth { message },
            ErrorKind::SessionExpired | ErrorKind::LeaseGone => Self::Expired { message },
            ErrorKind::Forbidden | ErrorKind::LeaseCap => Self::Grant { message },
            ErrorKind::NotFound => Self::NotFound { message },
            ErrorKind::Conflict => Self::Pin { message },
            ErrorKind::Usage | ErrorKind::BadRequest => Self::Usage { message },
            ErrorKind::Server | ErrorKind::Protocol => Self::Broker { message },
            ErrorKind::Io => Self::Other { message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One client-core error of each kind but Network, which needs a real transport failure
    /// (`client/tests.rs`: `unreachable_broker_is_network_when_polled_outside_tokio`).
    fn one_of_each_kind() -> Vec<CoreError> {
        vec![
            CoreError::InvalidUrl {
                url: "ftp://x".into(),
                reason: "the broker is reached over https only",
            },
            CoreError::FingerprintChanged {
                broker: "b".into(),
                known: fingerprint('a'),
                presented: fingerprint('b'),
            },
            CoreError::NotLoggedIn,
            CoreError::LoginRefused {
                message: "unauthorized".into(),
            },
            CoreError::SessionExpired { expires_at: 0 },
            CoreError::Forbidden {
                edge: "home".into(),
                message: "no grant".into(),
            },
            CoreError::NotFound {
                edge: "home".into(),
                message: "no edge".into(),
            },
            CoreError::LeaseGone {
                lease_id: "l-1".into(),
                message: "gone".into(),
            },
            CoreError::BadRequest {
                message: "public_key".into(),
            },
            CoreError::Conflict {
                message: "edge has no endpoint of the client's address family".into(),
            },
            CoreError::LeaseCap {
                message: "your grant on this edge allows 5 live leases at once".into(),
            },
            CoreError::Server {
                status: 500,
                message: "internal".into(),
            },
            CoreError::Protocol {
                detail: "not JSON".into(),
                source: None,
            },
            CoreError::Qr(
                grantwire_client_core::render_qr_svg(&"x".repeat(8000)).map_or_else(
                    |e| match e {
                        CoreError::Qr(q) => q,
                        other => panic!("not a QR error: {other}"),
                    },
                    |_| panic!("8000 bytes fit a QR code"),
                ),
            ),
        ]
    }

    fn fingerprint(digit: char) -> grantwire_client_core::Fingerprint {
        digit.to_string().repeat(64).parse().expect("64 hex digits")
    }

    fn kind_name(err: &GrantwireError) -> &'static str {
        match err {
            GrantwireError::Network { .. } => "Network",
            GrantwireError::Trust { .. } => "Trust",
            GrantwireError::Auth { .. } => "Auth",
            GrantwireError::Expired { .. } => "Expired",
            GrantwireError::Grant { .. } => "Grant",
            GrantwireError::NotFound { .. } => "NotFound",
            GrantwireError::Pin { .. } => "Pin",
            GrantwireError::Usage { .. } => "Usage",
            GrantwireError::Broker { .. } => "Broker",
            GrantwireError::Other { .. } => "Other",
        }
    }

    #[test]
    fn each_core_kind_maps_to_its_documented_kind() {
        let want = [
            (ErrorKind::Usage, "Usage"),
            (ErrorKind::Trust, "Trust"),
            (ErrorKind::NotLoggedIn, "Auth"),
            (ErrorKind::Unauthorized, "Auth"),
            (ErrorKind::SessionExpired, "Expired"),
            (ErrorKind::Forbidden, "Grant"),
            (ErrorKind::NotFound, "NotFound"),
            (ErrorKind::LeaseGone, "Expired"),
            (ErrorKind::BadRequest, "Usage"),
            (ErrorKind::Conflict, "Pin"),
            (ErrorKind::LeaseCap, "Grant"),
            (ErrorKind::Server, "Broker"),
            (ErrorKind::Protocol, "Broker"),
            (ErrorKind::Io, "Other"),
        ];
        let errors = one_of_each_kind();
        assert_eq!(errors.len(), want.len());
        for (err, (kind, name)) in errors.into_iter().zip(want) {
            assert_eq!(err.kind(), kind, "{err}");
            let text = err.to_string();
            let mapped = GrantwireError::from(err);
            assert_eq!(kind_name(&mapped), name, "{kind:?}");
            assert_eq!(mapped.to_string(), text, "the message is client-core's");
        }
    }
}
