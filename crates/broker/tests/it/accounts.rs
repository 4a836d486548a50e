//! Accounts: TOTP secrets sealed at rest, failed-login throttling, per-source budgets, the
//! password policy, TOTP reuse, and session lifetime, idle timeout and logout.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use grantwire_broker::clock::{Clock as _, ManualClock};
use grantwire_broker::throttle::{LEASE_RATE, LOGIN_RATE};
use grantwire_broker::{start, Error, ServeConfig, DB_FILE};
use grantwire_proto::{ErrorCode, UserAddRequest};
use serde_json::json;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file of the database (main file, WAL, shared memory) as bytes.
fn db_bytes(data: &Path) -> Vec<Vec<u8>> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::read(data.join(format!("{DB_FILE}{suffix}"))).ok())
        .collect()
}

async fn totp_columns(db: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let conn = crate::common::sqlite(db);
    let mut stmt = conn
        .prepare("SELECT totp_secret, totp_sealed FROM users")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

#[tokio::test]
async fn totp_secrets_are_sealed_at_rest() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let data = h.broker.data_dir().to_owned();
    for bytes in db_bytes(&data) {
        assert!(
            !contains(&bytes, &secret),
            "the TOTP secret is in the database"
        );
    }
    // A copy of the database alone: the plaintext column is empty, the sealed one is not the
    // secret.
    let copy = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal"] {
        let from = data.join(format!("{DB_FILE}{suffix}"));
        if from.exists() {
            std::fs::copy(&from, copy.path().join(format!("{DB_FILE}{suffix}"))).unwrap();
        }
    }
    let rows = totp_columns(&copy.path().join(DB_FILE)).await;
    assert_eq!(rows.len(), 1);
    let (plain, sealed) = &rows[0];
    assert!(plain.is_empty());
    let sealed = sealed.as_ref().unwrap();
    assert!(!contains(sealed, &secret));
    assert!(data.join("secrets.key").exists());
    // And the key is not in the database either.
    let key = std::fs::read(data.join("secrets.key")).unwrap();
    assert_eq!(key.len(), 32);
    for bytes in db_bytes(&data) {
        assert!(!contains(&bytes, &key));
    }

    let resp = h.login_raw("alice", PASSWORD, &code_now(&secret)).await;
    assert_eq!(resp.status(), 200);
    h.shutdown().await;
}

async fn add_alice(broker: &grantwire_broker::RunningBroker) -> Vec<u8> {
    let resp = broker
        .admin()
        .accounts()
        .add(UserAddRequest {
            name: "alice".into(),
            password: PASSWORD.into(),
            admin: false,
        })
        .await
        .unwrap();
    data_encoding::BASE32_NOPAD
        .decode(resp.totp_secret.as_bytes())
        .unwrap()
}

#[tokio::test]
async fn a_missing_or_wrong_secrets_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = start(ServeConfig::for_tests(&data)).await.unwrap();
    add_alice(&broker).await;
    broker.shutdown().await.unwrap();
    let key_path = data.join("secrets.key");
    let key = std::fs::read(&key_path).unwrap();

    std::fs::remove_file(&key_path).unwrap();
    let err = start(ServeConfig::for_tests(&data)).await.err().unwrap();
    assert!(err.to_string().contains("secrets.key is missing"), "{err}");
    assert!(!key_path.exists(), "a new key was made over sealed secrets");

    std::fs::write(&key_path, [7u8; 32]).unwrap();
    let err = start(ServeConfig::for_tests(&data)).await.err().unwrap();
    assert!(err.to_string().contains("does not open"), "{err}");
    assert_eq!(std::fs::read(&key_path).unwrap(), [7u8; 32]);

    std::fs::write(&key_path, &key).unwrap();
    let broker = start(ServeConfig::for_tests(&data)).await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn plaintext_secrets_are_sealed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = start(ServeConfig::for_tests(&data)).await.unwrap();
    let secret = add_alice(&broker).await;
    broker.shutdown().await.unwrap();

    // A row as the first schema stored it: the secret in plaintext, nothing sealed.
    crate::common::sqlite(&data.join(DB_FILE))
        .execute(
            "UPDATE users SET totp_secret = ?, totp_sealed = NULL",
            [&secret],
        )
        .unwrap();
    assert!(db_bytes(&data).iter().any(|b| contains(b, &secret)));

    let mut config = ServeConfig::for_tests(&data);
    config.session_ttl = Duration::from_secs(3600);
    let broker = start(config).await.unwrap();
    for bytes in db_bytes(&data) {
        assert!(!contains(&bytes, &secret), "plaintext left on disk");
    }
    let rows = totp_columns(&data.join(DB_FILE)).await;
    assert!(rows[0].0.is_empty() && rows[0].1.is_some());

    let fp = broker.fingerprint().parse().unwrap();
    let http = grantwire_pinned_tls::http_client(Some(fp));
    let body = json!({"user": "alice", "password": PASSWORD, "code": code_now(&secret)});
    let resp = http
        .post(format!("{}/v1/login", broker.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    broker.shutdown().await.unwrap();
}

async fn with_clock() -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| config.clock = c).await;
    (h, clock)
}

