//! This crate exists so the broker and the edge do not link client-core; `cargo tree` is the
//! only witness that a later `[dependencies]` line has not brought it back, directly or through
//! another crate, so CI asks it here.

use std::path::Path;
use std::process::Command;

/// The packages `cargo tree` lists under `package`, build and dev dependencies left out: what
/// its binary links.
fn linked_by(package: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", package,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn broker_and_edge_do_not_link_client_core() {
    for package in ["grantwire-broker", "grantwire-edge"] {
        let linked = linked_by(package);
        // An empty or unrelated listing would pass the check below without meaning anything.
        assert!(
            linked.iter().any(|p| p == "grantwire-pinned-tls"),
            "{package}: {linked:?}"
        );
        assert!(
            !linked.iter().any(|p| p == "grantwire-client-core"),
            "{package} links grantwire-client-core again; take TLS from grantwire-pinned-tls"
        );
    }
}
