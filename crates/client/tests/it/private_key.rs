//! The WireGuard private key is made on the device and never leaves it: after `login`,
//! `profile` and `renew` through the `grantwire` binary, the key in the written profile appears
//! nowhere in the broker's data directory (SQLite database, its WAL, every other file) nor in
//! anything the broker logged, at every level. The same search finds the public key in the
//! database, so it is a search that can fail.
//!
//! The broker runs in this process, so the test installs a global log subscriber that captures
//! every event the broker emits (TRACE, including the `log` crate's events from sqlx), the same
//! events `grantwire-broker serve` writes to stderr. Global, because the broker logs from its
//! runtime's worker threads and sqlx's own; this test binary holds the crate's other tests too,
//! so the subscriber passes events on only while a capture is open (see [`capture_logs`]).

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::common::*;
use grantwire_proto::PrivateKey;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

/// The open capture's bytes; `None` while no capture is open.
static CAPTURE: Mutex<Option<Vec<u8>>> = Mutex::new(None);
/// Mirrors `CAPTURE.is_some()` so the filter, asked for every event of every test in this
/// process, needs no lock.
static CAPTURING: AtomicBool = AtomicBool::new(false);

fn capture() -> MutexGuard<'static, Option<Vec<u8>>> {
    CAPTURE.lock().unwrap_or_else(|e| e.into_inner())
}

struct Sink;

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(bytes) = capture().as_mut() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Held by the open capture, so captures wait for each other.
static ONE_CAPTURE: Mutex<()> = Mutex::new(());

/// An open capture; it closes on drop, also when the test panics.
struct Captured {
    _alone: MutexGuard<'static, ()>,
}

impl Captured {
    fn bytes(&self) -> Vec<u8> {
        capture().clone().unwrap_or_default()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        CAPTURING.store(false, Ordering::SeqCst);
        *capture() = None;
    }
}

/// Opens the capture, installing the process's subscriber the first time. Events of other tests
/// running meanwhile land in it too; they cannot hide this test's key, only add lines.
fn capture_logs() -> Captured {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Sink)
            .with_filter(filter_fn(|_| CAPTURING.load(Ordering::SeqCst)));
        tracing_subscriber::registry()
            .with(layer)
            .try_init()
            .unwrap();
    });
    let alone = ONE_CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    *capture() = Some(Vec::new());
    CAPTURING.store(true, Ordering::SeqCst);
    Captured { _alone: alone }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `dir` (the database, `-wal`, `-shm`, TLS and secret keys), by path.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files_under(&entry.path()));
        } else if kind.is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            out.push((entry.path().display().to_string(), bytes));
        }
    }
    out
}

/// The forms a 32-byte key could be stored or logged in: raw, standard base64, hex.
fn forms(key: &[u8; 32]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("raw bytes", key.to_vec()),
        ("base64", data_encoding::BASE64.encode(key).into_bytes()),
        (
            "base64 unpadded",
            data_encoding::BASE64_NOPAD.encode(key).into_bytes(),
        ),
        ("hex", data_encoding::HEXLOWER.encode(key).into_bytes()),
        ("HEX", data_encoding::HEXUPPER.encode(key).into_bytes()),
    ]
}

/// Which (file, form) pairs hold the key.
fn find(files: &[(String, Vec<u8>)], key: &[u8; 32]) -> Vec<String> {
    let mut hits = Vec::new();
    for (path, bytes) in files {
        for (form, needle) in forms(key) {
            if contains(bytes, &needle) {
                hits.push(format!("{path} ({form})"));
            }
        }
    }
    hits
}

fn profile_private_key(profile: &str) -> PrivateKey {
    let line = profile
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "PrivateKey").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no PrivateKey line in:\n{profile}"));
    let bytes: [u8; 32] = data_encoding::BASE64
        .decode(line.as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let key = PrivateKey::from_random_bytes(bytes);
    assert_eq!(
        key.as_bytes(),
        &bytes,
        "a WireGuard private key is already clamped"
    );
    key
}

/// The other tests in this process run as if no subscriber were installed: with no capture open,
/// no event is enabled, so none is formatted or kept.
#[test]
fn no_event_is_enabled_while_no_capture_is_open() {
    let open = capture_logs();
    assert!(tracing::enabled!(tracing::Level::TRACE));
    tracing::info!("kept while open");
    assert!(contains(&open.bytes(), b"kept while open"));
    drop(open);
    let _none_open = ONE_CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    assert!(!tracing::enabled!(tracing::Level::ERROR));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_is_in_neither_the_brokers_database_nor_its_logs() {
    let logs = capture_logs();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("broker");
    let (broker, secret) = broker_with_alice(&data_dir).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;

    let profile_path = tmp.path().join("home.conf");
    let out = profile_path.to_str().unwrap();
    let run = grantwire(&config, &["profile", "home", "--out", out], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let first = profile_private_key(&std::fs::read_to_string(&profile_path).unwrap());
    // A renew sends the key's lease to the broker again; the key still stays here.
    let run = grantwire(&config, &["renew", "home"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let renewed = profile_private_key(&std::fs::read_to_string(&profile_path).unwrap());
    assert_eq!(first.as_bytes(), renewed.as_bytes(), "renew keeps the key");
    let private = *first.as_bytes();
    let public = *first.public_key().as_bytes();

    // While the broker runs, recent writes sit in the WAL; after shutdown they are in the
    // database file. Both states are searched.
    let running = files_under(&data_dir);
    assert!(
        running.iter().any(|(p, _)| p.ends_with("broker.db")),
        "no database in {running:?}",
    );
    broker.shutdown().await.unwrap();
    let stopped = files_under(&data_dir);
    let logged = logs.bytes();
    assert!(
        contains(&logged, b"alice") || contains(&logged, b"lease"),
        "the log capture caught nothing of the broker's work:\n{}",
        String::from_utf8_lossy(&logged)
    );

    // The search works: the broker does store the public key (in the database, or its WAL).
    let public_hits = find(&running, &public);
    assert!(
        !public_hits.is_empty(),
        "the public key was not found in the broker's files: the search is broken"
    );
    let public_in_db = find(&stopped, &public);
    assert!(
        public_in_db.iter().any(|h| h.contains("broker.db")),
        "the public key is not in the database after shutdown: {public_in_db:?}"
    );

    let mut leaks = find(&running, &private);
    leaks.extend(find(&stopped, &private));
    leaks.extend(find(&[("broker log".to_owned(), logged)], &private));
    assert!(
        leaks.is_empty(),
        "the device's private key reached the broker: {leaks:?}"
    );
    // And the device does keep it, only in its own 0600 files.
    let device = files_under(&config);
    assert!(!find(&device, &private).is_empty());
}
