//! One stranger cannot freeze the broker (issue 14): connections over the per-source cap or
//! the overall cap are closed at accept, before TLS; known networks (a user's login, an edge's
//! credential) keep reserved slots; connections that make no progress are closed; an edge's
//! sync stream outlives the idle timeout through its keep-alives.
//!
//! Sources other than 127.0.0.1 are other loopback addresses (127.0.0.0/8 is all loopback).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use grantwire_broker::clock::ManualClock;
use grantwire_broker::conn::{ConnLimits, Timeouts};
use grantwire_pinned_tls::{client_config, Fingerprint};
use grantwire_proto::ErrorCode;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpSocket, TcpStream};

/// Longest the tests wait for the broker to close a connection; the broker's own limits in
/// these tests are far shorter, and the old broker never closed these before 10 s.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn tcp_from(src: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(src), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the broker closes `stream` (EOF or reset) within [`CLOSE_WAIT`], without our
/// sending anything.
async fn closed_by_broker(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(CLOSE_WAIT, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// An HTTPS client pinned to `h`'s certificate whose connections come from `src`.
fn client_from(h: &Harness, src: &str) -> reqwest::Client {
    let fp: Fingerprint = h.broker.fingerprint().parse().unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(Some(fp)))
        .local_address(ip(src))
        .build()
        .unwrap()
}

async fn login_from(h: &Harness, src: &str, user: &str, code: &str) -> reqwest::Response {
    client_from(h, src)
        .post(h.url("/v1/login"))
        .json(&serde_json::json!({"user": user, "password": PASSWORD, "code": code}))
        .send()
        .await
        .unwrap()
}

async fn small_broker(per_source: usize, public: usize, known: usize) -> Harness {
    Harness::with_config(|c| {
        c.conn_limits = ConnLimits {
            per_source,
            public,
            known,
        }
    })
    .await
}

#[tokio::test]
async fn a_source_over_its_cap_is_closed_at_accept_and_others_still_get_in() {
    let h = small_broker(2, 100, 0).await;
    let addr = h.broker.addr();
    let mut held = vec![
        tcp_from("127.0.0.2", addr).await,
        tcp_from("127.0.0.2", addr).await,
    ];
    let mut third = tcp_from("127.0.0.2", addr).await;
    assert!(
        closed_by_broker(&mut third).await,
        "the third connection from one source was not closed"
    );
    // Closed before TLS: the two held ones are still open (and still wait for a ClientHello).
    assert_eq!(h.broker.open_connections(), 2);
    let resp = client_from(&h, "127.0.0.3")
        .get(h.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, ErrorCode::Unauthorized).await;
    // A slot comes back when its connection closes.
    held.pop();
    wait_open(&h, 1).await;
    let mut again = tcp_from("127.0.0.2", addr).await;
    assert!(
        !closed_by_broker_quickly(&mut again).await,
        "a freed slot was not given back"
    );
    drop(held);
    h.shutdown().await;
}

/// Waits (at most [`CLOSE_WAIT`]) until the broker counts `n` open connections.
async fn wait_open(h: &Harness, n: usize) {
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    while h.broker.open_connections() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections open, not {n}",
            h.broker.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`closed_by_broker`] but waits only briefly: for checking that a connection is *not*
/// closed at accept (the refusal happens at once).
async fn closed_by_broker_quickly(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn at_the_overall_cap_a_user_from_a_known_network_still_logs_in() {
    let clock = Arc::new(ManualClock::new());
    let h = Harness::with_config(|c| {
        c.clock = clock.clone();
        c.conn_limits = ConnLimits {
            per_source: 2,
            public: 4,
            known: 2,
        };
    })
    .await;
    let secret = h.add_user("alice").await;
    // Alice has logged in from 127.0.0.9 before.
    let resp = login_from(&h, "127.0.0.9", "alice", &code_now(&secret)).await;
    assert_eq!(resp.status(), 200);
    drop(resp);
    wait_open(&h, 0).await;
    let addr = h.broker.addr();
    let mut stranger = Vec::new();
    for src in ["127.0.0.2", "127.0.0.3"] {
        for _ in 0..2 {
            stranger.push(tcp_from(src, addr).await);
        }
    }
    let mut newcomer = tcp_from("127.0.0.4", addr).await;
    assert!(
        closed_by_broker(&mut newcomer).await,
        "a fifth public connection was admitted"
    );
    // The next TOTP step, so the code is not a reused one.
    clock.advance(Duration::from_secs(30));
    let code = grantwire_broker::totp::code_at(&secret, now() + 30);
    let resp = login_from(&h, "127.0.0.9", "alice", &code).await;
    assert_eq!(
        resp.status(),
        200,
        "alice could not log in while strangers held the cap"
    );
    drop(stranger);
    h.shutdown().await;
}

#[tokio::test]
async fn at_the_overall_cap_an_edge_that_synced_before_reconnects() {
    let h = small_broker(4, 2, 2).await;
    let (credential, _) = h.enrolled_edge("home").await;
    let edge = client_from(&h, "127.0.0.7");
    let open = |c: reqwest::Client| {
        let url = h.url("/v1/edge/sync");
        let credential = credential.clone();
        async move { c.get(url).bearer_auth(credential).send().await }
    };
    // Its old stream may linger until the broker's next keep-alive finds it dead: it keeps
    // its slot meanwhile.
    let first = open(edge).await.unwrap();
    assert_eq!(first.status(), 200);
    let addr = h.broker.addr();
    let stranger = [tcp_from("127.0.0.2", addr).await];
    wait_open(&h, 2).await;
    let mut newcomer = tcp_from("127.0.0.3", addr).await;
    assert!(closed_by_broker(&mut newcomer).await);
    // A fresh client: a new connection, as after the edge restarted.
    let again = open(client_from(&h, "127.0.0.7")).await.unwrap();
    assert_eq!(again.status(), 200);
    drop((first, stranger));
    h.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_starts_tls_is_closed() {
    let h = Harness::with_config(|c| {
        c.conn_timeouts = Timeouts {
            handshake: Duration::from_millis(300),
            ..Timeouts::default()
        }
    })
    .await;
    let mut silent = tcp_from("127.0.0.2", h.broker.addr()).await;
    assert!(closed_by_broker(&mut silent).await);
    assert_eq!(
        h.broker.open_connections(),
        0,
        "its slot was not given back"
    );
    h.shutdown().await;
}

/// A TLS connection that finishes its handshake, then says nothing, until the broker closes it.
/// True if the broker closed it within [`CLOSE_WAIT`].
fn silent_after_handshake(addr: SocketAddr, fp: Fingerprint) -> bool {
    let mut config = client_config(Some(fp));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    sock.set_read_timeout(Some(CLOSE_WAIT)).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut buf = [0u8; 64];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_no_request_after_tls_is_closed() {
    let h = Harness::with_config(|c| {
        c.conn_timeouts = Timeouts {
            first_bytes: Duration::from_millis(300),
            ..Timeouts::default()
        }
    })
    .await;
    let fp: Fingerprint = h.broker.fingerprint().parse().unwrap();
    let addr = h.broker.addr();
    let closed = tokio::task::spawn_blocking(move || silent_after_handshake(addr, fp))
        .await
        .unwrap();
    assert!(closed, "a silent TLS connection was kept open");
    h.shutdown().await;
}

#[tokio::test]
async fn a_request_head_sent_slowly_is_cut_off() {
    let h = Harness::with_config(|c| {
        c.conn_timeouts = Timeouts {
            first_bytes: Duration::from_millis(300),
            ..Timeouts::default()
        }
    })
    .await;
    let fp: Fingerprint = h.broker.fingerprint().parse().unwrap();
    let addr = h.broker.addr();
    let closed = tokio::task::spawn_blocking(move || {
        let mut config = client_config(Some(fp));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        // A byte every 100 ms: progress for the idle timer, never a whole head.
        for b in b"GET /v1/edge/sync HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if tls.write_all(&[*b]).and_then(|()| tls.flush()).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    })
    .await
    .unwrap();
    assert!(closed, "a slowly sent request head was waited for");
    h.shutdown().await;
}

/// The sync stream writes a keep-alive every 15 s; with the idle timeout at 16 s the stream
/// must outlive it and still carry the next change.
#[tokio::test]
async fn an_edge_sync_stream_outlives_the_idle_timeout() {
    let h = Harness::with_config(|c| {
        c.conn_timeouts = Timeouts {
            idle: Duration::from_secs(16),
            ..Timeouts::default()
        }
    })
    .await;
    let (credential, _) = h.enrolled_edge("home").await;
    let mut sync = SseReader::new(h.open_sync(&credential).await);
    sync.next_set().await;
    // Nothing happens for longer than the idle timeout.
    assert!(sync
        .next_set_within(Duration::from_secs(20))
        .await
        .is_none());
    let token = h.session("carol").await;
    h.grant("carol", "home").await;
    let resp = h.request_lease(&token, "home").await;
    assert_eq!(resp.status(), 200);
    let set = sync.next_set().await;
    assert_eq!(set.leases.len(), 1);
    h.shutdown().await;
}

/// `serve` raises its soft descriptor limit to the hard one and says so at INFO.
#[test]
fn serve_raises_the_descriptor_limit_to_the_hard_one() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = std::process::Command::new("prlimit")
        .arg("--nofile=256:2048")
        .arg(crate::common::binary::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = crate::common::binary::KillOnDrop(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no descriptor-limit line at start");
        if line.contains("descriptor limit") {
            break line;
        }
    };
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("nofile=2048"), "{line}");
    // 2048 - 128 reserved = 1920: an eighth known, the rest public.
    assert!(
        line.contains("public=1680") && line.contains("known=240"),
        "{line}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(soft[3], "2048", "{open_files}");
}
