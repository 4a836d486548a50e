//! The bindings across a real language boundary: Python bindings generated from the built
//! cdylib drive a real HTTPS broker (`tests/python/test_ffi.py`: trust, login, lease, renew,
//! revoke, each error kind, threads, a call that must not block the event loop), and the
//! profile Python wrote is accepted by Debian's wireguard-tools: `wg-quick strip`, then
//! `wg setconf` into a real `wireguard-go` interface in its own network namespace.
//!
//! Needs python3, root, `ip`, `wg`, `wg-quick`, `wireguard-go` and `/dev/net/tun`. Under
//! `CI=true` or `GRANTWIRE_E2E_REQUIRED=1` anything missing fails the test naming it; elsewhere
//! the test says `skipping: ...` and passes.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use grantwire_broker::{start, RunningBroker, ServeConfig};
use grantwire_proto::{
    EdgeAddRequest, EnrolRequest, GrantAddRequest, PrivateKey, PublicKey, UserAddRequest,
};

use crate::support::host::{require, run_ok, TOOLS};
use crate::support::{cdylib, hex, wg};

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drives_a_real_broker_and_its_profile_loads_into_wireguard() {
    let tools: Vec<&str> = TOOLS.iter().copied().chain(["python3"]).collect();
    if !require("the Python FFI test", &tools, true) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bindings = generate_python_bindings(tmp.path());
    let (broker, secret, edge_key) = broker_for_python(&tmp.path().join("broker")).await;
    let profile_path = tmp.path().join("gw-home.conf");

    let mut python = Command::new("python3");
    python
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_ffi.py"))
        .env("PYTHONPATH", &bindings)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("GW_BROKER_URL", broker.url())
        .env("GW_FINGERPRINT", broker.fingerprint())
        .env("GW_USER", "alice")
        .env("GW_PASSWORD", PASSWORD)
        .env("GW_TOTP_SECRET_HEX", hex(&secret))
        .env("GW_EDGE", "home")
        .env("GW_EDGE_NO_GRANT", "cabin")
        .env("GW_EDGE_V6_ONLY", "v6only")
        .env("GW_PROFILE_OUT", &profile_path);
    let started = Instant::now();
    // Off the runtime's threads, so the in-process broker keeps serving.
    let out = tokio::task::spawn_blocking(move || python.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "python3 test_ffi.py: {} in {:.1} s",
        out.status,
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "test_ffi.py failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(stderr.contains("all passed"), "{stderr}");
    eprint!("{stderr}");

    let text = std::fs::read_to_string(&profile_path).unwrap();
    let private_key = wg::value(&text, "PrivateKey").expect("the profile has a PrivateKey");
    let private: PrivateKey = private_key.parse().expect("a WireGuard private key");
    for (name, output) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !output.contains(&private_key),
            "the private key appeared on Python's {name}"
        );
    }
    assert!(
        !stderr.contains(PASSWORD) && !stdout.contains(PASSWORD),
        "the password appeared in Python's output"
    );

    let shown = tokio::task::spawn_blocking(move || wg::load_into_wireguard_go(&profile_path))
        .await
        .unwrap();
    assert_eq!(
        wg::value(&shown, "PublicKey").as_deref(),
        Some(edge_key.to_base64().as_str()),
        "the interface's peer is the edge:\n{shown}"
    );
    assert_eq!(
        wg::value(&shown, "Endpoint"),
        wg::value(&text, "Endpoint"),
        "the interface's endpoint is the profile's:\n{shown}"
    );
    assert_eq!(
        wg::value(&shown, "PrivateKey").map(|k| k.parse::<PrivateKey>().unwrap().public_key()),
        Some(private.public_key()),
        "the interface holds the device's key"
    );
    broker.shutdown().await.unwrap();
}

/// Python bindings for the cdylib this test run built, with the library beside them, in
/// `dir/python`; the generator is the crate's own `uniffi-bindgen`.
fn generate_python_bindings(dir: &Path) -> PathBuf {
    let lib = cdylib();
    let out = dir.join("python");
    run_ok(&[
        env!("CARGO_BIN_EXE_uniffi-bindgen"),
        "generate",
        "--library",
        lib.to_str().unwrap(),
        "--language",
        "python",
        "--no-format",
        "--metadata-no-deps",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    std::fs::copy(&lib, out.join(lib.file_name().unwrap())).unwrap();
    out
}

/// A broker with user alice (raw TOTP secret returned) and three enrolled edges: `home`, which
/// alice holds a grant on (its public key returned); `cabin`, which she does not; and
/// `v6only`, granted but reachable only over IPv6, so a lease for a client on 127.0.0.1 has no
/// endpoint of its family.
async fn broker_for_python(data_dir: &Path) -> (RunningBroker, Vec<u8>, PublicKey) {
    let broker = start(ServeConfig::for_tests(data_dir)).await.unwrap();
    let admin = broker.admin();
    let user = admin
        .accounts()
        .add(UserAddRequest {
            name: "alice".into(),
            password: PASSWORD.into(),
            admin: false,
        })
        .await
        .unwrap();
    let edges = [
        ("home", "192.0.2.1:51820", true),
        ("cabin", "192.0.2.2:51820", false),
        ("v6only", "[2001:db8::1]:51820", true),
    ];
    let mut home_key = None;
    for (seed, (name, endpoint, granted)) in (9u8..).zip(edges) {
        let added = admin
            .edges()
            .add(EdgeAddRequest {
                name: name.into(),
                endpoint: endpoint.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let key = PrivateKey::from_random_bytes([seed; 32]).public_key();
        let enrol = EnrolRequest {
            token: added.enrolment_token,
            public_key: key,
        };
        admin
            .edges()
            .enrol(enrol, "127.0.0.1".parse().unwrap())
            .await
            .unwrap();
        if granted {
            let grant = GrantAddRequest {
                user: "alice".into(),
                edge: name.into(),
                ..Default::default()
            };
            admin.grants().add(grant).await.unwrap();
        }
        home_key.get_or_insert(key);
    }
    let secret = data_encoding::BASE32_NOPAD
        .decode(user.totp_secret.as_bytes())
        .unwrap();
    (broker, secret, home_key.unwrap())
}
