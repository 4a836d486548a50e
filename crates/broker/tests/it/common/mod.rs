//! Shared harness: a real broker on 127.0.0.1:0 with a temporary data directory, and an HTTPS
//! client that pins its certificate the way grantwire clients do.
#![allow(dead_code)]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

pub mod binary;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use grantwire_broker::{start, RunningBroker, ServeConfig};
use grantwire_pinned_tls::{http_client, Fingerprint};
use grantwire_proto::{
    EdgeAddRequest, EnrolResponse, ErrorBody, ErrorCode, GrantAddRequest, LeaseSet, PrivateKey,
    PublicKey, UserAddRequest,
};
use rand::RngCore as _;
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery";

pub struct Harness {
    pub broker: RunningBroker,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_session_ttl(Duration::from_secs(3600)).await
    }

    pub async fn with_session_ttl(ttl: Duration) -> Self {
        Self::with_config(|c| c.session_ttl = ttl).await
    }

    /// A broker with the test defaults changed by `f`.
    pub async fn with_config(f: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::for_tests(dir.path().join("data"));
        // Per-source budgets are lifted so tests of other things can send bursts; rate-limit
        // tests set them back in `f`.
        let unlimited = grantwire_broker::throttle::RateLimit {
            burst: 100_000,
            per_sec: 100_000,
        };
        config.login_rate = unlimited;
        config.lease_rate = unlimited;
        // Likewise the connection caps (one source, 127.0.0.1, opens a thousand at once in the
        // load tests); the connection tests set them back.
        config.conn_limits = grantwire_broker::conn::ConnLimits {
            per_source: 100_000,
            public: 100_000,
            known: 0,
        };
        f(&mut config);
        let broker = start(config).await.unwrap();
        let fp: Fingerprint = broker.fingerprint().parse().unwrap();
        Self {
            http: http_client(Some(fp)),
            broker,
            _dir: dir,
        }
    }

    /// The set-up most API tests start from: a started broker, the user alice signed in, the
    /// edge "home" enrolled, and a grant of "home" to alice with the default terms. Returns the
    /// harness, alice's session token, and the edge's credential and public key.
    pub async fn granted() -> (Self, String, String, PublicKey) {
        Self::granted_with(|_| {}).await
    }

    /// [`Harness::granted`] on a broker with the test defaults changed by `f`.
    pub async fn granted_with(
        f: impl FnOnce(&mut ServeConfig),
    ) -> (Self, String, String, PublicKey) {
        let h = Self::with_config(f).await;
        let (token, credential, edge_key) = h.alice_granted_home().await;
        (h, token, credential, edge_key)
    }

    /// [`Harness::granted`] on this running broker: returns alice's session token, and the
    /// edge's credential and public key.
    pub async fn alice_granted_home(&self) -> (String, String, PublicKey) {
        let token = self.session("alice").await;
        let (credential, edge_key) = self.enrolled_edge("home").await;
        self.grant("alice", "home").await;
        (token, credential, edge_key)
    }

    /// An HTTPS client pinned like [`Harness::http`] whose connections come from `src` (any
    /// 127.0.0.0/8 address: all of it is loopback).
    pub fn client_from(&self, src: &str) -> reqwest::Client {
        let fp: Fingerprint = self.broker.fingerprint().parse().unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls(grantwire_pinned_tls::client_config(Some(fp)))
            .local_address(src.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.broker.url())
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Adds a user and returns its raw TOTP secret.
    pub async fn add_user(&self, name: &str) -> Vec<u8> {
        let resp = self
            .broker
            .admin()
            .accounts()
            .add(UserAddRequest {
                name: name.into(),
                password: PASSWORD.into(),
                admin: false,
            })
            .await
            .unwrap();
        data_encoding::BASE32_NOPAD
            .decode(resp.totp_secret.as_bytes())
            .unwrap()
    }

    pub async fn login_raw(&self, user: &str, password: &str, code: &str) -> reqwest::Response {
        let body = json!({"user": user, "password": password, "code": code});
        self.post("/v1/login", None, &body).await
    }

    /// Adds a user and logs it in; returns the session token.
    pub async fn session(&self, user: &str) -> String {
        let secret = self.add_user(user).await;
        let resp = self.login_raw(user, PASSWORD, &code_now(&secret)).await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// Adds an edge and enrols it; returns (credential, edge public key).
    pub async fn enrolled_edge(&self, name: &str) -> (String, PublicKey) {
        let token = self.add_edge(name).await;
        let key = keypair().public_key();
        let resp = self
            .post(
                "/v1/edge/enrol",
                None,
                &json!({"token": token, "public_key": key}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let enrolled: EnrolResponse = resp.json().await.unwrap();
        (enrolled.credential, key)
    }

    /// Adds an edge (not enrolled); returns its enrolment token.
    pub async fn add_edge(&self, name: &str) -> String {
        self.broker
            .admin()
            .edges()
            .add(EdgeAddRequest {
                name: name.into(),
                endpoint: "192.0.2.1:51820".into(),
                subnet: None,
                ..Default::default()
            })
            .await
            .unwrap()
            .enrolment_token
    }

    pub async fn grant(&self, user: &str, edge: &str) {
        self.broker
            .admin()
            .grants()
            .add(GrantAddRequest {
                user: user.into(),
                edge: edge.into(),
                lease_ttl_secs: None,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// A grant whose live leases are capped at `max_leases` (tests that issue many leases).
    pub async fn grant_max(&self, user: &str, edge: &str, max_leases: u32) {
        self.broker
            .admin()
            .grants()
            .add(GrantAddRequest {
                user: user.into(),
                edge: edge.into(),
                max_leases: Some(max_leases),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    pub async fn request_lease(&self, token: &str, edge: &str) -> reqwest::Response {
        let key = keypair().public_key();
        self.post(
            "/v1/leases",
            Some(token),
            &json!({"edge": edge, "public_key": key}),
        )
        .await
    }

    /// Opens an edge's lease-set stream (`GET /v1/edge/sync`) with its credential.
    pub async fn open_sync(&self, credential: &str) -> reqwest::Response {
        self.http
            .get(self.url("/v1/edge/sync"))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap()
    }

    pub async fn shutdown(self) {
        self.broker.shutdown().await.unwrap();
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn code_now(secret: &[u8]) -> String {
    grantwire_broker::totp::code_at(secret, now())
}

pub fn keypair() -> PrivateKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    PrivateKey::from_random_bytes(bytes)
}

/// Asserts an error response's status and code and returns its message.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: ErrorCode) -> String {
    assert_eq!(resp.status(), status);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, code);
    body.error.message
}

/// Reads `leases` events from an SSE response.
pub struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<hyper::body::Bytes>>,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next lease set, within 10 s.
    pub async fn next_set(&mut self) -> LeaseSet {
        tokio::time::timeout(Duration::from_secs(10), self.next_set_inner())
            .await
            .expect("no lease set pushed within 10 s")
    }

    /// The next lease set if one arrives within `d`.
    pub async fn next_set_within(&mut self, d: Duration) -> Option<LeaseSet> {
        tokio::time::timeout(d, self.next_set_inner()).await.ok()
    }

    async fn next_set_inner(&mut self) -> LeaseSet {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                let mut name = None;
                let mut data = None;
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_owned());
                    }
                }
                if let (Some("leases"), Some(d)) = (name.as_deref(), data) {
                    return serde_json::from_str(&d).unwrap();
                }
                continue;
            }
            let chunk = self.stream.next().await.expect("stream ended").unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

const BROKER_BIN: &str = env!("CARGO_BIN_EXE_grantwire-broker");

/// Runs an admin command of the real binary against the harness's broker (its admin socket).
pub fn cli(h: &Harness, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BROKER_BIN)
        .args(args)
        .arg("--data-dir")
        .arg(h.broker.data_dir())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// [`cli`] for a `--json` command that must succeed and print exactly one JSON object.
pub fn cli_json<T: serde::de::DeserializeOwned>(h: &Harness, args: &[&str]) -> T {
    let out = cli(h, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// The database file at `path`, opened directly as an operator's `sqlite3` would: for tests
/// that change a row behind the broker's back or read what it wrote.
pub fn sqlite(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(15)).unwrap();
    conn
}

/// The first column of every row `sql` returns.
pub fn column<T: rusqlite::types::FromSql>(conn: &rusqlite::Connection, sql: &str) -> Vec<T> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}
