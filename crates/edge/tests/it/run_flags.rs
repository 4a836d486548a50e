//! `grantwire-edge run` refusing how it was started, before it touches anything: exit 2, the
//! reason on stderr, and no state directory made.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_grantwire-edge");

/// Runs `grantwire-edge run` with `args` (and `env`) against a state directory inside a fresh
/// temporary directory; returns the exit code, stderr, and whether the state directory exists.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--broker", "https://127.0.0.1:9", "--state-dir"])
        .arg(&state)
        .args(args)
        .env_remove("GRANTWIRE_EDGE_SILENT_HOST")
        .env_remove("GRANTWIRE_EDGE_HOST_ALLOW")
        .env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run grantwire-edge");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        state.exists(),
    )
}

#[test]
fn host_allow_without_a_silent_host_is_refused_from_flags_and_from_the_environment() {
    let (code, stderr, made) = run(&["--host-allow", "tcp/22"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--silent-host"), "{stderr}");
    assert!(!made, "a refused start made the state directory");

    // clap takes GRANTWIRE_EDGE_SILENT_HOST=false as the flag given; the edge itself refuses.
    let (code, stderr, made) = run(
        &["--host-allow", "tcp/22"],
        &[("GRANTWIRE_EDGE_SILENT_HOST", "false")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("it needs --silent-host (GRANTWIRE_EDGE_SILENT_HOST=true)"),
        "{stderr}"
    );
    assert!(!made, "a refused start made the state directory");
}

#[test]
fn a_host_port_that_is_malformed_plex_s_or_the_wireguard_port_is_refused() {
    for (bad, says) in [
        ("ssh", "expected tcp/PORT or udp/PORT"),
        ("tcp/0", "port 0"),
        ("udp/70000", "not a port number"),
        ("tcp/32400", "that is Plex's port"),
        ("udp/51820", "that is the WireGuard port"),
    ] {
        let (code, stderr, made) = run(&["--silent-host", "--host-allow", bad], &[]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(says), "{bad}: {stderr}");
        assert!(!made, "{bad}: a refused start made the state directory");
    }
}
