//! `BrokerClient` against a tiny HTTPS server: a thread that answers each connection with one
//! canned response and hands back the requests it saw.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use grantwire_proto::PresharedKey;

use super::*;
use crate::ErrorKind;

struct FakeBroker {
    url: String,
    fingerprint: Fingerprint,
    requests: JoinHandle<Vec<String>>,
}

/// Serves one connection per response, then stops. A connection whose handshake fails (the
/// client refused the certificate) still uses up its response.
fn fake_broker(responses: Vec<(u16, String)>) -> FakeBroker {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let fingerprint = Fingerprint::of_der(cert.cert.der());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let requests = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (status, body) in responses {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            if let Some(request) = read_request(&mut tls) {
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
                seen.push(request);
            }
        }
        seen
    });
    FakeBroker {
        url,
        fingerprint,
        requests,
    }
}

fn read_request(stream: &mut impl std::io::Read) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>())
        })
        .and_then(Result::ok)
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(head + &String::from_utf8(body).ok()?)
}

fn sample_profile() -> Profile {
    Profile {
        lease_id: "l-1".parse().unwrap(),
        edge: "home".parse().unwrap(),
        address: "10.77.0.2".parse().unwrap(),
        edge_public_key: crate::keys::generate().public_key(),
        endpoint: "192.0.2.1:51820".parse().unwrap(),
        allowed_ips: vec!["10.77.0.1/32".parse().unwrap()],
        preshared_key: PresharedKey::from_bytes([2; 32]),
        persistent_keepalive: 25,
        plex_url: "http://10.77.0.1:32400/web".parse().unwrap(),
        pin: "127.0.0.1/32".parse().unwrap(),
        expires_at: unix_now() + 3600,
    }
}

fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

#[tokio::test]
async fn login_then_lease_through_the_pin() {
    let expires_at = unix_now() + 3600;
    let profile = sample_profile();
    let broker = fake_broker(vec![
        (
            200,
            serde_json::json!({"token": "tok-123", "expires_at": expires_at}).to_string(),
        ),
        (200, serde_json::json!({"profile": profile}).to_string()),
    ]);
    let client = BrokerClient::new(&broker.url, Some(broker.fingerprint)).unwrap();
    let session = client.login("alice", "pw", "123456").await.unwrap();
    assert_eq!(session.user, "alice");
    assert_eq!(session.token, "tok-123");
    assert_eq!(session.expires_at, expires_at);
    assert_eq!(session.fingerprint, Some(broker.fingerprint));
    assert_eq!(session.broker_url, format!("{}/", broker.url));

    let key = crate::keys::generate();
    let again = BrokerClient::for_session(&session).unwrap();
    let got = again
        .request_lease(&session, "home", &key.public_key())
        .await
        .unwrap();
    assert_eq!(got, profile);

    let requests = broker.requests.join().unwrap();
    assert!(
        requests[0].starts_with("POST /v1/login "),
        "{}",
        requests[0]
    );
    assert!(requests[0].contains(r#""code":"123456""#));
    assert!(
        requests[1].starts_with("POST /v1/leases "),
        "{}",
        requests[1]
    );
    assert!(requests[1]
        .to_ascii_lowercase()
        .contains("authorization: bearer tok-123"));
    assert!(requests[1].contains(&key.public_key().to_base64()));
    assert!(!requests[1].contains(&key.to_base64()), "private key sent");
}

#[tokio::test]
async fn wrong_pin_is_a_trust_error_naming_the_mismatch() {
    let broker = fake_broker(vec![(200, "{}".into())]);
    let client = BrokerClient::new(&broker.url, Some(Fingerprint::of_der(b"other"))).unwrap();
    let err = client.login("alice", "pw", "123456").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trust, "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("certificate does not match the pinned fingerprint"),
        "{msg}"
    );
    assert!(msg.contains(&broker.fingerprint.to_string()), "{msg}");
}

#[tokio::test]
async fn self_signed_broker_without_pin_asks_for_the_fingerprint() {
    let broker = fake_broker(vec![(200, "{}".into())]);
    let client = BrokerClient::new(&broker.url, None).unwrap();
    let err = client.login("alice", "pw", "123456").await.unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err:?}");
    assert!(err.to_string().contains("fingerprint"), "{err}");
}

