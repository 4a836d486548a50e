//! The broker's operations, as `impl Broker` blocks grouped by concern.

pub mod admin;
mod auth;
mod leases;
