//! Operator commands: lease revoke, audit, backup.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use grantwire_proto::{
    AuditQuery, AuditResponse, BackupResponse, ErrorCode, LeaseListResponse, LeaseResponse,
    LeaseRevokeRequest, LeaseRevokeResponse,
};

#[tokio::test]
async fn revoking_one_lease_pushes_at_once_and_refusals_change_nothing() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let sync = h.open_sync(&credential).await;
    let mut events = SseReader::new(sync);
    events.next_set().await;
    let a = h.request_lease(&token, "home").await;
    let a = a.json::<LeaseResponse>().await.unwrap().profile;
    events.next_set().await;
    let b = h.request_lease(&token, "home").await;
    let b = b.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(events.next_set().await.leases.len(), 2);
    let admin = h.broker.admin();

    let before = admin.counts().await.unwrap();
    let audit_before = admin.audit_log().await.unwrap().len();
    let err = admin
        .lease_revoke(LeaseRevokeRequest {
            id: "l-nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(admin.counts().await.unwrap(), before);
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before);

    let resp = admin
        .lease_revoke(LeaseRevokeRequest {
            id: a.lease_id.to_string(),
        })
        .await
        .unwrap();
    assert_eq!((resp.user.as_str(), resp.edge.as_str()), ("alice", "home"));
    let set = events.next_set().await;
    let ids: Vec<_> = set.leases.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, [b.lease_id.as_str()]);
    let audit = admin.audit_log().await.unwrap();
    assert_eq!(audit.len(), audit_before + 1);
    assert_eq!(audit[audit_before].kind, "lease_revoked");
    assert!(audit[audit_before]
        .detail
        .as_deref()
        .unwrap()
        .contains(a.lease_id.as_str()));
    // Twice is not found, and changes nothing more.
    let err = admin
        .lease_revoke(LeaseRevokeRequest {
            id: a.lease_id.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before + 1);
    // Its address is free again (allocation takes it once it reaches the top of the subnet).
    let slot: Option<i64> = sqlx::query_scalar("SELECT addr_slot FROM leases WHERE id = ?")
        .bind(a.lease_id.as_str())
        .fetch_one(admin.db())
        .await
        .unwrap();
    assert_eq!(slot, None);
    h.shutdown().await;
}

