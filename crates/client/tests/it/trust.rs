//! Broker trust like SSH's, against two real brokers that take turns at one address, each with
//! its own self-signed certificate: a fingerprint accepted once is remembered (0600), and when
//! the broker at that address presents another certificate every command refuses, exit 3,
//! naming both fingerprints, before any password or token is sent.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use grantwire_broker::ServeConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_is_refused_naming_both_fingerprints() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("client");
    let (first, secret) = broker_with_alice(&tmp.path().join("first")).await;
    let url = first.url();
    let addr = first.addr();
    let old = first.fingerprint().to_owned();

    login(&config, &first, "alice", &secret).await;
    let known: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.join("known_brokers.json")).unwrap()).unwrap();
    assert_eq!(known["brokers"][format!("{url}/")], old.as_str(), "{known}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(config.join("known_brokers.json")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    // A known broker needs no --fingerprint, even off a terminal.
    let code = grantwire_broker::totp::code_at(&secret, now() + 30);
    let args = [
        "login",
        "--broker",
        &url,
        "--user",
        "alice",
        "--password-stdin",
        "--totp",
        &code,
    ];
    let run = grantwire(&config, &args, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    // Another broker, with a certificate of its own, now answers at the same address.
    first.shutdown().await.unwrap();
    let mut second_config = ServeConfig::for_tests(tmp.path().join("second"));
    second_config.listen = addr;
    let (second, second_secret) = broker_with_alice_at(second_config).await;
    let new = second.fingerprint().to_owned();
    assert_ne!(old, new);
    let refused = |run: &Run| {
        assert_eq!(run.code, Some(3), "{}", run.stderr);
        assert!(
            run.stderr.contains(&old),
            "names the trusted one: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&new),
            "names the presented one: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("--fingerprint {new}")),
            "{}",
            run.stderr
        );
    };

    // Every command with the stored session refuses; so does a login without --fingerprint,
    // before the password is read.
    for args in [
        &["whoami"][..],
        &["leases"],
        &["profile", "home"],
        &["revoke", "l-1"],
    ] {
        refused(&grantwire(&config, args, "").await);
    }
    let code = grantwire_broker::totp::code_at(&second_secret, now());
    let args = [
        "login",
        "--broker",
        &url,
        "--user",
        "alice",
        "--password-stdin",
        "--totp",
        &code,
    ];
    let run = grantwire(&config, &args, &format!("{PASSWORD}\n")).await;
    refused(&run);
    assert!(run.stderr.contains("CHANGED"), "{}", run.stderr);
    assert_eq!(second.admin().counts().await.unwrap().sessions, 0);

    // The person confirms the new certificate with --fingerprint: trusted from then on.
    let mut args = args.to_vec();
    args.extend(["--fingerprint", &new]);
    let run = grantwire(&config, &args, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(&old) && run.stderr.contains(&new),
        "{}",
        run.stderr
    );
    let run = grantwire(&config, &["whoami"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let known = std::fs::read_to_string(config.join("known_brokers.json")).unwrap();
    assert!(known.contains(&new) && !known.contains(&old), "{known}");
    second.shutdown().await.unwrap();
}

/// A broker pinned by its key's fingerprint (what a broker with ACME certificates announces,
/// and what a self-signed certificate's key matches too) is known: the next login needs no
/// `--fingerprint`, and the key pin is what stays stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_pinned_by_its_key_is_known_at_the_next_login() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("client");
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    use rustls::pki_types::pem::PemObject as _;
    let cert_pem = std::fs::read(broker.data_dir().join("tls-cert.pem")).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&cert_pem).unwrap();
    let key_pin = grantwire_client_core::Fingerprint::of_key_in(der.as_ref())
        .unwrap()
        .to_string();
    assert_ne!(key_pin, broker.fingerprint());

    let url = broker.url();
    let login = |code: String, pin: Option<String>| {
        let mut args = vec![
            "login".to_owned(),
            "--broker".into(),
            url.clone(),
            "--user".into(),
            "alice".into(),
            "--password-stdin".into(),
            "--totp".into(),
            code,
        ];
        if let Some(pin) = pin {
            args.extend(["--fingerprint".to_owned(), pin]);
        }
        args
    };
    let first = login(
        grantwire_broker::totp::code_at(&secret, now()),
        Some(key_pin.clone()),
    );
    let run = grantwire(&config, &first, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let second = login(grantwire_broker::totp::code_at(&secret, now() + 30), None);
    let run = grantwire(&config, &second, &format!("{PASSWORD}\n")).await;
    assert_eq!(
        run.code,
        Some(0),
        "a key pin must match the certificate it is the key of: {}",
        run.stderr
    );
    let known: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.join("known_brokers.json")).unwrap()).unwrap();
    assert_eq!(
        known["brokers"][format!("{url}/")],
        key_pin.as_str(),
        "{known}"
    );
    broker.shutdown().await.unwrap();
}
