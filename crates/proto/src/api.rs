//! Bodies of the broker's HTTP API under `/v1`, and the lease set pushed to edges.
//!
//! Routes (all JSON):
//!
//! | route | who | request | response |
//! |---|---|---|---|
//! | `POST /v1/login` | anyone | [`LoginRequest`] | [`LoginResponse`] |
//! | `POST /v1/leases` | user session (`Authorization: Bearer`) | [`LeaseRequest`] | [`LeaseResponse`] |
//! | `GET /v1/whoami` | user session | - | [`WhoamiResponse`] |
//! | `POST /v1/leases/{id}/renew` | user session, lease owner | - | [`LeaseResponse`] |
//! | `GET /v1/leases` | user session | - | [`LeaseListResponse`] (the caller's live leases) |
//! | `POST /v1/leases/{id}/revoke` | user session, lease owner | - | [`LeaseRevokeResponse`] |
//! | `POST /v1/edge/enrol` | holder of a one-time token | [`EnrolRequest`] | [`EnrolResponse`] |
//! | `GET /v1/edge/sync` | enrolled edge (`Authorization: Bearer`) | - | server-sent events, each `data:` a [`LeaseSet`] |
//! | `POST /v1/edge/report` | enrolled edge | [`EdgeReport`] | 204 |
//! | `POST /v1/logout` | user session | - | 204 |
//! | `GET /v1/openapi.json` | user session or enrolled edge | - | the OpenAPI description of these routes |
//! | admin routes | admin socket only | [`UserAddRequest`], ... | [`UserAddResponse`], ... |
//!
//! Every error is an [`ErrorBody`] with one of the [`ErrorCode`]s.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{EdgeName, LeaseId, Pin, PresharedKey, Profile, PublicKey};

/// `{"error": {"code": "...", "message": "..."}}`: the only shape an error response has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable error kinds. Each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed body or field; the message names the field.
    BadRequest,
    /// 401: missing, wrong or expired credentials. Never says which part was wrong.
    Unauthorized,
    /// 403: authenticated, but no live grant for this edge.
    Forbidden,
    /// 404: unknown edge (or other named resource), for an authenticated caller only.
    NotFound,
    /// 409: the name already exists, the edge's subnet is full, the edge has not enrolled, the
    /// public key is another user's, or the edge has no endpoint of the address family the client
    /// reached the broker over, or its endpoint is a host name that does not resolve (to that
    /// family) from the broker (its message says which, and what to do).
    Conflict,
    /// 409: the grant already holds its most live leases (`max_leases`); a lease must end (or
    /// be revoked) before another is issued. Renewing a lease is not a new lease.
    LeaseCap,
    /// 413: request body over the limit.
    PayloadTooLarge,
    /// 429: too many requests from this source (or a full password-hashing queue); the
    /// `Retry-After` header says when to try again.
    RateLimited,
    /// 500: something broke on the broker; details are only in its log.
    Internal,
    /// 503: something the request needs is out of reach for now (the edge's endpoint name did
    /// not resolve from the broker); the `Retry-After` header says when to try again.
    Unavailable,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict | Self::LeaseCap => 409,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }
}

/// `Debug` is written out below: it redacts the secret fields.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
    /// The current 6-digit TOTP code.
    pub code: String,
}

/// `Debug` is written out below: it redacts the secret fields.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for later requests. The broker stores only its hash.
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Edge name, as given to `grantwire-broker edge add`.
    pub edge: String,
    /// The public half of the keypair the client made on the device.
    pub public_key: PublicKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseResponse {
    pub profile: Profile,
}

/// `GET /v1/whoami`: who the session is, where the broker sees it, and whether its live leases
/// are pinned there (a client that roamed renews the ones that are not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoamiResponse {
    pub user: String,
    /// The client's address as the broker sees it (the pin a new lease would get is this,
    /// masked to the grant's prefix).
    pub source_ip: IpAddr,
    pub leases: Vec<WhoamiLease>,
    /// The broker's clock (Unix seconds) when it answered: the times above are on it, so a
    /// client compares them with this rather than with its own clock. None from a broker from
    /// before this field.
    #[serde(default)]
    pub now: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoamiLease {
    pub id: LeaseId,
    pub edge: EdgeName,
    pub pin: Pin,
    /// Whether `pin` covers `source_ip`.
    pub pinned_here: bool,
    pub expires_at: i64,
    /// Unix seconds of the lease's last completed WireGuard handshake as its edge reported it;
    /// none yet (or a broker from before this field).
    #[serde(default)]
    pub last_handshake_at: Option<i64>,
}

