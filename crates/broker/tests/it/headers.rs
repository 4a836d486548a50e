//! Issue 3: every public response carries the security headers and no `Server` banner, and the
//! HTTPS listener speaks TLS 1.2 and TLS 1.3.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crate::common::*;
use grantwire_broker::clock::ManualClock;
use grantwire_broker::throttle::RateLimit;
use grantwire_proto::ErrorCode;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ProtocolVersion, SupportedProtocolVersion};
use serde_json::json;

/// Written out here, not taken from the broker, so dropping or changing one there fails.
const EXPECTED: [(&str, &str); 5] = [
    ("strict-transport-security", "max-age=31536000"),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

#[track_caller]
fn assert_security_headers(what: &str, headers: &reqwest::header::HeaderMap) {
    for (name, value) in EXPECTED {
        let got: Vec<_> = headers.get_all(name).iter().collect();
        assert_eq!(got, [value], "{what}: header {name}");
    }
    assert!(
        headers.get("server").is_none(),
        "{what}: Server header {:?}",
        headers.get("server")
    );
}

#[tokio::test]
async fn success_error_404_and_413_responses_carry_the_security_headers() {
    let h = Harness::start().await;

    let secret = h.add_user("alice").await;
    let resp = h.login_raw("alice", PASSWORD, &code_now(&secret)).await;
    assert_eq!(resp.status(), 200);
    assert_security_headers("login 200", resp.headers());

    let resp = h.login_raw("alice", "not the password", "000000").await;
    assert_security_headers("login 401", resp.headers());
    expect_error(resp, 401, ErrorCode::Unauthorized).await;

    let resp = h.http.get(h.url("/v1/whoami")).send().await.unwrap();
    assert_security_headers("whoami without a session 401", resp.headers());
    expect_error(resp, 401, ErrorCode::Unauthorized).await;

    let resp = h.http.get(h.url("/no/such/route")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_security_headers("unknown route without a session 401", resp.headers());

    let token = h.session("bob").await;
    let resp = h
        .http
        .get(h.url("/no/such/route"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_security_headers("unknown route 404", resp.headers());

    let resp = h
        .http
        .delete(h.url("/v1/login"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_security_headers("wrong method 404", resp.headers());

    let huge = json!({"user": "x".repeat(70 * 1024), "password": "p", "code": "000000"});
    let resp = h.post("/v1/login", None, &huge).await;
    assert_security_headers("oversized body 413", resp.headers());
    expect_error(resp, 413, ErrorCode::PayloadTooLarge).await;

    h.shutdown().await;
}

#[tokio::test]
async fn rate_limited_and_streaming_responses_carry_the_security_headers() {
    let h = Harness::with_config(|c| {
        c.clock = Arc::new(ManualClock::new());
        // Enrolment (below) and the first login; the second login is one too many.
        c.login_rate = RateLimit {
            burst: 2,
            per_sec: 1,
        };
    })
    .await;
    let (credential, _) = h.enrolled_edge("home").await;
    let body = json!({"user": "nobody", "password": "p", "code": "000000"});
    assert_eq!(h.post("/v1/login", None, &body).await.status(), 401);
    let resp = h.post("/v1/login", None, &body).await;
    assert_security_headers("login 429", resp.headers());
    expect_error(resp, 429, ErrorCode::RateLimited).await;

    let sync = h.open_sync(&credential).await;
    assert_eq!(sync.status(), 200);
    assert_security_headers("edge sync SSE", sync.headers());
    let mut events = SseReader::new(sync);
    events.next_set().await;
    drop(events);

    h.shutdown().await;
}

#[tokio::test]
async fn tls_1_2_and_tls_1_3_clients_connect() {
    let h = Harness::start().await;
    let addr = h.broker.addr();
    let fp = h.broker.fingerprint().to_owned();
    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let fp = fp.clone();
        let (negotiated, response) =
            tokio::task::spawn_blocking(move || get_over(addr, version, &fp))
                .await
                .unwrap();
        assert_eq!(negotiated, expected);
        assert!(
            response.starts_with("http/1.1 401"),
            "{expected:?}: {response}"
        );
        assert!(
            response.contains("strict-transport-security: max-age=31536000"),
            "{expected:?}: {response}"
        );
    }
    h.shutdown().await;
}

/// Connects with a client restricted to `version`, sends `GET /` over HTTP/1.1 and returns the
/// negotiated version and the response, lower-cased.
fn get_over(
    addr: SocketAddr,
    version: &'static SupportedProtocolVersion,
    fingerprint: &str,
) -> (ProtocolVersion, String) {
    let pin = fingerprint.parse().unwrap();
    let config = grantwire_pinned_tls::client_config_for_versions(Some(pin), &[version]);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .unwrap_or_else(|e| panic!("{:?} handshake: {e}", version.version));
    }
    let negotiated = conn.protocol_version().unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    // The broker may close without close_notify after `Connection: close`; what arrived counts.
    let _ = tls.read_to_end(&mut response);
    (
        negotiated,
        String::from_utf8_lossy(&response).to_lowercase(),
    )
}
