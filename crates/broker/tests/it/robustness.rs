//! Bad input and failure (issue 3): names outside `[a-z0-9-]{1,32}` through the admin API, the
//! admin socket and the real binary; oversized unicode at login; duplicate names; a thousand
//! concurrent leases on one edge; and a broker SIGKILLed in the middle of a stream of leases.
//!
//! Every refusal is also shown to have changed nothing: the row counts and the audit log are
//! compared before and after.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::binary::{run, run_json, serve, wait_timeout};
use crate::common::*;
use grantwire_broker::store::Counts;
use grantwire_broker::{AdminClient, AdminError};
use grantwire_pinned_tls::http_client;
use grantwire_proto::{
    AuditResponse, EdgeAddRequest, EdgeAddResponse, ErrorCode, GrantAddRequest, GrantInfo,
    LeaseListResponse, LeaseResponse, UserAddRequest, UserAddResponse,
};
use ipnet::Ipv4Net;
use serde_json::json;

/// Every request here comes from 127.0.0.1: lift the per-source lease budget.
const LIFTED: &[&str] = &["--lease-burst", "100000", "--lease-per-sec", "100000"];
const USER_NAME_RULE: &str = "user name must be 1-32 characters of a-z, 0-9 and '-'";
const EDGE_NAME_RULE: &str = "edge name must be 1-32 characters of a-z, 0-9 and '-'";

/// Names that must never be stored, each with what it tries.
fn bad_names() -> Vec<(&'static str, String)> {
    vec![
        ("latin letter with ring", "ålice".into()),
        ("CJK", "名前".into()),
        ("Cyrillic look-alike of alice", "\u{430}lice".into()),
        ("combining accent", "alice\u{301}".into()),
        ("right-to-left override", "a\u{202e}b".into()),
        ("zero-width joiner", "a\u{200d}b".into()),
        ("zero-width space", "alice\u{200b}".into()),
        ("trailing newline", "alice\n".into()),
        ("NUL byte", "a\0b".into()),
        ("33 characters", "a".repeat(33)),
        ("10,000 characters", "a".repeat(10_000)),
        ("10,000 CJK characters", "名".repeat(10_000)),
    ]
}

/// Row counts and audit length: what a refusal must leave as it found.
async fn state(h: &Harness) -> (Counts, usize) {
    let admin = h.broker.admin();
    let counts = admin.counts().await.unwrap();
    (counts, admin.audit_log().await.unwrap().len())
}

/// A refusal message is shown to an operator's terminal: it must not carry a character that
/// reorders, hides or cuts the text around it, nor run on for kilobytes.
fn assert_printable(what: &str, msg: &str) {
    assert!(msg.len() <= 200, "{what}: {} bytes of message", msg.len());
    assert!(
        !hides_text(msg),
        "{what}: raw control or bidi character in {msg:?}"
    );
}

/// A control, zero-width or bidi-override character.
fn hides_text(msg: &str) -> bool {
    msg.chars()
        .any(|c| c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'))
}

#[tokio::test]
async fn unicode_and_overlong_names_are_refused_by_the_admin_api() {
    let h = Harness::start().await;
    h.add_user("alice").await;
    h.add_edge("home").await;
    let admin = h.broker.admin();
    let socket = AdminClient::new(h.broker.admin_socket());
    let before = state(&h).await;

    for (what, name) in bad_names() {
        let user = UserAddRequest {
            name: name.clone(),
            password: PASSWORD.into(),
            admin: false,
        };
        let err = admin.accounts().add(user.clone()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest, "user {what}");
        assert_eq!(err.body().error.message, USER_NAME_RULE, "user {what}");

        // The admin socket (what the binary and any other local client talk to) checks too,
        // not only the binary before it sends.
        match socket.user_add(&user).await {
            Err(AdminError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::BadRequest, "socket user {what}");
                assert_eq!(message, USER_NAME_RULE, "socket user {what}");
            }
            other => panic!("socket user {what}: {other:?}"),
        }

        let edge = EdgeAddRequest {
            name: name.clone(),
            endpoint: "192.0.2.1:51820".into(),
            ..Default::default()
        };
        let err = admin.edges().add(edge.clone()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest, "edge {what}");
        assert_eq!(err.body().error.message, EDGE_NAME_RULE, "edge {what}");
        match socket.edge_add(&edge).await {
            Err(AdminError::Refused { code, .. }) => {
                assert_eq!(code, ErrorCode::BadRequest, "socket edge {what}")
            }
            other => panic!("socket edge {what}: {other:?}"),
        }

        // A grant naming such a user (or edge) cannot find one, since none can be stored; a
        // 400 for the name itself would do as well. Either way nothing is written, and the name
        // comes back escaped, not raw.
        for (user, edge) in [(name.as_str(), "home"), ("alice", name.as_str())] {
            let req = GrantAddRequest {
                user: user.into(),
                edge: edge.into(),
                ..Default::default()
            };
            let err = admin.grants().add(req).await.unwrap_err();
            assert!(
                matches!(err.code(), ErrorCode::NotFound | ErrorCode::BadRequest),
                "grant {what}: {err}"
            );
            let msg = err.body().error.message;
            assert!(
                !hides_text(&msg),
                "grant {what}: raw control or bidi in {msg:?}"
            );
        }
    }
    assert_eq!(state(&h).await, before);
    let users = admin.accounts().list().await.unwrap().users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name, "alice");
    h.shutdown().await;
}

