//! `grantwire-edge doctor` as a script runs it: sample Preferences.xml files and socket tables
//! in a tempdir, and a stand-in `nft` on PATH, so exit codes and JSON do not depend on this
//! host's Plex or firewall.
// Test helpers outside #[test] functions: a failed setup step should panic.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_grantwire-edge");

/// A Preferences.xml with nothing to report for the default tunnel 10.77.0.0/24. It holds a
/// token like a real one, which must never be printed.
const CLEAN: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Preferences MachineIdentifier="7cd0df33" PlexOnlineToken="tok-SECRET-123" PublishServerOnPlexOnlineKey="0" DlnaEnabled="0" GdmEnabled="0" RelayEnabled="0" allowedNetworks="" customConnections="http://10.77.0.1:32400"/>
"#;

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
/// Plex listening on every IPv4 address; all-zero, so the same in either byte order.
const PLEX_LISTENING: &str = "   0: 00000000:7E90 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 650 1 0000000000000000 100 0 0 10 0\n";

/// What the stand-in `nft` answers to `nft list table inet grantwire`.
#[derive(Clone, Copy)]
enum Nft {
    Present,
    Absent,
    NotRoot,
}

/// Stand-in `nft` programs, one directory each, written once before any test spawns a
/// process: a script written while another thread forks can fail to exec (ETXTBSY).
fn nft_dir(nft: Nft) -> PathBuf {
    static DIRS: OnceLock<PathBuf> = OnceLock::new();
    let root = DIRS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("doctor-nft");
        for (name, body) in [
            ("present", "exit 0"),
            (
                "absent",
                "echo 'Error: No such file or directory' >&2; exit 1",
            ),
            (
                "notroot",
                "echo 'Operation not permitted (you must be root)' >&2; exit 1",
            ),
        ] {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("nft");
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        root
    });
    root.join(match nft {
        Nft::Present => "present",
        Nft::Absent => "absent",
        Nft::NotRoot => "notroot",
    })
}

/// A tempdir laid out like a host: Preferences.xml, a /proc/net-like directory, no state.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(prefs: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Preferences.xml"), prefs).unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        let host = Self { dir };
        host.tcp("");
        host
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the TCP table with these entries (the other tables stay absent).
    fn tcp(&self, entries: &str) {
        std::fs::write(self.path("net/tcp"), format!("{TCP_HEADER}{entries}")).unwrap();
    }

    fn run(&self, nft: Nft, extra: &[&str]) -> Output {
        let prefs = self.path("Preferences.xml");
        let state = self.path("state");
        let net = self.path("net");
        // A clean environment: no GRANTWIRE_EDGE_* from the caller's shell, PATH to the
        // stand-in nft only.
        Command::new(BIN)
            .env_clear()
            .env("PATH", nft_dir(nft))
            .arg("doctor")
            .arg("--plex-prefs")
            .arg(&prefs)
            .arg("--state-dir")
            .arg(&state)
            .arg("--proc-net")
            .arg(&net)
            .args(extra)
            .output()
            .unwrap()
    }

    fn json(&self, nft: Nft, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = self.run(nft, &args);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains("SECRET"), "the token leaked: {text}");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {text:?}"));
        (out.status.code().unwrap(), value)
    }
}

fn ids(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect()
}

/// CLEAN with one attribute's value replaced.
fn clean_with(attr: &str, value: &str) -> String {
    let start = CLEAN.find(&format!(" {attr}=\"")).unwrap() + attr.len() + 3;
    let end = start + CLEAN[start..].find('"').unwrap();
    format!("{}{value}{}", &CLEAN[..start], &CLEAN[end..])
}

#[test]
fn a_clean_setup_exits_0_with_no_findings() {
    let host = Host::new(CLEAN);
    let (code, report) = host.json(Nft::Absent, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["ok"], true);
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["tunnel"]["subnet"], "10.77.0.0/24");
    assert_eq!(report["tunnel"]["address"], "10.77.0.1");
    assert_eq!(report["tunnel"]["source"], "default");
    assert!(!host.path("state").exists(), "doctor created the state dir");
}

