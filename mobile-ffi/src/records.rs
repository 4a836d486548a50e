//! The plain records that cross the FFI boundary, and their translation to and from
//! client-core's types. Keys, addresses and fingerprints travel as the strings WireGuard and the
//! broker print them in; they are parsed back (and checked) when they come in.
//!
//! The records holding secrets ([`KeyPair`], [`Session`], [`Profile`]) have a `Debug` that
//! redacts them, so a `{:?}` in a log cannot leak one.

use std::fmt;

use grantwire_client_core as core;

use crate::GrantwireError;

const REDACTED: &str = "<redacted>";

/// A WireGuard keypair made on the device, base64 as in wg-quick files. The private key is for
/// the device's tunnel only: keep it in the keychain / Keystore, never send it anywhere.
#[derive(Clone, uniffi::Record)]
pub struct KeyPair {
    pub private_key: String,
    pub public_key: String,
}

/// How a broker's certificate can be trusted, as one TLS handshake found it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BrokerTrustInfo {
    /// The certificate's SHA-256 (64 hex digits) when no public CA signed it: the person must
    /// compare it with the one the broker printed, and the app passes it to `login`.
    pub fingerprint: Option<String>,
    /// Signed by a public CA: `login` needs no fingerprint.
    pub ca_signed: bool,
}

/// A broker session. The app stores it whole in its keychain (the token is a bearer secret)
/// and passes it to every later call; it names the broker and how that broker is trusted.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Session {
    pub broker_url: String,
    /// The pinned certificate fingerprint; none for a CA-signed broker.
    pub fingerprint: Option<String>,
    pub user: String,
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Who the session is and where the broker sees this device now.
#[derive(Debug, Clone, uniffi::Record)]
pub struct WhoAmI {
    pub user: String,
    /// The device's address as the broker sees it: a new or renewed lease is pinned to it.
    pub source_ip: String,
    pub leases: Vec<LeaseStatus>,
}

/// One of the user's live leases.
#[derive(Debug, Clone, uniffi::Record)]
pub struct LeaseStatus {
    pub id: String,
    pub edge: String,
    pub pin: String,
    /// False after the device moved: `renew` re-pins it to `WhoAmI::source_ip`.
    pub pinned_here: bool,
    pub expires_at: i64,
}

/// Whether to renew a lease now, as `GrantwireClient::renewal` decides it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Renewal {
    /// Renew now: `renew` when `whoami` listed the lease, else `request_lease`.
    pub renew: bool,
    /// Why, for a log or the person; none when the lease is kept.
    pub reason: Option<String>,
    /// When kept: seconds until the lease falls due for renewal if nothing else changes (at
    /// least 1), the latest time to decide again; 0 when it is to be renewed now.
    pub due_in_secs: u64,
}

/// A lease's WireGuard profile without the device's private key. `render_wg_quick` adds the
/// key; the app may also build the tunnel configuration from these fields itself.
#[derive(Clone, uniffi::Record)]
pub struct Profile {
    pub lease_id: String,
    pub edge: String,
    /// The device's tunnel address (a /32).
    pub address: String,
    pub edge_public_key: String,
    /// `HOST:PORT` of the edge, of the pin's address family.
    pub endpoint: String,
    pub allowed_ips: Vec<String>,
    /// A secret of the lease, like the private key.
    pub preshared_key: String,
    pub persistent_keepalive: u16,
    /// Where Plex answers inside the tunnel.
    pub plex_url: String,
    /// The source prefix the edge admits this device from.
    pub pin: String,
    /// Unix seconds after which the edge drops the peer.
    pub expires_at: i64,
}

impl From<core::BrokerTrust> for BrokerTrustInfo {
    fn from(trust: core::BrokerTrust) -> Self {
        match trust {
            core::BrokerTrust::CaSigned => Self {
                fingerprint: None,
                ca_signed: true,
            },
            core::BrokerTrust::Fingerprint(fp) => Self {
                fingerprint: Some(fp.to_string()),
                ca_signed: false,
            },
        }
    }
}

impl From<core::Session> for Session {
    fn from(s: core::Session) -> Self {
        Self {
            broker_url: s.broker_url,
            fingerprint: s.fingerprint.map(|fp| fp.to_string()),
            user: s.user,
            token: s.token,
            expires_at: s.expires_at,
        }
    }
}

