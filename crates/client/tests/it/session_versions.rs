//! A session file written by an older or newer grantwire, or damaged, is handled through the
//! binary: an older one (no `version`) works and gains the field; a newer format or garbage is
//! refused with exit code 3 and a message asking to log in again, and the file is left as it
//! was until `login` replaces it. The lease file kept for `renew` is handled the same way.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use crate::common::*;

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_newer_and_garbage_session_files_are_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    let path = config.join("session.json");
    let current = read_json(&path);
    assert_eq!(current["version"], 1, "{current}");

    // Older: the same session without the field, as clients before versioning wrote it.
    let mut older = current.clone();
    older.as_object_mut().unwrap().remove("version");
    std::fs::write(&path, serde_json::to_vec(&older).unwrap()).unwrap();
    let run = grantwire(&config, &["leases", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        read_json(&path),
        current,
        "the older file gains its version"
    );

    // Newer: a format this client does not know, with fields it has never seen.
    let mut newer = current.clone();
    newer["version"] = 2.into();
    newer["token_binding"] = serde_json::json!({"kind": "dpop"});
    let newer = serde_json::to_vec_pretty(&newer).unwrap();
    let garbage = b"\x00\x01 this is not a session {".to_vec();
    for (what, bytes) in [("newer", &newer), ("garbage", &garbage)] {
        std::fs::write(&path, bytes).unwrap();
        for args in [&["profile", "home", "--json"][..], &["leases"][..]] {
            let run = grantwire(&config, args, "").await;
            assert_eq!(run.code, Some(3), "{what} {args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("grantwire login") && run.stderr.contains("session.json"),
                "{what}: {}",
                run.stderr
            );
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
            assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{what}: file kept");
        }
        assert!(run_is_versioned_message(what, &config).await);
    }
    // No lease was asked for with an unreadable session.
    assert!(broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .is_empty());

    // Logging in again replaces the file with a current one, and everything works.
    // The next TOTP step: the first login used this one, and each step is accepted once.
    let code = grantwire_broker::totp::code_at(&secret, now() + 30);
    let args = login_args(&broker, "alice", &code);
    let run = grantwire(&config, &args, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(read_json(&path)["version"], 1);
    let run = grantwire(&config, &["profile", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// The newer file's message names the format versions; garbage's says it is unreadable.
async fn run_is_versioned_message(what: &str, config: &std::path::Path) -> bool {
    let run = grantwire(config, &["leases"], "").await;
    match what {
        "newer" => run.stderr.contains("format version 2") && run.stderr.contains("reads format 1"),
        _ => run.stderr.contains("unreadable"),
    }
}

/// The lease kept for `renew` is versioned the same way: a newer client's file is refused with
/// the command that makes a new profile, kept as it is, and replaced by that command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_stored_lease_is_refused_kept_and_replaced_by_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    let run = grantwire(&config, &["profile", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let path = config.join("profiles/home.json");
    let mut newer = read_json(&path);
    assert_eq!(newer["version"], 1, "{newer}");
    newer["version"] = 7.into();
    let newer = serde_json::to_vec(&newer).unwrap();
    std::fs::write(&path, &newer).unwrap();

    let run = grantwire(&config, &["renew", "home", "--json"], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("format version 7") && run.stderr.contains("grantwire profile home"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(&path).unwrap(), newer, "file kept");

    let run = grantwire(&config, &["profile", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(read_json(&path)["version"], 1);
    let run = grantwire(&config, &["renew", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// A known-brokers file from a newer client (or a damaged one) trusts nothing: `login` refuses
/// with exit code 3 before sending the password, even with `--fingerprint`, names the file,
/// leaves it as it was, and writes no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_known_brokers_file_fails_closed_and_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    std::fs::create_dir_all(&config).unwrap();
    let path = config.join("known_brokers.json");
    let newer = format!(
        r#"{{"version":2,"brokers":{{"{}/":{{"sha256":"{}","pinned_by":"mdm"}}}}}}"#,
        broker.url(),
        broker.fingerprint()
    );
    for bytes in [newer.as_bytes(), b"{ not json".as_slice()] {
        std::fs::write(&path, bytes).unwrap();
        let code = grantwire_broker::totp::code_at(&secret, now());
        let args = login_args(&broker, "alice", &code);
        let run = grantwire(&config, &args, &format!("{PASSWORD}\n")).await;
        assert_eq!(run.code, Some(3), "{}", run.stderr);
        assert!(run.stderr.contains("known_brokers.json"), "{}", run.stderr);
        assert!(run.stderr.contains("left untouched"), "{}", run.stderr);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file is kept");
        assert!(!config.join("session.json").exists(), "no session written");
    }
}
