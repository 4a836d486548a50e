//! The broker's operations, as `impl Broker` blocks grouped by concern.

pub mod access;
mod accounts;
pub mod admin;
pub mod auth;
pub mod enrol;
mod leases;
pub mod reports;
