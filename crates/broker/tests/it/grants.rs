//! Per-grant terms (ports, end, pin prefixes) and `grant list`, through the API and the binary.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use grantwire_proto::{GrantAddRequest, GrantInfo, GrantListResponse, LeaseResponse};

#[tokio::test]
async fn a_grants_ports_prefixes_and_end_reach_its_leases() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    let end = now() as i64 + 120;
    let info = h
        .broker
        .admin()
        .grants()
        .add(GrantAddRequest {
            user: "alice".into(),
            edge: "home".into(),
            lease_ttl_secs: Some(3600),
            ends_at: Some(end),
            ports: Some(vec![32469, 32400]),
            pin_prefix4: Some(24),
            pin_prefix6: Some(56),
            max_leases: Some(9),
        })
        .await
        .unwrap();
    assert_eq!(info.ports, vec![32400, 32469]);
    assert_eq!((info.pin_prefix4, info.pin_prefix6), (24, 56));
    assert_eq!(info.expires_at, Some(end));
    assert_eq!(info.max_leases, 9);

    let p = h
        .request_lease(&token, "home")
        .await
        .json::<LeaseResponse>()
        .await
        .unwrap()
        .profile;
    assert_eq!(p.pin.to_string(), "127.0.0.0/24");
    // The lease TTL is an hour, but the grant ends first.
    assert_eq!(p.expires_at, end);
    let sync = h.open_sync(&credential).await;
    let set = SseReader::new(sync).next_set().await;
    assert_eq!(set.leases[0].ports, vec![32400, 32469]);
    assert_eq!(set.leases[0].pin.to_string(), "127.0.0.0/24");

    // Renewal keeps to the same terms.
    let resp = h
        .http
        .post(h.url(&format!("/v1/leases/{}/renew", p.lease_id)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let renewed = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(renewed.pin.to_string(), "127.0.0.0/24");
    assert_eq!(renewed.expires_at, end);

    let list = h.broker.admin().grants().list().await.unwrap();
    assert_eq!(list.grants.len(), 1);
    assert_eq!(list.grants[0].user, "alice");
    assert_eq!(list.grants[0].ports, vec![32400, 32469]);
    assert_eq!(list.grants[0].pin_prefix4, 24);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_grant_terms_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    h.add_user("alice").await;
    h.add_edge("home").await;
    let admin = h.broker.admin();
    let before = admin.counts().await.unwrap();
    let audit_before = admin.audit_log().await.unwrap().len();
    let base = GrantAddRequest {
        user: "alice".into(),
        edge: "home".into(),
        ..Default::default()
    };
    for bad in [
        GrantAddRequest {
            ports: Some(vec![0]),
            ..base.clone()
        },
        GrantAddRequest {
            ports: Some(vec![]),
            ..base.clone()
        },
        GrantAddRequest {
            pin_prefix4: Some(7),
            ..base.clone()
        },
        GrantAddRequest {
            pin_prefix4: Some(33),
            ..base.clone()
        },
        GrantAddRequest {
            pin_prefix6: Some(31),
            ..base.clone()
        },
        GrantAddRequest {
            pin_prefix6: Some(129),
            ..base.clone()
        },
        GrantAddRequest {
            ends_at: Some(now() as i64 - 1),
            ..base.clone()
        },
        // Beyond what anything can print (past the year 9999), and a lease that long.
        GrantAddRequest {
            ends_at: Some(now() as i64 + 101 * 366 * 86_400),
            ..base.clone()
        },
        GrantAddRequest {
            lease_ttl_secs: Some(367 * 86_400),
            ..base.clone()
        },
    ] {
        let err = admin.grants().add(bad.clone()).await.unwrap_err();
        assert_eq!(err.code().http_status(), 400, "{bad:?}: {err}");
    }
    assert_eq!(admin.counts().await.unwrap(), before);
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before);

    for args in [
        &[
            "grant",
            "add",
            "alice",
            "home",
            "--until",
            "2020-01-01T00:00:00Z",
        ][..],
        &["grant", "add", "alice", "home", "--until", "soon"],
        &["grant", "add", "alice", "home", "--ports", "0"],
        &["grant", "add", "alice", "home", "--ports", "32400,70000"],
        &["grant", "add", "alice", "home", "--pin-prefix4", "40"],
        &["grant", "add", "alice", "home", "--pin-prefix6", "16"],
    ] {
        let out = cli(&h, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(admin.counts().await.unwrap(), before);
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before);
    h.shutdown().await;
}

// The binary talks to the admin socket served by this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread")]
async fn grant_add_and_list_from_the_binary() {
    let h = Harness::start().await;
    h.add_user("alice").await;
    h.add_user("bob").await;
    h.add_edge("home").await;
    let info: GrantInfo = cli_json(
        &h,
        &[
            "grant",
            "add",
            "alice",
            "home",
            "--until",
            "1h",
            "--ports",
            "32400,32469",
            "--pin-prefix4",
            "24",
            "--pin-prefix6",
            "48",
            "--json",
        ],
    );
    let end = info.expires_at.unwrap();
    assert!((end - (now() as i64 + 3600)).abs() <= 5, "{end}");
    assert_eq!(info.ports, vec![32400, 32469]);
    assert_eq!((info.pin_prefix4, info.pin_prefix6), (24, 48));
    let _: GrantInfo = cli_json(&h, &["grant", "add", "bob", "home", "--json"]);
    let list: GrantListResponse = cli_json(&h, &["grant", "list", "--json"]);
    let users: Vec<_> = list.grants.iter().map(|g| g.user.as_str()).collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(list.grants[1].ports, vec![32400]);
    assert_eq!(
        (list.grants[1].pin_prefix4, list.grants[1].pin_prefix6),
        (32, 64)
    );
    assert_eq!(list.grants[1].expires_at, None);
    let text = cli(&h, &["grant", "list"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("alice"));
    h.shutdown().await;
}
