//! A broker that answers with fields out of shape: nothing it sends reaches a wg-quick file.
//!
//! The stand-in here is a small HTTPS server (its own self-signed certificate, pinned by the
//! session written for it) that answers a lease, a renewal and `whoami` with one hostile field
//! at a time: an endpoint carrying a `PostUp` line, an edge name with a newline, `/` or `..`,
//! a lease id or Plex URL with a newline, keys and addresses that do not parse. `grantwire
//! profile` and `grantwire up` must fail (exit 1: a broker answer that does not parse is a
//! runtime failure, not a refusal) saying which field, write nothing, and never start the
//! stand-in `wg-quick`, which would run the file's `PostUp` lines as the real one does.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use grantwire_client_core::{Fingerprint, PrivateKey, Session, SessionStore};
use serde_json::{json, Value};

/// A profile the real broker could send; each case spoils one field of it.
fn good_profile() -> Value {
    json!({
        "lease_id": "l-0123456789abcdef",
        "edge": "home",
        "address": "10.77.0.2",
        "edge_public_key": PrivateKey::from_random_bytes([1; 32]).public_key().to_base64(),
        "endpoint": "192.0.2.1:51820",
        "allowed_ips": ["10.77.0.1/32"],
        "preshared_key": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
        "persistent_keepalive": 25,
        "plex_url": "http://10.77.0.1:32400/web",
        "pin": "127.0.0.1/32",
        "expires_at": now() as i64 + 8 * 3600,
    })
}

/// `(field, value, what the error names)`; `{pwned}` is replaced by a file the injected
/// command would create.
fn hostile_fields() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "endpoint",
            json!("203.0.113.5:51820\nPostUp = touch {pwned}"),
            "endpoint",
        ),
        ("edge", json!("home\nPostUp = touch {pwned}"), "name"),
        ("edge", json!("../../etc"), "name"),
        ("edge", json!("a/b"), "name"),
        ("edge", json!(".."), "name"),
        ("lease_id", json!("l-1\nPostUp = touch {pwned}"), "lease id"),
        (
            "plex_url",
            json!("http://10.77.0.1:32400/web\nPostUp = touch {pwned}"),
            "Plex URL",
        ),
        ("edge_public_key", json!("AAAA\nPostUp = touch {pwned}"), ""),
        ("preshared_key", json!("not a key"), ""),
        ("address", json!("10.77.0.2/32\nPostUp = touch {pwned}"), ""),
        ("allowed_ips", json!(["10.77.0.1/32\nPostUp = x"]), ""),
        ("pin", json!("127.0.0.1/32\nPostUp = touch {pwned}"), ""),
    ]
}

/// What the stand-in answers: the lease (and renewal) answer, and `whoami`'s.
#[derive(Clone)]
struct Answers {
    profile: Value,
    whoami: Value,
    leases: Value,
}

struct StandIn {
    url: String,
    fingerprint: Fingerprint,
    handle: axum_server::Handle,
}

