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
        .leases()
        .revoke(LeaseRevokeRequest {
            id: "l-nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(admin.counts().await.unwrap(), before);
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before);

    let resp = admin
        .leases()
        .revoke(LeaseRevokeRequest {
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
        .leases()
        .revoke(LeaseRevokeRequest {
            id: a.lease_id.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(admin.audit_log().await.unwrap().len(), audit_before + 1);
    // Its address is free again (allocation takes it once it reaches the top of the subnet).
    let id = a.lease_id.as_str().to_owned();
    let slot: Option<i64> = admin
        .db()
        .read(move |c| {
            Ok(
                c.query_row("SELECT addr_slot FROM leases WHERE id = ?", [id], |r| {
                    r.get(0)
                })?,
            )
        })
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
    let added = b.audit().query(query("user_added", None)).await.unwrap();
    let details: Vec<_> = added
        .entries
        .iter()
        .map(|e| e.detail.clone().unwrap())
        .collect();
    assert_eq!(details, ["user=a1", "user=a2", "user=a3"]);
    let newest = b.audit().query(query("user_added", Some(2))).await.unwrap();
    let details: Vec<_> = newest
        .entries
        .iter()
        .map(|e| e.detail.clone().unwrap())
        .collect();
    assert_eq!(details, ["user=a2", "user=a3"]);
    let none = b.audit().query(query("no_such_kind", None)).await.unwrap();
    assert!(none.entries.is_empty());
    let all = b
        .audit()
        .query(AuditQuery::default())
        .await
        .unwrap()
        .entries;
    assert!(all.iter().any(|e| e.kind == "edge_added"));
    for bad in ["", "User_Added", "x y", &"k".repeat(41)] {
        let refused = b.audit().query(query(bad, None)).await;
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

    let conn =
        rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let users: Vec<String> = crate::common::column(&conn, "SELECT name FROM users");
    assert_eq!(users, ["alice"]);
    let leases: Vec<String> = crate::common::column(&conn, "SELECT id FROM leases");
    assert_eq!(leases, [p.lease_id.as_str()]);
    drop(conn);

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

/// A copy of `tests/data/sqlx-era`: the data directory of a broker from before the move to
/// rusqlite (revision a0d2a7d, schema recorded by sqlx), holding user alice, the enrolled edge
/// plex-home, her grant on it and one lease. Files are made owner-only, as the broker made them.
fn sqlx_era_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sqlx-era");
    for name in [
        "broker.db",
        "secrets.key",
        "tls-cert.pem",
        "tls-key.pem",
        "tls-cert.sha256",
    ] {
        let to = data.join(name);
        std::fs::copy(fixture.join(name), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (dir, data)
}

fn fixture_json(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sqlx-era")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_database_from_the_sqlx_era_opens_with_everything_in_it() {
    let (_dir, data) = sqlx_era_copy();
    let db = data.join(grantwire_broker::DB_FILE);
    let version = |conn: &rusqlite::Connection| -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    assert_eq!(
        version(&crate::common::sqlite(&db)),
        0,
        "the fixture is sqlx's"
    );

    for start_no in 0..2 {
        let broker = grantwire_broker::start(grantwire_broker::ServeConfig::for_tests(&data))
            .await
            .unwrap();
        let admin = broker.admin();
        let users = admin.accounts().list().await.unwrap().users;
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].name, "alice");
        let edges = admin.edges().list().await.unwrap().edges;
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].name, "plex-home");
        assert!(edges[0].enrolled);
        let grants = admin.grants().list().await.unwrap().grants;
        assert_eq!(
            (grants[0].user.as_str(), grants[0].edge.as_str()),
            ("alice", "plex-home")
        );
        let lease = fixture_json("lease.json")["profile"]["lease_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let issued = admin
            .audit_log()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == "lease_issued")
            .count();
        assert_eq!(issued, 1);
        let stored: Vec<String> =
            crate::common::column(&crate::common::sqlite(&db), "SELECT id FROM leases");
        assert_eq!(stored, [lease]);

        // Her sealed TOTP secret still opens with the kept secrets.key: she can log in.
        let alice = fixture_json("alice.json");
        let secret = data_encoding::BASE32_NOPAD
            .decode(alice["totp_secret"].as_str().unwrap().as_bytes())
            .unwrap();
        let fp: grantwire_pinned_tls::Fingerprint = broker.fingerprint().parse().unwrap();
        let http = grantwire_pinned_tls::http_client(Some(fp));
        // A second start would reuse the first start's step: wait for the next one.
        if start_no == 1 {
            let step = now() / 30;
            while now() / 30 == step {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        let resp = http
            .post(format!("{}/v1/login", broker.url()))
            .json(&serde_json::json!({
                "user": "alice",
                "password": "correct horse battery staple 42",
                "code": code_now(&secret),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        broker.shutdown().await.unwrap();

        let conn = crate::common::sqlite(&db);
        assert_eq!(
            version(&conn),
            9,
            "every migration is recorded (the sqlx era's eight and 0010), none run twice"
        );
        let sqlx_rows: Vec<i64> =
            crate::common::column(&conn, "SELECT version FROM _sqlx_migrations");
        assert_eq!(sqlx_rows, [1, 2, 3, 4, 5, 6, 8, 9], "sqlx's record is kept");
    }
}

#[tokio::test]
async fn a_database_whose_recorded_schema_differs_is_refused_and_left_alone() {
    let (_dir, data) = sqlx_era_copy();
    let db = data.join(grantwire_broker::DB_FILE);
    // A migration recorded with another checksum: not the schema this broker's files make.
    crate::common::sqlite(&db)
        .execute(
            "UPDATE _sqlx_migrations SET checksum = zeroblob(48) WHERE version = 3",
            [],
        )
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let err = grantwire_broker::start(grantwire_broker::ServeConfig::for_tests(&data))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("migration 3 differs"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing was written");
}
