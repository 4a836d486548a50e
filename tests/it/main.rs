//! The end-to-end scenarios, one module per file, in one test binary: each binary links the
//! harness's dependency tree (fantoccini, hyper, ring), so ten of them made CI link it ten times.
//!
//! When each file was its own binary, cargo ran the files one after another and only the tests
//! of one file ran side by side. The scenarios were written for that: the flood and stranger
//! tests load the machine on purpose, the revocation tests time to the second, and the browser
//! tests each start a Chromium. [`one_module_at_a_time`] keeps that order inside this process.

mod acme;
mod auth_sweep;
mod browser;
mod browser_pages;
mod browser_qr;
mod browser_tunnel;
mod churn;
mod clocks;
mod counters;
mod cutoffs;
mod e2e;
mod film;
mod flood;
mod forwarded;
mod ipv6;
mod lateral;
mod local_apis;
mod lossy;
mod mtu;
mod nat;
mod no_answer;
mod partition;
mod reorder;
mod restarts;
mod rotation;
mod secrets;
mod selftest;
mod silent_host;
mod spoof;
mod storm;
mod stranger;
mod stream;
mod throughput;
mod wan_ports;
mod watch;

mod alone;

pub use alone::one_module_at_a_time;