fn code_at(secret: &[u8], clock: &ManualClock) -> String {
    grantwire_broker::totp::code_at(secret, u64::try_from(clock.now_secs()).unwrap())
}

fn kinds(audit: &[grantwire_broker::store::AuditRow], kind: &str) -> usize {
    audit.iter().filter(|r| r.kind == kind).count()
}

#[tokio::test]
async fn five_failures_make_even_the_right_password_wait() {
    let (h, clock) = with_clock().await;
    let secret = h.add_user("alice").await;
    let mut wrong_body = String::new();
    for _ in 0..5 {
        let resp = h
            .login_raw("alice", "not the password", &code_at(&secret, &clock))
            .await;
        assert_eq!(resp.status(), 401);
        wrong_body = resp.text().await.unwrap();
    }
    let before = h.broker.admin().counts().await.unwrap();

    // Locked for 1 s: the right password and code answer exactly like a wrong password.
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), wrong_body);
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(kinds(&audit, "login_throttled"), 1);
    assert_eq!(kinds(&audit, "login_failed"), 5);

    // After the wait, one more failure doubles it: 2 s.
    clock.advance(Duration::from_secs(1));
    let resp = h
        .login_raw("alice", "not the password", &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 401);
    clock.advance(Duration::from_secs(1));
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    clock.advance(Duration::from_secs(1));
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 200);

    // Success ended the streak: four new failures do not lock the account.
    for _ in 0..4 {
        let resp = h.login_raw("alice", "not the password", "000000").await;
        assert_eq!(resp.status(), 401);
    }
    clock.advance(Duration::from_secs(30));
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn the_wait_is_capped_at_fifteen_minutes() {
    let (h, clock) = with_clock().await;
    let secret = h.add_user("alice").await;
    // Fail whenever allowed until the wait has reached its cap (streak 15: 2^10 s > 900 s).
    for _ in 0..16 {
        let resp = h.login_raw("alice", "not the password", "000000").await;
        assert_eq!(resp.status(), 401);
        clock.advance(Duration::from_secs(900));
    }
    let resp = h.login_raw("alice", "not the password", "000000").await;
    assert_eq!(resp.status(), 401);
    clock.advance(Duration::from_secs(899));
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 401, "the wait was shorter than 15 minutes");
    clock.advance(Duration::from_secs(1));
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 200, "the wait was longer than 15 minutes");
    h.shutdown().await;
}

async fn expect_rate_limited(resp: reqwest::Response) {
    let retry_after = resp.headers().get("retry-after").cloned();
    expect_error(resp, 429, ErrorCode::RateLimited).await;
    let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!(secs >= 1, "{secs}");
}

#[tokio::test]
async fn each_source_has_a_login_budget() {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| {
        config.clock = c;
        config.login_rate = LOGIN_RATE;
    })
    .await;
    let secret = h.add_user("alice").await;
    for i in 0..LOGIN_RATE.burst {
        let resp = h.login_raw("mallory", "guess", &i.to_string()).await;
        assert_eq!(resp.status(), 401);
    }
    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    expect_rate_limited(resp).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(
        h.broker.admin().audit_log().await.unwrap().len(),
        audit_before
    );
    // The bucket refills at one a second.
    clock.advance(Duration::from_secs(1));
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    assert_eq!(resp.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn each_source_has_a_lease_budget() {
    // A clock that stands still: on a slow machine the real one would refill the bucket
    // between requests.
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| {
        config.clock = c;
        config.lease_rate = LEASE_RATE;
    })
    .await;
    let secret = h.add_user("alice").await;
    let resp = h
        .login_raw("alice", PASSWORD, &code_at(&secret, &clock))
        .await;
    let token: serde_json::Value = resp.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    for _ in 0..LEASE_RATE.burst {
        let resp = h.request_lease(&token, "nowhere").await;
        assert_eq!(resp.status(), 404);
    }
    let before = h.broker.admin().counts().await.unwrap();
    let resp = h.request_lease(&token, "nowhere").await;
    expect_rate_limited(resp).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    // A tenth of a second later there is a token again.
    clock.advance(Duration::from_millis(100));
    assert_eq!(h.request_lease(&token, "nowhere").await.status(), 404);
    h.shutdown().await;
}