#[test]
fn remote_access_exits_1_with_the_fix() {
    let host = Host::new(&clean_with("PublishServerOnPlexOnlineKey", "1"));
    let (code, report) = host.json(Nft::Absent, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    assert_eq!(ids(&report), ["remote_access_on", "upnp_on"]);
    let first = &report["findings"][0];
    assert_eq!(first["severity"], "error");
    assert!(first["fix"]
        .as_str()
        .unwrap()
        .contains("PublishServerOnPlexOnlineKey=\"0\""));
}

#[test]
fn allowed_networks_over_the_tunnel_exits_1() {
    let host = Host::new(&clean_with("allowedNetworks", "10.77.0.0/255.255.0.0"));
    let (code, report) = host.json(Nft::Absent, &[]);
    assert_eq!(code, 1);
    assert_eq!(ids(&report), ["allowed_networks_cover_tunnel"]);

    let host = Host::new(&clean_with("allowedNetworks", "192.168.1.0/255.255.255.0"));
    let (code, report) = host.json(Nft::Absent, &[]);
    assert_eq!(code, 0, "a LAN range alone is a warning");
    assert_eq!(ids(&report), ["allowed_networks_set"]);
    assert_eq!(report["findings"][0]["severity"], "warning");
}

#[test]
fn warnings_alone_exit_0_but_are_listed() {
    let prefs = clean_with("GdmEnabled", "1").replace(" DlnaEnabled=\"0\"", "");
    let host = Host::new(&prefs);
    let (code, report) = host.json(Nft::Absent, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["ok"], true);
    assert_eq!(ids(&report), ["dlna_on", "gdm_on"]);
}

#[test]
fn the_tunnel_url_follows_the_enrolled_config_and_the_flag() {
    let host = Host::new(CLEAN);
    std::fs::create_dir(host.path("state")).unwrap();
    std::fs::write(
        host.path("state/config.json"),
        r#"{"name": "home", "subnet": "10.9.0.0/24", "tunnel_address": "10.9.0.1"}"#,
    )
    .unwrap();
    let (code, report) = host.json(Nft::Absent, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["tunnel"]["source"], "state");
    assert_eq!(ids(&report), ["custom_url_missing"]);
    let fix = report["findings"][0]["fix"].as_str().unwrap();
    assert!(fix.contains("http://10.9.0.1:32400"), "{fix}");

    let (code, report) = host.json(Nft::Absent, &["--tunnel-subnet", "10.77.0.0/24"]);
    assert_eq!(code, 0);
    assert_eq!(report["tunnel"]["source"], "flag");
    assert_eq!(ids(&report), Vec::<&str>::new());
}

#[test]
fn plex_listening_without_the_guard_exits_1() {
    let host = Host::new(CLEAN);
    host.tcp(PLEX_LISTENING);
    let (code, report) = host.json(Nft::Absent, &[]);
    assert_eq!(code, 1);
    assert_eq!(ids(&report), ["plex_port_exposed"]);
    let problem = report["findings"][0]["problem"].as_str().unwrap();
    assert!(problem.contains("TCP 0.0.0.0:32400 (uid 998)"), "{problem}");

    let (code, report) = host.json(Nft::Present, &[]);
    assert_eq!((code, ids(&report)), (0, vec![]), "the guard covers it");

    let (code, report) = host.json(Nft::NotRoot, &[]);
    assert_eq!(code, 1);
    assert_eq!(ids(&report), ["plex_port_guard_unknown"]);
}

#[test]
fn text_output_has_problem_and_fix_blocks() {
    let host = Host::new(&clean_with("PublishServerOnPlexOnlineKey", "1"));
    let out = host.run(Nft::Absent, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nerror [remote_access_on]\n  problem: Remote Access is on"));
    assert!(text.contains("\n  fix:     Plex Web → Settings → Remote Access"));
    assert!(text.ends_with("2 error(s), 0 warning(s).\n"), "{text}");
    assert!(!text.contains("SECRET"));
}

#[test]
fn a_missing_prefs_file_exits_2_naming_the_path_and_the_flag() {
    let host = Host::new(CLEAN);
    std::fs::remove_file(host.path("Preferences.xml")).unwrap();
    let out = host.run(Nft::Absent, &["--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no JSON when nothing was checked");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&host.path("Preferences.xml").display().to_string()),
        "{err}"
    );
    assert!(err.contains("--plex-prefs"), "{err}");
}

#[test]
fn malformed_prefs_exit_2_without_a_panic() {
    for bad in [
        "",
        "<Preferences GdmEnabled=\"0\"",
        "<Preferences GdmEnabled=\"0\">",
        "<Prefs/>",
        "\u{0}\u{1}garbage",
    ] {
        let host = Host::new(bad);
        let out = host.run(Nft::Absent, &["--json"]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(
            err.contains("is not a Plex Preferences.xml"),
            "{bad:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn unreadable_socket_tables_exit_2() {
    let host = Host::new(CLEAN);
    std::fs::remove_file(host.path("net/tcp")).unwrap();
    let out = host.run(Nft::Absent, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("none of tcp, tcp6, udp, udp6"), "{err}");
}
