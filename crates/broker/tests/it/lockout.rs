//! Targeted lockout (issue 14): a stranger who knows a user name fails logins from networks the
//! user never logged in from. Those failures lock (and cap) only the unknown networks; a login
//! from a network the user has used (its IPv4 /24) still gets in. Failures inside a known
//! network lock that network.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use grantwire_broker::clock::{Clock as _, ManualClock};

async fn with_clock() -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| config.clock = c).await;
    (h, clock)
}

fn code_at(secret: &[u8], clock: &ManualClock) -> String {
    grantwire_broker::totp::code_at(secret, u64::try_from(clock.now_secs()).unwrap())
}

async fn login_from(h: &Harness, src: &str, password: &str, code: &str) -> u16 {
    let body = serde_json::json!({"user": "alice", "password": password, "code": code});
    h.client_from(src)
        .post(h.url("/v1/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn kinds(h: &Harness, kind: &str) -> usize {
    let audit = h.broker.admin().audit_log().await.unwrap();
    audit.iter().filter(|r| r.kind == kind).count()
}

/// Alice has logged in from 127.0.1.5 once; the clock is then moved to the next TOTP step.
async fn alice_at_home(h: &Harness, clock: &ManualClock) -> Vec<u8> {
    let secret = h.add_user("alice").await;
    assert_eq!(
        login_from(h, "127.0.1.5", PASSWORD, &code_at(&secret, clock)).await,
        200
    );
    clock.advance(Duration::from_secs(30));
    secret
}

#[tokio::test]
async fn a_strangers_failures_do_not_lock_the_user_out_of_her_network() {
    let (h, clock) = with_clock().await;
    let secret = alice_at_home(&h, &clock).await;
    for _ in 0..5 {
        assert_eq!(login_from(&h, "127.0.2.9", "guess", "000000").await, 401);
    }
    assert_eq!(kinds(&h, "account_locked").await, 1);
    // Other unknown networks wait, even with the right password and code, and nothing is
    // written for them but the refusal.
    let before = h.broker.admin().counts().await.unwrap();
    let code = code_at(&secret, &clock);
    assert_eq!(login_from(&h, "127.0.3.9", PASSWORD, &code).await, 401);
    assert_eq!(kinds(&h, "login_throttled").await, 1);
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    // Alice, from another address of her network, gets in at once.
    assert_eq!(login_from(&h, "127.0.1.77", PASSWORD, &code).await, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn the_hourly_cap_of_unknown_networks_leaves_known_ones_open() {
    let (h, clock) = with_clock().await;
    let secret = alice_at_home(&h, &clock).await;
    // 99 failures from unknown networks this hour, written as the broker writes them (a
    // hundred argon2 checks would take minutes in a debug build).
    let db =
        rusqlite::Connection::open(h.broker.data_dir().join(grantwire_broker::DB_FILE)).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    for i in 0..99 {
        db.execute(
            "INSERT INTO login_failures (user_id, at, network, known)
             VALUES ((SELECT id FROM users WHERE name = 'alice'), ?1, ?2, 0)",
            rusqlite::params![clock.now_secs(), format!("10.{i}.0.0/24")],
        )
        .unwrap();
    }
    drop(db);
    // The hundredth reaches the cap.
    assert_eq!(login_from(&h, "127.0.2.9", "guess", "000000").await, 401);
    let audit = h.broker.admin().audit_log().await.unwrap();
    let locked: Vec<_> = audit
        .iter()
        .filter(|r| r.kind == "account_locked")
        .collect();
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0].detail.as_deref(), Some("failures_last_hour=100"));
    // A streak of one has no wait, so only the cap refuses the next unknown network.
    clock.advance(Duration::from_secs(30));
    let code = code_at(&secret, &clock);
    assert_eq!(login_from(&h, "127.0.3.9", PASSWORD, &code).await, 401);
    assert_eq!(kinds(&h, "login_throttled").await, 1);
    assert_eq!(login_from(&h, "127.0.1.5", PASSWORD, &code).await, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn failures_inside_a_known_network_lock_that_network_only() {
    let (h, clock) = with_clock().await;
    let secret = h.add_user("alice").await;
    // Alice has used two networks.
    assert_eq!(
        login_from(&h, "127.0.1.5", PASSWORD, &code_at(&secret, &clock)).await,
        200
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        login_from(&h, "127.0.4.5", PASSWORD, &code_at(&secret, &clock)).await,
        200
    );
    clock.advance(Duration::from_secs(30));
    for _ in 0..5 {
        assert_eq!(login_from(&h, "127.0.1.66", "guess", "000000").await, 401);
    }
    let audit = h.broker.admin().audit_log().await.unwrap();
    let locked: Vec<_> = audit
        .iter()
        .filter(|r| r.kind == "account_locked")
        .collect();
    assert_eq!(locked.len(), 1);
    assert_eq!(
        locked[0].detail.as_deref(),
        Some("failures_in_a_row=5 wait=1s network=127.0.1.0/24")
    );
    let code = code_at(&secret, &clock);
    assert_eq!(login_from(&h, "127.0.1.5", PASSWORD, &code).await, 401);
    assert_eq!(login_from(&h, "127.0.4.5", PASSWORD, &code).await, 200);
    // The unknown networks were never touched.
    clock.advance(Duration::from_secs(30));
    let code = code_at(&secret, &clock);
    assert_eq!(login_from(&h, "127.0.9.9", PASSWORD, &code).await, 200);
    h.shutdown().await;
}