// The binary talks to the admin socket served by this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread")]
async fn lease_list_and_revoke_from_the_binary() {
    let h = Harness::start().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let p = h.request_lease(&token, "home").await;
    let p = p.json::<LeaseResponse>().await.unwrap().profile;
    let list: LeaseListResponse = cli_json(&h, &["lease", "list", "--json"]);
    assert_eq!(list.leases.len(), 1);
    assert_eq!(list.leases[0].ports, vec![32400]);
    assert_eq!(list.leases[0].pin, p.pin);
    let resp: LeaseRevokeResponse = cli_json(&h, &["lease", "revoke", &p.lease_id, "--json"]);
    assert_eq!(resp.id, p.lease_id);
    let list: LeaseListResponse = cli_json(&h, &["lease", "list", "--json"]);
    assert!(list.leases.is_empty());
    let out = cli(&h, &["lease", "revoke", &p.lease_id, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    h.shutdown().await;
}

// The binary talks to the admin socket served by this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread")]
async fn audit_filters_by_time_and_user() {
    let h = Harness::start().await;
    let alice = h.session("alice").await;
    h.session("alice2").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    h.grant("alice2", "home").await;
    h.request_lease(&alice, "home").await;

    let all: AuditResponse = cli_json(&h, &["audit", "--json"]);
    assert_eq!(
        all.entries.len(),
        h.broker.admin().audit_log().await.unwrap().len()
    );
    assert!(all.entries.windows(2).all(|w| w[0].id < w[1].id));

    let mine: AuditResponse = cli_json(&h, &["audit", "--user", "alice", "--json"]);
    let kinds: Vec<_> = mine.entries.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"user_added"), "{kinds:?}");
    assert!(kinds.contains(&"grant_added"), "{kinds:?}");
    assert!(kinds.contains(&"lease_issued"), "{kinds:?}");
    // alice2's entries are not alice's, though the name starts the same.
    for e in &mine.entries {
        let about_alice = e.actor.as_deref() == Some("alice")
            || e.detail.as_deref().unwrap_or("").contains("user=alice ")
            || e.detail.as_deref().unwrap_or("").ends_with("user=alice");
        assert!(about_alice, "{e:?}");
    }
    let theirs: AuditResponse = cli_json(&h, &["audit", "--user", "alice2", "--json"]);
    assert!(!theirs.entries.is_empty());
    assert!(theirs
        .entries
        .iter()
        .all(|e| !mine.entries.iter().any(|m| m.id == e.id)));

    let recent: AuditResponse = cli_json(&h, &["audit", "--since", "1h", "--json"]);
    assert_eq!(recent.entries.len(), all.entries.len());
    let future: AuditResponse =
        cli_json(&h, &["audit", "--since", "2100-01-01T00:00:00Z", "--json"]);
    assert!(future.entries.is_empty());

    let leases: AuditResponse = cli_json(&h, &["audit", "--kind", "lease_issued", "--json"]);
    assert_eq!(leases.entries.len(), 1, "{leases:?}");
    assert_eq!(leases.entries[0].kind, "lease_issued");
    let none: AuditResponse = cli_json(&h, &["audit", "--kind", "no_such_kind", "--json"]);
    assert!(none.entries.is_empty());

    for bad in [
        &["audit", "--since", "lately"][..],
        &["audit", "--user", "Not A Name"],
        &["audit", "--kind", "Login-OK"],
    ] {
        let out = cli(&h, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
    let text = cli(&h, &["audit"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("lease_issued"));
    h.shutdown().await;
}

#[tokio::test]
async fn audit_by_kind_and_limit_gives_the_newest_matching_rows_oldest_first() {
    let h = Harness::start().await;
    for name in ["a1", "a2", "a3"] {
        h.add_user(name).await;
    }
    h.enrolled_edge("home").await;
    let b = h.broker.admin();
    let query = |kind: &str, limit: Option<u32>| AuditQuery {
        kind: Some(kind.into()),
        limit,
        ..Default::default()
    };
    let added = b.audit_query(query("user_added", None)).await.unwrap();
    let details: Vec<_> = added
        .entries
        .iter()
        .map(|e| e.detail.clone().unwrap())
        .collect();
    assert_eq!(details, ["user=a1", "user=a2", "user=a3"]);
    let newest = b.audit_query(query("user_added", Some(2))).await.unwrap();
    let details: Vec<_> = newest
        .entries
        .iter()
        .map(|e| e.detail.clone().unwrap())
        .collect();
    assert_eq!(details, ["user=a2", "user=a3"]);
    let none = b.audit_query(query("no_such_kind", None)).await.unwrap();
    assert!(none.entries.is_empty());
    let all = b.audit_query(AuditQuery::default()).await.unwrap().entries;
    assert!(all.iter().any(|e| e.kind == "edge_added"));
    for bad in ["", "User_Added", "x y", &"k".repeat(41)] {
        let refused = b.audit_query(query(bad, None)).await;
        assert!(
            matches!(refused, Err(grantwire_broker::Error::BadRequest(_))),
            "{bad}"
        );
    }
    h.shutdown().await;
}

// The binary talks to the admin socket served by this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread")]
async fn backup_writes_a_checked_private_copy_and_never_overwrites() {
    use sqlx::{ConnectOptions as _, Connection as _};
    use std::os::unix::fs::PermissionsExt as _;

    let h = Harness::start().await;
    let token = h.session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let p = h.request_lease(&token, "home").await;
    let p = p.json::<LeaseResponse>().await.unwrap().profile;
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("broker-backup.db");
    let file_text = file.to_str().unwrap();

    let resp: BackupResponse = cli_json(&h, &["backup", file_text, "--json"]);
    assert_eq!(resp.path, file_text);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), resp.bytes);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // No temporary file is left next to it.
    let names: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("broker-backup.db")]);

    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let users: Vec<String> = sqlx::query_scalar("SELECT name FROM users")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(users, ["alice"]);
    let leases: Vec<String> = sqlx::query_scalar("SELECT id FROM leases")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(leases, [p.lease_id.as_str()]);
    conn.close().await.unwrap();

    // An existing file is refused (exit 1) and left as it was.
    let before = std::fs::read(&file).unwrap();
    h.session("bob").await;
    let out = cli(&h, &["backup", file_text, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1);

    let err = h
        .broker
        .admin()
        .backup(grantwire_proto::BackupRequest {
            path: "relative.db".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_name_cannot_forge_audit_lines_in_the_admins_terminal() {
    let h = Harness::start().await;
    h.add_user("alice").await;
    let forged = "x\n2026-12-07 04:00:00 login_ok alice 127.0.0.1\u{1b}[2J";
    let resp = h.login_raw(forged, "wrong password", "000000").await;
    assert_eq!(resp.status().as_u16(), 401);

    let out = cli(&h, &["audit", "--kind", "login_failed"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one failed login, one line: {text:?}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(
        lines[0].contains(r"x\n2026-12-07 04:00:00 login_ok alice 127.0.0.1\x1b[2J"),
        "{text:?}"
    );
    // The JSON keeps the name as it was typed, for tools that escape it themselves.
    let all: AuditResponse = cli_json(&h, &["audit", "--kind", "login_failed", "--json"]);
    assert_eq!(all.entries[0].actor.as_deref(), Some(forged));
}
