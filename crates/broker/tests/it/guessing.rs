//! Made-up bearer tokens (issue 14): a request whose session token or edge credential matches
//! nothing spends its source's login budget, and once the source has none left its misses get
//! 429. Real tokens spend nothing, and work from a source whose budget is spent.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use grantwire_broker::clock::ManualClock;
use grantwire_broker::throttle::RateLimit;
use grantwire_pinned_tls::{client_config, Fingerprint};
use grantwire_proto::ErrorCode;

const BOGUS: &str = "made-up-token-made-up-token-made-up-token-0000";

async fn limited() -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let h = Harness::with_config(|c| {
        c.clock = clock.clone();
        c.login_rate = RateLimit {
            burst: 3,
            per_sec: 1,
        };
    })
    .await;
    (h, clock)
}

async fn whoami(h: &Harness, token: &str) -> reqwest::Response {
    h.http
        .get(h.url("/v1/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn client_from(h: &Harness, src: &str) -> reqwest::Client {
    let fp: Fingerprint = h.broker.fingerprint().parse().unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(Some(fp)))
        .local_address(src.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn made_up_session_tokens_spend_the_login_budget() {
    let (h, clock) = limited().await;
    let secret = h.add_user("alice").await;
    for _ in 0..3 {
        expect_error(whoami(&h, BOGUS).await, 401, ErrorCode::Unauthorized).await;
    }
    let before = h.broker.admin().counts().await.unwrap();
    expect_error(whoami(&h, BOGUS).await, 429, ErrorCode::RateLimited).await;
    // The budget is the login one: a right password from this source waits too, and nothing
    // was written for it.
    let resp = h.login_raw("alice", PASSWORD, &code_now(&secret)).await;
    expect_error(resp, 429, ErrorCode::RateLimited).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    // Another source has its own budget.
    let other = client_from(&h, "127.0.0.2")
        .get(h.url("/v1/whoami"))
        .bearer_auth(BOGUS)
        .send()
        .await
        .unwrap();
    expect_error(other, 401, ErrorCode::Unauthorized).await;
    // And the budget refills.
    clock.advance(Duration::from_secs(1));
    expect_error(whoami(&h, BOGUS).await, 401, ErrorCode::Unauthorized).await;
    h.shutdown().await;
}

#[tokio::test]
async fn made_up_edge_credentials_spend_the_login_budget() {
    let (h, _clock) = limited().await;
    let sync = || h.http.get(h.url("/v1/edge/sync")).bearer_auth(BOGUS).send();
    for _ in 0..3 {
        expect_error(sync().await.unwrap(), 401, ErrorCode::Unauthorized).await;
    }
    expect_error(sync().await.unwrap(), 429, ErrorCode::RateLimited).await;
    // A path no route has looks the token up as either kind: refused the same way.
    let probe = h
        .http
        .get(h.url("/v1/nothing-here"))
        .bearer_auth(BOGUS)
        .send()
        .await
        .unwrap();
    expect_error(probe, 429, ErrorCode::RateLimited).await;
    h.shutdown().await;
}

#[tokio::test]
async fn real_tokens_spend_nothing() {
    let (h, _clock) = limited().await;
    let token = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    for _ in 0..10 {
        assert_eq!(whoami(&h, &token).await.status(), 200);
    }
    let sync = h.open_sync(&credential).await;
    assert_eq!(sync.status(), 200);
    drop(sync);
    // The login and the enrolment spent two of three (they take the login budget
    // themselves); the ten uses of real tokens spent none: one made-up token still gets its
    // 401.
    expect_error(whoami(&h, BOGUS).await, 401, ErrorCode::Unauthorized).await;
    expect_error(whoami(&h, BOGUS).await, 429, ErrorCode::RateLimited).await;
    // With the budget spent by guesses from this address, the user and the edge behind it
    // keep working: a revocation must still reach the edge.
    assert_eq!(whoami(&h, &token).await.status(), 200);
    let sync = h.open_sync(&credential).await;
    assert_eq!(sync.status(), 200);
    let mut events = SseReader::new(sync);
    events.next_set().await;
    h.shutdown().await;
}
