//! Login over real HTTPS: success, identical refusals, TOTP replay, session expiry.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use grantwire_proto::{ErrorCode, LoginResponse};

#[tokio::test]
async fn login_issues_a_session_and_audits_it() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let before = now() as i64;
    let resp = h.login_raw("alice", PASSWORD, &code_now(&secret)).await;
    assert_eq!(resp.status(), 200);
    let login: LoginResponse = resp.json().await.unwrap();
    let after = now() as i64;
    assert_eq!(login.token.len(), 43);
    // An hour from the moment of login, whenever within the request that fell (argon2 on a
    // loaded machine can take seconds).
    assert!(
        (before + 3600..=after + 3600).contains(&login.expires_at),
        "expires_at {} outside [{}, {}]",
        login.expires_at,
        before + 3600,
        after + 3600
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

/// A name no user can have (not of `UserName`'s shape) is refused like a wrong password, with
/// the right password and code of the user it resembles, and the audit row keeps at most 64
/// characters of it.
#[tokio::test]
async fn a_name_of_no_users_shape_is_refused_like_a_wrong_password() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let good = code_now(&secret);
    let wrong = h.login_raw("mallory", PASSWORD, &good).await;
    assert_eq!(wrong.status(), 401);
    let wrong = wrong.text().await.unwrap();
    let long = format!("alice{}", "x".repeat(200));
    for user in ["Alice", " alice", "alice\n", long.as_str()] {
        let resp = h.login_raw(user, PASSWORD, &good).await;
        assert_eq!(resp.status(), 401, "{user:?}");
        assert_eq!(resp.text().await.unwrap(), wrong, "{user:?}");
    }
    let audit = h.broker.admin().audit_log().await.unwrap();
    let actors: Vec<_> = audit
        .iter()
        .filter(|r| r.kind == "login_failed")
        .map(|r| r.actor.clone().unwrap_or_default())
        .collect();
    assert_eq!(actors.len(), 5, "{audit:?}");
    assert!(
        actors.contains(&long.chars().take(64).collect::<String>()),
        "{actors:?}"
    );
    assert!(actors.iter().all(|a| a.chars().count() <= 64), "{actors:?}");
    // None of them counted against alice: her code still works.
    assert_eq!(h.login_raw("alice", PASSWORD, &good).await.status(), 200);
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
    let (h, token, _, _) = Harness::granted_with(|c| c.session_ttl = Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = h.broker.admin().counts().await.unwrap();
    let resp = h.request_lease(&token, "home").await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    h.shutdown().await;
}

#[tokio::test]
async fn without_credentials_every_path_gets_the_same_short_answer() {
    let h = Harness::start().await;
    let reference = h.http.get(h.url("/v1/whoami")).send().await.unwrap();
    assert_eq!(reference.status(), 401);
    let reference_headers = headers_but_date(reference.headers());
    let reference_body = reference.text().await.unwrap();
    assert_eq!(
        reference_body,
        r#"{"error":{"code":"unauthorized","message":"unauthorized"}}"#
    );
    let probes = [
        ("GET", "/"),
        ("GET", "/v1"),
        ("GET", "/v1/admin/users"),
        ("GET", "/metrics"),
        ("GET", "/.env"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/v1/login"),
        ("DELETE", "/v1/leases"),
        ("POST", "/v1/edge/report"),
        ("GET", "/v1/edge/sync"),
        ("POST", "/v1/logout"),
    ];
    for (method, path) in probes {
        let method: reqwest::Method = method.parse().unwrap();
        for token in [None, Some("not-a-session")] {
            let mut req = h.http.request(method.clone(), h.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path}");
            // Every header too: axum's `Allow` on a wrong method would name the routes.
            assert_eq!(
                headers_but_date(resp.headers()),
                reference_headers,
                "{method} {path}"
            );
            assert_eq!(
                resp.text().await.unwrap(),
                reference_body,
                "{method} {path}"
            );
        }
    }
    // A caller with a live session learns that a path does not exist.
    let token = h.session("alice").await;
    for path in ["/", "/v1/nope"] {
        let resp = h
            .http
            .get(h.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let msg = expect_error(resp, 404, ErrorCode::NotFound).await;
        assert_eq!(msg, "not found");
    }
    let resp = h
        .http
        .get(h.url("/v1/login"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, ErrorCode::NotFound).await;
    h.shutdown().await;
}

fn headers_but_date(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    all.sort();
    all
}

/// Bodies that do not parse, as (content type, body).
fn malformed_bodies(valid_fields: &[&str]) -> Vec<(&'static str, String)> {
    let mut bodies = vec![
        ("application/json", "{not json".to_owned()),
        ("application/json", String::new()),
        ("application/json", "[]".to_owned()),
        (
            "application/json",
            r#"{"user": 7, "password": [], "code": null}"#.to_owned(),
        ),
        ("text/plain", r#"{"user": "alice"}"#.to_owned()),
        ("", "x".to_owned()),
    ];
    // Each valid field alone: the others are missing.
    for f in valid_fields {
        bodies.push(("application/json", format!(r#"{{"{f}": "x"}}"#)));
    }
    bodies
}

async fn post_raw(h: &Harness, path: &str, content_type: &str, body: String) -> reqwest::Response {
    let mut req = h.http.post(h.url(path)).body(body);
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_malformed_login_looks_like_a_wrong_password() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let wrong = h
        .login_raw("alice", "not the password", &code_now(&secret))
        .await;
    assert_eq!(wrong.status(), 401);
    let uniform = wrong.text().await.unwrap();
    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();

    for (ct, body) in malformed_bodies(&["user", "password", "code"]) {
        let resp = post_raw(&h, "/v1/login", ct, body.clone()).await;
        assert_eq!(resp.status(), 401, "{ct} {body}");
        assert_eq!(resp.text().await.unwrap(), uniform, "{ct} {body}");
    }
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(
        h.broker.admin().audit_log().await.unwrap().len(),
        audit_before
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_malformed_enrolment_looks_like_a_bad_token() {
    let h = Harness::start().await;
    let token = h.add_edge("home").await;
    let key = keypair().public_key();
    let bad = h
        .post(
            "/v1/edge/enrol",
            None,
            &serde_json::json!({"token": "made-up", "public_key": key}),
        )
        .await;
    assert_eq!(bad.status(), 401);
    let uniform = bad.text().await.unwrap();
    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();

    let mut bodies = malformed_bodies(&["token", "public_key"]);
    // The right token with a key that does not parse must not reveal that the token was right.
    bodies.push((
        "application/json",
        serde_json::json!({"token": token, "public_key": "AAAA"}).to_string(),
    ));
    for (ct, body) in bodies {
        let resp = post_raw(&h, "/v1/edge/enrol", ct, body.clone()).await;
        assert_eq!(resp.status(), 401, "{ct} {body}");
        assert_eq!(resp.text().await.unwrap(), uniform, "{ct} {body}");
    }
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(
        h.broker.admin().audit_log().await.unwrap().len(),
        audit_before
    );
    // The token is still unused.
    let body = serde_json::json!({"token": token, "public_key": key});
    assert_eq!(h.post("/v1/edge/enrol", None, &body).await.status(), 200);
    h.shutdown().await;
}
