//! The crate boundaries docs/ARCHITECTURE.md draws, asked of `cargo tree`: it is the only
//! witness that a later `[dependencies]` line has not crossed one, directly or through another
//! crate, so CI asks it here.

use std::path::Path;
use std::process::Command;

/// `cargo tree` over the workspace with `args`, normal dependencies only (what a binary
/// links), one package name per line.
fn tree(args: &[&str]) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .args(args)
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Everything `package` links.
fn linked_by(package: &str) -> Vec<String> {
    tree(&["-p", package])
}

/// The workspace packages that name `dependency` in their own `[dependencies]`.
fn direct_dependents(dependency: &str) -> Vec<String> {
    tree(&["--workspace", "-i", dependency, "--depth", "1"])
        .into_iter()
        .filter(|p| p != dependency)
        .collect()
}

#[test]
fn the_core_links_no_http_server_no_pages_and_no_flags() {
    let linked = linked_by("grantwire-broker-core");
    // An empty or unrelated listing would pass the check below without meaning anything.
    assert!(linked.iter().any(|p| p == "rusqlite"), "{linked:?}");
    for shell_only in ["axum", "axum-server", "hyper", "maud", "clap", "reqwest"] {
        assert!(
            !linked.iter().any(|p| p == shell_only),
            "grantwire-broker-core links {shell_only}: that belongs in the shell (grantwire-broker)"
        );
    }
}

#[test]
fn only_the_shells_use_axum() {
    let users = direct_dependents("axum");
    assert!(!users.is_empty(), "the broker serves with axum");
    for user in &users {
        assert!(
            ["grantwire-broker", "grantwire-edge"].contains(&user.as_str()),
            "{user} depends on axum; only the shells may"
        );
    }
}

#[test]
fn only_clients_link_client_core() {
    for package in [
        "grantwire-broker",
        "grantwire-edge",
        "grantwire-broker-core",
    ] {
        let linked = linked_by(package);
        assert!(
            linked.iter().any(|p| p == "grantwire-proto"),
            "{package}: {linked:?}"
        );
        assert!(
            !linked.iter().any(|p| p == "grantwire-client-core"),
            "{package} links grantwire-client-core; take TLS from grantwire-pinned-tls"
        );
    }
    for user in direct_dependents("grantwire-client-core") {
        assert!(
            ["grantwire", "grantwire-mobile", "grantwire-e2e"].contains(&user.as_str()),
            "{user} depends on grantwire-client-core; only the client, mobile-ffi and tests may"
        );
    }
}
