//! `grantwire status EDGE` and `grantwire watch EDGE` against a real broker on loopback.
//!
//! On loopback the broker always sees 127.0.0.1, so a pin that moves is covered end to end in
//! `tests/watch.rs` of the e2e crate, with a real address change in a network namespace. Here:
//! status of a live and of an expired lease, watch renewing a short lease before it ends, riding
//! out a broker that is down (retries with growing delays, then recovery at the same address),
//! ending with exit 3 when the grant is revoked or the session expired, refusing a bad
//! `--every`, and stopping with exit 0 on SIGTERM and SIGINT.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use grantwire_broker::{RunningBroker, ServeConfig};
use grantwire_proto::GrantRevokeRequest;

/// `grantwire watch` running in the background, its stderr in a file; killed on drop (by its
/// own PID only) if the test did not stop it.
struct Watcher {
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watcher {
    fn start(config: &Path, edge: &str, every: &str) -> Watcher {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_grantwire"))
            .arg("--config-dir")
            .arg(config)
            .args(["watch", edge, "--every", every])
            .env_remove("GRANTWIRE_CONFIG_DIR")
            .env_remove("GRANTWIRE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Watcher {
            child,
            stderr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (off the runtime's threads) until the log satisfies `ok`; panics with it if not.
    async fn wait_log(&self, within: Duration, what: &str, ok: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while start.elapsed() < within {
            if ok(&self.log()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} within {within:?}; watch's stderr:\n{}", self.log());
    }

    /// Sends `sig` to the watch process (its PID only) and waits for its exit code.
    async fn signal(&mut self, sig: &str) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-s", sig, &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -s {sig} {pid}");
        self.wait_exit(Duration::from_secs(5)).await
    }

    /// The exit code once the process ends by itself within `within`; panics if it does not.
    async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("watch still runs after {within:?}; stderr:\n{}", self.log());
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Adds `name` with a grant on `home` whose leases last `ttl_secs`; logs in with `config`.
async fn user_with_ttl(broker: &RunningBroker, name: &str, ttl_secs: u64, config: &Path) {
    let secret = add_user_with_grant_ttl(broker, name, Some(ttl_secs)).await;
    login(config, broker, name, &secret).await;
}

/// `grantwire profile home` (to <config>/profiles/home.conf); the lease as whoami lists it.
async fn make_profile(config: &Path) -> serde_json::Value {
    let made = grantwire(config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    whoami_lease(config).await
}

/// The one lease `whoami --json` lists.
async fn whoami_lease(config: &Path) -> serde_json::Value {
    let run = grantwire(config, &["whoami", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let me: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let leases = me["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{me}");
    leases[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_ok_for_a_live_lease_pinned_here_with_json_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    let run = grantwire(&config, &["status", "home"], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no profile for home: run `grantwire profile home`"),
        "{}",
        run.stderr
    );

    login(&config, &broker, "alice", &secret).await;
    let made = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let lease = whoami_lease(&config).await;

    let run = grantwire(&config, &["status", "home"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("pinned to 127.0.0.1/32") && run.stderr.contains("127.0.0.1"),
        "{}",
        run.stderr
    );

    let run = grantwire(&config, &["status", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["edge"], "home", "{v}");
    assert_eq!(v["lease_id"], lease["id"], "{v}");
    assert_eq!(v["pin"], "127.0.0.1/32", "{v}");
    assert_eq!(v["source_ip"], "127.0.0.1", "{v}");
    assert_eq!(v["pinned_here"], true, "{v}");
    assert_eq!(v["expires_at"], lease["expires_at"], "{v}");
    assert_eq!(v["state"], "ok", "{v}");
    // No edge has reported a handshake for this lease.
    assert!(v["last_handshake_at"].is_null(), "{v}");
    assert_eq!(v["tunnel"], "never_connected", "{v}");
    assert_eq!(v.as_object().unwrap().len(), 9, "{v}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_expired_lease_is_refused_saying_when_and_what_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, _) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("bob");
    user_with_ttl(&broker, "bob", 2, &config).await;
    let made = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let lease = whoami_lease(&config).await;
    let expires_at = lease["expires_at"].as_i64().unwrap();
    // Past the expiry by whole seconds on both clocks.
    let wait = u64::try_from(expires_at + 1).unwrap().saturating_sub(now());
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;

    let run = grantwire(&config, &["status", "home"], "").await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let when = grantwire_client_core::time::format_unix_time(expires_at);
    assert!(
        run.stderr.contains(&format!("expired at {when}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("run `grantwire profile home`"),
        "{}",
        run.stderr
    );

    let run = grantwire(&config, &["status", "home", "--json"], "").await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["state"], "expired", "{v}");
    assert_eq!(v["lease_id"], lease["id"], "{v}");
    assert_eq!(v["expires_at"], expires_at, "{v}");
    assert_eq!(v["pinned_here"], false, "{v}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_renews_a_short_lease_before_it_ends_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, _) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("bob");
    // Renewed a third before its end, so every ~7 s with 3 s to spare: a slow renew still
    // comes before the expiry, and the lease never lapses in between.
    const TTL: u64 = 9;
    user_with_ttl(&broker, "bob", TTL, &config).await;
    let first = make_profile(&config).await;
    let file = config.join("profiles/home.conf");
    // As if the file had been written while the edge was registered at another endpoint: the
    // renewed profile's endpoint differs, which a running tunnel would not follow.
    let written = std::fs::read_to_string(&file)
        .unwrap()
        .replace("Endpoint = 192.0.2.1:51820", "Endpoint = 192.0.2.99:51820");
    assert!(written.contains("192.0.2.99"), "{written}");
    std::fs::write(&file, &written).unwrap();

    let mut watch = Watcher::start(&config, "home", "1s");
    let started = Instant::now();
    watch
        .wait_log(Duration::from_secs(4 * TTL), "two renewals", |log| {
            log.matches("lease renewed until").count() >= 2
        })
        .await;
    // Not at every check: the first when under 3 s are left (~7 s in), the next ~7 s later.
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "renewed twice within {:?}, too eagerly:\n{}",
        started.elapsed(),
        watch.log()
    );
    let now_lease = whoami_lease(&config).await;
    assert_eq!(now_lease["id"], first["id"], "the same lease is renewed");
    assert!(
        now_lease["expires_at"].as_i64() > first["expires_at"].as_i64(),
        "{first} then {now_lease}"
    );
    // The lease never lapsed: each renewal came before the expiry it replaced.
    let status = grantwire(&config, &["status", "home"], "").await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let rewritten = std::fs::read_to_string(&file).unwrap();
    assert_ne!(rewritten, written, "the wg-quick file is rewritten");
    let key = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("PrivateKey"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(key(&rewritten), key(&written), "with the same key");
    let log = watch.log();
    assert!(
        !log.contains(&key(&written)[13..]),
        "the key is never shown:\n{log}"
    );
    let moved = "WARNING: the edge's endpoint is now 192.0.2.1:51820 (was 192.0.2.99:51820): \
                 run `grantwire up home` again";
    assert_eq!(log.matches(moved).count(), 1, "warned once:\n{log}");
    assert_eq!(log.matches("WARNING").count(), 1, "{log}");
    let audit = broker.admin().audit_log().await.unwrap();
    let renewals = audit.iter().filter(|e| e.kind == "lease_renewed").count();
    assert!(
        renewals >= 2,
        "{renewals} renewals in the audit log:\n{log}"
    );

    assert_eq!(watch.signal("TERM").await, Some(0), "{}", watch.log());
    assert!(watch.log().contains("stopped (SIGTERM)"), "{}", watch.log());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_retries_with_growing_delays_while_the_broker_is_down_then_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("broker");
    let (broker, secret) = broker_with_alice(&data).await;
    let addr = broker.addr();
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    make_profile(&config).await;

    let mut watch = Watcher::start(&config, "home", "1s");
    watch
        .wait_log(Duration::from_secs(5), "the watch starting", |log| {
            log.contains("watching lease")
        })
        .await;
    broker.shutdown().await.unwrap();
    watch
        .wait_log(
            Duration::from_secs(15),
            "retries after 1, 2 and 4 s",
            |log| {
                ["retrying in 1s", "retrying in 2s", "retrying in 4s"]
                    .iter()
                    .all(|r| log.contains(r))
            },
        )
        .await;
    let log = watch.log();
    assert!(log.contains("cannot reach the broker"), "{log}");
    let at = |r: &str| log.find(r).unwrap();
    assert!(
        at("retrying in 1s") < at("retrying in 2s") && at("retrying in 2s") < at("retrying in 4s"),
        "{log}"
    );
    assert_eq!(watch.child.try_wait().unwrap(), None, "watch keeps running");

    // Something else answers at the broker's address with another certificate (a captive
    // portal, or an attacker): the pin refuses it before anything is sent, and watch waits.
    let mut other = ServeConfig::for_tests(tmp.path().join("other"));
    other.listen = addr;
    let other = grantwire_broker::start(other).await.unwrap();
    let presented = other.fingerprint().to_owned();
    watch
        .wait_log(
            Duration::from_secs(15),
            "the other certificate refused",
            |log| log.contains(&presented) && log.contains("intercepting"),
        )
        .await;
    assert_eq!(watch.child.try_wait().unwrap(), None, "watch keeps running");
    other.shutdown().await.unwrap();

    // The same broker (data dir, certificate, session) comes back at the same address.
    let mut again = ServeConfig::for_tests(&data);
    again.listen = addr;
    let broker = grantwire_broker::start(again).await.unwrap();
    watch
        .wait_log(Duration::from_secs(15), "recovery", |log| {
            log.contains("the broker answers again")
        })
        .await;
    assert_eq!(watch.signal("INT").await, Some(0), "{}", watch.log());
    assert!(watch.log().contains("stopped (SIGINT)"), "{}", watch.log());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_with_exit_3_when_the_grant_is_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    make_profile(&config).await;

    let mut watch = Watcher::start(&config, "home", "1s");
    watch
        .wait_log(Duration::from_secs(5), "the watch starting", |log| {
            log.contains("watching lease")
        })
        .await;
    broker
        .admin()
        .grants()
        .revoke(GrantRevokeRequest {
            user: "alice".into(),
            edge: "home".into(),
        })
        .await
        .unwrap();
    assert_eq!(watch.wait_exit(Duration::from_secs(10)).await, Some(3));
    let log = watch.log();
    assert!(log.contains("is gone"), "{log}");
    assert!(log.contains("run `grantwire profile home`"), "{log}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_an_expired_session_exits_3_saying_to_log_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    make_profile(&config).await;
    let path = config.join("session.json");
    let mut session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    session["expires_at"] = 1000.into();
    std::fs::write(&path, serde_json::to_vec(&session).unwrap()).unwrap();

    let mut watch = Watcher::start(&config, "home", "1s");
    assert_eq!(watch.wait_exit(Duration::from_secs(10)).await, Some(3));
    assert!(watch.log().contains("`grantwire login`"), "{}", watch.log());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refuses_a_bad_every_and_needs_a_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("nobody");
    for bad in ["0", "0s", "500ms", "soon"] {
        let run = grantwire(&config, &["watch", "home", "--every", bad], "").await;
        assert_eq!(run.code, Some(2), "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--every"), "{bad}: {}", run.stderr);
    }
    let run = grantwire(&config, &["watch", "home"], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no profile for home: run `grantwire profile home`"),
        "{}",
        run.stderr
    );
}
