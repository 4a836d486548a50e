//! Wire types shared by every grantwire part: the broker's HTTP API bodies, the lease set the
//! broker pushes to an edge, WireGuard key newtypes and the tunnel profile with its wg-quick
//! rendering.
//!
//! Pure data: no I/O, no clock, no randomness, no clap, no tokio. Values that parse are valid
//! ("parse, don't validate"): a [`PublicKey`] that exists is 32 bytes and not a low-order point,
//! a [`Pin`] that exists has its host bits cleared.

pub mod api;
pub mod keys;
pub mod names;
pub mod pin;
pub mod profile;

pub use api::*;
pub use keys::{KeyError, PresharedKey, PrivateKey, PublicKey};
pub use names::{EdgeName, Endpoint, FieldError, LeaseId, PlexUrl, TunnelNameTooLong, UserName};
pub use pin::{Pin, PinError};
pub use profile::Profile;

/// The TCP port Plex Media Server listens on; the port a grant opens by default.
pub const PLEX_PORT: u16 = 32400;

/// Persistent keepalive written into client profiles: 25 s keeps NAT mappings open on every
/// consumer router we know of (WireGuard's own recommendation).
pub const DEFAULT_KEEPALIVE_SECS: u16 = 25;

/// UDP port of the edge's WireGuard endpoint.
pub const DEFAULT_WG_PORT: u16 = 51820;
