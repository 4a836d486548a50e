//! What the tests that bring up a real WireGuard interface need from the host: the tools, root,
//! `/dev/net/tun` and a working `ip netns add`, with the end-to-end harness's rule (see
//! `tests/harness/env.rs`): under `CI=true` or `GRANTWIRE_E2E_REQUIRED=1` anything missing
//! fails the test naming it; elsewhere the test says `skipping: ...` and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The tools a real interface test runs.
pub const TOOLS: &[&str] = &["ip", "wg", "wg-quick", "wireguard-go"];

fn must_run() -> bool {
    let set = |name: &str, want: &str| std::env::var(name).is_ok_and(|v| v == want);
    set("CI", "true") || set("GRANTWIRE_E2E_REQUIRED", "1")
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// What this machine lacks for the tools, and with `interface` for a namespace with a TUN
/// device in it; empty when the test can run.
fn missing(tools: &[&str], interface: bool) -> Vec<String> {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| which(t).is_none())
        .map(|t| format!("`{t}` on PATH"))
        .collect();
    if interface {
        if !is_root() {
            missing.push("root (effective uid 0)".into());
        }
        if !Path::new("/dev/net/tun").exists() {
            missing.push("/dev/net/tun".into());
        }
        // Root in a container may lack CAP_SYS_ADMIN: try to make a namespace.
        if missing.is_empty() {
            let probe = format!("gwprobe{}", std::process::id());
            let add = run(&["ip", "netns", "add", &probe]);
            if add.status.success() {
                let _ = run(&["ip", "netns", "del", &probe]);
            } else {
                let err = String::from_utf8_lossy(&add.stderr).trim().to_owned();
                missing.push(format!("`ip netns add` to work ({err})"));
            }
        }
    }
    missing
}

/// True when `test` (named in the messages) can run; panics under CI naming what is missing,
/// never skipping there.
pub fn require(test: &str, tools: &[&str], interface: bool) -> bool {
    let missing = missing(tools, interface);
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{test} needs: {} (run as root on Linux with wireguard-go and wireguard-tools \
         installed; scripts/install-deps.sh does it)",
        missing.join(", ")
    );
    assert!(
        !must_run(),
        "{test} is required here (CI=true or GRANTWIRE_E2E_REQUIRED=1) and {reason}"
    );
    eprintln!("skipping: {reason}");
    false
}

pub fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("start {argv:?}: {e}"))
}

#[track_caller]
pub fn run_ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}
