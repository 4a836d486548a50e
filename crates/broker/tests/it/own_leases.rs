//! A user's own leases over real HTTPS: `GET /v1/leases` lists only the caller's live ones
//! (with what the edge reported), and `POST /v1/leases/{id}/revoke` ends one of them, refusing
//! another user's lease (403) and an unknown or dead one (404) without changing anything.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use grantwire_proto::{ErrorCode, LeaseListResponse, LeaseResponse, LeaseRevokeResponse};
use serde_json::json;

impl Harness {
    async fn my_leases(&self, token: &str) -> LeaseListResponse {
        let resp = self
            .http
            .get(self.url("/v1/leases"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn lease_id(&self, token: &str, edge: &str) -> String {
        let resp = self.request_lease(token, edge).await;
        assert_eq!(resp.status(), 200);
        resp.json::<LeaseResponse>()
            .await
            .unwrap()
            .profile
            .lease_id
            .to_string()
    }

    async fn revoke(&self, token: Option<&str>, id: &str) -> reqwest::Response {
        self.post(&format!("/v1/leases/{id}/revoke"), token, &json!({}))
            .await
    }
}

#[tokio::test]
async fn the_list_holds_only_the_callers_live_leases_with_their_usage() {
    let h = Harness::start().await;
    let alice = h.session("alice").await;
    let bob = h.session("bob").await;
    let (credential, _) = h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    h.grant("bob", "home").await;
    assert!(h.my_leases(&alice).await.leases.is_empty());

    let mine = h.lease_id(&alice, "home").await;
    let theirs = h.lease_id(&bob, "home").await;
    let list = h.my_leases(&alice).await.leases;
    assert_eq!(list.len(), 1);
    let lease = &list[0];
    assert_eq!(
        (lease.id.as_str(), lease.user.as_str()),
        (mine.as_str(), "alice")
    );
    assert_eq!(lease.edge, "home");
    assert_eq!(lease.tunnel_address.to_string(), "10.77.0.2");
    assert_eq!(lease.pin.to_string(), "127.0.0.1/32");
    assert!(lease.usage.is_none(), "no report yet: {lease:?}");
    assert_eq!(h.my_leases(&bob).await.leases[0].id, theirs);

    // The edge's report shows up as the lease's last handshake.
    let report = json!({"leases": [{"lease_id": mine, "last_handshake_at": 1_700_000_000,
        "rx_bytes": 10, "tx_bytes": 20}]});
    let resp = h.post("/v1/edge/report", Some(&credential), &report).await;
    assert_eq!(resp.status(), 204);
    let usage = h.my_leases(&alice).await.leases[0].usage.unwrap();
    assert_eq!(usage.last_handshake_at, Some(1_700_000_000));
    assert_eq!((usage.rx_bytes, usage.tx_bytes), (10, 20));

    // Without a session the route is as closed as any other.
    let resp = h.http.get(h.url("/v1/leases")).send().await.unwrap();
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_user_revokes_an_own_lease_and_the_edge_is_told() {
    let (h, alice, credential, _) = Harness::granted().await;
    let id = h.lease_id(&alice, "home").await;
    let mut sync = SseReader::new(h.open_sync(&credential).await);
    assert_eq!(sync.next_set().await.leases.len(), 1);

    let resp = h.revoke(Some(&alice), &id).await;
    assert_eq!(resp.status(), 200);
    let revoked: LeaseRevokeResponse = resp.json().await.unwrap();
    assert_eq!(
        (
            revoked.id.as_str(),
            revoked.user.as_str(),
            revoked.edge.as_str()
        ),
        (id.as_str(), "alice", "home")
    );
    assert!(sync.next_set().await.leases.is_empty());
    assert!(h.my_leases(&alice).await.leases.is_empty());
    let audit = h.broker.admin().audit_log().await.unwrap();
    let row = audit.iter().find(|r| r.kind == "lease_revoked").unwrap();
    assert_eq!(row.actor.as_deref(), Some("alice"));
    assert!(row.detail.as_deref().unwrap().contains(&id), "{row:?}");

    // A second revoke finds nothing live.
    let resp = h.revoke(Some(&alice), &id).await;
    expect_error(resp, 404, ErrorCode::NotFound).await;
    h.shutdown().await;
}

#[tokio::test]
async fn another_users_lease_and_unknown_ids_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let alice = h.session("alice").await;
    let bob = h.session("bob").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    h.grant("bob", "home").await;
    let bobs = h.lease_id(&bob, "home").await;
    let before = h.broker.admin().counts().await.unwrap();

    let resp = h.revoke(Some(&alice), &bobs).await;
    let msg = expect_error(resp, 403, ErrorCode::Forbidden).await;
    assert_eq!(msg, "this lease belongs to another user");
    let resp = h.revoke(Some(&alice), "l-0000000000000000").await;
    expect_error(resp, 404, ErrorCode::NotFound).await;
    let resp = h.revoke(None, &bobs).await;
    expect_error(resp, 401, ErrorCode::Unauthorized).await;

    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(h.my_leases(&bob).await.leases[0].id, bobs);
    h.shutdown().await;
}
