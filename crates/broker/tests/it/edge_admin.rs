//! Edge endpoints per address family, `edge list` (connected, last seen) and `edge remove`.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use grantwire_proto::{
    EdgeAddRequest, EdgeAddResponse, EdgeListResponse, EdgeRemoveRequest, EdgeRemoveResponse,
    EnrolResponse, ErrorCode, LeaseResponse,
};
use serde_json::json;

async fn dual_stack_edge(h: &Harness, name: &str, endpoints: &[&str]) -> String {
    let resp = h
        .broker
        .admin()
        .edges()
        .add(EdgeAddRequest {
            name: name.into(),
            endpoint: endpoints[0].into(),
            extra_endpoints: endpoints[1..].iter().map(|s| s.to_string()).collect(),
            subnet: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.endpoints, endpoints);
    let body = json!({"token": resp.enrolment_token, "public_key": keypair().public_key()});
    let resp = h.post("/v1/edge/enrol", None, &body).await;
    resp.json::<EnrolResponse>().await.unwrap().credential
}

async fn lease_from(h: &Harness, token: &str, edge: &str, from: &str) -> reqwest::Response {
    h.http
        .post(h.url("/v1/leases"))
        .bearer_auth(token)
        .header("X-Forwarded-For", from)
        .json(&json!({"edge": edge, "public_key": keypair().public_key()}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_profile_gets_the_endpoint_of_the_pins_family() {
    let h =
        Harness::with_config(|c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let token = h.session("alice").await;
    dual_stack_edge(&h, "home", &["[2001:db8::1]:51820", "192.0.2.1:51820"]).await;
    dual_stack_edge(&h, "v4only", &["192.0.2.9:51820"]).await;
    h.grant("alice", "home").await;
    h.grant("alice", "v4only").await;

    let p = lease_from(&h, &token, "home", "198.51.100.7").await;
    let p = p.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.endpoint, "192.0.2.1:51820");
    assert_eq!(p.pin.to_string(), "198.51.100.7/32");
    let p = lease_from(&h, &token, "home", "2001:db8:5:6:7::9").await;
    let p = p.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.endpoint, "[2001:db8::1]:51820");
    assert_eq!(p.pin.to_string(), "2001:db8:5:6::/64");

    // A renewal from the other family switches the endpoint too.
    let resp = h
        .http
        .post(h.url(&format!("/v1/leases/{}/renew", p.lease_id)))
        .bearer_auth(&token)
        .header("X-Forwarded-For", "198.51.100.8")
        .send()
        .await
        .unwrap();
    let r = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(r.endpoint, "192.0.2.1:51820");
    assert_eq!(r.pin.to_string(), "198.51.100.8/32");

    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();
    let resp = lease_from(&h, &token, "v4only", "2001:db8::9").await;
    let msg = expect_error(resp, 409, ErrorCode::Conflict).await;
    assert!(
        msg.starts_with(
            "the broker sees you over IPv6 (at 2001:db8::9), but edge v4only has no IPv6 endpoint"
        ),
        "{msg}"
    );
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(audit.len(), audit_before);
    h.shutdown().await;
}

#[tokio::test]
async fn edge_list_shows_enrolment_connection_and_last_seen() {
    let h = Harness::start().await;
    let (credential, _) = h.enrolled_edge("home").await;
    h.add_edge("fresh").await;
    let admin = h.broker.admin();
    let list = admin.edges().list().await.unwrap();
    let names: Vec<_> = list.edges.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["fresh", "home"]);
    let (fresh, home) = (&list.edges[0], &list.edges[1]);
    assert!(!fresh.enrolled && !fresh.connected && fresh.last_seen.is_none());
    assert!(home.enrolled && !home.connected && home.last_seen.is_none());
    assert_eq!(home.endpoints, ["192.0.2.1:51820"]);
    assert_eq!(home.subnet.to_string(), "10.77.0.0/24");

    let sync = h.open_sync(&credential).await;
    let mut events = SseReader::new(sync);
    events.next_set().await;
    let home = admin.edges().list().await.unwrap().edges.remove(1);
    assert!(home.connected);
    assert!((home.last_seen.unwrap() - now() as i64).abs() <= 2);

    drop(events);
    let mut connected = true;
    for _ in 0..100 {
        connected = admin.edges().list().await.unwrap().edges[1].connected;
        if !connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!connected, "a closed stream still counts as connected");
    h.shutdown().await;
}

#[tokio::test]
async fn removing_an_edge_ends_its_leases_and_its_credential() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    h.enrolled_edge("cabin").await;
    h.grant("alice", "home").await;
    h.grant("alice", "cabin").await;
    let sync = h.open_sync(&credential).await;
    let mut events = SseReader::new(sync);
    events.next_set().await;
    let lease = h.request_lease(&token, "home").await;
    let lease = lease.json::<LeaseResponse>().await.unwrap().profile;
    h.request_lease(&token, "cabin").await;
    events.next_set().await;
    let admin = h.broker.admin();

    let before = admin.counts().await.unwrap();
    let audit_before = admin.audit_log().await.unwrap().len();
    let err = admin
        .edges()
        .remove(EdgeRemoveRequest {
            name: "nowhere".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(admin.counts().await.unwrap(), before);
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before);

    let resp = admin
        .edges()
        .remove(EdgeRemoveRequest {
            name: "home".into(),
        })
        .await
        .unwrap();
    assert_eq!(resp.revoked_leases, 1);
    let after = admin.counts().await.unwrap();
    assert_eq!(after.edges, before.edges - 1);
    assert_eq!(after.grants, before.grants - 1);
    assert_eq!(after.leases, before.leases - 1);
    let audit = admin.audit_log().await.unwrap();
    // The edge's stream ending writes `edge_disconnected` from its own task, which may land
    // before, between or after these rows; it is not what this part checks.
    let tail: Vec<_> = audit[audit_before..]
        .iter()
        .filter(|r| r.kind != "edge_disconnected")
        .collect();
    let kinds: Vec<_> = tail.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["lease_revoked", "edge_removed"]);
    let revoked = tail[0].detail.as_deref().unwrap();
    assert_eq!(revoked, format!("lease={}", lease.lease_id));

    // Its open stream gets an empty set, so the running edge drops every lease, then ends;
    // its credential no longer opens one.
    // (SseReader panics with "stream ended" when the server closes the stream, and with "no
    // lease set pushed" when it stays open without a new set.)
    let last = events.next_set().await;
    assert!(last.leases.is_empty(), "{last:?}");
    assert_eq!(last.config.name, "home");
    assert_stream_ends(events).await;
    let resp = h.open_sync(&credential).await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    let resp = h.request_lease(&token, "home").await;
    expect_error(resp, 404, ErrorCode::NotFound).await;
    assert_eq!(admin.leases().list().await.unwrap().leases.len(), 1);
    assert!(!admin
        .edges()
        .list()
        .await
        .unwrap()
        .edges
        .iter()
        .any(|e| e.name == "home"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_new_sync_stream_of_an_edge_replaces_the_old_one() {
    let (h, token, credential, _) = Harness::granted().await;
    let mut old = SseReader::new(h.open_sync(&credential).await);
    old.next_set().await;
    let mut new = SseReader::new(h.open_sync(&credential).await);
    new.next_set().await;
    // The next change reaches the new stream only; the old one has ended (SseReader panics
    // with "stream ended" when the server closes it).
    h.request_lease(&token, "home").await;
    assert_eq!(new.next_set().await.leases.len(), 1);
    assert_stream_ends(old).await;
    assert!(h
        .broker
        .admin()
        .edges()
        .list()
        .await
        .unwrap()
        .edges
        .iter()
        .any(|e| e.name == "home" && e.connected));
    h.shutdown().await;
}

// The binary talks to the admin socket served by this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread")]
async fn edge_commands_from_the_binary() {
    let h = Harness::start().await;
    let added: EdgeAddResponse = cli_json(
        &h,
        &[
            "edge",
            "add",
            "home",
            "--endpoint",
            "192.0.2.1:51820",
            "--endpoint",
            "[2001:db8::1]:51820",
            "--json",
        ],
    );
    assert_eq!(added.endpoint, "192.0.2.1:51820");
    assert_eq!(added.endpoints, ["192.0.2.1:51820", "[2001:db8::1]:51820"]);
    let before = h.broker.admin().counts().await.unwrap();
    for bad in [
        &[
            "edge",
            "add",
            "x",
            "--endpoint",
            "192.0.2.1:1",
            "--endpoint",
            "192.0.2.2:1",
        ][..],
        &[
            "edge",
            "add",
            "x",
            "--endpoint",
            "a.example:1",
            "--endpoint",
            "192.0.2.2:1",
        ],
        &["edge", "add", "x"],
    ] {
        let out = cli(&h, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);

    let list: EdgeListResponse = cli_json(&h, &["edge", "list", "--json"]);
    assert_eq!(list.edges.len(), 1);
    assert_eq!(list.edges[0].endpoints.len(), 2);
    assert!(!list.edges[0].enrolled);
    let removed: EdgeRemoveResponse = cli_json(&h, &["edge", "remove", "home", "--json"]);
    assert_eq!(removed.name, "home");
    let out = cli(&h, &["edge", "remove", "home", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let list: EdgeListResponse = cli_json(&h, &["edge", "list", "--json"]);
    assert!(list.edges.is_empty());
    h.shutdown().await;
}

/// Asserts the server ends the stream without another set (SseReader panics with "stream
/// ended" when the server closes it, and with "no lease set pushed" when it stays open).
async fn assert_stream_ends(mut events: SseReader) {
    let err = tokio::spawn(async move { events.next_set().await })
        .await
        .unwrap_err();
    let panic = err.into_panic();
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert!(msg.contains("stream ended"), "{msg}");
}