async fn stand_in(answers: Answers) -> StandIn {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let fingerprint = Fingerprint::of_der(cert.cert.der());
    let identity = grantwire_broker::tls::server_identity(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let (lease, renewal, whoami, list) = (
        answers.profile.clone(),
        answers.profile.clone(),
        answers.whoami.clone(),
        answers.leases.clone(),
    );
    let app = Router::new()
        .route(
            "/v1/leases",
            post(move || async move { Json(json!({ "profile": lease })) })
                .get(move || async move { Json(list) }),
        )
        .route(
            "/v1/leases/{id}/renew",
            post(move || async move { Json(json!({ "profile": renewal })) }),
        )
        .route("/v1/whoami", get(move || async move { Json(whoami) }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(identity.config))
        .handle(handle.clone())
        .serve(app.into_make_service());
    tokio::spawn(server);
    StandIn {
        url: format!("https://{addr}/"),
        fingerprint,
        handle,
    }
}

/// A config directory logged in to `broker`, and (for `up`) a lease kept for edge `home`
/// whose profile file was never written, so `up` must ask the broker.
fn config_for(dir: &Path, broker: &StandIn) -> PathBuf {
    let config = dir.join("config");
    SessionStore::new(&config)
        .save(&Session {
            broker_url: broker.url.clone(),
            fingerprint: Some(broker.fingerprint),
            user: "alice".into(),
            token: "t".repeat(43),
            expires_at: now() as i64 + 3600,
        })
        .unwrap();
    config
}

fn keep_lease(config: &Path) {
    let key = PrivateKey::from_random_bytes([5; 32]).to_base64();
    let kept = json!({ "version": 1, "lease_id": "l-0123456789abcdef", "private_key": key });
    std::fs::create_dir_all(config.join("profiles")).unwrap();
    std::fs::write(config.join("profiles/home.json"), kept.to_string()).unwrap();
}

/// A `wg-quick` that logs its call and, like the real one, runs the file's `PostUp` lines.
fn fake_wg_quick(dir: &Path, log: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("wg-quick");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nsed -n 's/^PostUp = //p' \"$2\" | sh\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn with_pwned(value: &Value, pwned: &Path) -> Value {
    let text = value
        .to_string()
        .replace("{pwned}", pwned.to_str().unwrap());
    serde_json::from_str(&text).unwrap()
}

async fn run_up(config: &Path, bin: &Path, wg_dir: &Path) -> Run {
    let argv = vec![
        "--config-dir".to_owned(),
        config.display().to_string(),
        "up".into(),
        "home".into(),
        "--wg-dir".into(),
        wg_dir.display().to_string(),
    ];
    let path_env = bin.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_grantwire"))
            .args(&argv)
            .env_clear()
            .env("PATH", path_env)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_answer_with_any_field_out_of_shape_is_refused_and_nothing_is_written() {
    for (field, value, names) in hostile_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let pwned = tmp.path().join("pwned");
        let mut profile = good_profile();
        profile[field] = with_pwned(&value, &pwned);
        let whoami = json!({ "user": "alice", "source_ip": "127.0.0.1", "leases": [] });
        let broker = stand_in(Answers {
            profile,
            whoami,
            leases: json!({ "leases": [] }),
        })
        .await;
        let config = config_for(tmp.path(), &broker);
        let before = files_under(&config);

        let run = grantwire(&config, &["profile", "home"], "").await;
        let case = format!("{field} = {value}: {}", run.stderr);
        assert_eq!(run.code, Some(1), "{case}");
        assert!(run.stderr.contains("does not parse"), "{case}");
        assert!(run.stderr.contains(names), "{case}");
        assert_eq!(run.stderr.lines().count(), 1, "one line, escaped: {case}");
        // Only the request's key is kept (0600), for a retry: an answer that does not parse
        // may stand for a lease the broker made.
        let mut after = files_under(&config);
        after.retain(|f| f != "profiles/home.pending");
        assert_eq!(after, before, "{case}");

        // `up`: the kept lease is not listed, so it renews and gets the same answer.
        keep_lease(&config);
        let before = files_under(&config);
        let log = tmp.path().join("wg-quick.log");
        let bin = fake_wg_quick(&tmp.path().join("bin"), &log);
        let wg_dir = tmp.path().join("wg");
        std::fs::create_dir(&wg_dir).unwrap();
        let run = run_up(&config, &bin, &wg_dir).await;
        let case = format!("up: {field} = {value}: {}", run.stderr);
        assert_eq!(run.code, Some(1), "{case}");
        assert!(run.stderr.contains("does not parse"), "{case}");
        assert!(!log.exists(), "wg-quick never runs: {case}");
        assert!(files_under(&wg_dir).is_empty(), "{case}");
        assert_eq!(files_under(&config), before, "{case}");
        assert!(!pwned.exists(), "{case}");
        broker.handle.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whoami_answer_with_a_hostile_lease_id_or_edge_stops_up() {
    for (field, value) in [
        ("id", "l-0123456789abcdef\nPostUp = touch {pwned}"),
        ("edge", "home\nPostUp = touch {pwned}"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let pwned = tmp.path().join("pwned");
        let mut lease = json!({
            "id": "l-0123456789abcdef",
            "edge": "home",
            "pin": "127.0.0.1/32",
            "pinned_here": true,
            "expires_at": now() as i64 + 3600,
        });
        lease[field] = with_pwned(&json!(value), &pwned);
        let whoami = json!({ "user": "alice", "source_ip": "127.0.0.1", "leases": [lease] });
        let broker = stand_in(Answers {
            profile: good_profile(),
            whoami,
            leases: json!({ "leases": [] }),
        })
        .await;
        let config = config_for(tmp.path(), &broker);
        keep_lease(&config);
        let before = files_under(&config);
        let log = tmp.path().join("wg-quick.log");
        let bin = fake_wg_quick(&tmp.path().join("bin"), &log);
        let wg_dir = tmp.path().join("wg");
        std::fs::create_dir(&wg_dir).unwrap();
        let run = run_up(&config, &bin, &wg_dir).await;
        let case = format!("{field} = {value:?}: {}", run.stderr);
        assert_eq!(run.code, Some(1), "{case}");
        assert!(run.stderr.contains("does not parse"), "{case}");
        assert!(!log.exists(), "{case}");
        assert!(files_under(&wg_dir).is_empty(), "{case}");
        assert_eq!(files_under(&config), before, "{case}");
        assert!(!pwned.exists(), "{case}");
        broker.handle.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_list_with_a_hostile_id_or_edge_is_refused() {
    for (field, value) in [
        ("id", "l-1\n2026-12-07 login_ok"),
        ("edge", "home\u{1b}[2J"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut lease = json!({
            "id": "l-0123456789abcdef",
            "user": "alice",
            "edge": "home",
            "tunnel_address": "10.77.0.2",
            "pin": "127.0.0.1/32",
            "public_key": PrivateKey::from_random_bytes([3; 32]).public_key().to_base64(),
            "created_at": 1_700_000_000,
            "expires_at": now() as i64 + 3600,
        });
        lease[field] = json!(value);
        let broker = stand_in(Answers {
            profile: good_profile(),
            whoami: json!({}),
            leases: json!({ "leases": [lease] }),
        })
        .await;
        let config = config_for(tmp.path(), &broker);
        let run = grantwire(&config, &["leases"], "").await;
        let case = format!("{field} = {value:?}: {}", run.stderr);
        assert_eq!(run.code, Some(1), "{case}");
        assert!(run.stderr.contains("does not parse"), "{case}");
        assert!(!run.stderr.contains('\u{1b}'), "{case}");
        assert_eq!(run.stderr.lines().count(), 1, "{case}");
        broker.handle.shutdown();
    }
}