#[tokio::test]
async fn broker_errors_map_through_the_body() {
    let broker = fake_broker(vec![
        (403, error_json("forbidden", "no grant for this edge")),
        (404, error_json("not_found", "unknown edge")),
        (401, error_json("unauthorized", "unauthorized")),
    ]);
    let client = BrokerClient::new(&broker.url, Some(broker.fingerprint)).unwrap();
    let session = Session {
        broker_url: broker.url.clone(),
        fingerprint: Some(broker.fingerprint),
        user: "alice".into(),
        token: "t".into(),
        expires_at: unix_now() + 60,
    };
    let pk = crate::keys::generate().public_key();
    for want in [
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::SessionExpired,
    ] {
        let err = client
            .request_lease(&session, "home", &pk)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), want, "{err}");
    }
}

#[tokio::test]
async fn closed_port_is_a_network_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = BrokerClient::new(&format!("127.0.0.1:{port}"), None).unwrap();
    let err = client.login("alice", "pw", "123456").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err:?}");
    assert!(err.to_string().contains("cannot reach the broker"), "{err}");
}

#[tokio::test]
async fn token_is_never_sent_to_another_broker() {
    let client = BrokerClient::new("https://evil.example", None).unwrap();
    let session = Session {
        broker_url: "https://broker.example/".into(),
        fingerprint: None,
        user: "alice".into(),
        token: "t".into(),
        expires_at: unix_now() + 60,
    };
    let pk = crate::keys::generate().public_key();
    let err = client
        .request_lease(&session, "home", &pk)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SessionBrokerMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn broker_urls_are_https_and_normalised() {
    let ok = [
        ("broker.example:8443", "https://broker.example:8443/"),
        ("https://broker.example", "https://broker.example/"),
        (
            "https://broker.example/grantwire",
            "https://broker.example/grantwire/",
        ),
        (" https://[::1]:8443/ ", "https://[::1]:8443/"),
    ];
    for (input, want) in ok {
        assert_eq!(parse_broker_url(input).unwrap().as_str(), want, "{input}");
    }
    for bad in [
        "http://broker.example",
        "https://u:p@broker.example",
        "https://broker.example/?x=1",
        "https://",
        "",
    ] {
        let err = parse_broker_url(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage, "{bad}: {err}");
    }
}

#[tokio::test]
async fn whoami_and_renew_send_the_session_and_map_a_gone_lease() {
    let profile = sample_profile();
    let broker = fake_broker(vec![
        (
            200,
            serde_json::json!({"user": "alice", "source_ip": "127.0.0.1", "leases": [
                {"id": "l-1", "edge": "home", "pin": "127.0.0.1/32", "pinned_here": true,
                 "expires_at": 99}
            ]})
            .to_string(),
        ),
        (200, serde_json::json!({"profile": profile}).to_string()),
        (404, error_json("not_found", "no such lease")),
    ]);
    let client = BrokerClient::new(&broker.url, Some(broker.fingerprint)).unwrap();
    let session = Session {
        broker_url: broker.url.clone(),
        fingerprint: Some(broker.fingerprint),
        user: "alice".into(),
        token: "tok-9".into(),
        expires_at: unix_now() + 60,
    };
    let me = client.whoami(&session).await.unwrap();
    assert_eq!(me.source_ip.to_string(), "127.0.0.1");
    assert!(me.leases[0].pinned_here);
    assert_eq!(client.renew(&session, "l-1").await.unwrap(), profile);
    let err = client.renew(&session, "l-1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseGone, "{err:?}");
    // A lease id that would change the request path never leaves the device.
    let err = client.renew(&session, "../logout").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{err:?}");

    let requests = broker.requests.join().unwrap();
    assert!(
        requests[0].starts_with("GET /v1/whoami "),
        "{}",
        requests[0]
    );
    assert!(
        requests[1].starts_with("POST /v1/leases/l-1/renew "),
        "{}",
        requests[1]
    );
    for r in &requests {
        assert!(r
            .to_ascii_lowercase()
            .contains("authorization: bearer tok-9"));
    }
}

#[tokio::test]
async fn leases_and_revoke_send_the_session_and_map_refusals() {
    let listed = serde_json::json!({"leases": [{
        "id": "l-1", "user": "alice", "edge": "home", "tunnel_address": "10.77.0.2",
        "pin": "127.0.0.1/32", "public_key": grantwire_proto::PrivateKey::from_random_bytes([3; 32]).public_key(),
        "created_at": 1, "expires_at": 2, "ports": [32400],
        "usage": {"last_handshake_at": 5, "rx_bytes": 1, "tx_bytes": 2, "reported_at": 6}}]});
    let error =
        |code: &str| serde_json::json!({"error": {"code": code, "message": "m"}}).to_string();
    let broker = fake_broker(vec![
        (200, listed.to_string()),
        (200, r#"{"id":"l-1","user":"alice","edge":"home"}"#.into()),
        (403, error("forbidden")),
        (404, error("not_found")),
    ]);
    let client = BrokerClient::new(&broker.url, Some(broker.fingerprint)).unwrap();
    let session = Session {
        broker_url: broker.url.clone(),
        fingerprint: Some(broker.fingerprint),
        user: "alice".into(),
        token: "tok-7".into(),
        expires_at: unix_now() + 60,
    };
    let list = client.leases(&session).await.unwrap().leases;
    assert_eq!(list[0].usage.unwrap().last_handshake_at, Some(5));
    assert_eq!(client.revoke(&session, "l-1").await.unwrap().edge, "home");
    let err = client.revoke(&session, "l-2").await.unwrap_err();
    assert!(matches!(err, Error::NotYourLease { .. }), "{err:?}");
    let err = client.revoke(&session, "l-3").await.unwrap_err();
    assert!(matches!(err, Error::UnknownLease { .. }), "{err:?}");
    // Refused before a request (the fake broker has no answer left for one): a path, and ids
    // the broker never makes (proto's LeaseId).
    for bad in ["l-1/../../logout", "l-A_1", "lease-1", "l-"] {
        let err = client.revoke(&session, bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage, "{bad}: {err:?}");
    }

    let requests = broker.requests.join().unwrap();
    assert!(
        requests[0].starts_with("GET /v1/leases "),
        "{}",
        requests[0]
    );
    assert!(
        requests[1].starts_with("POST /v1/leases/l-1/revoke "),
        "{}",
        requests[1]
    );
    assert!(
        requests[2].starts_with("POST /v1/leases/l-2/revoke "),
        "{}",
        requests[2]
    );
    assert_eq!(requests.len(), 4, "the bad id never left the device");
    for r in &requests {
        assert!(r
            .to_ascii_lowercase()
            .contains("authorization: bearer tok-7"));
    }
}

#[tokio::test]
async fn a_probe_learns_a_self_signed_fingerprint_and_sends_nothing() {
    let broker = fake_broker(vec![(200, "{}".into())]);
    let trust = BrokerClient::probe(&broker.url).await.unwrap();
    assert_eq!(trust, BrokerTrust::Fingerprint(broker.fingerprint));
    // The handshake failed, so no request reached the broker.
    assert!(broker.requests.join().unwrap().is_empty());

    // Nothing listening: a network error, not a fingerprint.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = BrokerClient::probe(&format!("https://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err:?}");
}
