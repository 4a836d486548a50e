//! `serve --acme-domain` without a CA to talk to: what is refused before anything starts, what
//! a broker serves while it has no certificate yet, and how a failed issuance is audited and
//! alerted. The issuance and renewal against a real CA are the end-to-end test
//! (tests/it/acme.rs, with Pebble).

use std::time::{Duration, Instant};

use grantwire_broker::acme::AcmeConfig;
use grantwire_broker::alerts;

use crate::common::Harness;

#[tokio::test]
async fn the_binary_refuses_bad_acme_settings_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases: &[(&[&str], &str)] = &[
        (&["--acme-domain", "localhost"], "not a DNS name"),
        (&["--acme-domain", "192.0.2.1"], "--acme-domain"),
        (&["--acme-domain", "bro ker.example.org"], "not a DNS name"),
        (
            &[
                "--acme-domain",
                "broker.example.org",
                "--acme-email",
                "nobody",
            ],
            "not an email address",
        ),
        (
            &[
                "--acme-domain",
                "broker.example.org",
                "--acme-directory",
                "http://acme.example.org/dir",
            ],
            "https://",
        ),
        // The two ways of getting a certificate exclude each other (clap's usage error).
        (
            &[
                "--acme-domain",
                "broker.example.org",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
            "cannot be used with",
        ),
        // ACME settings without a domain.
        (&["--acme-email", "owner@example.org"], "--acme-domain"),
    ];
    for (args, says) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_grantwire-broker"))
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} must say {says:?}: {stderr}"
        );
        assert!(!data.exists(), "{args:?}: a refused start wrote nothing");
    }
}

/// A broker whose CA does not answer: no certificate to present, so no handshake completes
/// (rather than one with some stand-in certificate), the pin is the key's from the start, and
/// each failed attempt is audited, with one alert for the lot.
#[tokio::test]
async fn without_its_first_certificate_the_broker_presents_none_and_alerts() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let acme = AcmeConfig {
        domain: "broker.example.org".into(),
        email: None,
        directory: format!("https://127.0.0.1:{port}/dir"),
        directory_ca: None,
    };
    let h = Harness::with_config(|c| c.acme = Some(acme)).await;
    let data = h.broker.data_dir().to_owned();
    let written = std::fs::read_to_string(data.join("tls-cert.sha256")).unwrap();
    assert_eq!(written.trim(), h.broker.fingerprint());
    let key_pem = std::fs::read_to_string(data.join("tls-key.pem")).unwrap();
    let key = rcgen_key_pin(&key_pem);
    assert_eq!(
        h.broker.fingerprint(),
        key,
        "the announced pin is the key's"
    );

    let err = h.http.get(h.url("/welcome")).send().await.unwrap_err();
    assert!(err.is_connect(), "no certificate, no connection: {err:?}");

    // The first attempt fails at once and is audited; the next is tens of seconds away, so a
    // second failure is recorded here as the retry records it: still one alert.
    let end = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows: Vec<_> = h
            .broker
            .admin()
            .audit_log()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == "tls_renewal_failed")
            .collect();
        if !rows.is_empty() || Instant::now() > end {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rows.len(), 1, "the failed attempt audited: {rows:?}");
    let detail = rows[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("broker.example.org") && detail.contains("failures=1"),
        "{detail}"
    );
    h.broker
        .admin()
        .audit()
        .tls_event(
            "tls_renewal_failed",
            "domain=broker.example.org failures=2".into(),
        )
        .await
        .unwrap();
    h.broker
        .admin()
        .audit()
        .tls_event("tls_certificate_issued", "domain=broker.example.org".into())
        .await
        .unwrap();
    let alerted: Vec<_> = alerts::list(h.broker.admin().db())
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "tls_renewal_failed")
        .collect();
    assert_eq!(alerted.len(), 1, "one alert per 15 minutes: {alerted:?}");
    let all = alerts::list(h.broker.admin().db()).await.unwrap();
    assert!(
        all.iter().all(|a| a.kind != "tls_certificate_issued"),
        "an issued certificate is no alert: {all:?}"
    );
    assert!(!data.join("acme-cert.pem").exists());
    h.broker.shutdown().await.unwrap();
}

fn rcgen_key_pin(pem: &str) -> String {
    let key = rcgen::KeyPair::from_pem(pem).expect("tls-key.pem is a PEM key");
    grantwire_pinned_tls::Fingerprint::of_der(&key.public_key_der()).to_string()
}
