//! grantwire-broker: authenticates users (argon2id password + TOTP), checks their grants, issues
//! WireGuard leases pinned to the client's source IP, and pushes each edge its lease set.
//!
//! Layout: [`store`] is the SQLite layer (rusqlite, migrations applied at start); [`Broker`] holds
//! the shared state and every operation; [`routes`] is the thin axum layer over it (public API
//! over HTTPS, admin API on a Unix socket) and [`web`] the browser pages over the same
//! methods; [`start`] wires them up. Errors become HTTP in one
//! place ([`Error`]'s `IntoResponse`). The binary (`main.rs`) only parses flags and prints.
//!
//! What it must not do: trust a forwarding header for the client's address, store a token or
//! password in a recoverable form, or log a secret.

pub mod admin_client;
mod admin_socket;
pub mod alerts;
pub mod alloc;
pub mod answer;
mod backup;
mod broker;
pub mod clock;
pub mod conn;
pub mod error;
mod passwords;
mod presence;
pub mod proxy;
pub mod retention;
pub mod routes;
pub mod secrets;
mod server;
mod service;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod totp;
mod web;
mod writer;

pub use admin_client::{AdminClient, AdminError};
pub use broker::Broker;
pub use error::{Error, Result};
pub use server::{start, RunningBroker, ServeConfig, ADMIN_SOCKET, DB_FILE};
pub use service::admin::{
    check_endpoint, check_endpoints, check_kind, check_name, default_subnet, DEFAULT_LEASE_TTL_SECS,
};
pub use service::enrol::{
    EnrolmentStarted, PendingEnrolment, DEFAULT_INVITE_TTL_SECS, ENROLMENT_TTL_SECS,
    MAX_INVITE_TTL_SECS,
};