/// `Debug` is written out below: it redacts the secret fields.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The one-time token printed by `grantwire-broker edge add`.
    pub token: String,
    /// The edge's WireGuard public key; the private key never leaves the edge.
    pub public_key: PublicKey,
}

/// `Debug` is written out below: it redacts the secret fields.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// Long-lived bearer credential for `/v1/edge/*`. The broker stores only its hash.
    pub credential: String,
    pub config: EdgeConfig,
}

/// What an edge needs to know about itself, as the broker has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeConfig {
    pub name: String,
    /// The tunnel subnet; the edge holds its first host address.
    pub subnet: Ipv4Net,
    pub tunnel_address: Ipv4Addr,
}

/// The complete set of live leases of one edge. Sent on connect and after every change, so an
/// edge never has to merge deltas: it replaces its table with this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseSet {
    pub config: EdgeConfig,
    pub leases: Vec<EdgeLease>,
    /// Unix seconds at which the broker built this set.
    pub generated_at: i64,
    /// The broker's clock as it sent this set, in Unix milliseconds. The edge judges expiry by
    /// this clock, carried forward on its own monotonic clock, so a wrong or stepped wall clock
    /// on the edge host neither ends leases early nor keeps them late. Absent from a set loaded
    /// from the edge's cache (and from brokers before it): the edge then reads its wall clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_time_ms: Option<i64>,
}

/// One lease as the edge enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeLease {
    pub id: String,
    pub public_key: PublicKey,
    pub preshared_key: PresharedKey,
    pub tunnel_address: Ipv4Addr,
    pub pin: Pin,
    /// TCP ports on the edge's tunnel address this lease may reach.
    pub ports: Vec<u16>,
    /// Unix seconds; the edge drops the peer at this time by its own clock.
    pub expires_at: i64,
}

// ---- admin API (served only on the broker's local admin socket) ----

/// `Debug` is written out below: it redacts the secret fields.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserAddRequest {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

/// `Debug` is written out below: it redacts the secret fields.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserAddResponse {
    pub name: String,
    pub admin: bool,
    /// Base32 (RFC 4648, no padding) TOTP secret, shown once.
    pub totp_secret: String,
    pub otpauth_uri: String,
}

/// `user invite`: a user who sets their own password and TOTP secret at first sign-in on the
/// broker's web pages, with the temporary password the admin passes on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInviteRequest {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    /// How long the invitation lasts, in seconds; the broker's default when absent.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// `Debug` is written out below: it redacts the temporary password.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserInviteResponse {
    pub name: String,
    pub admin: bool,
    /// Shown once; good only for enrolment, until `expires_at`.
    pub temporary_password: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// One user, as `user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds before which a login is refused after failed attempts, if any.
    pub locked_until: Option<i64>,
    /// For a user invited and not enrolled yet: when the invitation ends (Unix seconds).
    #[serde(default)]
    pub invited_until: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserListResponse {
    pub users: Vec<UserInfo>,
}

/// Names the user of `user disable`, `user enable` and `user reset-totp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserNameRequest {
    pub name: String,
}

/// `Debug` is written out below: it redacts the password.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserPasswordRequest {
    pub name: String,
    pub password: String,
}

/// What `user disable`, `user enable` and `user reset-password` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChangeResponse {
    pub name: String,
    pub disabled: bool,
    /// Sessions of the user that ended with the change.
    pub ended_sessions: u64,
    /// Live leases of the user that ended with the change (their edges are told at once).
    #[serde(default)]
    pub revoked_leases: u64,
}

