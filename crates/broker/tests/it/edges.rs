//! Edge enrolment and the pushed lease set (server-sent events) over real HTTPS.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use grantwire_proto::{EnrolResponse, ErrorCode, GrantRevokeRequest, LeaseResponse};
use serde_json::json;

#[tokio::test]
async fn an_enrolment_token_works_once() {
    let h = Harness::start().await;
    let token = h.add_edge("home").await;
    let key = keypair().public_key();
    let body = json!({"token": token, "public_key": key});
    let resp = h.post("/v1/edge/enrol", None, &body).await;
    assert_eq!(resp.status(), 200);
    let enrolled: EnrolResponse = resp.json().await.unwrap();
    assert_eq!(enrolled.config.name, "home");
    assert_eq!(enrolled.config.subnet.to_string(), "10.77.0.0/24");
    assert_eq!(enrolled.config.tunnel_address.to_string(), "10.77.0.1");
    assert_eq!(enrolled.credential.len(), 43);

    let other = keypair().public_key();
    let resp = h
        .post(
            "/v1/edge/enrol",
            None,
            &json!({"token": token, "public_key": other}),
        )
        .await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    let resp = h
        .post(
            "/v1/edge/enrol",
            None,
            &json!({"token": "made-up", "public_key": other}),
        )
        .await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;

    // The first enrolment's key and credential stand.
    let sync = h
        .http
        .get(h.url("/v1/edge/sync"))
        .bearer_auth(&enrolled.credential)
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 200);
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.kind == "edge_enrolled").count(),
        1
    );
    assert_eq!(audit.iter().filter(|r| r.kind == "edge_added").count(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn sync_needs_an_edge_credential() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    for bearer in [None, Some("nonsense"), Some(token.as_str())] {
        let mut req = h.http.get(h.url("/v1/edge/sync"));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        expect_error(resp, 401, ErrorCode::Unauthorized).await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn the_edge_gets_a_fresh_set_after_issue_and_revoke() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    let (other_credential, _) = h.enrolled_edge("cabin").await;
    h.grant("alice", "home").await;

    let resp = h.open_sync(&credential).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = SseReader::new(resp);
    let first = events.next_set().await;
    assert_eq!(first.config.name, "home");
    assert!(first.leases.is_empty());

    let other = h.open_sync(&other_credential).await;
    let mut other_events = SseReader::new(other);
    assert!(other_events.next_set().await.leases.is_empty());

    let resp = h.request_lease(&token, "home").await;
    let profile = resp.json::<LeaseResponse>().await.unwrap().profile;
    let set = events.next_set().await;
    assert_eq!(set.leases.len(), 1);
    let lease = &set.leases[0];
    assert_eq!(lease.id, profile.lease_id);
    assert_eq!(lease.tunnel_address, profile.address);
    assert_eq!(lease.preshared_key, profile.preshared_key);
    assert_eq!(lease.pin, profile.pin);
    assert_eq!(lease.ports, vec![32400]);
    assert_eq!(lease.expires_at, profile.expires_at);

    h.broker
        .admin()
        .grants()
        .revoke(GrantRevokeRequest {
            user: "alice".into(),
            edge: "home".into(),
        })
        .await
        .unwrap();
    let set = events.next_set().await;
    assert!(set.leases.is_empty());

    // The other edge is not sent home's changes.
    let quiet = other_events
        .next_set_within(std::time::Duration::from_millis(300))
        .await;
    assert!(quiet.is_none(), "{quiet:?}");
    // A reconnect gets the current set.
    let resp = h.open_sync(&credential).await;
    assert!(SseReader::new(resp).next_set().await.leases.is_empty());
    h.shutdown().await;
}
