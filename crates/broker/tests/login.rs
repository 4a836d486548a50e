//! Login over real HTTPS: success, identical refusals, TOTP replay, session expiry.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use grantwire_proto::{ErrorCode, LoginResponse};

#[tokio::test]
async fn login_issues_a_session_and_audits_it() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let resp = h.login_raw("alice", PASSWORD, &code_now(&secret)).await;
    assert_eq!(resp.status(), 200);
    let login: LoginResponse = resp.json().await.unwrap();
    assert_eq!(login.token.len(), 43);
    let expected = now() as i64 + 3600;
    assert!(
        (login.expires_at - expected).abs() <= 2,
        "{}",
        login.expires_at
    );
    assert_eq!(h.broker.admin().counts().await.unwrap().sessions, 1);

    let audit = h.broker.admin().audit_log().await.unwrap();
    let row = audit.iter().find(|r| r.kind == "login_ok").unwrap();
    assert_eq!(row.actor.as_deref(), Some("alice"));
    assert_eq!(row.source_ip.as_deref(), Some("127.0.0.1"));
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_user_password_or_code_are_indistinguishable() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let good = code_now(&secret);
    let wrong_code = if good == "000000" { "111111" } else { "000000" };
    let before = h.broker.admin().counts().await.unwrap();

    let mut bodies = Vec::new();
    for (user, password, code) in [
        ("alice", "not the password", good.as_str()),
        ("alice", PASSWORD, wrong_code),
        ("mallory", PASSWORD, good.as_str()),
        ("alice", PASSWORD, ""),
    ] {
        let resp = h.login_raw(user, password, code).await;
        assert_eq!(resp.status(), 401, "{user}/{password}/{code}");
        bodies.push(resp.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert!(bodies[0].contains("\"unauthorized\""));
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);

    let audit = h.broker.admin().audit_log().await.unwrap();
    let failed: Vec<_> = audit.iter().filter(|r| r.kind == "login_failed").collect();
    assert_eq!(failed.len(), 4);
    assert!(failed
        .iter()
        .all(|r| r.source_ip.as_deref() == Some("127.0.0.1")));

    // The wrong-password attempt did not burn the code: it still works once.
    let resp = h.login_raw("alice", PASSWORD, &good).await;
    assert_eq!(resp.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn a_totp_code_works_only_once() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let code = code_now(&secret);
    assert_eq!(h.login_raw("alice", PASSWORD, &code).await.status(), 200);
    let before = h.broker.admin().counts().await.unwrap();

    let resp = h.login_raw("alice", PASSWORD, &code).await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);

    // An older step is refused too, even though it is inside the drift window.
    let older = grantwire_broker::totp::code_at(&secret, now() - 30);
    if older != code {
        let resp = h.login_raw("alice", PASSWORD, &older).await;
        expect_error(resp, 401, ErrorCode::Unauthorized).await;
    }
    // The next step is still accepted.
    let next = grantwire_broker::totp::code_at(&secret, now() + 30);
    assert_eq!(h.login_raw("alice", PASSWORD, &next).await.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let h = Harness::with_session_ttl(Duration::from_secs(1)).await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = h.broker.admin().counts().await.unwrap();
    let resp = h.request_lease(&token, "home").await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_say_nothing_about_the_service() {
    let h = Harness::start().await;
    for path in ["/", "/v1", "/v1/admin/users", "/metrics", "/.env"] {
        let resp = h.http.get(h.url(path)).send().await.unwrap();
        assert!(resp.headers().get("server").is_none());
        let msg = expect_error(resp, 404, ErrorCode::NotFound).await;
        assert_eq!(msg, "not found");
    }
    // A known path with the wrong method looks the same.
    let resp = h.http.get(h.url("/v1/login")).send().await.unwrap();
    expect_error(resp, 404, ErrorCode::NotFound).await;
    h.shutdown().await;
}