/// What `user remove` did: the user, their sessions, grants and leases are gone; the audit
/// log keeps their name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRemoveResponse {
    pub name: String,
    pub ended_sessions: u64,
    pub revoked_leases: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EdgeAddRequest {
    pub name: String,
    /// `HOST:PORT` clients dial, written into their profiles.
    pub endpoint: String,
    /// Further endpoints: in all at most one IPv4 and one IPv6 literal, or a single hostname.
    /// A profile gets the endpoint of its pin's address family.
    #[serde(default)]
    pub extra_endpoints: Vec<String>,
    /// Defaults to 10.77.0.0/24.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// Seconds the enrolment token stays usable; defaults to [`DEFAULT_ENROL_TOKEN_SECS`].
    #[serde(default)]
    pub expires_secs: Option<u64>,
}

/// How long an edge's enrolment token works unless `edge add --expires` says otherwise.
pub const DEFAULT_ENROL_TOKEN_SECS: u64 = 24 * 3600;
/// Live leases one grant may hold at once unless `grant add --max-leases` says otherwise.
pub const DEFAULT_MAX_LEASES: u32 = 5;

fn default_max_leases() -> u32 {
    DEFAULT_MAX_LEASES
}

/// `Debug` is written out below: it redacts the secret fields.
#[derive(Clone, Serialize, Deserialize)]
pub struct EdgeAddResponse {
    pub name: String,
    pub endpoint: String,
    /// Every endpoint, `endpoint` first.
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub subnet: Ipv4Net,
    pub tunnel_address: Ipv4Addr,
    /// One-time enrolment token for `grantwire-edge run --token-file`.
    pub enrolment_token: String,
    /// Unix seconds after which the token is refused.
    #[serde(default)]
    pub enrolment_expires_at: i64,
}

