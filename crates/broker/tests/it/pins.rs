//! Pins that follow real people: trusted proxies, whoami, renewal from a new address.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use grantwire_proto::{ErrorCode, LeaseResponse, WhoamiResponse};
use serde_json::{json, Value};

/// The harness connects from 127.0.0.1; trusting it makes the test client a proxy.
async fn behind_proxy() -> Harness {
    Harness::with_config(|c| {
        c.trusted_proxies = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    })
    .await
}

async fn lease_with_xff(h: &Harness, token: &str, xff: &[&str]) -> reqwest::Response {
    let mut req = h
        .http
        .post(h.url("/v1/leases"))
        .bearer_auth(token)
        .json(&json!({"edge": "home", "public_key": keypair().public_key()}));
    for v in xff {
        req = req.header("X-Forwarded-For", *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_trusted_proxys_header_sets_the_pin() {
    let h = behind_proxy().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let resp = lease_with_xff(&h, &token, &["198.51.100.7"]).await;
    assert_eq!(resp.status(), 200);
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.pin.to_string(), "198.51.100.7/32");
    let list = h.broker.admin().leases().list().await.unwrap();
    assert_eq!(list.leases[0].pin.to_string(), "198.51.100.7/32");
    h.shutdown().await;
}

#[tokio::test]
async fn the_header_is_read_right_to_left_past_a_fake_leftmost_entry() {
    let h = behind_proxy().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    // The client sent "X-Forwarded-For: 203.0.113.66" itself; the outer proxy appended the
    // address it saw (198.51.100.7) and an inner trusted proxy appended 10.1.2.3.
    let resp = lease_with_xff(&h, &token, &["203.0.113.66, 198.51.100.7, 10.1.2.3"]).await;
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.pin.to_string(), "198.51.100.7/32");
    // A malformed header from the proxy: the peer address, not a guess.
    let resp = lease_with_xff(&h, &token, &["198.51.100.7, not-an-ip"]).await;
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(p.pin.to_string(), "127.0.0.1/32");
    h.shutdown().await;
}

async fn whoami(h: &Harness, token: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = h.http.get(h.url("/v1/whoami")).bearer_auth(token);
    if let Some(v) = xff {
        req = req.header("X-Forwarded-For", v);
    }
    req.send().await.unwrap()
}

async fn renew(h: &Harness, token: &str, id: &str, xff: &str) -> reqwest::Response {
    h.http
        .post(h.url(&format!("/v1/leases/{id}/renew")))
        .bearer_auth(token)
        .header("X-Forwarded-For", xff)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn whoami_tells_the_source_and_whether_leases_are_pinned_there() {
    let h = behind_proxy().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let resp = lease_with_xff(&h, &token, &["198.51.100.7"]).await;
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;

    let w: WhoamiResponse = whoami(&h, &token, Some("198.51.100.7"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w.user, "alice");
    assert_eq!(w.source_ip.to_string(), "198.51.100.7");
    assert_eq!(w.leases.len(), 1);
    assert_eq!(w.leases[0].id, p.lease_id);
    assert_eq!(w.leases[0].edge, "home");
    assert_eq!(w.leases[0].pin, p.pin);
    assert_eq!(w.leases[0].expires_at, p.expires_at);
    assert!(w.leases[0].pinned_here);

    let w: WhoamiResponse = whoami(&h, &token, Some("203.0.113.5"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w.source_ip.to_string(), "203.0.113.5");
    assert!(!w.leases[0].pinned_here);

    // Another user sees none of alice's leases.
    let bob = h.session("bob").await;
    let w: WhoamiResponse = whoami(&h, &bob, None).await.json().await.unwrap();
    assert_eq!(w.source_ip.to_string(), "127.0.0.1");
    assert!(w.leases.is_empty());

    let resp = h.http.get(h.url("/v1/whoami")).send().await.unwrap();
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    h.shutdown().await;
}

#[tokio::test]
async fn renewing_from_a_new_address_moves_the_pin_and_pushes_it() {
    let h = behind_proxy().await;
    let token = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let sync = h.open_sync(&credential).await;
    let mut events = SseReader::new(sync);
    assert!(events.next_set().await.leases.is_empty());

    let resp = lease_with_xff(&h, &token, &["198.51.100.7"]).await;
    let old = resp.json::<LeaseResponse>().await.unwrap().profile;
    let set = events.next_set().await;
    assert_eq!(set.leases[0].pin.to_string(), "198.51.100.7/32");
    let before = h.broker.admin().counts().await.unwrap();

    let resp = renew(&h, &token, &old.lease_id, "203.0.113.5").await;
    assert_eq!(resp.status(), 200);
    let new = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(new.lease_id, old.lease_id);
    assert_eq!(new.pin.to_string(), "203.0.113.5/32");
    assert_eq!(new.address, old.address);
    assert_eq!(new.preshared_key, old.preshared_key);
    assert_eq!(new.edge_public_key, old.edge_public_key);
    assert_eq!(new.endpoint, old.endpoint);
    assert!(new.expires_at >= old.expires_at);

    // The edge hears of it at once: same peer, new pin, so the old address stops.
    let set = events.next_set().await;
    assert_eq!(set.leases.len(), 1);
    assert_eq!(set.leases[0].id, old.lease_id);
    assert_eq!(set.leases[0].pin.to_string(), "203.0.113.5/32");
    assert_eq!(set.leases[0].preshared_key, old.preshared_key);
    assert_eq!(set.leases[0].expires_at, new.expires_at);

    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    let audit = h.broker.admin().audit_log().await.unwrap();
    let row = audit.iter().find(|r| r.kind == "lease_renewed").unwrap();
    let detail = row.detail.as_deref().unwrap();
    assert!(detail.contains("old_pin=198.51.100.7/32"), "{detail}");
    assert!(detail.contains("new_pin=203.0.113.5/32"), "{detail}");
    assert_eq!(row.actor.as_deref(), Some("alice"));
    assert_eq!(row.source_ip.as_deref(), Some("203.0.113.5"));
    h.shutdown().await;
}

#[tokio::test]
async fn renewal_refusals_change_nothing() {
    let h = behind_proxy().await;
    let token = h.session("alice").await;
    let bob = h.session("bob").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    h.grant("bob", "home").await;
    let resp = lease_with_xff(&h, &token, &["198.51.100.7"]).await;
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;
    let admin = h.broker.admin();
    let before = admin.counts().await.unwrap();
    let audit_before = admin.audit_log().await.unwrap().len();
    let unchanged = || async {
        assert_eq!(admin.counts().await.unwrap(), before);
        assert_eq!(admin.audit_log().await.unwrap().len(), audit_before);
        let list = admin.leases().list().await.unwrap();
        assert_eq!(list.leases[0].pin.to_string(), "198.51.100.7/32");
        assert_eq!(list.leases[0].expires_at, p.expires_at);
    };

    // Another user's lease looks like an unknown one.
    let resp = renew(&h, &bob, &p.lease_id, "203.0.113.5").await;
    expect_error(resp, 404, ErrorCode::NotFound).await;
    unchanged().await;
    let resp = renew(&h, &token, "l-0000000000000000", "203.0.113.5").await;
    expect_error(resp, 404, ErrorCode::NotFound).await;
    unchanged().await;
    let resp = h
        .http
        .post(h.url(&format!("/v1/leases/{}/renew", p.lease_id)))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    unchanged().await;

    // The grant is gone (ended under the lease) but the lease row is still live.
    admin
        .db()
        .write(|tx| {
            Ok(tx.execute(
                "UPDATE grants SET revoked_at = 1
                 WHERE user_id = (SELECT id FROM users WHERE name = 'alice')",
                [],
            )?)
        })
        .await
        .unwrap();
    let resp = renew(&h, &token, &p.lease_id, "203.0.113.5").await;
    expect_error(resp, 403, ErrorCode::Forbidden).await;
    unchanged().await;
    h.shutdown().await;
}

/// The default listener, `[::]`, takes both families on one socket: a client over IPv4 is
/// pinned to its /32 (not to a /64 of its IPv4-mapped form) and given the IPv4 endpoint, and a
/// client over IPv6 is pinned to its /64 and given the IPv6 endpoint.
#[tokio::test]
async fn a_dual_stack_listener_pins_each_family_as_itself() {
    let h = Harness::with_config(|c| c.listen = "[::]:0".parse().unwrap()).await;
    let port = h.broker.addr().port();
    let secret = h.add_user("alice").await;
    let added = h
        .broker
        .admin()
        .edges()
        .add(grantwire_proto::EdgeAddRequest {
            name: "home".into(),
            endpoint: "192.0.2.1:51820".into(),
            extra_endpoints: vec!["[2001:db8::1]:51820".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let enrol = json!({"token": added.enrolment_token, "public_key": keypair().public_key()});
    let resp = h
        .http
        .post(format!("https://127.0.0.1:{port}/v1/edge/enrol"))
        .json(&enrol)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    h.grant("alice", "home").await;
    let login = json!({"user": "alice", "password": PASSWORD, "code": code_now(&secret)});
    let resp = h
        .http
        .post(format!("https://127.0.0.1:{port}/v1/login"))
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (host, pin, endpoint) in [
        ("127.0.0.1", "127.0.0.1/32", "192.0.2.1:51820"),
        ("[::1]", "::/64", "[2001:db8::1]:51820"),
    ] {
        let resp = h
            .http
            .post(format!("https://{host}:{port}/v1/leases"))
            .bearer_auth(&token)
            .json(&json!({"edge": "home", "public_key": keypair().public_key()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "lease over {host}");
        let p = resp.json::<LeaseResponse>().await.unwrap().profile;
        assert_eq!(p.pin.to_string(), pin, "pin over {host}");
        assert_eq!(p.endpoint.to_string(), endpoint, "endpoint over {host}");
    }
    h.shutdown().await;
}
