//! `grantwire profile` asked again after its answer was lost (scenario H2's CLI retry): the
//! broker made the lease, but the connection broke before its answer reached the client. The
//! retry sends the same key, which the broker takes as a renewal of that lease, so the user
//! ends with one live lease, not two. A refusal, by contrast, settles the request, and a
//! profile taken after a success gets a fresh key, as before.
//!
//! The lost answer is made by a TCP relay between the client and the real broker: it passes
//! everything until the client speaks after the broker's first flight (TLS Finished and the
//! request), then drops what the broker sends back, and closes once the test has seen the
//! lease committed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A relay to the broker on 127.0.0.1; see the module comment.
struct Relay {
    addr: SocketAddr,
    /// Whether new connections lose the broker's answer.
    lose_answers: Arc<AtomicBool>,
    /// Lets a connection that is losing its answer close.
    release: Arc<Notify>,
}

impl Relay {
    async fn start(broker: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lose_answers = Arc::new(AtomicBool::new(false));
        let release = Arc::new(Notify::new());
        let (lose, rel) = (Arc::clone(&lose_answers), Arc::clone(&release));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let lose = lose.load(Ordering::SeqCst);
                tokio::spawn(relay(client, broker, lose, Arc::clone(&rel)));
            }
        });
        Relay {
            addr,
            lose_answers,
            release,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

async fn relay(client: TcpStream, broker: SocketAddr, lose: bool, release: Arc<Notify>) {
    let server = TcpStream::connect(broker).await.unwrap();
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let heard_server = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicBool::new(false));
    let (heard, cutting) = (Arc::clone(&heard_server), Arc::clone(&cut));
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            if lose && heard.load(Ordering::SeqCst) {
                cutting.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
        heard_server.store(true, Ordering::SeqCst);
        if cut.load(Ordering::SeqCst) {
            // The answer (and whatever follows) is lost; hold on until the test says.
            release.notified().await;
            break;
        }
        if to_client.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

/// The public keys of the broker's live leases of `user`.
async fn lease_keys(broker: &grantwire_broker::RunningBroker, user: &str) -> Vec<String> {
    broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .into_iter()
        .filter(|l| l.user == user)
        .map(|l| l.public_key.to_base64())
        .collect()
}

/// The public key of the private key in wg-quick file `profile`.
fn key_of(profile: &Path) -> String {
    private_key_in(&std::fs::read_to_string(profile).unwrap())
        .public_key()
        .to_base64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_retried_after_a_lost_answer_replaces_its_lease_instead_of_adding_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let broker_addr: SocketAddr = broker.url().trim_start_matches("https://").parse().unwrap();
    let relay = Relay::start(broker_addr).await;
    let config = tmp.path().join("client");
    let code = grantwire_broker::totp::code_at(&secret, now());
    let login = [
        "login",
        "--broker",
        &relay.url(),
        "--user",
        "alice",
        "--fingerprint",
        broker.fingerprint(),
        "--password-stdin",
        "--totp",
        &code,
    ];
    let run = grantwire(&config, &login, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = tmp.path().join("home.conf");
    let out_arg = out.to_str().unwrap().to_owned();
    let pending = config.join("profiles/home.pending");

    // The answer is lost once the lease is committed.
    relay.lose_answers.store(true, Ordering::SeqCst);
    let args = ["profile", "home", "--out", &out_arg].map(str::to_owned);
    let lost = tokio::spawn({
        let (config, args) = (config.clone(), args.clone());
        async move { grantwire(&config, &args, "").await }
    });
    let mut made = Vec::new();
    for _ in 0..100 {
        made = lease_keys(&broker, "alice").await;
        if !made.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(made.len(), 1, "the broker never made the first lease");
    relay.release.notify_waiters();
    let lost = lost.await.unwrap();
    assert_eq!(
        lost.code,
        Some(1),
        "a broken connection is a runtime failure: {}",
        lost.stderr
    );
    assert!(!out.exists(), "no answer, yet a profile was written");
    assert!(
        pending.exists(),
        "the unanswered request's key was not kept"
    );

    // The retry: the same key, so the lease is replaced, not doubled.
    relay.lose_answers.store(false, Ordering::SeqCst);
    let retry = grantwire(&config, &args, "").await;
    assert_eq!(retry.code, Some(0), "{}", retry.stderr);
    assert_eq!(
        lease_keys(&broker, "alice").await,
        [key_of(&out)],
        "after the retry alice must hold one lease, for the key in her profile"
    );
    assert_eq!(
        made,
        [key_of(&out)],
        "the retry should have sent the first key"
    );
    assert!(
        retry
            .stderr
            .contains("sending the key of an earlier `grantwire profile home`"),
        "{}",
        retry.stderr
    );
    assert!(
        !pending.exists(),
        "an answered request's key is still kept as pending"
    );

    // After a success a new profile is a new key (a rotation), as before.
    let second = tmp.path().join("home-2.conf");
    let args2 = ["profile", "home", "--out", second.to_str().unwrap()];
    let run = grantwire(&config, &args2, "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_ne!(key_of(&second), key_of(&out));
    assert_eq!(lease_keys(&broker, "alice").await.len(), 2);

    // A refusal settles its request: nothing is kept for a retry.
    let cabin = tmp.path().join("cabin.conf");
    let args3 = ["profile", "cabin", "--out", cabin.to_str().unwrap()];
    let run = grantwire(&config, &args3, "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(!config.join("profiles/cabin.pending").exists());
    assert!(!cabin.exists());
}
