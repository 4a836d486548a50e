//! Edge reports (lease figures, off-pin events), the audit rows only the broker's background
//! tasks write (lease expiry, edge connect/disconnect), and alerts delivered to a webhook.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use axum::http::StatusCode;
use grantwire_broker::alerts::Webhook;
use grantwire_proto::{ErrorCode, GrantAddRequest, LeaseListResponse};
use serde_json::{json, Value};

/// A webhook receiver on 127.0.0.1: records every body; answers 500 to the first `fail_first`
/// requests, then 204; with `hang`, never answers at all.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    fail_first: usize,
    hang: bool,
}

impl Receiver {
    async fn start(self) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/secret-path",
            listener.local_addr().unwrap()
        );
        let state = self.clone();
        let app = axum::Router::new().route(
            "/hooks/secret-path",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let state = state.clone();
                async move {
                    let seen = {
                        let mut bodies = state.bodies.lock().unwrap();
                        bodies.push(body);
                        bodies.len()
                    };
                    if state.hang {
                        std::future::pending::<()>().await;
                    }
                    if seen <= state.fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (self, url)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until `n` bodies arrived.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let got = self.bodies();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("webhook got {:?}, wanted {n} bodies", self.bodies());
    }
}

async fn with_webhook(url: &str) -> Harness {
    let webhook = Webhook::parse(url).unwrap();
    Harness::with_config(|c| c.alert_webhook = Some(webhook)).await
}

async fn kinds(h: &Harness) -> Vec<String> {
    let log = h.broker.admin().audit_log().await.unwrap();
    log.into_iter().map(|r| r.kind).collect()
}