// The binary talks to the admin socket served by this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread")]
async fn unicode_and_overlong_names_from_the_binary_exit_2_and_store_nothing() {
    let h = Harness::start().await;
    h.add_user("alice").await;
    h.add_edge("home").await;
    let data = h.broker.data_dir().to_owned();
    let before = state(&h).await;

    // A NUL cannot be passed in an argument at all (exec takes C strings), so the binary never
    // sees one; the admin API test covers it.
    for (what, name) in bad_names().into_iter().filter(|(_, n)| !n.contains('\0')) {
        let pw = Some("long enough pw\n");
        for (args, stdin, rule) in [
            (
                vec!["user", "add", &name, "--password-stdin", "--json"],
                pw,
                USER_NAME_RULE,
            ),
            (
                vec!["edge", "add", &name, "--endpoint", "192.0.2.1:51820"],
                None,
                EDGE_NAME_RULE,
            ),
            (vec!["grant", "add", &name, "home"], None, USER_NAME_RULE),
            (vec!["grant", "add", "alice", &name], None, EDGE_NAME_RULE),
        ] {
            let out = run(&data, &args, stdin);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what} {:?}: {stderr}",
                &args[..2]
            );
            assert!(out.stdout.is_empty(), "{what}: stdout {:?}", out.stdout);
            // One line: the program, then the rule (what to type instead), never the name.
            let line = stderr.trim_end();
            assert!(
                !line.contains('\n')
                    && line.starts_with("grantwire-broker: ")
                    && line.ends_with(rule),
                "{what} {:?}: {stderr}",
                &args[..2]
            );
            assert_printable(what, line);
        }
    }
    assert_eq!(state(&h).await, before);
    h.shutdown().await;
}

