//! The end-to-end harness: Linux network namespaces joined by veth pairs, a real WireGuard client
//! (`wireguard-go` + `wireguard-tools`), a stand-in Plex (`python3 -m http.server`), and drivers
//! for the three grantwire binaries through their command-line contract (DESIGN.md).
//!
//! It links no grantwire crate: the scenarios test what an operator and a user see, the
//! binaries' flags, JSON output and exit codes. Everything it makes (namespaces, interfaces,
//! processes, files) is owned by an RAII guard and removed on drop, also when a test panics;
//! a panicking test prints the logs of every process it started.
//!
//! Safety rule enforced here, not only by convention: traffic goes only to loopback or to the
//! documentation ranges on veths the test made (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)
//! and to 10.77.0.0/24 inside tunnels; [`assert_safe_host`] panics on anything else.
//!
//! Running (as root): `cargo build --workspace --bins && cargo test -p grantwire-e2e`. The
//! binaries are taken from the test executable's target directory, or `GRANTWIRE_BIN_DIR`.
//! Without root or a tool the tests print `skipping: ...` and pass, except under `CI=true` or `GRANTWIRE_E2E_REQUIRED=1` (set by scripts/test.sh),
//! where they fail. `GRANTWIRE_E2E_LOGS=1` prints every process's logs even on success.
//!
//! The web pages' tests need neither root nor namespaces: [`LoopbackBroker`] serves on
//! 127.0.0.1 and [`Browser`] is headless Chromium through chromedriver, trusting the broker by
//! its key pin; they need only `chromium` and `chromium-driver` ([`require_browser`]), and keep
//! their screenshots under `<target>/browser-artifacts/` (see `harness::browser`).

pub mod harness {
    pub mod acme;
    pub mod bins;
    pub mod browser;
    pub mod capture;
    pub mod env;
    pub mod grantwire;
    pub mod lab;
    pub mod loopback;
    pub mod metrics;
    pub mod netns;
    pub mod nft;
    pub mod plex;
    pub mod proc;
    pub mod totp;
    pub mod wan;
    pub mod wg;
}

pub use harness::bins::{bins, Bins};
pub use harness::browser::{require_browser, Browser, BrowserOpts, Chromedriver};
pub use harness::env::require_env;
pub use harness::grantwire::{
    user_ids, Broker, ClientCli, Edge, EdgeInfo, EdgeStart, UserInfo, EDGE_ROOT_WARNING,
    EXIT_REFUSED,
};
pub use harness::lab::{Family, Lab, PagePoll};
pub use harness::loopback::LoopbackBroker;
pub use harness::metrics::Metrics;
pub use harness::netns::{unique_base, veth_pair, Netns};
pub use harness::plex::{assert_safe_host, http_get, HttpResult, StandInPlex};
pub use harness::proc::{host_exec, unexpected_warnings, Output, Proc};
pub use harness::totp;
pub use harness::wg::{conf_keys, genkey, KeyPair, PeerStats, WgClient, WgDevice};

use std::time::{Duration, Instant};

/// Polls `f` every `every` until it returns `Some`, or returns `None` once `timeout` has passed.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Seconds since the Unix epoch by this machine's clock, which the edge shares in these tests.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
