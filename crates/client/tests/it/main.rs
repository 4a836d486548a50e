//! The `grantwire` binary and client-core against a real broker started in this process (and a
//! hostile stand-in), plus the host checks of `up`. One test binary for the crate, so CI links
//! the dependency tree once; a file here is a module and `common` is the shared harness.
// Test code: a failed unwrap is a failed test (the files' own allows cover only themselves).
#![allow(clippy::unwrap_used)]

mod common;

mod broker;
mod ca_signed;
mod cli;
mod errors;
mod hostile_broker;
mod interop;
mod leases;
mod private_key;
mod retry;
mod session_versions;
mod terminal;
mod trust;
mod up;
mod watch;
