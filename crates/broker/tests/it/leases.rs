//! Lease issue over real HTTPS: the profile, every refusal (and that it changed nothing),
//! header spoofing, revocation and concurrent allocation.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use crate::common::*;
use grantwire_proto::{ErrorCode, GrantRevokeRequest, LeaseResponse};
use serde_json::json;

#[tokio::test]
async fn a_lease_carries_the_documented_profile() {
    let (h, token, _, edge_key) = Harness::granted().await;

    let client_key = keypair().public_key();
    let body = json!({"edge": "home", "public_key": client_key});
    let resp = h.post("/v1/leases", Some(&token), &body).await;
    assert_eq!(resp.status(), 200);
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.edge, "home");
    assert_eq!(p.address.to_string(), "10.77.0.2");
    assert_eq!(p.edge_public_key, edge_key);
    assert_eq!(p.endpoint, "192.0.2.1:51820");
    assert_eq!(p.allowed_ips.len(), 1);
    assert_eq!(p.allowed_ips[0].to_string(), "10.77.0.1/32");
    assert_eq!(p.persistent_keepalive, 25);
    assert_eq!(p.plex_url.to_string(), "http://10.77.0.1:32400/web");
    assert_eq!(p.pin.to_string(), "127.0.0.1/32");
    let want = now() as i64 + 8 * 3600;
    assert!((p.expires_at - want).abs() <= 2);

    let list = h.broker.admin().leases().list().await.unwrap();
    assert_eq!(list.leases.len(), 1);
    assert_eq!(list.leases[0].id, p.lease_id);
    assert_eq!(list.leases[0].public_key, client_key);
    assert_eq!(list.leases[0].user, "alice");

    // A second lease gets the next address and a different preshared key.
    let resp = h.request_lease(&token, "home").await;
    let p2 = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p2.address.to_string(), "10.77.0.3");
    assert_ne!(p2.preshared_key, p.preshared_key);

    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(audit.iter().filter(|r| r.kind == "lease_issued").count(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn every_refusal_changes_nothing() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.enrolled_edge("cabin").await;
    h.add_edge("fresh").await;
    h.grant("alice", "home").await;
    h.grant("alice", "fresh").await;
    let before = h.broker.admin().counts().await.unwrap();
    let key = keypair().public_key();

    let resp = h.request_lease(&token, "cabin").await;
    expect_error(resp, 403, ErrorCode::Forbidden).await;

    let resp = h.request_lease(&token, "nowhere").await;
    expect_error(resp, 404, ErrorCode::NotFound).await;

    let resp = h.request_lease(&token, "fresh").await;
    let msg = expect_error(resp, 409, ErrorCode::Conflict).await;
    assert_eq!(msg, "edge has not enrolled yet");

    let body = json!({"edge": "home", "public_key": "AAAA"});
    let resp = h.post("/v1/leases", Some(&token), &body).await;
    let msg = expect_error(resp, 400, ErrorCode::BadRequest).await;
    assert!(msg.contains("public_key"), "{msg}");

    let low_order =
        json!({"edge": "home", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="});
    let resp = h.post("/v1/leases", Some(&token), &low_order).await;
    let msg = expect_error(resp, 400, ErrorCode::BadRequest).await;
    assert!(msg.contains("public_key"), "{msg}");

    let resp = h
        .post("/v1/leases", Some(&token), &json!({"public_key": key}))
        .await;
    let msg = expect_error(resp, 400, ErrorCode::BadRequest).await;
    assert!(msg.contains("edge"), "{msg}");

    let resp = h
        .http
        .post(h.url("/v1/leases"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, ErrorCode::BadRequest).await;

    let huge = json!({"edge": "x".repeat(70 * 1024), "public_key": key});
    let resp = h.post("/v1/leases", Some(&token), &huge).await;
    expect_error(resp, 413, ErrorCode::PayloadTooLarge).await;
    let resp = h.post("/v1/login", None, &huge).await;
    expect_error(resp, 413, ErrorCode::PayloadTooLarge).await;

    let body = json!({"edge": "home", "public_key": key});
    let resp = h.post("/v1/leases", None, &body).await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    let resp = h.post("/v1/leases", Some("not-a-session"), &body).await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;

    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert!(h
        .broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_do_not_move_the_pin() {
    let (h, token, _, _) = Harness::granted().await;
    let key = keypair().public_key();
    let resp = h
        .http
        .post(h.url("/v1/leases"))
        .bearer_auth(&token)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("Forwarded", "for=203.0.113.9;proto=https")
        .header("X-Real-IP", "203.0.113.9")
        .json(&json!({"edge": "home", "public_key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.pin.to_string(), "127.0.0.1/32");
    let list = h.broker.admin().leases().list().await.unwrap();
    assert_eq!(list.leases[0].pin.to_string(), "127.0.0.1/32");
    h.shutdown().await;
}

#[tokio::test]
async fn revoking_a_grant_revokes_its_leases_and_refuses_new_ones() {
    let (h, token, _, _) = Harness::granted().await;
    assert_eq!(h.request_lease(&token, "home").await.status(), 200);
    assert_eq!(h.request_lease(&token, "home").await.status(), 200);

    let revoked = h
        .broker
        .admin()
        .grants()
        .revoke(GrantRevokeRequest {
            user: "alice".into(),
            edge: "home".into(),
        })
        .await
        .unwrap();
    assert_eq!(revoked.revoked_leases, 2);
    assert!(h
        .broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .is_empty());
    let before = h.broker.admin().counts().await.unwrap();
    let resp = h.request_lease(&token, "home").await;
    expect_error(resp, 403, ErrorCode::Forbidden).await;
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);

    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.kind == "lease_revoked").count(),
        2
    );
    assert_eq!(
        audit.iter().filter(|r| r.kind == "grant_revoked").count(),
        1
    );

    // A new grant starts from the freed addresses.
    h.grant("alice", "home").await;
    let p = h.request_lease(&token, "home").await;
    let p = p.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.address.to_string(), "10.77.0.2");
    h.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_never_share_an_address() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant_max("alice", "home", 20).await;
    let requests = (0..20).map(|_| h.request_lease(&token, "home"));
    let responses = futures_util::future::join_all(requests).await;
    let mut addresses = HashSet::new();
    for resp in responses {
        assert_eq!(resp.status(), 200);
        let p = resp.json::<LeaseResponse>().await.unwrap().profile;
        assert!(
            addresses.insert(p.address),
            "{} handed out twice",
            p.address
        );
    }
    assert_eq!(addresses.len(), 20);
    let list = h.broker.admin().leases().list().await.unwrap();
    assert_eq!(list.leases.len(), 20);
    h.shutdown().await;
}

#[tokio::test]
async fn expired_leases_leave_the_list_and_free_their_address() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.broker
        .admin()
        .grants()
        .add(grantwire_proto::GrantAddRequest {
            user: "alice".into(),
            edge: "home".into(),
            lease_ttl_secs: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let first = h.request_lease(&token, "home").await;
    let first = first.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(first.address.to_string(), "10.77.0.2");
    assert!(first.expires_at <= now() as i64 + 1);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(h
        .broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .is_empty());

    let second = h.request_lease(&token, "home").await;
    let second = second.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(second.address.to_string(), "10.77.0.2");
    assert_ne!(second.lease_id, first.lease_id);
    h.shutdown().await;
}

#[tokio::test]
async fn renewing_with_the_same_key_replaces_the_old_lease() {
    let (h, token, _, _) = Harness::granted().await;
    let key = keypair().public_key();
    let body = json!({"edge": "home", "public_key": key});
    let first = h.post("/v1/leases", Some(&token), &body).await;
    let first = first.json::<LeaseResponse>().await.unwrap().profile;
    let second = h.post("/v1/leases", Some(&token), &body).await;
    assert_eq!(second.status(), 200);
    let second = second.json::<LeaseResponse>().await.unwrap().profile;
    assert_ne!(second.lease_id, first.lease_id);

    let list = h.broker.admin().leases().list().await.unwrap();
    assert_eq!(list.leases.len(), 1);
    assert_eq!(list.leases[0].id, second.lease_id);
    assert_eq!(list.leases[0].public_key, key);
    // The old lease's address was freed in the same transaction, so the renewal reuses it.
    assert_eq!(second.address, first.address);

    let audit = h.broker.admin().audit_log().await.unwrap();
    let revoked: Vec<_> = audit.iter().filter(|r| r.kind == "lease_revoked").collect();
    assert_eq!(revoked.len(), 1);
    let detail = revoked[0].detail.as_deref().unwrap();
    assert!(
        detail.contains(&format!("lease={}", first.lease_id))
            && detail.contains(&format!("replaced_by={}", second.lease_id)),
        "{detail}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn another_users_public_key_is_refused() {
    let h = Harness::start().await;
    let alice = h.session("alice").await;
    let bob = h.session("bob").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    h.grant("bob", "home").await;
    let key = keypair().public_key();
    let body = json!({"edge": "home", "public_key": key});
    let first = h.post("/v1/leases", Some(&alice), &body).await;
    let first = first.json::<LeaseResponse>().await.unwrap().profile;
    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();

    let resp = h.post("/v1/leases", Some(&bob), &body).await;
    let msg = expect_error(resp, 409, ErrorCode::Conflict).await;
    assert_eq!(msg, "public key already in use");

    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(
        h.broker.admin().audit_log().await.unwrap().len(),
        audit_before
    );
    let list = h.broker.admin().leases().list().await.unwrap();
    assert_eq!(list.leases.len(), 1);
    assert_eq!(list.leases[0].id, first.lease_id);
    assert_eq!(list.leases[0].user, "alice");
    h.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_of_the_other_family_is_refused() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let enrol = h
        .broker
        .admin()
        .edges()
        .add(grantwire_proto::EdgeAddRequest {
            name: "v6only".into(),
            endpoint: "[2001:db8::1]:51820".into(),
            subnet: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .enrolment_token;
    let body = json!({"token": enrol, "public_key": keypair().public_key()});
    assert_eq!(h.post("/v1/edge/enrol", None, &body).await.status(), 200);
    h.grant("alice", "v6only").await;
    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = h.broker.admin().audit_log().await.unwrap().len();

    // The harness connects from 127.0.0.1, so the pin is IPv4.
    let resp = h.request_lease(&token, "v6only").await;
    let msg = expect_error(resp, 409, ErrorCode::Conflict).await;
    assert!(
        msg.starts_with(
            "the broker sees you over IPv4 (at 127.0.0.1), but edge v6only has no IPv4 endpoint"
        ) && msg.contains("add an IPv4 endpoint to edge v6only"),
        "{msg}"
    );
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(
        h.broker.admin().audit_log().await.unwrap().len(),
        audit_before
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_revoke_succeeds_while_leases_are_being_issued() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    for round in 0..5 {
        h.grant_max("alice", "home", 10).await;
        let requests =
            futures_util::future::join_all((0..10).map(|_| h.request_lease(&token, "home")));
        let revoke = async {
            // Revoke once the first lease of the burst is in, with the rest still in flight.
            while h
                .broker
                .admin()
                .leases()
                .list()
                .await
                .unwrap()
                .leases
                .is_empty()
            {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            h.broker
                .admin()
                .grants()
                .revoke(GrantRevokeRequest {
                    user: "alice".into(),
                    edge: "home".into(),
                })
                .await
        };
        let (responses, revoked) = tokio::join!(requests, revoke);
        revoked.unwrap_or_else(|e| panic!("round {round}: revoke failed: {e}"));
        for resp in responses {
            assert!(
                [200, 403].contains(&resp.status().as_u16()),
                "{}",
                resp.status()
            );
        }
        let live = h.broker.admin().leases().list().await.unwrap().leases;
        assert!(live.is_empty(), "round {round}: {live:?}");
    }
    h.shutdown().await;
}
