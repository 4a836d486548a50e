//! Invitations and first sign-in against a real broker: an invited user cannot log in
//! until they prove the temporary password, are shown a new TOTP secret, and confirm a code
//! for it with a password of their own; every refusal is the login's plain 401, counted like a
//! failed login, and changes nothing.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;

use crate::common::*;
use grantwire_broker::clock::{Clock as _, ManualClock};
use grantwire_broker::{Error, INVITE_SETUP_TTL_SECS};
use grantwire_proto::{UserInviteRequest, UserInviteResponse, UserNameRequest};

const NEW_PASSWORD: &str = "a password of my own choosing";

fn source() -> IpAddr {
    "198.51.100.7".parse().unwrap()
}

async fn with_clock() -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| config.clock = c).await;
    (h, clock)
}

fn secs(clock: &ManualClock) -> u64 {
    u64::try_from(clock.now_secs()).unwrap()
}

async fn invite(h: &Harness, name: &str, ttl_secs: Option<u64>) -> UserInviteResponse {
    h.broker
        .admin()
        .invites()
        .create(UserInviteRequest {
            name: name.into(),
            admin: false,
            ttl_secs,
        })
        .await
        .unwrap()
}

fn kinds(audit: &[grantwire_broker::store::AuditRow], kind: &str) -> usize {
    audit.iter().filter(|r| r.kind == kind).count()
}

