//! Bounds on what one party can take or leave behind, against a real broker: live leases per
//! grant, one off-pin alert per lease, the retention of sessions, audit rows and alerts, and
//! the life of an edge enrolment token.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use grantwire_broker::clock::{Clock, ManualClock};
use grantwire_broker::{start, ServeConfig};
use grantwire_proto::{
    EdgeAddRequest, EdgeAddResponse, EdgeListResponse, ErrorBody, ErrorCode, GrantAddRequest,
    GrantInfo, GrantListResponse, LeaseResponse,
};
use serde_json::{json, Value};

const DAY: Duration = Duration::from_secs(86_400);

async fn lease_with_key(
    h: &Harness,
    token: &str,
    key: &grantwire_proto::PublicKey,
) -> reqwest::Response {
    let body = json!({"edge": "home", "public_key": key});
    h.post("/v1/leases", Some(token), &body).await
}

async fn lease_id(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    resp.json::<LeaseResponse>()
        .await
        .unwrap()
        .profile
        .lease_id
        .to_string()
}

async fn audit_kinds(h: &Harness, kind: &str) -> Vec<grantwire_broker::store::AuditRow> {
    let log = h.broker.admin().audit_log().await.unwrap();
    log.into_iter().filter(|r| r.kind == kind).collect()
}

