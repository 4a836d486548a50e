//! The broker under test: a `grantwire-broker serve` child process, its admin CLI, and the setup
//! (users, enrolled edges, grants, sessions) the measurements need.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use grantwire_pinned_tls::{http_client, Fingerprint};
use grantwire_proto::{EdgeAddResponse, GrantInfo, LoginResponse, UserAddResponse};
use serde_json::json;

use crate::load::fresh_public_key;

/// Per-source budgets while measuring: every request comes from 127.0.0.1, and the routes, not
/// the limiter, are what is measured.
const UNLIMITED: &str = "1000000";

/// A running `grantwire-broker serve`. Dropping it stops the process (SIGTERM, then SIGKILL).
pub struct Broker {
    child: Child,
    bin: PathBuf,
    data_dir: PathBuf,
    pub url: String,
    pub fingerprint: Fingerprint,
}

/// A logged-in user: its name and bearer session.
#[derive(Clone)]
pub struct Session {
    pub user: String,
    pub token: String,
}

impl Broker {
    /// Starts `bin serve` with its data in `work_dir/data`, its log in `work_dir/broker.log` and
    /// its PID in `work_dir/broker.pid` (for the script's cleanup), and waits for the lines that
    /// give its URL and certificate fingerprint.
    pub fn start(bin: &Path, work_dir: &Path) -> anyhow::Result<Self> {
        let data_dir = work_dir.join("data");
        let serve_flags = serve_flags();
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(&serve_flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        std::fs::write(work_dir.join("broker.pid"), child.id().to_string())?;
        let stderr = child.stderr.take().context("broker stderr")?;
        let log = std::fs::File::create(work_dir.join("broker.log"))?;
        let rx = drain_log(stderr, log);
        let (url, fingerprint) = match wait_for_start(&rx) {
            Ok(started) => started,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Self {
            child,
            bin: bin.to_owned(),
            data_dir,
            url,
            fingerprint,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs an admin command (`user add ...`) that prints one JSON object.
    pub fn admin<T: serde::de::DeserializeOwned>(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<T> {
        let mut child = Command::new(&self.bin)
            .args(args)
            .arg("--json")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut input = child.stdin.take().context("admin stdin")?;
        if let Some(text) = stdin {
            input.write_all(text.as_bytes())?;
        }
        drop(input);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!("grantwire-broker {}: {}", args.join(" "), stderr.trim());
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("output of {args:?}"))
    }

    /// `users` users, each logged in once over HTTPS (password + TOTP code).
    pub async fn sessions(&self, users: usize) -> anyhow::Result<Vec<Session>> {
        let http = http_client(Some(self.fingerprint));
        let mut out = Vec::with_capacity(users);
        for i in 0..users {
            let user = format!("bench-{i}");
            let password = format!("bench passphrase {i} for the broker");
            let added: UserAddResponse = self.admin(
                &["user", "add", &user, "--password-stdin"],
                Some(&format!("{password}\n")),
            )?;
            let secret = data_encoding::BASE32_NOPAD.decode(added.totp_secret.as_bytes())?;
            // One login per user, so no TOTP step is used twice.
            let code = grantwire_broker::totp::code_at(&secret, unix_now());
            let body = json!({"user": user, "password": password, "code": code});
            let resp = http
                .post(format!("{}/v1/login", self.url))
                .json(&body)
                .send()
                .await?;
            if resp.status() != 200 {
                bail!("login of {user}: {}", resp.status());
            }
            let login: LoginResponse = resp.json().await?;
            out.push(Session {
                user,
                token: login.token,
            });
        }
        Ok(out)
    }

    /// Adds an edge on `subnet`, enrols it with a fresh key, and grants it to every session's
    /// user. Returns the edge's name.
    pub async fn edge(
        &self,
        name: &str,
        subnet: &str,
        sessions: &[Session],
    ) -> anyhow::Result<String> {
        let added: EdgeAddResponse = self.admin(
            &[
                "edge",
                "add",
                name,
                "--endpoint",
                "127.0.0.1:51820",
                "--subnet",
                subnet,
            ],
            None,
        )?;
        let http = http_client(Some(self.fingerprint));
        let body = json!({"token": added.enrolment_token, "public_key": fresh_public_key()});
        let resp = http
            .post(format!("{}/v1/edge/enrol", self.url))
            .json(&body)
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("enrolment of {name}: {}", resp.status());
        }
        // The bench issues thousands of leases per user; the per-grant cap is not what it measures.
        let cap = ["--max-leases", "65536"];
        for s in sessions {
            let args = [&["grant", "add", &s.user, name][..], &cap[..]].concat();
            let _: GrantInfo = self.admin(&args, None)?;
        }
        Ok(added.name)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `serve` flags besides the listener and data directory, as the report shows them.
pub fn serve_flags() -> Vec<String> {
    let mut flags = Vec::new();
    for flag in [
        "--login-burst",
        "--login-per-sec",
        "--lease-burst",
        "--lease-per-sec",
    ] {
        flags.push(flag.to_owned());
        flags.push(UNLIMITED.to_owned());
    }
    flags
}

/// Copies the broker's stderr into `log` (default level, as an operator runs it) and hands the
/// first lines to the caller; keeps draining so the broker never blocks on a full pipe.
fn drain_log(stderr: std::process::ChildStderr, mut log: std::fs::File) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            let _ = tx.send(line);
        }
    });
    rx
}

fn wait_for_start(rx: &mpsc::Receiver<String>) -> anyhow::Result<(String, Fingerprint)> {
    let (mut url, mut fingerprint) = (None, None);
    while url.is_none() || fingerprint.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .context("the broker did not print its URL and fingerprint within 30 s")?;
        if let Some(u) = line.strip_prefix("grantwire-broker: listening on ") {
            url = Some(u.to_owned());
        }
        if let Some(f) =
            line.strip_prefix("grantwire-broker: TLS certificate SHA-256 fingerprint: ")
        {
            fingerprint = Some(f.parse()?);
        }
    }
    url.zip(fingerprint).context("start lines")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