#[tokio::test]
async fn an_invited_user_enrols_once_and_then_logs_in_like_anyone() {
    let (h, clock) = with_clock().await;
    let b = h.broker.admin();
    let invited = invite(&h, "bob", None).await;
    assert_eq!(
        invited.expires_at,
        clock.now_secs() + 72 * 3600,
        "the default invitation lasts 72 h"
    );
    assert!(!format!("{invited:?}").contains(&invited.temporary_password));

    // The temporary password logs in nowhere: not with any code the API could be given.
    for code in ["000000", "123456"] {
        let resp = h.login_raw("bob", &invited.temporary_password, code).await;
        assert_eq!(resp.status(), 401);
    }

    let started = b
        .invites()
        .begin("bob", invited.temporary_password.clone(), source())
        .await
        .unwrap();
    assert!(
        started.otpauth_uri.starts_with("otpauth://totp/"),
        "{}",
        started.otpauth_uri
    );
    assert_eq!(started.expires_at, clock.now_secs() + INVITE_SETUP_TTL_SECS);
    let secret = data_encoding::BASE32_NOPAD
        .decode(started.totp_secret.as_bytes())
        .unwrap();
    assert!(!format!("{started:?}").contains(&started.totp_secret));

    // A wrong code: refused, and the set-up waits for a right one.
    let wrong = b
        .invites()
        .finish(&started.token, NEW_PASSWORD.into(), "000000", source())
        .await;
    assert!(matches!(wrong, Err(Error::Unauthorized)), "{wrong:?}");
    // A password the policy refuses: refused before anything is looked at.
    let code = grantwire_broker::totp::code_at(&secret, secs(&clock));
    let weak = b
        .invites()
        .finish(&started.token, "short".into(), &code, source())
        .await;
    assert!(matches!(weak, Err(Error::BadRequest(_))), "{weak:?}");

    let session = b
        .invites()
        .finish(&started.token, NEW_PASSWORD.into(), &code, source())
        .await
        .unwrap();
    let me = h
        .http
        .get(h.url("/v1/whoami"))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // The token is spent, the code cannot be used again, the temporary password is dead.
    let again = b
        .invites()
        .finish(&started.token, NEW_PASSWORD.into(), &code, source())
        .await;
    assert!(matches!(again, Err(Error::Unauthorized)), "{again:?}");
    let restart = b
        .invites()
        .begin("bob", invited.temporary_password.clone(), source())
        .await;
    assert!(matches!(restart, Err(Error::Unauthorized)), "{restart:?}");
    let resp = h.login_raw("bob", NEW_PASSWORD, &code).await;
    assert_eq!(resp.status(), 401, "the enrolment's code was spent");
    clock.advance(std::time::Duration::from_secs(30));
    let next = grantwire_broker::totp::code_at(&secret, secs(&clock));
    let resp = h.login_raw("bob", &invited.temporary_password, &next).await;
    assert_eq!(resp.status(), 401, "the temporary password is gone");
    let resp = h.login_raw("bob", NEW_PASSWORD, &next).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let users = b.accounts().list().await.unwrap();
    assert_eq!(users.users[0].invited_until, None, "enrolled: {users:?}");

    let audit = b.audit_log().await.unwrap();
    for (kind, n) in [
        ("user_invited", 1),
        ("enrol_started", 1),
        ("user_enrolled", 1),
        ("enrol_failed", 1),
        ("enrol_not_invited", 1),
        ("login_ok", 2),
    ] {
        assert_eq!(kinds(&audit, kind), n, "{kind}: {audit:?}");
    }
    let invited_refusals = audit
        .iter()
        .filter(|r| {
            r.kind == "login_failed" && r.detail.as_deref() == Some("invited, not enrolled")
        })
        .count();
    assert_eq!(invited_refusals, 2, "{audit:?}");
    let row = audit.iter().find(|r| r.kind == "user_enrolled").unwrap();
    assert_eq!(row.source_ip.as_deref(), Some("198.51.100.7"));
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_expired_disabled_and_unknown_are_refused_alike_and_change_nothing() {
    let (h, clock) = with_clock().await;
    let b = h.broker.admin();
    let carol = invite(&h, "carol", Some(3600)).await;

    // Wrong temporary password, and a name nobody has: the same refusal.
    for (name, password) in [("carol", "AAAA-BBBB-CCCC-DDDD"), ("nobody", "x")] {
        let r = b.invites().begin(name, password.into(), source()).await;
        assert!(matches!(r, Err(Error::Unauthorized)), "{name}: {r:?}");
    }
    // A token that was never issued.
    let r = b
        .invites()
        .finish("not-a-token", NEW_PASSWORD.into(), "123456", source())
        .await;
    assert!(matches!(r, Err(Error::Unauthorized)), "{r:?}");

    // A user added the usual way has nothing to set up.
    h.add_user("dave").await;
    let r = b.invites().begin("dave", PASSWORD.into(), source()).await;
    assert!(matches!(r, Err(Error::Unauthorized)), "{r:?}");

    // Disabled while invited: refused; enabled again: accepted.
    b.accounts()
        .disable(UserNameRequest {
            name: "carol".into(),
        })
        .await
        .unwrap();
    let r = b
        .invites()
        .begin("carol", carol.temporary_password.clone(), source())
        .await;
    assert!(matches!(r, Err(Error::Unauthorized)), "{r:?}");
    b.accounts()
        .enable(UserNameRequest {
            name: "carol".into(),
        })
        .await
        .unwrap();
    let started = b
        .invites()
        .begin("carol", carol.temporary_password.clone(), source())
        .await
        .unwrap();

    // The set-up's own 15 minutes run out: its token no longer works.
    clock.advance(std::time::Duration::from_secs(
        u64::try_from(INVITE_SETUP_TTL_SECS).unwrap() + 1,
    ));
    let secret = data_encoding::BASE32_NOPAD
        .decode(started.totp_secret.as_bytes())
        .unwrap();
    let code = grantwire_broker::totp::code_at(&secret, secs(&clock));
    let r = b
        .invites()
        .finish(&started.token, NEW_PASSWORD.into(), &code, source())
        .await;
    assert!(matches!(r, Err(Error::Unauthorized)), "{r:?}");

    // The invitation's hour runs out: the temporary password is refused for good.
    clock.advance(std::time::Duration::from_secs(3600));
    let r = b
        .invites()
        .begin("carol", carol.temporary_password.clone(), source())
        .await;
    assert!(matches!(r, Err(Error::Unauthorized)), "{r:?}");

    let audit = b.audit_log().await.unwrap();
    for (kind, n) in [
        ("enrol_failed", 2),
        ("enrol_not_invited", 1),
        ("enrol_disabled", 1),
        ("enrol_invite_expired", 1),
        ("user_enrolled", 0),
        ("login_ok", 0),
    ] {
        assert_eq!(kinds(&audit, kind), n, "{kind}: {audit:?}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_live_enrolment_is_found_again_by_its_token_and_only_while_it_lives() {
    let (h, clock) = with_clock().await;
    let b = h.broker.admin();
    let ivan = invite(&h, "ivan", None).await;
    let first = b
        .invites()
        .begin("ivan", ivan.temporary_password.clone(), source())
        .await
        .unwrap();
    let found = b.invites().pending(&first.token).await.unwrap().unwrap();
    assert_eq!(found.user, "ivan");
    assert_eq!(found.otpauth_uri, first.otpauth_uri);
    assert_eq!(found.totp_secret, first.totp_secret);
    assert_eq!(found.expires_at, first.expires_at);
    assert!(!format!("{found:?}").contains(&found.totp_secret));
    assert!(b.invites().pending("not-a-token").await.unwrap().is_none());

    // Starting again replaces the secret and the token: the old one finds nothing.
    let second = b
        .invites()
        .begin("ivan", ivan.temporary_password.clone(), source())
        .await
        .unwrap();
    assert!(b.invites().pending(&first.token).await.unwrap().is_none());
    let found = b.invites().pending(&second.token).await.unwrap().unwrap();
    assert_eq!(found.totp_secret, second.totp_secret);
    assert_ne!(found.totp_secret, first.totp_secret);

    // Looking it up changes nothing: the audit log and the set-up stay as they were.
    let audit = b.audit_log().await.unwrap().len();
    b.invites().pending(&second.token).await.unwrap().unwrap();
    assert_eq!(b.audit_log().await.unwrap().len(), audit);

    clock.advance(std::time::Duration::from_secs(
        u64::try_from(INVITE_SETUP_TTL_SECS).unwrap(),
    ));
    assert!(b.invites().pending(&second.token).await.unwrap().is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn guessing_the_temporary_password_locks_the_invitation_like_a_login() {
    let (h, _clock) = with_clock().await;
    let b = h.broker.admin();
    let erin = invite(&h, "erin", None).await;
    for _ in 0..5 {
        let r = b
            .invites()
            .begin("erin", "WRONG-WRON-GWRO-NGWR".into(), source())
            .await;
        assert!(matches!(r, Err(Error::Unauthorized)), "{r:?}");
    }
    // Locked now: even the right temporary password waits, like the right login password.
    let r = b
        .invites()
        .begin("erin", erin.temporary_password.clone(), source())
        .await;
    assert!(matches!(r, Err(Error::Unauthorized)), "{r:?}");
    let audit = b.audit_log().await.unwrap();
    assert_eq!(kinds(&audit, "enrol_throttled"), 1, "{audit:?}");
    assert_eq!(kinds(&audit, "account_locked"), 0, "{audit:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_invite_on_the_command_line_prints_the_password_once_and_checks_its_time() {
    let h = Harness::start().await;
    let out: serde_json::Value = cli_json(
        &h,
        &["user", "invite", "frank", "--expires", "2h", "--json"],
    );
    assert_eq!(out["name"], "frank");
    let password = out["temporary_password"].as_str().unwrap();
    assert_eq!(password.len(), 19, "{out}");
    let expires_at = out["expires_at"].as_i64().unwrap();
    let left = expires_at - i64::try_from(now()).unwrap();
    assert!((7190..=7200).contains(&left), "{left}");
    h.broker
        .admin()
        .invites()
        .begin("frank", password.into(), source())
        .await
        .unwrap();

    // Text output names the password and says what to do with it.
    let text = cli(&h, &["user", "invite", "grace"]);
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("Temporary password (shown once): "),
        "{stdout}"
    );
    assert!(stdout.contains("web pages, at /welcome,"), "{stdout}");

    // Refused, exit 2, and no user made: a zero or too long invitation, a bad name.
    for args in [
        &["user", "invite", "henry", "--expires", "0s"][..],
        &["user", "invite", "henry", "--expires", "31days"][..],
        &["user", "invite", "Henry!"][..],
    ] {
        let out = cli(&h, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    // The same name twice: refused by the broker.
    let out = cli(&h, &["user", "invite", "frank"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let users = h.broker.admin().accounts().list().await.unwrap();
    let names: Vec<&str> = users.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["frank", "grace"], "{names:?}");
    assert_eq!(users.users[0].invited_until, Some(expires_at));

    // `user list` says who is still invited.
    let list = cli(&h, &["user", "list"]);
    let stdout = String::from_utf8_lossy(&list.stdout);
    let frank = stdout.lines().find(|l| l.starts_with("frank")).unwrap();
    assert!(frank.contains(" invited "), "{stdout}");
    h.shutdown().await;
}