#[tokio::test]
async fn a_huge_unicode_user_name_at_login_is_just_a_wrong_login() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let wrong = h
        .login_raw("alice", "not the password", &code_now(&secret))
        .await;
    assert_eq!(wrong.status(), 401);
    let uniform = wrong.text().await.unwrap();

    // As large as the body limit allows: three bytes a character, the rest of the body small.
    let limit = grantwire_broker::routes::BODY_LIMIT;
    let huge = format!("ålice\u{202e}\u{200d}{}", "名".repeat((limit - 256) / 3));
    let body = json!({"user": huge, "password": PASSWORD, "code": code_now(&secret)});
    let body_len = body.to_string().len();
    assert!(body_len > limit - 300 && body_len < limit, "{body_len}");

    let (counts, audit_len) = state(&h).await;
    for name in [
        huge.as_str(),
        "ålice",
        "a\u{202e}b",
        "a\0b",
        "alice\u{200d}",
    ] {
        let started = Instant::now();
        let resp = h.login_raw(name, PASSWORD, &code_now(&secret)).await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 401, "{} bytes", name.len());
        assert_eq!(resp.text().await.unwrap(), uniform, "{} bytes", name.len());
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // One audit row per attempt, as for any failed login, and nothing else.
    assert_eq!(h.broker.admin().counts().await.unwrap(), counts);
    let audit = h.broker.admin().audit_log().await.unwrap();
    assert_eq!(audit.len(), audit_len + 5);
    for row in &audit[audit_len..] {
        assert_eq!(row.kind, "login_failed");
        // The audit log keeps a bounded prefix of a name that cannot exist.
        let actor = row.actor.as_deref().unwrap();
        assert!(
            actor.chars().count() <= 64,
            "{} chars",
            actor.chars().count()
        );
    }
    assert!(audit[audit_len]
        .actor
        .as_deref()
        .unwrap()
        .starts_with("ålice"));

    // Over the limit: a 413, and not even an audit row.
    let over = json!({"user": "名".repeat(limit / 3 + 1), "password": PASSWORD, "code": "000000"});
    let resp = h.post("/v1/login", None, &over).await;
    expect_error(resp, 413, ErrorCode::PayloadTooLarge).await;
    assert_eq!(state(&h).await, (counts, audit_len + 5));

    // The broker is still up, and none of it counted against alice.
    let next = grantwire_broker::totp::code_at(&secret, now() + 30);
    assert_eq!(h.login_raw("alice", PASSWORD, &next).await.status(), 200);
    h.shutdown().await;
}

