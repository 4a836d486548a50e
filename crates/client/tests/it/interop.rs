//! The profile `grantwire profile EDGE --out FILE` writes is accepted by Debian's real
//! wireguard-tools: `wg-quick strip` takes the file, and `wg setconf` loads the stripped text
//! into a real `wireguard-go` interface, which then reports (`wg showconf`) exactly the keys,
//! endpoint and allowed IPs of the profile.
//!
//! Needs root, `ip`, `wg`, `wg-quick`, `wireguard-go` and `/dev/net/tun` (the interface lives in
//! its own network namespace). Under `CI=true` or `GRANTWIRE_E2E_REQUIRED=1` anything missing
//! fails the test naming it; elsewhere the test says `skipping: ...` and passes, like the
//! end-to-end harness (`tests/harness/env.rs`).

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;

use crate::common::host::*;
use crate::common::wg::WgInterface;
use crate::common::*;

/// `Key = Value` lines of a wg config, section by section, with the values of keys that
/// `wg showconf` writes differently (lists) normalised. `ListenPort` is dropped: the kernel or
/// wireguard-go picks one when the profile has none.
fn wg_entries(conf: &str) -> BTreeSet<(String, String, String)> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in conf.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
        let (k, v) = (k.trim(), v.trim());
        if k == "ListenPort" {
            continue;
        }
        if k == "AllowedIPs" {
            for ip in v.split(',') {
                out.insert((section.clone(), k.to_owned(), ip.trim().to_owned()));
            }
        } else {
            out.insert((section.clone(), k.to_owned(), v.to_owned()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_is_accepted_by_wg_quick_strip_and_wg_setconf() {
    if !require("the wireguard-tools interop test", TOOLS, true) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;

    // wg-quick takes a path only when the file is named `<valid interface name>.conf`.
    let profile = tmp.path().join("gw-home.conf");
    let out = profile.to_str().unwrap();
    let made = grantwire(&config, &["profile", "home", "--out", out], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let mode = std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "wg-quick warns about a readable private key");
    let text = std::fs::read_to_string(&profile).unwrap();

    let stripped = tokio::task::spawn_blocking({
        let out = out.to_owned();
        move || run_ok(&["wg-quick", "strip", &out])
    })
    .await
    .unwrap();
    assert!(
        !stripped.contains("Address") && !stripped.contains("DNS"),
        "wg-quick strip keeps only wg(8) keys:\n{stripped}"
    );
    // Nothing of the profile but wg-quick's own lines is lost by the strip.
    let wg_quick_only = [
        "Address",
        "DNS",
        "MTU",
        "Table",
        "PreUp",
        "PostUp",
        "SaveConfig",
    ];
    let kept: BTreeSet<_> = wg_entries(&text)
        .into_iter()
        .filter(|(_, k, _)| !wg_quick_only.contains(&k.as_str()))
        .collect();
    assert_eq!(wg_entries(&stripped), kept);
    for key in [
        "PrivateKey",
        "PublicKey",
        "PresharedKey",
        "Endpoint",
        "AllowedIPs",
    ] {
        assert!(
            kept.iter().any(|(_, k, _)| k == key),
            "profile has no {key}:\n{text}"
        );
    }

    let stripped_path = tmp.path().join("stripped.conf");
    std::fs::write(&stripped_path, &stripped).unwrap();
    std::fs::set_permissions(&stripped_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shown = tokio::task::spawn_blocking(move || {
        let dev = WgInterface::up("gwci");
        let path = stripped_path.to_str().unwrap();
        dev.exec_ok(&["wg", "setconf", &dev.ifname, path]);
        dev.exec_ok(&["wg", "showconf", &dev.ifname])
    })
    .await
    .unwrap();
    // The interface holds exactly what the profile said: the device's key, the edge's key,
    // the preshared key, endpoint, allowed IPs and keepalive.
    assert_eq!(wg_entries(&shown), kept, "wg showconf:\n{shown}");
}
