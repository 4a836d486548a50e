//! Whether this machine can run the namespace tests at all.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::proc::host_exec;

const TOOLS: &[&str] = &[
    "ip",
    "wg",
    "wg-quick",
    "wireguard-go",
    "nft",
    "curl",
    "python3",
    "kill",
    // util-linux: the unit-like start of the privilege scenario.
    "setpriv",
    // Captures on the edge host's outside interfaces, which the silence scenarios count.
    "tcpdump",
    // libfaketime, to step the edge's wall clock (tests/it/clocks.rs).
    "faketime",
    // TCP and UDP through the tunnel, both ways and in parallel (tests/it/throughput.rs).
    "iperf3",
    // The silent host's port scans (tests/it/silent_host.rs).
    "nmap",
    // Let's Encrypt's test CA and its DNS, for the broker's ACME certificates (tests/it/acme.rs).
    "pebble",
    "pebble-challtestsrv",
];

/// Returns true when the end-to-end tests can run: root, the tools, `/dev/net/tun`, and a
/// network namespace can actually be made (root in a container may lack CAP_SYS_ADMIN).
///
/// When something is missing: under `CI=true` or `GRANTWIRE_E2E_REQUIRED=1` it panics naming what is missing, because CI
/// must never pass by skipping; elsewhere it prints `skipping: <reason>` and returns false.
pub fn require_env() -> bool {
    static MISSING: OnceLock<Vec<String>> = OnceLock::new();
    let missing = MISSING.get_or_init(find_missing);
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "the end-to-end tests need: {} (run as root on Linux with wireguard-go, wireguard-tools, \
         nftables, iproute2, curl, python3, tcpdump, faketime, iperf3, nmap and pebble installed; scripts/install-deps.sh does it)",
        missing.join(", ")
    );
    if must_run() {
        panic!("the end-to-end tests are required here (CI=true or GRANTWIRE_E2E_REQUIRED=1) and {reason}");
    }
    eprintln!("skipping: {reason}");
    false
}

/// CI, and `scripts/test.sh` (the README's test command), require the end-to-end tests; only a
/// bare `cargo test` on a developer's machine may skip them.
pub(crate) fn must_run() -> bool {
    let set = |name: &str, want: &str| std::env::var(name).is_ok_and(|v| v == want);
    set("CI", "true") || set("GRANTWIRE_E2E_REQUIRED", "1")
}

fn find_missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (effective uid 0)".to_owned());
    }
    for tool in TOOLS {
        if which(tool).is_none() {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".to_owned());
    }
    if missing.is_empty() {
        if let Err(e) = probe_netns() {
            missing.push(format!("`ip netns add` to work ({e})"));
        }
    }
    missing
}

pub(crate) fn is_root() -> bool {
    // The effective uid is the second field of `Uid:`; reading it avoids an unsafe libc call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub(crate) fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn probe_netns() -> Result<(), String> {
    let name = format!("gwprobe{}", std::process::id());
    let t = Duration::from_secs(10);
    let add = host_exec(&["ip", "netns", "add", &name], None, t);
    if !add.success() {
        return Err(add.stderr.trim().to_owned());
    }
    let _ = host_exec(&["ip", "netns", "del", &name], None, t);
    Ok(())
}