/// One edge as `edge list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeInfo {
    pub name: String,
    pub endpoints: Vec<String>,
    pub subnet: Ipv4Net,
    pub tunnel_address: Ipv4Addr,
    /// Whether the edge has used its enrolment token.
    pub enrolled: bool,
    /// Whether its sync stream is open right now.
    pub connected: bool,
    /// Unix seconds at which it last opened its sync stream; none if never.
    pub last_seen: Option<i64>,
    /// Until enrolment: unix seconds after which its token is refused (may be past).
    #[serde(default)]
    pub enrolment_expires_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeListResponse {
    pub edges: Vec<EdgeInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeRemoveRequest {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeRemoveResponse {
    pub name: String,
    pub revoked_leases: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GrantAddRequest {
    pub user: String,
    pub edge: String,
    /// Lifetime of each lease issued under this grant; defaults to 8 h.
    #[serde(default)]
    pub lease_ttl_secs: Option<u64>,
    /// Unix seconds at which the grant ends (in the future); none: no end.
    #[serde(default)]
    pub ends_at: Option<i64>,
    /// TCP ports on the edge's tunnel address; defaults to Plex's 32400.
    #[serde(default)]
    pub ports: Option<Vec<u16>>,
    /// Pin prefix length for IPv4 clients, 8 to 32; defaults to 32.
    #[serde(default)]
    pub pin_prefix4: Option<u8>,
    /// Pin prefix length for IPv6 clients, 32 to 128; defaults to 64.
    #[serde(default)]
    pub pin_prefix6: Option<u8>,
    /// Live leases the grant may hold at once; defaults to [`DEFAULT_MAX_LEASES`].
    #[serde(default)]
    pub max_leases: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantInfo {
    pub user: String,
    pub edge: String,
    pub lease_ttl_secs: u64,
    pub ports: Vec<u16>,
    /// Unix seconds, or none for a grant without an end.
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub pin_prefix4: u8,
    #[serde(default)]
    pub pin_prefix6: u8,
    /// Live leases the grant may hold at once.
    #[serde(default = "default_max_leases")]
    pub max_leases: u32,
}

/// Live (unrevoked, unended) grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantListResponse {
    pub grants: Vec<GrantInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRevokeRequest {
    pub user: String,
    pub edge: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRevokeResponse {
    pub user: String,
    pub edge: String,
    pub revoked_leases: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: String,
    pub user: String,
    pub edge: String,
    pub tunnel_address: Ipv4Addr,
    pub pin: Pin,
    pub public_key: PublicKey,
    pub created_at: i64,
    pub expires_at: i64,
    /// TCP ports the lease may reach.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// What the edge last reported for this lease ([`EdgeReport`]); all `None` until it has.
    #[serde(default)]
    pub usage: Option<LeaseUsageInfo>,
}

/// A lease's traffic as its edge last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseUsageInfo {
    /// Unix seconds of the lease's last completed WireGuard handshake; `None`: none reported.
    pub last_handshake_at: Option<i64>,
    /// Bytes the edge received from the client and sent to it, since the edge set up this
    /// lease's tunnel (an edge restart starts again from zero).
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Unix seconds of the report.
    pub reported_at: i64,
}

/// `POST /v1/edge/report`: what an edge saw since its last report. Leases it does not hold
/// (revoked, another edge's) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeReport {
    /// Leases whose figures changed since the last report.
    #[serde(default)]
    pub leases: Vec<LeaseUsage>,
    #[serde(default)]
    pub events: Vec<EdgeEvent>,
}

/// Most entries of each list one report may carry; an edge sends more in several reports.
pub const MAX_REPORT_ITEMS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseUsage {
    pub lease_id: String,
    /// Unix seconds; `None`: none known to the edge (none yet, or forgotten after a few idle
    /// minutes; the broker then keeps the last one it was told).
    pub last_handshake_at: Option<i64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Something the edge saw that a human should hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeEvent {
    pub kind: EdgeEventKind,
    pub lease_id: String,
    /// Where the datagrams came from.
    pub source_ip: IpAddr,
    /// Authenticated datagrams seen since the edge last reported this (lease, source); the edge
    /// checks at most one a second per lease, so this counts seconds with traffic, roughly.
    pub count: u64,
    /// Unix seconds of the first one.
    pub first_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeEventKind {
    /// A datagram that authenticated under the lease's session keys (so it was sent by the
    /// holder of the lease's key) arrived from outside the lease's pin, and was dropped. A
    /// client that moved network without `grantwire renew`, or a stolen device key.
    KeyUsedOffPin,
}

/// `grantwire-broker audit`: entries at or after `since`, about `user` (as actor or named in
/// the detail as `user=NAME`), of `kind`, the newest `limit` of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    /// Only entries of this kind (`login_failed`, `grant_added`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only the newest this many of the matching entries (still listed oldest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditResponse {
    /// Oldest first.
    pub entries: Vec<AuditEntry>,
}

/// `grantwire-broker backup FILE`: the broker writes a consistent copy of its database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRequest {
    /// Absolute path of the copy; must not exist yet.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupResponse {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRevokeRequest {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    pub id: String,
    pub user: String,
    pub edge: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseListResponse {
    pub leases: Vec<LeaseInfo>,
}

// ---- Debug without secrets ----
//
// These bodies carry passwords, TOTP codes and secrets, and bearer tokens. Their `Debug` prints
// `<redacted>` for those fields, so a `{:?}` in a log line or a test failure cannot leak one.

const REDACTED: &str = "<redacted>";

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("password", &REDACTED)
            .field("code", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginResponse")
            .field("token", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolRequest")
            .field("token", &REDACTED)
            .field("public_key", &self.public_key)
            .finish()
    }
}

impl fmt::Debug for EnrolResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolResponse")
            .field("credential", &REDACTED)
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for UserAddRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAddRequest")
            .field("name", &self.name)
            .field("password", &REDACTED)
            .field("admin", &self.admin)
            .finish()
    }
}

impl fmt::Debug for UserPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPasswordRequest")
            .field("name", &self.name)
            .field("password", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for UserAddResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAddResponse")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("totp_secret", &REDACTED)
            .field("otpauth_uri", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for UserInviteResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInviteResponse")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("temporary_password", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for EdgeAddResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeAddResponse")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("endpoints", &self.endpoints)
            .field("subnet", &self.subnet)
            .field("tunnel_address", &self.tunnel_address)
            .field("enrolment_token", &REDACTED)
            .field("enrolment_expires_at", &self.enrolment_expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape_is_the_documented_one() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::PayloadTooLarge,
                message: "request body is too large".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error": {"code": "payload_too_large", "message": "request body is too large"}})
        );
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
    }

    #[test]
    fn lease_request_with_bad_key_does_not_parse() {
        let err = serde_json::from_str::<LeaseRequest>(r#"{"edge":"home","public_key":"AAAA"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("32 bytes"), "{err}");
    }

    const SECRET: &str = "s3cr3t-VALUE-that-must-not-leak";

    fn key() -> PublicKey {
        "KNqxBMK9eVN4wqdRrtW8GgGQasnTy/0xtfvLuS6sT3A="
            .parse()
            .unwrap()
    }

    fn assert_redacted(debug: String) {
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn login_request_debug_hides_password_and_code() {
        let req = LoginRequest {
            user: "alice".into(),
            password: SECRET.into(),
            code: "123456".into(),
        };
        let debug = format!("{req:?}");
        assert!(!debug.contains("123456"), "{debug}");
        assert!(debug.contains("alice"), "{debug}");
        assert_redacted(debug);
        let req = LoginRequest {
            code: SECRET.into(),
            password: "x".into(),
            ..req
        };
        assert_redacted(format!("{req:?}"));
    }

    #[test]
    fn login_response_debug_hides_token() {
        let resp = LoginResponse {
            token: SECRET.into(),
            expires_at: 1,
        };
        assert_redacted(format!("{resp:?}"));
    }

    #[test]
    fn enrol_request_debug_hides_token() {
        let req = EnrolRequest {
            token: SECRET.into(),
            public_key: key(),
        };
        assert_redacted(format!("{req:?}"));
    }

    #[test]
    fn enrol_response_debug_hides_credential() {
        let resp = EnrolResponse {
            credential: SECRET.into(),
            config: EdgeConfig {
                name: "home".into(),
                subnet: "10.77.0.0/24".parse().unwrap(),
                tunnel_address: Ipv4Addr::new(10, 77, 0, 1),
            },
        };
        assert_redacted(format!("{resp:?}"));
    }

    #[test]
    fn user_add_request_debug_hides_password() {
        let req = UserAddRequest {
            name: "alice".into(),
            password: SECRET.into(),
            admin: false,
        };
        assert_redacted(format!("{req:?}"));
    }

    #[test]
    fn user_add_response_debug_hides_totp_secret_and_uri() {
        let resp = UserAddResponse {
            name: "alice".into(),
            admin: false,
            totp_secret: SECRET.into(),
            otpauth_uri: format!("otpauth://totp/grantwire:alice?secret={SECRET}"),
        };
        let debug = format!("{resp:?}");
        assert!(!debug.contains("otpauth://"), "{debug}");
        assert_redacted(debug);
    }

    #[test]
    fn edge_add_response_debug_hides_enrolment_token() {
        let resp = EdgeAddResponse {
            name: "home".into(),
            endpoint: "192.0.2.1:51820".into(),
            endpoints: vec!["192.0.2.1:51820".into()],
            subnet: "10.77.0.0/24".parse().unwrap(),
            tunnel_address: Ipv4Addr::new(10, 77, 0, 1),
            enrolment_token: SECRET.into(),
            enrolment_expires_at: 0,
        };
        assert_redacted(format!("{resp:?}"));
    }

    #[test]
    fn json_from_before_the_bounds_still_parses() {
        let grant: GrantInfo = serde_json::from_str(
            r#"{"user":"a","edge":"e","lease_ttl_secs":60,"ports":[32400],"expires_at":null}"#,
        )
        .unwrap();
        assert_eq!(grant.max_leases, DEFAULT_MAX_LEASES);
        let req: GrantAddRequest = serde_json::from_str(r#"{"user":"a","edge":"e"}"#).unwrap();
        assert_eq!(req.max_leases, None);
        let edge: EdgeInfo = serde_json::from_str(
            r#"{"name":"e","endpoints":[],"subnet":"10.77.0.0/24","tunnel_address":"10.77.0.1",
                "enrolled":true,"connected":false,"last_seen":null}"#,
        )
        .unwrap();
        assert_eq!(edge.enrolment_expires_at, None);
        let code: ErrorCode = serde_json::from_str(r#""lease_cap""#).unwrap();
        assert_eq!(code.http_status(), 409);
    }
}
