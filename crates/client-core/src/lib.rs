//! The client side of grantwire: broker trust, login, on-device WireGuard keys, lease requests
//! and profile output. Shared by the `grantwire` CLI and the mobile apps; it does the work and
//! they only translate arguments and results.
//!
//! Also used by `grantwire-edge` for its own HTTPS link to the broker ([`tls`]).

pub mod tls;
