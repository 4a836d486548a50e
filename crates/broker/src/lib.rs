//! grantwire-broker: the shell around `grantwire-broker-core`. [`routes`] is the thin axum layer
//! over the core's operations (public API over HTTPS, admin API on a Unix socket), [`web`] the
//! browser pages over the same operations, [`conn`] and [`tls`] the public listener, [`alerts`]
//! the webhook delivery, and [`start`] wires them up. Errors become HTTP answers in one place,
//! [`answer`]. The binary (`main.rs`) only parses flags and prints.
//!
//! The core's modules are re-exported under their own names (`grantwire_broker::store`, ...)
//! for the binary, the tests and the benchmarks.
//!
//! What it must not do: hold an operation's logic (that is the core's), trust a forwarding
//! header for the client's address, or log a secret.

pub mod acme;
pub mod admin_client;
mod admin_socket;
pub mod alerts;
pub mod answer;
pub mod conn;
pub mod routes;
mod server;
pub mod tls;
mod web;

pub use grantwire_broker_core::{
    broker, clock, error, lease_terms, passwords, presence, proxy, retention, secrets, service,
    store, throttle, totp,
};
pub use grantwire_broker_core::{
    check_endpoint, check_endpoints, check_kind, check_name, default_subnet, Broker, Error,
    InviteStarted, PendingInvite, Result, DEFAULT_INVITE_TTL_SECS, DEFAULT_LEASE_TTL_SECS,
    INVITE_SETUP_TTL_SECS, MAX_INVITE_TTL_SECS,
};

pub use admin_client::{AdminClient, AdminError};
pub use server::{start, RunningBroker, ServeConfig, ADMIN_SOCKET, DB_FILE};