impl TryFrom<Session> for core::Session {
    type Error = GrantwireError;
    fn try_from(s: Session) -> Result<Self, GrantwireError> {
        Ok(Self {
            broker_url: s.broker_url,
            fingerprint: parse_fingerprint(s.fingerprint.as_deref())?,
            user: s.user,
            token: s.token,
            expires_at: s.expires_at,
        })
    }
}

impl From<core::WhoAmI> for WhoAmI {
    fn from(w: core::WhoAmI) -> Self {
        Self {
            user: w.user,
            source_ip: w.source_ip.to_string(),
            leases: w
                .leases
                .into_iter()
                .map(|l| LeaseStatus {
                    id: l.id.into(),
                    edge: l.edge.into(),
                    pin: l.pin.to_string(),
                    pinned_here: l.pinned_here,
                    expires_at: l.expires_at,
                })
                .collect(),
        }
    }
}

impl From<core::Profile> for Profile {
    fn from(p: core::Profile) -> Self {
        Self {
            address: p.address.to_string(),
            edge_public_key: p.edge_public_key.to_base64(),
            allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
            preshared_key: p.preshared_key.to_base64(),
            pin: p.pin.to_string(),
            lease_id: p.lease_id.into(),
            edge: p.edge.into(),
            endpoint: p.endpoint.into(),
            persistent_keepalive: p.persistent_keepalive,
            plex_url: p.plex_url.to_string(),
            expires_at: p.expires_at,
        }
    }
}

impl TryFrom<Profile> for core::Profile {
    type Error = GrantwireError;
    fn try_from(p: Profile) -> Result<Self, GrantwireError> {
        let allowed_ips = p
            .allowed_ips
            .iter()
            .map(|ip| field("allowed_ips", ip))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            address: field("address", &p.address)?,
            edge_public_key: field("edge_public_key", &p.edge_public_key)?,
            allowed_ips,
            preshared_key: field("preshared_key", &p.preshared_key)?,
            pin: field("pin", &p.pin)?,
            lease_id: field("lease_id", &p.lease_id)?,
            edge: field("edge", &p.edge)?,
            endpoint: field("endpoint", &p.endpoint)?,
            persistent_keepalive: p.persistent_keepalive,
            plex_url: field("plex_url", &p.plex_url)?,
            expires_at: p.expires_at,
        })
    }
}

impl TryFrom<LeaseStatus> for core::WhoamiLease {
    type Error = GrantwireError;
    fn try_from(l: LeaseStatus) -> Result<Self, GrantwireError> {
        let bad = |name: &str| GrantwireError::usage(format!("lease field {name} does not parse"));
        Ok(Self {
            id: l.id.parse().map_err(|_| bad("id"))?,
            edge: l.edge.parse().map_err(|_| bad("edge"))?,
            pin: l.pin.parse().map_err(|_| bad("pin"))?,
            pinned_here: l.pinned_here,
            expires_at: l.expires_at,
            // The app's lease records carry no handshake time (yet): renewal decisions need none.
            last_handshake_at: None,
        })
    }
}

/// `None` or an empty string: trust by the public CAs.
pub(crate) fn parse_fingerprint(
    fp: Option<&str>,
) -> Result<Option<core::Fingerprint>, GrantwireError> {
    match fp.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e| GrantwireError::usage(format!("fingerprint: {e}"))),
    }
}

/// Parses one profile field. The message names the field only: the value may be a key.
fn field<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, GrantwireError> {
    value
        .parse()
        .map_err(|_| GrantwireError::usage(format!("profile field {name} does not parse")))
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_key", &REDACTED)
            .field("public_key", &self.public_key)
            .finish()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("broker_url", &self.broker_url)
            .field("fingerprint", &self.fingerprint)
            .field("user", &self.user)
            .field("token", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("lease_id", &self.lease_id)
            .field("edge", &self.edge)
            .field("address", &self.address)
            .field("edge_public_key", &self.edge_public_key)
            .field("endpoint", &self.endpoint)
            .field("allowed_ips", &self.allowed_ips)
            .field("preshared_key", &REDACTED)
            .field("pin", &self.pin)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
