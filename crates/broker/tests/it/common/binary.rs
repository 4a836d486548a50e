//! The real `grantwire-broker` binary in a child process: `serve`, and one-shot admin commands
//! against its data directory.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use grantwire_pinned_tls::Fingerprint;

pub const BIN: &str = env!("CARGO_BIN_EXE_grantwire-broker");

pub struct Served {
    pub child: KillOnDrop,
    pub url: String,
    pub fingerprint: Fingerprint,
}

/// The broker process a test started; a failed test must not leave it running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Served {
    /// An HTTPS client that pins this broker's certificate.
    pub fn http(&self) -> reqwest::Client {
        grantwire_pinned_tls::http_client(Some(self.fingerprint))
    }

    /// Enrols an edge with its one-time `token` over HTTPS.
    pub async fn enrol(&self, http: &reqwest::Client, token: &str) {
        let body = serde_json::json!({"token": token, "public_key": super::keypair().public_key()});
        let resp = http
            .post(format!("{}/v1/edge/enrol", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _: grantwire_proto::EnrolResponse = resp.json().await.unwrap();
    }

    /// Logs `user` in with the current code of its base32 `totp_secret`; returns the session.
    pub async fn login(
        &self,
        http: &reqwest::Client,
        user: &str,
        password: &str,
        totp_secret: &str,
    ) -> String {
        let secret = data_encoding::BASE32_NOPAD
            .decode(totp_secret.as_bytes())
            .unwrap();
        let code = grantwire_broker::totp::code_at(&secret, super::now());
        let body = serde_json::json!({"user": user, "password": password, "code": code});
        let resp = http
            .post(format!("{}/v1/login", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<grantwire_proto::LoginResponse>()
            .await
            .unwrap()
            .token
    }
}

/// Starts `serve --listen 127.0.0.1:0` with `extra` flags and waits for its two start lines on
/// stderr (the URL with the real port, and the certificate fingerprint, which must match the
/// one written to the data directory).
pub fn serve(data_dir: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let (mut url, mut fp): (Option<String>, Option<Fingerprint>) = (None, None);
    while url.is_none() || fp.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("start lines");
        if let Some(u) = line.strip_prefix("grantwire-broker: listening on ") {
            url = Some(u.to_owned());
        }
        if let Some(f) =
            line.strip_prefix("grantwire-broker: TLS certificate SHA-256 fingerprint: ")
        {
            fp = Some(f.parse().unwrap());
        }
    }
    let url = url.unwrap();
    assert!(
        url.starts_with("https://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let fingerprint = fp.unwrap();
    let file = std::fs::read_to_string(data_dir.join("tls-cert.sha256")).unwrap();
    assert_eq!(file.trim(), fingerprint.to_string());
    Served {
        child,
        url,
        fingerprint,
    }
}

/// Runs a command of the binary against the broker in `data_dir`, with `stdin` as its input.
pub fn run(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        // A command refused on its arguments can end before it reads stdin; its exit code is
        // what the test checks.
        if let Err(e) = input.write_all(s.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs a `--json` command that must succeed and print exactly one JSON object.
pub fn run_json<T: serde::de::DeserializeOwned>(
    data_dir: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> T {
    let out = run(data_dir, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// Waits for the child to exit; panics (killing it) past `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("broker did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