#[tokio::test]
async fn weak_passwords_are_refused_and_nothing_is_stored() {
    let h = Harness::start().await;
    let before = h.broker.admin().counts().await.unwrap();
    for password in [
        "elevenchars",
        "1qaz2wsx3edc",
        "LeaveMeAlone",
        &"x".repeat(129),
    ] {
        let err = h
            .broker
            .admin()
            .accounts()
            .add(UserAddRequest {
                name: "bob".into(),
                password: password.into(),
                admin: false,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{password}: {err}");
        assert_eq!(err.code().http_status(), 400);
    }
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    h.shutdown().await;
}

#[tokio::test]
async fn a_reused_totp_code_is_its_own_audit_event() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let code = code_now(&secret);
    assert_eq!(h.login_raw("alice", PASSWORD, &code).await.status(), 200);
    let wrong = h.login_raw("alice", "not the password", &code).await;
    let uniform = wrong.text().await.unwrap();
    let before = h.broker.admin().counts().await.unwrap();

    let resp = h.login_raw("alice", PASSWORD, &code).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), uniform);
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    let audit = h.broker.admin().audit_log().await.unwrap();
    let reused: Vec<_> = audit.iter().filter(|r| r.kind == "totp_reused").collect();
    assert_eq!(reused.len(), 1);
    assert_eq!(reused[0].actor.as_deref(), Some("alice"));
    // The wrong password with the same code is an ordinary failure.
    assert_eq!(kinds(&audit, "login_failed"), 1);
    h.shutdown().await;
}

/// 404 for the unknown edge means the session was accepted; 401 that it was not.
async fn session_status(h: &Harness, token: &str) -> u16 {
    h.request_lease(token, "nowhere").await.status().as_u16()
}

#[tokio::test]
async fn an_unused_session_ends_after_the_idle_timeout() {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| {
        config.clock = c;
        config.session_ttl = Duration::from_secs(12 * 3600);
        config.session_idle = Duration::from_secs(3600);
    })
    .await;
    let token = h.session("alice").await;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(50 * 60));
        assert_eq!(
            session_status(&h, &token).await,
            404,
            "a used session ended"
        );
    }
    clock.advance(Duration::from_secs(3600));
    let before = h.broker.admin().counts().await.unwrap();
    assert_eq!(
        session_status(&h, &token).await,
        401,
        "an idle session lived on"
    );
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    h.shutdown().await;
}

#[tokio::test]
async fn a_used_session_still_ends_at_its_lifetime() {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| {
        config.clock = c;
        config.session_ttl = Duration::from_secs(2 * 3600);
        config.session_idle = Duration::from_secs(3600);
    })
    .await;
    let token = h.session("alice").await;
    clock.advance(Duration::from_secs(50 * 60));
    assert_eq!(session_status(&h, &token).await, 404);
    clock.advance(Duration::from_secs(50 * 60));
    assert_eq!(session_status(&h, &token).await, 404);
    clock.advance(Duration::from_secs(21 * 60));
    assert_eq!(session_status(&h, &token).await, 401);
    h.shutdown().await;
}

#[tokio::test]
async fn logout_ends_only_the_presenting_session() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let login = |code: String| {
        let h = &h;
        async move {
            let resp = h.login_raw("alice", PASSWORD, &code).await;
            assert_eq!(resp.status(), 200);
            let v: serde_json::Value = resp.json().await.unwrap();
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let first = login(code_now(&secret)).await;
    let second = login(grantwire_broker::totp::code_at(&secret, now() + 30)).await;
    let before = h.broker.admin().counts().await.unwrap();

    let resp = h.post("/v1/logout", Some(&first), &json!({})).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        h.broker.admin().counts().await.unwrap().sessions,
        before.sessions - 1
    );
    assert_eq!(session_status(&h, &first).await, 401);
    assert_eq!(session_status(&h, &second).await, 404);
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(kinds(&audit, "logout"), 1);

    // A second logout with the same token, or none, is refused and changes nothing.
    let after = h.broker.admin().counts().await.unwrap();
    let resp = h.post("/v1/logout", Some(&first), &json!({})).await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    let resp = h.post("/v1/logout", None, &json!({})).await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), after);
    h.shutdown().await;
}

