//! grantwire-broker-core: the broker's operations and its store. Users sign in (argon2id
//! password + TOTP), grants are checked, leases pinned to the client's source address are
//! issued, renewed and revoked, edges enrol and get their lease sets, and every change is
//! written with its audit row in one transaction.
//!
//! Layout: [`Broker`] is the shared state, with its operations grouped by concern under
//! [`service`] (accounts, sessions, invitations, edges, grants, leases, a user's own access,
//! audit); [`store`] is the SQLite layer (rusqlite, one batch
//! writer, migrations applied at start); the policies are plain functions with unit tests
//! ([`lease_terms`] for addresses, pins, expiry and grant terms, [`throttle`] for failed logins and
//! per-source budgets, [`totp`], [`passwords`]); time comes from one [`clock::Clock`].
//!
//! What it must not do: speak HTTP (no axum, hyper, maud or clap here; the shell,
//! `grantwire-broker`, maps [`Error`] to answers in one place), trust a forwarding header for
//! the client's address, store a token or password in a recoverable form, or log a secret.

mod backup;
pub mod broker;
pub mod clock;
pub mod error;
pub mod lease_terms;
pub mod passwords;
pub mod presence;
pub mod proxy;
pub mod retention;
pub mod secrets;
pub mod service;
pub mod store;
pub mod throttle;
pub mod totp;
mod writer;

#[cfg(test)]
mod architecture_tests;

pub use broker::Broker;
pub use error::{Error, Result};
pub use service::audit::check_kind;
pub use service::check_name;
pub use service::edges::{check_endpoint, check_endpoints, default_subnet};
pub use service::grants::DEFAULT_LEASE_TTL_SECS;
pub use service::invites::{
    InviteStarted, PendingInvite, DEFAULT_INVITE_TTL_SECS, INVITE_SETUP_TTL_SECS,
    MAX_INVITE_TTL_SECS,
};