async fn wait_for_kind(
    h: &Harness,
    kind: &str,
    within: Duration,
) -> grantwire_broker::store::AuditRow {
    let end = Instant::now() + within;
    loop {
        let log = h.broker.admin().audit_log().await.unwrap();
        if let Some(row) = log.into_iter().find(|r| r.kind == kind) {
            return row;
        }
        assert!(
            Instant::now() < end,
            "no {kind} audit row within {within:?}: {:?}",
            kinds(h).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// alice with a lease on the enrolled edge "home"; returns (edge credential, lease id).
async fn alice_with_lease(h: &Harness) -> (String, String) {
    let (token, credential, _) = h.alice_granted_home().await;
    let resp = h.request_lease(&token, "home").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    (
        credential,
        v["profile"]["lease_id"].as_str().unwrap().to_owned(),
    )
}

async fn report(h: &Harness, credential: Option<&str>, body: &Value) -> reqwest::Response {
    h.post("/v1/edge/report", credential, body).await
}

// The admin CLI blocks its thread while the in-process broker answers it.
#[tokio::test(flavor = "multi_thread")]
async fn an_edges_figures_show_in_the_lease_list_and_only_for_its_own_leases() {
    let h = Harness::start().await;
    let (credential, lease) = alice_with_lease(&h).await;
    let (other_edge, _) = h.enrolled_edge("cabin").await;
    let list = h.broker.admin().leases().list().await.unwrap();
    assert!(list.leases[0].usage.is_none(), "nothing reported yet");

    let figures = json!({"leases": [{"lease_id": lease, "last_handshake_at": 1_800_000_000,
                                     "rx_bytes": 1234, "tx_bytes": 56789}]});
    // Another edge cannot report this edge's lease.
    let resp = report(&h, Some(&other_edge), &figures).await;
    assert_eq!(resp.status(), 204);
    assert!(h.broker.admin().leases().list().await.unwrap().leases[0]
        .usage
        .is_none());

    let resp = report(&h, Some(&credential), &figures).await;
    assert_eq!(resp.status(), 204);
    let usage = h.broker.admin().leases().list().await.unwrap().leases[0]
        .usage
        .unwrap();
    assert_eq!(usage.last_handshake_at, Some(1_800_000_000));
    assert_eq!((usage.rx_bytes, usage.tx_bytes), (1234, 56789));
    assert!(usage.reported_at >= now() as i64 - 5);

    // An idle peer's handshake time is forgotten by boringtun; the last one known stays.
    let idle = json!({"leases": [{"lease_id": lease, "last_handshake_at": null,
                                  "rx_bytes": 1234, "tx_bytes": 56789}]});
    assert_eq!(report(&h, Some(&credential), &idle).await.status(), 204);
    let usage = h.broker.admin().leases().list().await.unwrap().leases[0]
        .usage
        .unwrap();
    assert_eq!(usage.last_handshake_at, Some(1_800_000_000));

    // And the binary shows them.
    let listed: LeaseListResponse = cli_json(&h, &["lease", "list", "--json"]);
    assert_eq!(listed.leases[0].usage, Some(usage));
    let text = cli(&h, &["lease", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("HANDSHAKE (UTC)") && text.contains("2027-01-15T08:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains(" 1234 ") && text.trim_end().ends_with("56789"),
        "{text}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn bad_reports_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let (credential, lease) = alice_with_lease(&h).await;
    let token = h.session("bob").await;
    let good = json!({"leases": [{"lease_id": lease, "last_handshake_at": null, "rx_bytes": 1, "tx_bytes": 2}]});
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();

    // Not an edge: no credential, a made-up one, a user's session.
    for bearer in [None, Some("nope"), Some(token.as_str())] {
        let resp = report(&h, bearer, &good).await;
        expect_error(resp, 401, ErrorCode::Unauthorized).await;
    }
    let usage =
        |l: &str| json!({"lease_id": l, "last_handshake_at": null, "rx_bytes": 1, "tx_bytes": 1});
    let too_many: Vec<Value> = (0..257).map(|i| usage(&format!("l-{i}"))).collect();
    let event = |ip: &str| json!({"kind": "key_used_off_pin", "lease_id": lease, "source_ip": ip, "count": 1, "first_at": 1});
    let bad = [
        json!({"leases": too_many}),
        json!({"leases": [{"lease_id": lease, "rx_bytes": -1, "tx_bytes": 2, "last_handshake_at": null}]}),
        json!({"leases": [{"lease_id": lease, "rx_bytes": "1", "tx_bytes": 2, "last_handshake_at": null}]}),
        json!({"leases": [], "surprise": true}),
        json!({"events": [event("not-an-ip")]}),
        json!({"events": [{"kind": "something_else", "lease_id": lease, "source_ip": "192.0.2.9", "count": 1, "first_at": 1}]}),
        json!([1, 2, 3]),
    ];
    for body in &bad {
        let resp = report(&h, Some(&credential), body).await;
        expect_error(resp, 400, ErrorCode::BadRequest).await;
    }
    assert!(h.broker.admin().leases().list().await.unwrap().leases[0]
        .usage
        .is_none());
    let audit_after = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(audit_after.len(), audit_before, "{audit_after:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_key_used_off_its_pin_is_audited_and_alerted() {
    let (receiver, url) = Receiver::default().start().await;
    let h = with_webhook(&url).await;
    let (credential, lease) = alice_with_lease(&h).await;
    let event = json!({"events": [{"kind": "key_used_off_pin", "lease_id": lease,
                                   "source_ip": "198.51.100.7", "count": 3, "first_at": 1_800_000_000}]});
    let resp = report(&h, Some(&credential), &event).await;
    assert_eq!(resp.status(), 204);
    let row = wait_for_kind(&h, "lease_key_off_pin", Duration::from_secs(1)).await;
    assert_eq!(row.actor.as_deref(), Some("alice"));
    assert_eq!(row.source_ip.as_deref(), Some("198.51.100.7"));
    let detail = row.detail.unwrap();
    assert!(
        detail.contains(&format!("lease={lease}"))
            && detail.contains("pin=127.0.0.1/32")
            && detail.contains("datagrams=3"),
        "{detail}"
    );

    let bodies = receiver.wait_for(1, Duration::from_secs(10)).await;
    let alert = bodies
        .iter()
        .find(|b| b["kind"] == "lease_key_off_pin")
        .expect("off-pin alert");
    assert_eq!(alert["source"], "grantwire");
    assert_eq!(alert["actor"], "alice");
    assert_eq!(alert["source_ip"], "198.51.100.7");
    assert!(alert["detail"].as_str().unwrap().contains(&lease));

    // The same key seen off its pin again: audited again, but no second alert within 15 min.
    let again = json!({"events": [{"kind": "key_used_off_pin", "lease_id": lease,
                                   "source_ip": "198.51.100.7", "count": 1, "first_at": 1_800_000_005}]});
    assert_eq!(report(&h, Some(&credential), &again).await.status(), 204);
    let log = kinds(&h).await;
    assert_eq!(
        log.iter().filter(|k| *k == "lease_key_off_pin").count(),
        2,
        "{log:?}"
    );
    let alerts = grantwire_broker::alerts::list(h.broker.admin().db())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");

    // An event about a lease the edge does not hold writes nothing.
    let before = h.broker.admin().audit_log().await.unwrap().len();
    let stray = json!({"events": [{"kind": "key_used_off_pin", "lease_id": "l-unknown",
                                   "source_ip": "198.51.100.7", "count": 1, "first_at": 1}]});
    assert_eq!(report(&h, Some(&credential), &stray).await.status(), 204);
    assert_eq!(h.broker.admin().audit_log().await.unwrap().len(), before);
    h.shutdown().await;
}

#[tokio::test]
async fn alerts_for_lockout_and_totp_reuse_are_retried_until_delivered() {
    // The first delivery fails: it is retried (after 2 s) and then marked sent.
    let (receiver, url) = Receiver {
        fail_first: 1,
        ..Default::default()
    }
    .start()
    .await;
    let h = Harness::with_config(|c| {
        c.alert_webhook = Some(Webhook::parse(&url).unwrap());
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let secret = h.add_user("alice").await;
    let code = code_now(&secret);
    assert_eq!(h.login_raw("alice", PASSWORD, &code).await.status(), 200);
    // The same code again: reused.
    assert_eq!(h.login_raw("alice", PASSWORD, &code).await.status(), 401);
    // Four more wrong passwords make five in a row: locked, once.
    for _ in 0..6 {
        assert_eq!(
            h.login_raw("alice", "wrong password here", &code)
                .await
                .status(),
            401
        );
    }
    let log = kinds(&h).await;
    assert_eq!(
        log.iter().filter(|k| *k == "account_locked").count(),
        1,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|k| *k == "totp_reused").count(),
        1,
        "{log:?}"
    );
    assert!(
        !log.contains(&"login_new_source".to_owned()),
        "the first address is not new: {log:?}"
    );

    let bodies = receiver.wait_for(3, Duration::from_secs(15)).await;
    let mut alerts = grantwire_broker::alerts::list(h.broker.admin().db())
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    while alerts.iter().any(|a| a.state != "sent") && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        alerts = grantwire_broker::alerts::list(h.broker.admin().db())
            .await
            .unwrap();
    }
    let got: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| (a.kind.as_str(), a.state.as_str()))
        .collect();
    assert_eq!(
        got,
        [("totp_reused", "sent"), ("account_locked", "sent")],
        "{bodies:?}"
    );
    assert_eq!(
        alerts[0].attempts, 2,
        "the first attempt failed and was retried"
    );
    assert_eq!(alerts[1].attempts, 1);
    assert!(bodies.len() >= 3, "{bodies:?}");

    h.shutdown().await;
}

#[tokio::test]
async fn a_login_from_a_new_address_alerts_but_the_first_and_known_ones_do_not() {
    let (receiver, url) = Receiver::default().start().await;
    let clock = Arc::new(grantwire_broker::clock::ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| {
        config.alert_webhook = Some(Webhook::parse(&url).unwrap());
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.clock = c;
    })
    .await;
    let secret = h.add_user("alice").await;
    let login_from = |ip: &'static str| {
        // A fresh TOTP step for every login.
        clock.advance(Duration::from_secs(30));
        let at = u64::try_from(grantwire_broker::clock::Clock::now_secs(&*clock)).unwrap();
        let body = json!({"user": "alice", "password": PASSWORD,
                          "code": grantwire_broker::totp::code_at(&secret, at)});
        h.http
            .post(h.url("/v1/login"))
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
    };
    assert_eq!(login_from("192.0.2.10").await.unwrap().status(), 200);
    assert_eq!(login_from("198.51.100.20").await.unwrap().status(), 200);
    assert_eq!(login_from("192.0.2.10").await.unwrap().status(), 200);
    assert_eq!(login_from("198.51.100.20").await.unwrap().status(), 200);
    let log = h.broker.admin().audit_log().await.unwrap();
    let new: Vec<_> = log
        .iter()
        .filter(|r| r.kind == "login_new_source")
        .collect();
    assert_eq!(
        new.len(),
        1,
        "only the second login came from a new address: {log:?}"
    );
    assert_eq!(new[0].source_ip.as_deref(), Some("198.51.100.20"));
    assert_eq!(new[0].detail.as_deref(), Some("network=198.51.100.20/32"));
    // One clock: the alert is due at the manual event time, and delivery reads the same clock.
    let bodies = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["kind"], "login_new_source");
    assert_eq!(bodies[0]["source_ip"], "198.51.100.20");
    let alerts = grantwire_broker::alerts::list(h.broker.admin().db())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "login_new_source");
    h.shutdown().await;
}

#[tokio::test]
async fn a_webhook_that_never_answers_does_not_hold_up_requests() {
    let (receiver, url) = Receiver {
        hang: true,
        ..Default::default()
    }
    .start()
    .await;
    let h = with_webhook(&url).await;
    let secret = h.add_user("alice").await;
    let code = code_now(&secret);
    assert_eq!(h.login_raw("alice", PASSWORD, &code).await.status(), 200);
    assert_eq!(h.login_raw("alice", PASSWORD, &code).await.status(), 401);
    // The alert's POST has reached the receiver, which holds it open...
    receiver.wait_for(1, Duration::from_secs(10)).await;
    // ...while the broker goes on answering logins and lease requests.
    let token = h.session("bob").await;
    h.enrolled_edge("home").await;
    h.grant("bob", "home").await;
    assert_eq!(h.request_lease(&token, "home").await.status(), 200);
    assert_eq!(
        receiver.bodies().len(),
        1,
        "no second delivery while the first hangs"
    );
    // Nor does it hold up a shutdown: the attempt (10 s timeout) is abandoned, the alert stays
    // pending for the next start.
    let stopped = tokio::time::timeout(Duration::from_secs(8), h.shutdown()).await;
    assert!(stopped.is_ok(), "shutdown waited for the hung webhook");
}

#[tokio::test]
async fn expired_leases_and_edge_links_are_in_the_audit_log() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    h.broker
        .admin()
        .grants()
        .add(GrantAddRequest {
            user: "alice".into(),
            edge: "home".into(),
            lease_ttl_secs: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let resp = h.request_lease(&token, "home").await;
    let v: Value = resp.json().await.unwrap();
    let lease = v["profile"]["lease_id"].as_str().unwrap().to_owned();
    let row = wait_for_kind(&h, "lease_expired", Duration::from_secs(8)).await;
    assert_eq!(row.actor.as_deref(), Some("alice"));
    assert!(row.detail.unwrap().contains(&format!("lease={lease}")));
    // Written once, however many sweeps run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = kinds(&h).await;
    assert_eq!(
        log.iter().filter(|k| *k == "lease_expired").count(),
        1,
        "{log:?}"
    );

    let stream = h.open_sync(&credential).await;
    assert_eq!(stream.status(), 200);
    let row = wait_for_kind(&h, "edge_connected", Duration::from_secs(2)).await;
    assert_eq!(row.actor.as_deref(), Some("home"));
    assert_eq!(row.source_ip.as_deref(), Some("127.0.0.1"));
    assert!(!kinds(&h).await.contains(&"edge_disconnected".to_owned()));
    drop(stream);
    let row = wait_for_kind(&h, "edge_disconnected", Duration::from_secs(20)).await;
    assert_eq!(row.actor.as_deref(), Some("home"));
    h.shutdown().await;
}

#[tokio::test]
async fn the_binary_refuses_a_clear_text_webhook_to_another_host() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "http://192.0.2.1/hooks/secret-token",
        "ftp://127.0.0.1/secret-token",
        "not a url secret-token",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_grantwire-broker"))
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--alert-webhook", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("alert webhook"), "{stderr}");
        assert!(
            !stderr.contains("secret-token"),
            "the URL was echoed: {stderr}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "a refused start wrote nothing"
    );
}