fn named(name: &str) -> grantwire_proto::UserNameRequest {
    grantwire_proto::UserNameRequest { name: name.into() }
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_and_their_session_ends() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let bob = h.session("bob").await;
    let secret = h.add_user("carol").await;
    let wrong = h.login_raw("carol", "not the password", "000000").await;
    let uniform = wrong.text().await.unwrap();

    let resp = h
        .broker
        .admin()
        .accounts()
        .disable(named("alice"))
        .await
        .unwrap();
    assert_eq!(resp.ended_sessions, 1);
    assert_eq!(session_status(&h, &token).await, 401);
    assert_eq!(
        session_status(&h, &bob).await,
        404,
        "another user's session ended"
    );

    h.broker
        .admin()
        .accounts()
        .disable(named("carol"))
        .await
        .unwrap();
    let before = h.broker.admin().counts().await.unwrap();
    let resp = h.login_raw("carol", PASSWORD, &code_now(&secret)).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), uniform);
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);

    let list = h.broker.admin().accounts().list().await.unwrap().users;
    let state: Vec<_> = list.iter().map(|u| (u.name.as_str(), u.disabled)).collect();
    assert_eq!(state, [("alice", true), ("bob", false), ("carol", true)]);

    h.broker
        .admin()
        .accounts()
        .enable(named("carol"))
        .await
        .unwrap();
    let resp = h.login_raw("carol", PASSWORD, &code_now(&secret)).await;
    assert_eq!(resp.status(), 200);
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(kinds(&audit, "user_disabled"), 2);
    assert_eq!(kinds(&audit, "user_enabled"), 1);

    // An unknown name changes nothing.
    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = audit.len();
    let err = h
        .broker
        .admin()
        .accounts()
        .disable(named("dave"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(
        h.broker.admin().audit_log().await.unwrap().len(),
        audit_before
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_password_reset_ends_the_users_sessions() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let resp = h.login_raw("alice", PASSWORD, &code_now(&secret)).await;
    let token: serde_json::Value = resp.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let reset = |password: &str| grantwire_proto::UserPasswordRequest {
        name: "alice".into(),
        password: password.into(),
    };

    // A weak password is refused and nothing changes.
    let before = h.broker.admin().counts().await.unwrap();
    let err = h
        .broker
        .admin()
        .accounts()
        .reset_password(reset("qwerty123456"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(session_status(&h, &token).await, 404);

    let new = "a brand new passphrase";
    let resp = h
        .broker
        .admin()
        .accounts()
        .reset_password(reset(new))
        .await
        .unwrap();
    assert_eq!(resp.ended_sessions, 1);
    assert_eq!(session_status(&h, &token).await, 401);
    let next = grantwire_broker::totp::code_at(&secret, now() + 30);
    assert_eq!(h.login_raw("alice", PASSWORD, &next).await.status(), 401);
    assert_eq!(h.login_raw("alice", new, &next).await.status(), 200);
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(kinds(&audit, "user_password_reset"), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_totp_reset_ends_the_users_sessions_and_the_old_secret() {
    let h = Harness::start().await;
    let old = h.add_user("alice").await;
    let resp = h.login_raw("alice", PASSWORD, &code_now(&old)).await;
    let token: serde_json::Value = resp.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();

    let resp = h
        .broker
        .admin()
        .accounts()
        .reset_totp(named("alice"))
        .await
        .unwrap();
    assert!(resp.otpauth_uri.contains(&resp.totp_secret));
    let new = data_encoding::BASE32_NOPAD
        .decode(resp.totp_secret.as_bytes())
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(session_status(&h, &token).await, 401);
    for bytes in db_bytes(h.broker.data_dir()) {
        assert!(
            !contains(&bytes, &new),
            "the new secret is stored in plaintext"
        );
    }
    let next = grantwire_broker::totp::code_at(&old, now() + 30);
    let new_next = grantwire_broker::totp::code_at(&new, now() + 30);
    if next != new_next {
        assert_eq!(h.login_raw("alice", PASSWORD, &next).await.status(), 401);
    }
    assert_eq!(
        h.login_raw("alice", PASSWORD, &code_now(&new))
            .await
            .status(),
        200
    );
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(kinds(&audit, "user_totp_reset"), 1);
    h.shutdown().await;
}