// The binary talks to the admin socket served by this runtime while the test blocks on it.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_user_and_edge_names_conflict_and_change_nothing() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    h.enrolled_edge("home").await;
    let admin = h.broker.admin();
    let data = h.broker.data_dir().to_owned();
    let before = state(&h).await;

    let err = admin
        .accounts()
        .add(UserAddRequest {
            name: "alice".into(),
            password: "a different passphrase".into(),
            admin: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(
        err.body().error.message,
        "a user with this name already exists"
    );
    let err = admin
        .edges()
        .add(EdgeAddRequest {
            name: "home".into(),
            endpoint: "198.51.100.1:51820".into(),
            subnet: Some("10.64.0.0/20".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(
        err.body().error.message,
        "an edge with this name already exists"
    );

    // The binary: a conflict is a runtime failure (exit 1), not a usage error.
    let out = run(
        &data,
        &[
            "user",
            "add",
            "alice",
            "--admin",
            "--password-stdin",
            "--json",
        ],
        Some("a different passphrase\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("a user with this name already exists"),
        "{stderr}"
    );
    let args = [
        "edge",
        "add",
        "home",
        "--endpoint",
        "198.51.100.1:51820",
        "--json",
    ];
    let out = run(&data, &args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("an edge with this name already exists"),
        "{stderr}"
    );

    assert_eq!(state(&h).await, before);
    // The originals are untouched: alice keeps her password, TOTP secret and role; home keeps
    // its endpoint, subnet and enrolment.
    let code = code_now(&secret);
    assert_eq!(h.login_raw("alice", PASSWORD, &code).await.status(), 200);
    let users = admin.accounts().list().await.unwrap().users;
    assert!(!users[0].admin);
    let edges = admin.edges().list().await.unwrap().edges;
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].endpoints, ["192.0.2.1:51820"]);
    assert_eq!(edges[0].subnet.to_string(), "10.77.0.0/24");
    assert!(edges[0].enrolled);
    h.shutdown().await;
}

const LEASES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_leases_on_one_edge_all_get_distinct_addresses() {
    let h = Harness::start().await;
    // A /20 holds 4,093 client addresses: room for all of them.
    let subnet: Ipv4Net = "10.64.0.0/20".parse().unwrap();
    let edge = h
        .broker
        .admin()
        .edges()
        .add(EdgeAddRequest {
            name: "home".into(),
            endpoint: "192.0.2.1:51820".into(),
            subnet: Some(subnet),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = json!({"token": edge.enrolment_token, "public_key": keypair().public_key()});
    assert_eq!(h.post("/v1/edge/enrol", None, &body).await.status(), 200);
    let mut tokens = Vec::new();
    for user in ["alice", "bob", "carol", "dave"] {
        tokens.push(h.session(user).await);
        h.grant_max(user, "home", 1000).await;
    }
    let (counts, audit_len) = state(&h).await;

    let url = h.url("/v1/leases");
    let started = Instant::now();
    let tasks: Vec<_> = (0..LEASES)
        .map(|i| {
            let http = h.http.clone();
            let url = url.clone();
            let token = tokens[i % tokens.len()].clone();
            tokio::spawn(async move {
                let body = json!({"edge": "home", "public_key": keypair().public_key()});
                let sent = Instant::now();
                let resp = http.post(url).bearer_auth(token).json(&body).send().await;
                let resp = resp.map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
                Ok::<_, String>((status, text, sent.elapsed()))
            })
        })
        .collect();
    let results = futures_util::future::join_all(tasks).await;
    let took = started.elapsed();

    let mut failures: HashMap<String, usize> = HashMap::new();
    let mut profiles = Vec::new();
    let mut latencies = Vec::new();
    for r in results {
        match r.unwrap() {
            Ok((200, text, t)) => {
                latencies.push(t);
                profiles.push(
                    serde_json::from_str::<LeaseResponse>(&text)
                        .unwrap()
                        .profile,
                );
            }
            Ok((status, text, _)) => *failures.entry(format!("{status} {text}")).or_default() += 1,
            Err(e) => *failures.entry(e).or_default() += 1,
        }
    }
    latencies.sort();
    // For the record: the slowest request is the one nearest the store's lock and pool waits.
    eprintln!(
        "{LEASES} concurrent lease requests took {took:?}; median {:?}, slowest {:?}",
        latencies.get(latencies.len() / 2),
        latencies.last()
    );
    assert!(
        failures.is_empty(),
        "{} of {LEASES} failed: {failures:#?}",
        LEASES - profiles.len()
    );

    let addresses: HashSet<_> = profiles.iter().map(|p| p.address).collect();
    assert_eq!(addresses.len(), LEASES, "an address was handed out twice");
    for a in &addresses {
        assert!(subnet.contains(a), "{a} outside {subnet}");
        assert!(
            ![subnet.network(), subnet.broadcast(), edge.tunnel_address].contains(a),
            "{a} is not a client address"
        );
    }
    let ids: HashSet<_> = profiles.iter().map(|p| p.lease_id.to_string()).collect();
    assert_eq!(ids.len(), LEASES);

    let admin = h.broker.admin();
    let live = admin.leases().list().await.unwrap().leases;
    let live_ids: HashSet<_> = live.iter().map(|l| l.id.clone()).collect();
    assert_eq!(live_ids, ids);
    let after = admin.counts().await.unwrap();
    assert_eq!(after.leases, counts.leases + LEASES as i64);
    let audit = admin.audit_log().await.unwrap();
    let issued: Vec<_> = audit[audit_len..]
        .iter()
        .filter(|r| r.kind == "lease_issued")
        .map(|r| lease_named(r.detail.as_deref()).unwrap())
        .collect();
    assert_eq!(issued.len(), LEASES);
    assert_eq!(issued.into_iter().collect::<HashSet<_>>(), ids);
    // Nothing else was written in the burst (a session touch is not audited).
    assert_eq!(audit.len(), audit_len + LEASES);
    h.shutdown().await;
}

/// The lease id an audit detail names (`lease=l-...`).
fn lease_named(detail: Option<&str>) -> Option<String> {
    detail?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lease="))
        .map(str::to_owned)
}

/// Leases the clients were told about (200s) before the kill.
const BEFORE_KILL: usize = 150;
const STREAMS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_stream_keeps_every_lease_and_its_audit_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = serve(&data, LIFTED);
    let pw = "long enough pw";
    let mut secrets = Vec::new();
    for user in ["alice", "bob"] {
        let args = ["user", "add", user, "--password-stdin", "--json"];
        let added: UserAddResponse = run_json(&data, &args, Some(&format!("{pw}\n")));
        secrets.push(added.totp_secret);
    }
    let args = [
        "edge",
        "add",
        "home",
        "--endpoint",
        "127.0.0.1:51820",
        "--subnet",
        "10.64.0.0/20",
        "--json",
    ];
    let edge: EdgeAddResponse = run_json(&data, &args, None);
    for user in ["alice", "bob"] {
        // Past the default cap of 5 live leases: this test wants hundreds.
        let args = [
            "grant",
            "add",
            user,
            "home",
            "--max-leases",
            "1000",
            "--json",
        ];
        let _: GrantInfo = run_json(&data, &args, None);
    }

    let http = served.http();
    served.enrol(&http, &edge.enrolment_token).await;
    let mut tokens = Vec::new();
    for (user, secret) in ["alice", "bob"].into_iter().zip(&secrets) {
        tokens.push(served.login(&http, user, pw, secret).await);
    }

    // Several streams of lease requests; each stops at its first transport error (the kill).
    let granted = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let streams: Vec<_> = (0..STREAMS)
        .map(|i| {
            let (http, token) = (http.clone(), tokens[i % tokens.len()].clone());
            let url = format!("{}/v1/leases", served.url);
            let (granted, refused) = (granted.clone(), refused.clone());
            tokio::spawn(async move {
                loop {
                    let body = json!({"edge": "home", "public_key": keypair().public_key()});
                    let req = http.post(&url).bearer_auth(&token).json(&body);
                    let Ok(resp) = req.timeout(Duration::from_secs(30)).send().await else {
                        return;
                    };
                    let status = resp.status().as_u16();
                    let Ok(text) = resp.text().await else { return };
                    if status == 200 {
                        let p = serde_json::from_str::<LeaseResponse>(&text)
                            .unwrap()
                            .profile;
                        granted.lock().unwrap().push(p.lease_id.to_string());
                    } else {
                        refused.lock().unwrap().push(format!("{status} {text}"));
                        return;
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while granted.lock().unwrap().len() < BEFORE_KILL {
        assert!(Instant::now() < deadline, "the stream of leases stalled");
        assert!(refused.lock().unwrap().is_empty(), "{refused:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Child::kill is SIGKILL: no handler runs, nothing is flushed or closed.
    served.child.0.kill().unwrap();
    let status = served.child.0.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
    for s in streams {
        s.await.unwrap();
    }
    let refused = refused.lock().unwrap().clone();
    assert!(refused.is_empty(), "refused before the kill: {refused:?}");
    let granted: HashSet<String> = granted.lock().unwrap().iter().cloned().collect();

    // The files exactly as the kill left them (a copy, so the restart below recovers the
    // originals itself): an intact database whose leases and lease_issued rows match.
    let crash = dir.path().join("crash");
    std::fs::create_dir(&crash).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = data.join(format!("broker.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, crash.join(format!("broker.db{suffix}"))).unwrap();
        }
    }
    let (db_leases, db_issued) = inspect_db(&crash.join("broker.db")).await;
    assert_eq!(
        db_leases.len(),
        db_leases.iter().collect::<HashSet<_>>().len()
    );
    let db_leases: HashSet<String> = db_leases.into_iter().collect();
    assert!(
        granted.is_subset(&db_leases),
        "leases the client was given are missing: {:?}",
        granted.difference(&db_leases).collect::<Vec<_>>()
    );
    assert_each_once(&db_issued, &db_leases, "database after the kill");
    eprintln!(
        "killed after {} leases granted; {} in the database ({} committed but unanswered)",
        granted.len(),
        db_leases.len(),
        db_leases.len() - granted.len()
    );

    // Restarted on the same data directory, the broker lists and audits the same leases.
    let mut served = serve(&data, LIFTED);
    let list: LeaseListResponse = run_json(&data, &["lease", "list", "--json"], None);
    let listed: HashSet<String> = list.leases.iter().map(|l| l.id.clone()).collect();
    assert_eq!(listed.len(), list.leases.len());
    assert_eq!(listed, db_leases);
    let addresses: HashSet<_> = list.leases.iter().map(|l| l.tunnel_address).collect();
    assert_eq!(addresses.len(), list.leases.len());
    let audit: AuditResponse = run_json(&data, &["audit", "--json"], None);
    let issued: Vec<String> = audit
        .entries
        .iter()
        .filter(|e| e.kind == "lease_issued")
        .map(|e| lease_named(e.detail.as_deref()).unwrap())
        .collect();
    assert_each_once(&issued, &listed, "audit --json after the restart");

    // And it carries on: the session survived, and the next lease takes a free address.
    let http = http_client(Some(served.fingerprint));
    let body = json!({"edge": "home", "public_key": keypair().public_key()});
    let resp = http
        .post(format!("{}/v1/leases", served.url))
        .bearer_auth(&tokens[0])
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let p = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert!(!addresses.contains(&p.address), "{} reused", p.address);

    let pid = served.child.0.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let status = wait_timeout(&mut served.child.0, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let (db_leases, db_issued) = inspect_db(&data.join("broker.db")).await;
    assert_eq!(db_leases.len(), listed.len() + 1);
    assert_each_once(
        &db_issued,
        &db_leases.into_iter().collect(),
        "final database",
    );
}

/// Runs `PRAGMA integrity_check` and `foreign_key_check` on the database at `path` and returns
/// its lease ids and the lease ids its lease_issued audit rows name.
async fn inspect_db(path: &Path) -> (Vec<String>, Vec<String>) {
    let conn = crate::common::sqlite(path);
    let check: Vec<String> = crate::common::column(&conn, "PRAGMA integrity_check");
    assert_eq!(check, ["ok"], "{}", path.display());
    let orphans: Vec<String> = crate::common::column(&conn, "PRAGMA foreign_key_check");
    assert!(
        orphans.is_empty(),
        "{} rows break a foreign key",
        orphans.len()
    );
    let leases: Vec<String> = crate::common::column(&conn, "SELECT id FROM leases");
    let details: Vec<Option<String>> = crate::common::column(
        &conn,
        "SELECT detail FROM audit WHERE kind = 'lease_issued'",
    );
    drop(conn);
    let issued = details
        .iter()
        .map(|d| lease_named(d.as_deref()).unwrap())
        .collect();
    (leases, issued)
}

/// Every lease has exactly one lease_issued row naming it, and no row names another lease.
fn assert_each_once(issued: &[String], leases: &HashSet<String>, what: &str) {
    let mut seen = HashMap::<&str, usize>::new();
    for id in issued {
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: audited more than once: {twice:?}"
    );
    let audited: HashSet<String> = seen.keys().map(|s| s.to_string()).collect();
    let unaudited: Vec<_> = leases.difference(&audited).collect();
    assert!(
        unaudited.is_empty(),
        "{what}: leases without an audit row: {unaudited:?}"
    );
    let phantom: Vec<_> = audited.difference(leases).collect();
    assert!(
        phantom.is_empty(),
        "{what}: audit rows for no lease: {phantom:?}"
    );
}

/// A TOTP code is good once: the step it was spent at is written with the session, so a broker
/// killed (SIGKILL, nothing flushed on the way out) and started again on the same data refuses
/// the same code, while the password with the next code still works (issue 16, restarts).
#[tokio::test]
async fn a_totp_code_spent_before_a_crash_is_refused_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pw = "long enough pw";
    let mut served = serve(&data, &[]);
    let args = ["user", "add", "alice", "--password-stdin", "--json"];
    let added: UserAddResponse = run_json(&data, &args, Some(&format!("{pw}\n")));
    let secret = data_encoding::BASE32_NOPAD
        .decode(added.totp_secret.as_bytes())
        .unwrap();
    // A code with most of its 30 s ahead, so the replay below falls in the same step.
    while now() % 30 > 20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = grantwire_broker::totp::code_at(&secret, now());
    let login = json!({"user": "alice", "password": pw, "code": code});
    let resp = served
        .http()
        .post(format!("{}/v1/login", served.url))
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the first use of the code");

    served.child.0.kill().unwrap();
    let _ = served.child.0.wait();
    let served = serve(&data, &[]);
    let resp = served
        .http()
        .post(format!("{}/v1/login", served.url))
        .json(&login)
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 401, ErrorCode::Unauthorized).await;
    assert!(!msg.is_empty());
    // The account itself is fine: the next step's code logs in.
    while grantwire_broker::totp::code_at(&secret, now()) == code {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let next = grantwire_broker::totp::code_at(&secret, now());
    let resp = served
        .http()
        .post(format!("{}/v1/login", served.url))
        .json(&json!({"user": "alice", "password": pw, "code": next}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the next code after the restart");
}
