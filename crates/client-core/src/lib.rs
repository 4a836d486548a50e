//! The client side of grantwire: broker trust, login, on-device WireGuard keys, lease requests
//! and profile output. Shared by the `grantwire` CLI and the mobile apps; it does the work and
//! they only translate arguments and results. It prints nothing and reads no terminal.
//!
//! The flow: [`BrokerClient::login`] gives a [`Session`], kept by a [`SessionStore`];
//! [`keys::generate`] makes the keypair on the device; [`BrokerClient::request_lease`] sends
//! only the public key and returns the [`Profile`]; [`Profile::to_wg_quick`] adds the private
//! key, and [`output`] writes it 0600 or renders it as a QR code. [`LeaseStore`] remembers
//! the lease and key per edge, so [`BrokerClient::renew`] can re-pin it after the device moved;
//! [`BrokerClient::whoami`] shows where the broker sees the device.
//!
//! Also used by `grantwire-edge` for its own HTTPS link to the broker ([`tls`]).

pub mod broker;
pub mod error;
pub mod keys;
pub mod lease_store;
pub mod output;
pub mod session;
pub mod time;
pub mod tls;

pub use broker::{parse_broker_url, BrokerClient};
pub use error::{Error, ErrorKind};
pub use grantwire_proto::{PrivateKey, Profile, PublicKey, WhoamiLease, WhoamiResponse as WhoAmI};
pub use lease_store::{LeaseStore, StoredLease};
pub use output::{default_profile_path, render_qr, write_private_file, write_profile};
pub use session::{Session, SessionStore};
pub use tls::{Fingerprint, PinMismatch};
