//! The `grantwire` binary against a real broker, started in-process on an ephemeral port with a
//! temporary SQLite file and its own self-signed certificate: login, profiles, and each way the
//! broker or the TLS pin can say no, with the exit codes of the contract.

// A test crate: its setup helpers should panic on failure just like the tests themselves
// (clippy's allow-unwrap-in-tests covers only `#[test]` functions).
#![allow(clippy::unwrap_used)]

use crate::common::*;
use grantwire_proto::GrantRevokeRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_profiles_against_a_real_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("client");
    let url = broker.url();
    let fp = broker.fingerprint().to_owned();
    let code = || grantwire_broker::totp::code_at(&secret, now());
    let login = |fingerprint: Option<&str>, extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "login",
            "--broker",
            &url,
            "--user",
            "alice",
            "--password-stdin",
        ];
        if let Some(fp) = fingerprint {
            args.extend(["--fingerprint", fp]);
        }
        args.iter().chain(extra).map(ToString::to_string).collect()
    };
    let password_line = format!("{PASSWORD}\n");

    // Without a pin the self-signed certificate is refused, and the message says what to pass.
    let args = login(None, &["--totp", &code()]);
    // Not at a terminal, nobody can accept its fingerprint: refused, exit 3, naming it.
    let run = grantwire(&config, &args, &password_line).await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("--fingerprint {fp}")),
        "{}",
        run.stderr
    );
    assert!(!config.join("known_brokers.json").exists());

    // A wrong pin: the handshake fails before any secret is sent.
    let args = login(Some(&"00".repeat(32)), &["--totp", &code()]);
    let run = grantwire(&config, &args, &password_line).await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("does not match the pinned fingerprint"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&fp), "{}", run.stderr);

    // Wrong password: refused, exit 3, nothing stored.
    let args = login(Some(&fp), &["--totp", &code()]);
    let run = grantwire(&config, &args, "wrong password\n").await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("grantwire: login refused"),
        "{}",
        run.stderr
    );
    assert!(!config.join("session.json").exists());

    // The right password and code, the TOTP code piped after the password.
    let args = login(Some(&fp), &["--json"]);
    let run = grantwire(&config, &args, &format!("{PASSWORD}\n{}\n", code())).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["user"], "alice");
    assert_eq!(json["broker"], format!("{url}/"));
    assert!(json["expires_at"].as_i64().unwrap() > now() as i64);
    assert!(!run.stderr.contains(PASSWORD));

    // The default profile: written 0600 under the config dir, with the key made here.
    let run = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let path = config.join("profiles/home.conf");
    assert!(
        run.stderr.contains(&path.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Plex on the tunnel: http://10.77.0.1:32400/web"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("127.0.0.1/32"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let private = private_key_in(&text);
    let leases = broker.admin().leases().list().await.unwrap().leases;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].public_key, private.public_key());
    assert!(!run.stderr.contains(&private.to_base64()));

    // --json and --qr: each its own lease and key.
    let run = grantwire(&config, &["profile", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["profile"]["edge"], "home");
    assert!(json["path"].is_null());
    assert!(json["wg_quick"].as_str().unwrap().contains("[Peer]"));
    let out = tmp.path().join("out/gw-home.conf");
    let out_arg = out.display().to_string();
    let run = grantwire(&config, &["profile", "home", "--qr", "--out", &out_arg], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains('\u{2588}'));
    assert!(out.exists());

    // Unknown edge: exit 1. No grant: exit 3.
    let run = grantwire(&config, &["profile", "attic"], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("attic"), "{}", run.stderr);
    broker
        .admin()
        .grants()
        .revoke(GrantRevokeRequest {
            user: "alice".into(),
            edge: "home".into(),
        })
        .await
        .unwrap();
    let run = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("no grant"), "{}", run.stderr);

    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_on_the_broker_and_here() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("client");
    let code = grantwire_broker::totp::code_at(&secret, now());
    let args = login_args(&broker, "alice", &code);
    let run = grantwire(&config, &args, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(broker.admin().counts().await.unwrap().sessions, 1);
    let session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.join("session.json")).unwrap()).unwrap();
    let token = session["token"].as_str().unwrap().to_owned();

    let run = grantwire(&config, &["logout", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), r#"{"logged_out":true}"#);
    assert!(!config.join("session.json").exists());
    assert_eq!(broker.admin().counts().await.unwrap().sessions, 0);
    // The token is dead on the broker, not just forgotten here.
    assert!(broker.admin().sessions().user_of(&token).await.is_err());

    let run = grantwire(&config, &["logout", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), r#"{"logged_out":false}"#);
    broker.shutdown().await.unwrap();
}

/// The value of the first `KEY = ` line of a wg-quick file.
fn conf_value(text: &str, key: &str) -> String {
    let prefix = format!("{key} = ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_and_renew_keep_the_key_and_move_the_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("client");

    // Nothing to renew yet: a plain runtime failure that says what to run.
    let run = grantwire(&config, &["renew", "home"], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no profile for home: run `grantwire profile home`"),
        "{}",
        run.stderr
    );

    let code = grantwire_broker::totp::code_at(&secret, now());
    let args = login_args(&broker, "alice", &code);
    let run = grantwire(&config, &args, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let run = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let conf = config.join("profiles/home.conf");
    let first = std::fs::read_to_string(&conf).unwrap();
    let key = conf_value(&first, "PrivateKey");
    assert!(!run.stderr.contains(&key));

    // The lease is remembered beside the profile, 0600, with the key made here.
    let stored_path = config.join("profiles/home.json");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stored_path).unwrap()).unwrap();
    assert_eq!(stored["private_key"], key.as_str());
    assert_eq!(stored["path"], conf.display().to_string());
    let lease_id = stored["lease_id"].as_str().unwrap().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&stored_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    // whoami: the broker sees the loopback address, and the lease is pinned to it.
    let run = grantwire(&config, &["whoami", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let me: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["source_ip"], "127.0.0.1");
    let leases = me["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{me}");
    assert_eq!(leases[0]["id"], lease_id.as_str());
    assert_eq!(leases[0]["edge"], "home");
    assert_eq!(leases[0]["pinned_here"], true);
    let first_expiry = leases[0]["expires_at"].as_i64().unwrap();
    let run = grantwire(&config, &["whoami"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("127.0.0.1"), "{}", run.stderr);
    assert!(
        run.stderr.contains("home: pin 127.0.0.1/32 (pinned here)"),
        "{}",
        run.stderr
    );

    // Renew a second later: the same file, key and address, a later expiry.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let run = grantwire(&config, &["renew", "home"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("127.0.0.1/32"), "{}", run.stderr);
    assert!(!run.stderr.contains(&key));
    assert!(run.stdout.is_empty());
    let renewed = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(conf_value(&renewed, "PrivateKey"), key);
    assert_eq!(
        conf_value(&renewed, "Address"),
        conf_value(&first, "Address")
    );
    assert_ne!(renewed, first);
    let run = grantwire(&config, &["whoami", "--json"], "").await;
    let me: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(me["leases"][0]["id"], lease_id.as_str());
    assert!(me["leases"][0]["expires_at"].as_i64().unwrap() > first_expiry);

    // --json: the profile and the file it rewrote.
    let run = grantwire(&config, &["renew", "home", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["profile"]["lease_id"], lease_id.as_str());
    assert_eq!(json["path"], conf.display().to_string());
    assert!(json["wg_quick"].as_str().unwrap().contains(&key));

    // The grant revoked: the lease is gone, exit 3, and the message says what to run.
    broker
        .admin()
        .grants()
        .revoke(GrantRevokeRequest {
            user: "alice".into(),
            edge: "home".into(),
        })
        .await
        .unwrap();
    let run = grantwire(&config, &["renew", "home"], "").await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("run `grantwire profile home`"),
        "{}",
        run.stderr
    );

    broker.shutdown().await.unwrap();
}
