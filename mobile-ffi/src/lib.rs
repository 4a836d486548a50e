//! grantwire for iOS and Android apps: a UniFFI facade over `grantwire-client-core`, from which
//! `uniffi-bindgen` generates Kotlin, Swift and Python bindings (`scripts/mobile/bindings.sh`).
//!
//! It only translates: strings and plain records in, client-core calls, records and one error
//! type out. The work (TLS pinning, login, leases, profile rendering) is client-core's. The
//! app holds one [`GrantwireClient`], which owns the tokio runtime its calls run on, and keeps
//! the [`Session`] and the device's private key in its keychain or Keystore itself: this crate
//! stores nothing.
//!
//! Errors are [`GrantwireError`], whose variants are the kinds an app branches on; the table on
//! its rustdoc (and in README.md) maps each of client-core's kinds to one.

// UniFFI's macros expand to `extern "C"` functions and raw-pointer handling, which the
// workspace's `unsafe_code = "deny"` would refuse. This crate's own code writes no `unsafe`.
#![allow(unsafe_code)]

mod client;
mod error;
mod records;

pub use client::GrantwireClient;
pub use error::GrantwireError;
pub use records::{BrokerTrustInfo, KeyPair, LeaseStatus, Profile, Renewal, Session, WhoAmI};

uniffi::setup_scaffolding!();
