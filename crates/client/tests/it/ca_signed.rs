//! A broker whose certificate a CA signed needs no fingerprint: `probe` says so without asking
//! anyone, and login works with no pin, trusting the CA alone. The tests have no publicly
//! trusted certificate, so a private CA made here stands in for the public ones: the same
//! client code runs with that CA as its only root. Against the public roots (what the CLI
//! uses) the same broker is unknown and is offered by fingerprint instead.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::common::*;
use grantwire_broker::ServeConfig;
use grantwire_client_core::{BrokerClient, BrokerTrust, ErrorKind, Fingerprint, KnownBrokers};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::RootCertStore;

/// A CA, and a certificate it signed for 127.0.0.1 written as PEM files into `dir`. Returns
/// the root store holding only that CA, and the two file paths.
fn private_ca(
    dir: &std::path::Path,
) -> (Arc<RootCertStore>, std::path::PathBuf, std::path::PathBuf) {
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "grantwire test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();

    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();

    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    std::fs::write(&cert, leaf_cert.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    (Arc::new(roots), cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_signed_broker_needs_no_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let (roots, cert, key) = private_ca(&tmp.path().join("pki"));
    let mut config = ServeConfig::for_tests(tmp.path().join("broker"));
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    let (broker, secret) = broker_with_alice_at(config).await;
    let url = broker.url();

    // Trusted by its CA: nothing to ask, nothing to pin.
    let trust = BrokerClient::probe_with_roots(&url, roots.clone())
        .await
        .unwrap();
    assert!(matches!(trust, BrokerTrust::CaSigned), "{trust:?}");

    let client = BrokerClient::with_roots(&url, None, roots.clone()).unwrap();
    let code = grantwire_broker::totp::code_at(&secret, now());
    let session = client.login("alice", PASSWORD, &code).await.unwrap();
    assert_eq!(
        session.fingerprint, None,
        "a CA-signed broker is not pinned"
    );
    let me = client.whoami(&session).await.unwrap();
    assert_eq!(me.user, "alice");

    // The CA is what made it trusted: with the public roots the same broker is offered by its
    // fingerprint, and an unpinned client refuses it before sending anything.
    match BrokerClient::probe(&url).await.unwrap() {
        BrokerTrust::Fingerprint(fp) => assert_eq!(fp.to_string(), broker.fingerprint()),
        other => panic!("{other:?}"),
    }
    let code = grantwire_broker::totp::code_at(&secret, now() + 30);
    let err = BrokerClient::new(&url, None)
        .unwrap()
        .login("alice", PASSWORD, &code)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trust, "{err:?}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_trusted_by_fingerprint_stays_pinned_when_a_ca_signed_certificate_appears() {
    let tmp = tempfile::tempdir().unwrap();
    let (roots, cert, key) = private_ca(&tmp.path().join("pki"));
    let mut config = ServeConfig::for_tests(tmp.path().join("broker"));
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    let (broker, _) = broker_with_alice_at(config).await;
    let url = broker.url();
    let known = KnownBrokers::new(tmp.path().join("client"));

    // Nothing known: the CA is enough, as before.
    let trust = BrokerClient::trust_for_login(&known, &url, roots.clone())
        .await
        .unwrap();
    assert!(matches!(trust, BrokerTrust::CaSigned), "{trust:?}");

    // Known by another fingerprint (the self-signed certificate it had before): the
    // CA-signed one now presented is refused, naming both.
    let earlier = Fingerprint::of_der(b"the broker's earlier self-signed certificate");
    known.trust(&url, earlier).unwrap();
    let before = std::fs::read(known.path()).unwrap();
    let err = BrokerClient::trust_for_login(&known, &url, roots.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trust, "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&earlier.to_string()), "{text}");
    assert!(text.contains(broker.fingerprint()), "{text}");
    assert_eq!(
        std::fs::read(known.path()).unwrap(),
        before,
        "nothing changed"
    );

    // Known by this very certificate: still pinned to it, not merely CA-trusted.
    let this: Fingerprint = broker.fingerprint().parse().unwrap();
    known.trust(&url, this).unwrap();
    let trust = BrokerClient::trust_for_login(&known, &url, roots.clone())
        .await
        .unwrap();
    assert!(
        matches!(trust, BrokerTrust::Fingerprint(fp) if fp == this),
        "{trust:?}"
    );
    broker.shutdown().await.unwrap();
}
