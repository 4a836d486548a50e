//! Errors a person meets after logging in, through the binary against a real broker: a lease
//! that expired by the broker's clock, and a broker that went away. Each says what happened
//! and what to run, with the contract's exit code (1 runtime failure, 3 refused).
//!
//! The other errors the helper words are tested beside the commands that meet them:
//! broker unreachable at login (cli.rs), fingerprint changed (trust.rs), session expired
//! (cli.rs, session_versions.rs), no grant and edge unknown (broker.rs), pin moved and lease
//! expired for `status` and `watch` (watch.rs).

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_cannot_be_renewed_and_says_to_make_a_new_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, _) = broker_with_alice(&tmp.path().join("broker")).await;
    // Two seconds: long enough to make the profile, short enough to wait out.
    let secret = add_user_with_grant_ttl(&broker, "bob", Some(2)).await;
    let config = tmp.path().join("bob");
    login(&config, &broker, "bob", &secret).await;
    let run = grantwire(&config, &["profile", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let profile: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let lease_id = profile["profile"]["lease_id"].as_str().unwrap().to_owned();
    let expires_at = profile["profile"]["expires_at"].as_i64().unwrap();
    let kept = std::fs::read(config.join("profiles/home.json")).unwrap();

    while (now() as i64) <= expires_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = grantwire(&config, &["renew", "home"], "").await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains(&lease_id), "{}", run.stderr);
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
    assert!(
        run.stderr.contains("run `grantwire profile home`"),
        "{}",
        run.stderr
    );
    // The kept lease (and its key) stays until a new profile replaces it.
    assert_eq!(
        std::fs::read(config.join("profiles/home.json")).unwrap(),
        kept
    );
    let run = grantwire(&config, &["leases", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed["leases"].as_array().unwrap().len(), 0, "{listed}");

    // A new profile works again.
    let run = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_gone_away_is_a_runtime_failure_that_keeps_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    let run = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let url = broker.url();
    let session = std::fs::read(config.join("session.json")).unwrap();
    broker.shutdown().await.unwrap();

    for args in [
        &["whoami"][..],
        &["profile", "home"][..],
        &["renew", "home"][..],
        &["leases"][..],
        &["logout"][..],
    ] {
        let run = grantwire(&config, args, "").await;
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("grantwire: cannot reach the broker at {url}/")),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // Nothing was lost: the session (still live on the broker) is kept for a retry.
    assert_eq!(std::fs::read(config.join("session.json")).unwrap(), session);
    assert!(config.join("profiles/home.json").is_file());
}