#[tokio::test]
async fn a_grant_holds_at_most_five_live_leases_by_default() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let bob = h.session("bob").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    h.grant("bob", "home").await;
    let first_key = keypair().public_key();
    let first = lease_id(lease_with_key(&h, &token, &first_key).await).await;
    for _ in 0..4 {
        lease_id(h.request_lease(&token, "home").await).await;
    }

    // The sixth, with a fresh key: refused, audited, and nothing else written.
    let before = h.broker.admin().counts().await.unwrap();
    let leases_before = h.broker.admin().leases().list().await.unwrap().leases.len();
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();
    let msg = expect_error(
        h.request_lease(&token, "home").await,
        409,
        ErrorCode::LeaseCap,
    )
    .await;
    assert!(msg.contains("allows 5 live leases"), "{msg}");
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    let list = h.broker.admin().leases().list().await.unwrap();
    assert_eq!(list.leases.len(), leases_before);
    let log = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(
        log.len(),
        audit_before + 1,
        "one audit row, for the refusal"
    );
    let row = log.last().unwrap();
    assert_eq!(row.kind, "lease_cap_reached");
    assert_eq!(row.actor.as_deref(), Some("alice"));
    assert_eq!(row.detail.as_deref(), Some("edge=home live=5 max_leases=5"));

    // Renewal is not a new lease: asking again with a live lease's key replaces it, and the
    // renew route moves it; both work at the cap.
    let replaced = lease_id(lease_with_key(&h, &token, &first_key).await).await;
    assert_ne!(replaced, first);
    let resp = h
        .post(
            &format!("/v1/leases/{replaced}/renew"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        h.broker.admin().leases().list().await.unwrap().leases.len(),
        5
    );

    // Another user's grant on the same edge has its own cap.
    lease_id(h.request_lease(&bob, "home").await).await;

    // A lease that ends makes room for one more.
    let resp = h
        .post(
            &format!("/v1/leases/{replaced}/revoke"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    lease_id(h.request_lease(&token, "home").await).await;
    expect_error(
        h.request_lease(&token, "home").await,
        409,
        ErrorCode::LeaseCap,
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_cannot_pass_the_cap_together() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant_max("alice", "home", 3).await;
    let requests = (0..20).map(|_| h.request_lease(&token, "home"));
    let responses = futures_util::future::join_all(requests).await;
    let mut issued = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => issued += 1,
            409 => {
                let body: ErrorBody = resp.json().await.unwrap();
                assert_eq!(body.error.code, ErrorCode::LeaseCap);
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!(issued, 3);
    assert_eq!(
        h.broker.admin().leases().list().await.unwrap().leases.len(),
        3
    );
    assert_eq!(audit_kinds(&h, "lease_issued").await.len(), 3);
    assert_eq!(audit_kinds(&h, "lease_cap_reached").await.len(), 17);
    h.shutdown().await;
}

#[tokio::test]
async fn max_leases_is_set_per_grant_and_out_of_range_values_change_nothing() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    h.enrolled_edge("home").await;
    let admin = h.broker.admin();
    let before = admin.counts().await.unwrap();
    for bad in [0, 65_537] {
        let err = admin
            .grants()
            .add(GrantAddRequest {
                user: "alice".into(),
                edge: "home".into(),
                max_leases: Some(bad),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest, "{bad}");
        assert_eq!(admin.counts().await.unwrap(), before, "{bad}");
    }
    let added = admin
        .grants()
        .add(GrantAddRequest {
            user: "alice".into(),
            edge: "home".into(),
            max_leases: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(added.max_leases, 2);
    let list = admin.grants().list().await.unwrap();
    assert_eq!(list.grants[0].max_leases, 2);

    let resp = h.login_raw("alice", PASSWORD, &code_now(&secret)).await;
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    lease_id(h.request_lease(&token, "home").await).await;
    lease_id(h.request_lease(&token, "home").await).await;
    expect_error(
        h.request_lease(&token, "home").await,
        409,
        ErrorCode::LeaseCap,
    )
    .await;
    h.shutdown().await;
}

// The admin CLI blocks its thread while the in-process broker answers it.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sets_and_shows_max_leases_and_the_token_expiry() {
    let h = Harness::start().await;
    h.add_user("alice").await;
    h.enrolled_edge("home").await;
    let g: GrantInfo = cli_json(
        &h,
        &[
            "grant",
            "add",
            "alice",
            "home",
            "--max-leases",
            "7",
            "--json",
        ],
    );
    assert_eq!(g.max_leases, 7);
    let list: GrantListResponse = cli_json(&h, &["grant", "list", "--json"]);
    assert_eq!(list.grants[0].max_leases, 7);
    let out = cli(&h, &["grant", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("MAX LEASES"), "{text}");
    let out = cli(&h, &["grant", "add", "alice", "home", "--max-leases", "0"]);
    assert_eq!(out.status.code(), Some(2));

    let now = now() as i64;
    let e: EdgeAddResponse = cli_json(
        &h,
        &[
            "edge",
            "add",
            "cabin",
            "--endpoint",
            "192.0.2.2:51820",
            "--expires",
            "2h",
            "--json",
        ],
    );
    assert!((e.enrolment_expires_at - (now + 7200)).abs() <= 2);
    let list: EdgeListResponse = cli_json(&h, &["edge", "list", "--json"]);
    let cabin = list.edges.iter().find(|e| e.name == "cabin").unwrap();
    assert_eq!(cabin.enrolment_expires_at, Some(e.enrolment_expires_at));
    let home = list.edges.iter().find(|e| e.name == "home").unwrap();
    assert_eq!(home.enrolment_expires_at, None, "enrolled: no token left");
    let out = cli(&h, &["edge", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("TOKEN UNTIL"), "{text}");
    h.shutdown().await;
}

#[tokio::test]
async fn off_pin_alerts_are_one_per_lease_whatever_the_source() {
    let (h, token, credential, _) = Harness::granted().await;
    let first = lease_id(h.request_lease(&token, "home").await).await;
    let second = lease_id(h.request_lease(&token, "home").await).await;
    let off_pin = |lease: &str, ip: &str| {
        json!({"events": [{"kind": "key_used_off_pin", "lease_id": lease,
                           "source_ip": ip, "count": 1, "first_at": 1_800_000_000}]})
    };
    let alerts = || async {
        grantwire_broker::alerts::list(h.broker.admin().db())
            .await
            .unwrap()
            .len()
    };
    // One lease's key tried from address after address: every try audited, one alert.
    for ip in ["198.51.100.7", "198.51.100.8", "203.0.113.9", "2001:db8::5"] {
        let resp = h
            .post("/v1/edge/report", Some(&credential), &off_pin(&first, ip))
            .await;
        assert_eq!(resp.status(), 204);
    }
    assert_eq!(audit_kinds(&h, "lease_key_off_pin").await.len(), 4);
    assert_eq!(alerts().await, 1);
    // Another lease, even of the same user from an address already seen, is news.
    let resp = h
        .post(
            "/v1/edge/report",
            Some(&credential),
            &off_pin(&second, "198.51.100.7"),
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(alerts().await, 2);
    h.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_ended_sessions_and_old_audit_rows_with_their_alerts() {
    let clock = Arc::new(ManualClock::new());
    let broker_clock: Arc<dyn Clock> = clock.clone();
    let (h, alice, credential, _) = Harness::granted_with(|c| {
        c.clock = broker_clock;
        c.retention = 30 * DAY;
    })
    .await;
    let lease = lease_id(h.request_lease(&alice, "home").await).await;
    let event = json!({"events": [{"kind": "key_used_off_pin", "lease_id": lease,
                                   "source_ip": "198.51.100.7", "count": 1, "first_at": 1}]});
    let resp = h.post("/v1/edge/report", Some(&credential), &event).await;
    assert_eq!(resp.status(), 204);
    let admin = h.broker.admin();
    let db = admin.db();
    assert_eq!(grantwire_broker::alerts::list(db).await.unwrap().len(), 1);
    let audit_rows = admin.audit_log().await.unwrap().len();

    // Nothing has ended yet: nothing goes.
    let pruned = admin.apply_retention(30 * DAY).await.unwrap();
    assert_eq!(pruned, Default::default());

    // A day on, alice's session (12 h) has ended and goes; the audit log is kept.
    clock.advance(DAY);
    let bob = session_at(&h, &clock, "bob").await;
    // Alice's lease (8 h) has ended by the broker's clock too; the sweep (which also runs by
    // itself every two seconds) writes its row.
    admin.leases().sweep_expired().await.unwrap();
    let pruned = admin.apply_retention(30 * DAY).await.unwrap();
    assert_eq!(pruned.sessions, 1);
    assert_eq!((pruned.audit, pruned.alerts), (0, 0));
    assert_eq!(admin.counts().await.unwrap().sessions, 1);
    let kinds: Vec<String> = admin
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds.len(), audit_rows + 3, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "lease_expired").count(),
        1,
        "{kinds:?}"
    );

    // Past the retention of the rows so far, they and their alert go; carol's fresh ones stay.
    clock.advance(30 * DAY + Duration::from_secs(3600));
    let carol = session_at(&h, &clock, "carol").await;
    let pruned = admin.apply_retention(30 * DAY).await.unwrap();
    assert_eq!(pruned.alerts, 1);
    assert!(
        pruned.audit >= u64::try_from(audit_rows).unwrap() + 2,
        "{pruned:?}"
    );
    assert!(grantwire_broker::alerts::list(db).await.unwrap().is_empty());
    let log = admin.audit_log().await.unwrap();
    let cutoff = clock.now_secs() - i64::try_from((30 * DAY).as_secs()).unwrap();
    assert!(log.iter().all(|r| r.at >= cutoff), "{log:?}");
    assert!(
        log.iter()
            .any(|r| r.kind == "login_ok" && r.actor.as_deref() == Some("carol")),
        "{log:?}"
    );
    // bob's session has ended (12 h): deleted; carol's is live.
    assert_eq!(pruned.sessions, 1);
    let whoami = |t: String| {
        let h = &h;
        async move {
            h.http
                .get(h.url("/v1/whoami"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(whoami(carol).await, 200);
    assert_eq!(whoami(bob).await, 401);
    h.shutdown().await;
}

/// [`Harness::session`] with a TOTP code for the broker's (moved) clock.
async fn session_at(h: &Harness, clock: &ManualClock, user: &str) -> String {
    let secret = h.add_user(user).await;
    let at = u64::try_from(clock.now_secs()).unwrap();
    let code = grantwire_broker::totp::code_at(&secret, at);
    let resp = h.login_raw(user, PASSWORD, &code).await;
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_broker_applies_the_retention_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = start(ServeConfig::for_tests(&data)).await.unwrap();
    first
        .admin()
        .accounts()
        .add(grantwire_proto::UserAddRequest {
            name: "alice".into(),
            password: PASSWORD.into(),
            admin: false,
        })
        .await
        .unwrap();
    assert!(!first.admin().audit_log().await.unwrap().is_empty());
    first.shutdown().await.unwrap();

    // Started again more than the default year later.
    let clock = Arc::new(ManualClock::new());
    clock.advance(366 * DAY);
    let mut config = ServeConfig::for_tests(&data);
    config.clock = clock;
    let again = start(config).await.unwrap();
    let log = again.admin().audit_log().await.unwrap();
    assert!(log.is_empty(), "{log:?}");
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_expired_enrolment_token_is_refused_like_a_wrong_one_and_audited() {
    let clock = Arc::new(ManualClock::new());
    let broker_clock: Arc<dyn Clock> = clock.clone();
    let h = Harness::with_config(|c| c.clock = broker_clock).await;
    let admin = h.broker.admin();
    let added = admin
        .edges()
        .add(EdgeAddRequest {
            name: "home".into(),
            endpoint: "192.0.2.1:51820".into(),
            expires_secs: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(added.enrolment_expires_at, clock.now_secs() + 3600);
    let default = admin
        .edges()
        .add(EdgeAddRequest {
            name: "cabin".into(),
            endpoint: "192.0.2.2:51820".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(default.enrolment_expires_at, clock.now_secs() + 86_400);
    let too_long = admin
        .edges()
        .add(EdgeAddRequest {
            name: "shed".into(),
            endpoint: "192.0.2.3:51820".into(),
            expires_secs: Some(31 * 86_400),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), ErrorCode::BadRequest);

    clock.advance(Duration::from_secs(3601));
    let enrol = |token: String| {
        let h = &h;
        async move {
            let body = json!({"token": token, "public_key": keypair().public_key()});
            let resp = h.post("/v1/edge/enrol", None, &body).await;
            (resp.status(), resp.text().await.unwrap())
        }
    };
    let audit_before = admin.audit_log().await.unwrap().len();
    let wrong = enrol("not-a-token-at-all".into()).await;
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before);
    let expired = enrol(added.enrolment_token.clone()).await;
    assert_eq!(expired.0, 401);
    assert_eq!(
        expired, wrong,
        "an expired token is answered like a wrong one"
    );
    let rows = audit_kinds(&h, "edge_enrol_expired").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor.as_deref(), Some("home"));
    assert_eq!(rows[0].source_ip.as_deref(), Some("127.0.0.1"));
    let list = admin.edges().list().await.unwrap();
    let home = list.edges.iter().find(|e| e.name == "home").unwrap();
    assert!(!home.enrolled);
    assert_eq!(home.enrolment_expires_at, Some(added.enrolment_expires_at));

    // The other token, within its day, still works once.
    let ok = enrol(default.enrolment_token).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let v: Value = serde_json::from_str(&ok.1).unwrap();
    assert!(v["credential"].is_string());
    h.shutdown().await;
}
