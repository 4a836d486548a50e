//! The broker's operations, as `impl Broker` blocks grouped by concern.

mod accounts;
pub mod admin;
pub(crate) mod auth;
mod leases;
pub mod reports;
