//! The broker's operations, as `impl Broker` blocks grouped by concern.

mod accounts;
pub mod admin;
pub(crate) mod auth;
pub mod enrol;
mod leases;
pub mod reports;
