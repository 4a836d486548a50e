//! The client side of grantwire: broker trust, login, on-device WireGuard keys, lease requests
//! and profile output. Shared by the `grantwire` CLI and the mobile apps; it does the work and
//! they only translate arguments and results. It prints nothing and reads no terminal.
//!
//! The flow: [`BrokerClient::login`] gives a [`Session`], kept by a [`SessionStore`];
//! [`keys::generate`] makes the keypair on the device; [`BrokerClient::request_lease`] sends
//! only the public key and returns the [`Profile`]; [`Profile::to_wg_quick`] adds the private
//! key, and [`output`] writes it 0600 or [`qr`] draws it as a QR code (terminal, PNG, SVG).
//! [`LeaseStore`] remembers the lease and key per edge, so [`BrokerClient::renew`] can re-pin it
//! after the device moved, when [`renewal`] says it must; [`BrokerClient::whoami`] shows where the broker sees the device, and
//! [`BrokerClient::leases`] and [`BrokerClient::revoke`] list and end the user's leases.
//!
//! Trust in a broker without a CA-signed certificate works like SSH's: [`BrokerClient::probe`]
//! learns its fingerprint, the front end asks the person, and [`KnownBrokers`] remembers the
//! answer, so a later change of certificate is refused, naming both fingerprints.
//!
//! The certificate pinning itself lives in `grantwire-pinned-tls`, re-exported as [`tls`].

pub mod broker;
pub mod error;
pub mod keys;
pub mod known_brokers;
pub mod lease_store;
pub mod output;
pub mod qr;
pub mod renewal;
pub mod session;
pub mod time;

pub use grantwire_pinned_tls as tls;

pub use broker::{parse_broker_url, BrokerClient, BrokerTrust};
pub use error::{Error, ErrorKind};
pub use grantwire_proto::{
    EdgeName, LeaseInfo, LeaseRevokeResponse, PrivateKey, Profile, PublicKey, UserName,
    WhoamiLease, WhoamiResponse as WhoAmI,
};
pub use known_brokers::KnownBrokers;
pub use lease_store::{LeaseStore, PendingKey, StoredLease};
pub use output::{default_profile_path, write_private_file, write_profile};
pub use qr::{render_qr, render_qr_png, render_qr_svg, write_qr_png, write_qr_svg};
pub use session::{Session, SessionStore};
pub use tls::{Fingerprint, PinMismatch};
