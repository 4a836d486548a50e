//! Load generator behind `scripts/bench/revoke.sh` (issue 4): revocation latency end to end
//! with many leases on one edge. Starts a real `grantwire-broker serve` (HTTPS on 127.0.0.1,
//! SQLite file) and a real `grantwire-edge run` (TUN, nftables guard), both release builds and
//! both inside the network namespace the script made; gives the edge `--leases` leases, each
//! from its own loopback address (so each has its own /32 pin), `--revocations` of them on
//! grants of their own with a live synthetic WireGuard client; then revokes those grants one at
//! a time with the `grantwire-broker grant revoke` command and times each from the moment the
//! command starts to the first probe the edge no longer answers. Last, memory: the edge's
//! resident size as the other leases are revoked and issued again.
//!
//! Prints Markdown on stdout, progress on stderr. A measurement, not a test: nothing here
//! asserts a timing.
// An output program: its report goes to stdout.
#![allow(clippy::print_stdout)]

mod client;
mod logs;
mod packet;
mod procs;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use clap::Parser as _;
use grantwire_pinned_tls::{client_config, Fingerprint};
use grantwire_proto::{
    EdgeAddResponse, GrantInfo, LeaseResponse, LoginResponse, PrivateKey, Profile, UserAddResponse,
};
use rand::RngCore as _;
use serde_json::json;
use tokio::time::Instant;

use client::{Client, ClientSpec};
use procs::{admin, Daemon};

#[derive(Debug, clap::Parser)]
#[command(about = "Revocation latency of a real broker and edge with many leases; prints Markdown")]
struct Args {
    #[arg(long)]
    broker_bin: PathBuf,
    #[arg(long)]
    edge_bin: PathBuf,
    /// Scratch directory: the broker's data, the edge's state, logs and PID files.
    #[arg(long)]
    work_dir: PathBuf,
    /// Name of the edge's TUN device (unique on this machine, at most 15 bytes).
    #[arg(long)]
    tun_name: String,
    /// Leases on the edge in all.
    #[arg(long, default_value_t = 10_000)]
    leases: usize,
    /// Grants revoked one at a time, each with one lease and a live client.
    #[arg(long, default_value_t = 100)]
    revocations: usize,
    /// Probe interval of the client whose grant is being revoked.
    #[arg(long, default_value = "1ms")]
    probe_interval: humantime::Duration,
    /// Probe interval of the other live clients meanwhile.
    #[arg(long, default_value = "50ms")]
    background_interval: humantime::Duration,
    /// Times the other leases are revoked and issued again at the end, for memory.
    #[arg(long, default_value_t = 3)]
    memory_cycles: usize,
    /// Users the other leases are spread over (one grant each).
    #[arg(long, default_value_t = 4)]
    fill_users: usize,
    /// Lease requests in flight while the edge is filled.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value = "10.88.0.0/16")]
    subnet: String,
    #[arg(long, default_value_t = 51820)]
    wg_port: u16,
    /// Extra environment for the edge, KEY=VALUE (repeatable), e.g. GLIBC_TUNABLES=...
    #[arg(long)]
    edge_env: Vec<String>,
}

const EDGE: &str = "bench";
/// Per-source budgets while measuring: every request comes from loopback.
const UNLIMITED: &str = "1000000";
/// Pinned source addresses: one per lease, from here up (all on `lo`).
const FIRST_PIN: Ipv4Addr = Ipv4Addr::new(127, 64, 0, 1);
/// A revoked client is done once no probe sent in this long was answered.
const QUIET: Duration = Duration::from_millis(300);
/// Longest a revocation may take before the run fails.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers a client must have had in a row before its grant is revoked.
const WARM_ANSWERS: usize = 20;
/// Pause between revocations, so each meets a settled edge (pin sets written, cache stored).
const GAP: Duration = Duration::from_millis(300);
/// Wait before reading an edge's memory, so its release after a shrink (500 ms) has run.
const MEMORY_SETTLE: Duration = Duration::from_secs(2);

struct Bench {
    args: Args,
    data_dir: PathBuf,
    url: String,
    fingerprint: Fingerprint,
    started_wall: SystemTime,
    started: Instant,
}

struct Session {
    token: String,
}

/// One revocation, times as offsets from the command's start.
struct Revocation {
    user: String,
    /// Start of `grantwire-broker grant revoke` to the send time of the first probe never
    /// answered (all later ones unanswered too).
    latency: Duration,
    command: Duration,
    commit: Option<Duration>,
    /// When the broker's sync stream had the new set as JSON, and how long that took it.
    built: Option<Duration>,
    build: Option<Duration>,
    received: Option<Duration>,
    parse: Option<Duration>,
    applied: Option<Duration>,
    /// Probes sent after the command started and answered, before the first dropped one.
    answered_after_start: usize,
    /// Probes unanswered before the last answered one (lost for another reason).
    stray_losses: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.revocations < args.leases,
        "--revocations must be below --leases"
    );
    ensure!(args.fill_users > 0, "--fill-users must be positive");
    let machine = machine();
    let data_dir = args.work_dir.join("data");
    eprintln!("revoke_bench: starting the broker");
    let (mut broker, url, fingerprint) = start_broker(&args, &data_dir)?;
    let bench = Bench {
        args,
        data_dir,
        url,
        fingerprint,
        started_wall: SystemTime::now(),
        started: Instant::now(),
    };
    let result = run(&bench, &mut broker).await;
    broker.stop();
    let report = result?;
    println!("{report}");
    print!("{machine}");
    Ok(())
}

async fn run(bench: &Bench, broker: &mut Daemon) -> anyhow::Result<String> {
    let args = &bench.args;
    let added: EdgeAddResponse = bench.admin(
        &[
            "edge",
            "add",
            EDGE,
            "--endpoint",
            &format!("127.0.0.1:{}", args.wg_port),
            "--subnet",
            &args.subnet,
        ],
        None,
    )?;
    let token_file = args.work_dir.join("edge-token");
    std::fs::write(&token_file, &added.enrolment_token)?;
    eprintln!("revoke_bench: starting the edge");
    let mut edge = bench.start_edge(&token_file, 1)?;
    edge.wait_line(0, Duration::from_secs(30), "its first lease set", |l| {
        l.contains("lease set applied")
    })?;
    tokio::time::sleep(MEMORY_SETTLE).await;
    let rss_empty = edge.rss_kib()?;

    let n_live = args.revocations;
    let n_fill = args.leases - n_live;
    eprintln!(
        "revoke_bench: {n_live} users with a grant each, {} users for the other {n_fill} leases",
        args.fill_users
    );
    let live_users: Vec<String> = (0..n_live).map(|i| format!("rv-{i:03}")).collect();
    let live_sessions = bench.users(&live_users).await?;
    let fill_sessions = bench.users(&fill_names(0, args.fill_users)).await?;

    eprintln!("revoke_bench: issuing {} leases", args.leases);
    let keys: Vec<[u8; 32]> = (0..n_live).map(|_| random_key()).collect();
    let issue_started = Instant::now();
    let live: Vec<(u32, String, [u8; 32])> = (0..n_live)
        .map(|i| (i as u32, live_sessions[i].token.clone(), keys[i]))
        .collect();
    let profiles = bench.issue(live).await?;
    bench.fill(&fill_sessions, n_live as u32, n_fill).await?;
    let issue_time = issue_started.elapsed();
    edge.wait_line(0, Duration::from_secs(60), "the full lease set", |l| {
        l.contains("lease set applied") && logs::field_num(l, "leases") == Some(args.leases as u64)
    })?;

    // The full set applied to an edge that starts empty: restart it without its lease cache.
    eprintln!("revoke_bench: restarting the edge without its lease cache");
    edge.stop();
    std::fs::remove_file(args.work_dir.join("edge-state/leases.json"))
        .context("removing the edge's lease cache")?;
    let mut edge = bench.start_edge(&token_file, 2)?;
    let (from, connected) =
        edge.wait_line(0, Duration::from_secs(30), "broker sync connected", |l| {
            l.contains("broker sync connected")
        })?;
    let (_, received) = edge.wait_line(from, Duration::from_secs(30), "the full set", |l| {
        l.contains("lease set received") && logs::field_num(l, "leases") == Some(args.leases as u64)
    })?;
    let (_, applied) =
        edge.wait_line(from, Duration::from_secs(30), "the full set applied", |l| {
            l.contains("lease set applied")
                && logs::field_num(l, "leases") == Some(args.leases as u64)
        })?;
    let full = FullSet {
        bytes: logs::field_num(&received, "bytes").unwrap_or(0),
        parse: Duration::from_micros(logs::field_num(&received, "parse_us").unwrap_or(0)),
        handoff_and_apply: between(&received, &applied),
        connected_to_applied: between(&connected, &applied),
    };
    tokio::time::sleep(MEMORY_SETTLE).await;
    let rss_full = edge.rss_kib()?;

    eprintln!("revoke_bench: starting {n_live} clients");
    let edge_public = *profiles[0].edge_public_key.as_bytes();
    let endpoint = SocketAddr::from((Ipv4Addr::LOCALHOST, args.wg_port));
    let mut clients = Vec::with_capacity(n_live);
    for (i, profile) in profiles.iter().enumerate() {
        let spec = ClientSpec {
            user: live_users[i].clone(),
            private_key: keys[i],
            preshared_key: *profile.preshared_key.as_bytes(),
            edge_public_key: edge_public,
            address: profile.address,
            edge_address: added.tunnel_address,
            source: pin_address(i as u32),
            endpoint,
            index: i as u32 + 1,
        };
        clients.push(Client::start(spec, args.background_interval.into()).await?);
        // Staggered, so the edge is never under handshake load (which answers with cookies).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients.iter().any(|c| c.counts().1 == 0) {
        if Instant::now() > deadline {
            let dead: Vec<&str> = clients
                .iter()
                .filter(|c| c.counts().1 == 0)
                .map(|c| c.user.as_str())
                .collect();
            bail!("no answer through the tunnel within 30 s for {dead:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!("revoke_bench: {n_live} revocations");
    let mut revocations = Vec::with_capacity(n_live);
    for (i, c) in clients.iter().enumerate() {
        let expected_after = (args.leases - i - 1) as u64;
        revocations.push(bench.revoke_one(c, broker, &edge, expected_after).await?);
        c.set_interval(Duration::ZERO);
        tokio::time::sleep(GAP).await;
    }
    // The clients not yet revoked kept probing meanwhile: none of theirs may have gone missing.
    let mut background = (0usize, 0usize);
    for c in &clients {
        let (sent, answered) = c.counts();
        background.0 += sent;
        background.1 += answered;
    }
    drop(clients);

    eprintln!("revoke_bench: memory over {} cycles", args.memory_cycles);
    let mut cycles = Vec::new();
    let rss_before_cycles = edge.rss_kib()?;
    let mut fill_users = fill_names(0, args.fill_users);
    for cycle in 0..args.memory_cycles {
        let with = if cycle == 0 {
            rss_before_cycles
        } else {
            let names = fill_names(cycle, args.fill_users);
            let sessions = bench.users(&names).await?;
            bench.fill(&sessions, n_live as u32, n_fill).await?;
            wait_leases(&mut edge, n_fill)?;
            fill_users = names;
            tokio::time::sleep(MEMORY_SETTLE).await;
            edge.rss_kib()?
        };
        for user in &fill_users {
            let _: serde_json::Value = bench.admin(&["grant", "revoke", user, EDGE], None)?;
        }
        wait_leases(&mut edge, 0)?;
        tokio::time::sleep(MEMORY_SETTLE).await;
        cycles.push((with, edge.rss_kib()?));
    }
    let released = edge
        .lines()
        .iter()
        .filter(|l| l.contains("freed memory returned"))
        .count();
    edge.stop();

    Ok(report(&Report {
        args,
        issue_time,
        full,
        rss_empty,
        rss_full,
        revocations,
        background,
        cycles,
        released,
    }))
}

impl Bench {
    fn admin<T: serde::de::DeserializeOwned>(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<T> {
        admin(&self.args.broker_bin, &self.data_dir, args, stdin)
    }

    fn start_edge(&self, token_file: &Path, run: usize) -> anyhow::Result<Daemon> {
        let args = &self.args;
        let mut cmd = Command::new(&args.edge_bin);
        cmd.args(["run", "--broker", &self.url, "--broker-fingerprint"])
            .arg(self.fingerprint.to_string())
            .arg("--token-file")
            .arg(token_file)
            .args(["--listen", &format!("127.0.0.1:{}", args.wg_port)])
            .arg("--state-dir")
            .arg(args.work_dir.join("edge-state"))
            .args(["--tun-name", &args.tun_name])
            .args(["--metrics-listen", "off"])
            .env(
                "RUST_LOG",
                "info,grantwire_edge::broker=debug,grantwire_edge::memory=debug",
            );
        for pair in &args.edge_env {
            if let Some((key, value)) = pair.split_once('=') {
                cmd.env(key, value);
            }
        }
        Daemon::start(
            "grantwire-edge",
            cmd,
            &args.work_dir.join(format!("edge-{run}.log")),
            &args.work_dir.join("edge.pid"),
        )
    }

    /// Adds each user with a grant on the edge, and logs each in over HTTPS.
    async fn users(&self, names: &[String]) -> anyhow::Result<Vec<Session>> {
        let http = self.http(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let password = format!("revocation bench passphrase for {name}");
            let added: UserAddResponse = self.admin(
                &["user", "add", name, "--password-stdin"],
                Some(&format!("{password}\n")),
            )?;
            // Lifted past the per-grant cap of live leases, which this bench does not measure.
            let args = ["grant", "add", name, EDGE, "--max-leases", "65536"];
            let _: GrantInfo = self.admin(&args, None)?;
            let secret = data_encoding::BASE32_NOPAD.decode(added.totp_secret.as_bytes())?;
            let code = grantwire_broker::totp::code_at(&secret, unix_now());
            let body = json!({"user": name, "password": password, "code": code});
            let resp = http
                .post(format!("{}/v1/login", self.url))
                .json(&body)
                .send()
                .await?;
            ensure!(resp.status() == 200, "login of {name}: {}", resp.status());
            let login: LoginResponse = resp.json().await?;
            out.push(Session { token: login.token });
        }
        Ok(out)
    }

    /// `count` leases with throwaway keys, spread over `sessions`, pins from `first_pin` on.
    async fn fill(&self, sessions: &[Session], first_pin: u32, count: usize) -> anyhow::Result<()> {
        let requests = (0..count)
            .map(|i| {
                let s = &sessions[i % sessions.len()];
                (first_pin + i as u32, s.token.clone(), random_key())
            })
            .collect();
        self.issue(requests).await.map(drop)
    }

    /// Issues one lease per (pin index, session token, private key), each requested from its
    /// own pinned address; returns the profiles in order.
    async fn issue(&self, requests: Vec<(u32, String, [u8; 32])>) -> anyhow::Result<Vec<Profile>> {
        let gate = Arc::new(tokio::sync::Semaphore::new(self.args.concurrency));
        let url = format!("{}/v1/leases", self.url);
        let mut tasks = Vec::with_capacity(requests.len());
        for (pin, token, key) in requests {
            let permit = Arc::clone(&gate).acquire_owned().await?;
            let http = self.http(IpAddr::V4(pin_address(pin)))?;
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let public_key = PrivateKey::from_random_bytes(key).public_key();
                let body = json!({"edge": EDGE, "public_key": public_key});
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?;
                drop(permit);
                let status = resp.status();
                if status != 200 {
                    bail!("lease from pin {pin}: {status}: {}", resp.text().await?);
                }
                Ok(resp.json::<LeaseResponse>().await?.profile)
            }));
        }
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await??);
        }
        Ok(out)
    }

    fn http(&self, local: IpAddr) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .use_preconfigured_tls(client_config(Some(self.fingerprint)))
            .local_address(local)
            .build()?)
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.started_wall + (at - self.started)
    }

    /// Revokes `client`'s grant with the CLI while the client probes every `--probe-interval`.
    async fn revoke_one(
        &self,
        client: &Client,
        broker: &Daemon,
        edge: &Daemon,
        leases_after: u64,
    ) -> anyhow::Result<Revocation> {
        let since = Instant::now();
        client.set_interval(self.args.probe_interval.into());
        let warm_deadline = since + Duration::from_secs(5);
        loop {
            if warm(client, since) {
                break;
            }
            ensure!(
                Instant::now() < warm_deadline,
                "{}: probes not answered before its revocation",
                client.user
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (broker_from, edge_from) = (broker.line_count(), edge.line_count());
        let mut cmd = Command::new(&self.args.broker_bin);
        cmd.args(["grant", "revoke", &client.user, EDGE, "--data-dir"])
            .arg(&self.data_dir);
        let t0 = Instant::now();
        let output = tokio::task::spawn_blocking(move || cmd.output()).await??;
        let command = t0.elapsed();
        ensure!(
            output.status.success(),
            "grant revoke {}: {}",
            client.user,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        // Until no probe sent in the last QUIET was answered.
        let deadline = t0 + REVOKE_TIMEOUT;
        loop {
            let last = client.last_answered_sent().unwrap_or(t0);
            if last.elapsed() > QUIET && t0.elapsed() > QUIET {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{}: still answered {REVOKE_TIMEOUT:?} after grant revoke",
                client.user
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (latency, answered_after_start, stray_losses) = {
            let log = client.log.lock().expect("probe log");
            let first = log.sent.partition_point(|&s| s < t0);
            let last_answered = log.answered[first..]
                .iter()
                .rposition(Option::is_some)
                .map(|i| first + i);
            let dropped = last_answered.map_or(first, |i| i + 1);
            ensure!(
                dropped < log.sent.len(),
                "{}: no probe dropped",
                client.user
            );
            let answered = log.answered[first..dropped].iter().flatten().count();
            let stray = (dropped - first) - answered;
            (log.sent[dropped] - t0, answered, stray)
        };
        let t0_wall = self.wall(t0);
        let since = |line: &String| logs::time(line).and_then(|t| t.duration_since(t0_wall).ok());
        let user_field = format!("user={}", client.user);
        let commit = broker.lines()[broker_from..]
            .iter()
            .find(|l| l.contains("grant revoked") && l.contains(&user_field))
            .and_then(since);
        let built_line = broker.lines()[broker_from..]
            .iter()
            .find(|l| {
                l.contains("lease set built") && logs::field_num(l, "leases") == Some(leases_after)
            })
            .cloned();
        let edge_lines = edge.lines();
        let received_line = edge_lines[edge_from..].iter().find(|l| {
            l.contains("lease set received") && logs::field_num(l, "leases") == Some(leases_after)
        });
        let applied = edge_lines[edge_from..]
            .iter()
            .find(|l| {
                l.contains("lease set applied")
                    && logs::field_num(l, "leases") == Some(leases_after)
            })
            .and_then(since);
        eprintln!(
            "revoke_bench: {}: first dropped probe sent {latency:?} after `grant revoke` started (command exited {command:?}, broker committed {commit:?}, edge applied {applied:?})",
            client.user
        );
        Ok(Revocation {
            user: client.user.clone(),
            latency,
            command,
            commit,
            built: built_line.as_ref().and_then(since),
            build: built_line
                .as_ref()
                .and_then(|l| logs::field_num(l, "total_us"))
                .map(Duration::from_micros),
            received: received_line.and_then(since),
            parse: received_line
                .and_then(|l| logs::field_num(l, "parse_us"))
                .map(Duration::from_micros),
            applied,
            answered_after_start,
            stray_losses,
        })
    }
}

/// At least `WARM_ANSWERS` probes were sent since `since` and at least 20 ms ago, and the last
/// `WARM_ANSWERS` of them were all answered.
fn warm(client: &Client, since: Instant) -> bool {
    let log = client.log.lock().expect("probe log");
    let first = log.sent.partition_point(|&s| s < since);
    let settled = log
        .sent
        .partition_point(|s| s.elapsed() > Duration::from_millis(20));
    settled >= first + WARM_ANSWERS
        && log.answered[settled - WARM_ANSWERS..settled]
            .iter()
            .all(Option::is_some)
}

fn wait_leases(edge: &mut Daemon, leases: usize) -> anyhow::Result<()> {
    let from = edge.line_count().saturating_sub(50);
    edge.wait_line(from, Duration::from_secs(120), "the lease count", |l| {
        l.contains("lease set applied") && logs::field_num(l, "leases") == Some(leases as u64)
    })
    .map(drop)
}

fn start_broker(args: &Args, data_dir: &Path) -> anyhow::Result<(Daemon, String, Fingerprint)> {
    let mut cmd = Command::new(&args.broker_bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info,grantwire_broker::routes=debug");
    for flag in [
        "--login-burst",
        "--login-per-sec",
        "--lease-burst",
        "--lease-per-sec",
    ] {
        cmd.args([flag, UNLIMITED]);
    }
    let mut broker = Daemon::start(
        "grantwire-broker",
        cmd,
        &args.work_dir.join("broker.log"),
        &args.work_dir.join("broker.pid"),
    )?;
    let (_, url) = broker.wait_line(0, Duration::from_secs(30), "its URL", |l| {
        l.starts_with("grantwire-broker: listening on ")
    })?;
    let (_, fp) = broker.wait_line(0, Duration::from_secs(30), "its fingerprint", |l| {
        l.starts_with("grantwire-broker: TLS certificate SHA-256 fingerprint: ")
    })?;
    let url = url
        .trim_start_matches("grantwire-broker: listening on ")
        .to_owned();
    let fingerprint = fp
        .trim_start_matches("grantwire-broker: TLS certificate SHA-256 fingerprint: ")
        .parse()?;
    Ok((broker, url, fingerprint))
}

fn fill_names(cycle: usize, users: usize) -> Vec<String> {
    (0..users).map(|j| format!("fill{cycle}-{j}")).collect()
}

fn pin_address(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_PIN) + index)
}

fn random_key() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Time from one log line to another.
fn between(a: &str, b: &str) -> Option<Duration> {
    logs::time(b)?.duration_since(logs::time(a)?).ok()
}

struct FullSet {
    bytes: u64,
    parse: Duration,
    handoff_and_apply: Option<Duration>,
    connected_to_applied: Option<Duration>,
}

struct Report<'a> {
    args: &'a Args,
    issue_time: Duration,
    full: FullSet,
    rss_empty: u64,
    rss_full: u64,
    revocations: Vec<Revocation>,
    background: (usize, usize),
    cycles: Vec<(u64, u64)>,
    released: usize,
}

fn report(r: &Report<'_>) -> String {
    use std::fmt::Write as _;
    let a = r.args;
    let mut s = String::new();
    let n = r.revocations.len();
    let _ = writeln!(
        s,
        "## Revocation latency with {} leases on one edge\n",
        a.leases
    );
    let _ = writeln!(
        s,
        "- Lease set: {} KiB of JSON; leases issued in {:.1} s ({:.0}/s, {} in flight, each from its own address on `lo`, so each has its own /32 pin)",
        r.full.bytes / 1024,
        r.issue_time.as_secs_f64(),
        a.leases as f64 / r.issue_time.as_secs_f64(),
        a.concurrency
    );
    let _ = writeln!(
        s,
        "- Full set applied by an edge that started empty: parse {}, hand-off and apply {}, from the sync stream's connection to applied {} (broker reads, sends; edge parses, applies)",
        ms(r.full.parse),
        opt_ms(r.full.handoff_and_apply),
        opt_ms(r.full.connected_to_applied)
    );
    let _ = writeln!(
        s,
        "- Edge resident memory: {} KiB with no lease, {} KiB with {} ({:.2} KiB a lease, the parsed set and the broker link's buffers included)",
        r.rss_empty,
        r.rss_full,
        a.leases,
        (r.rss_full.saturating_sub(r.rss_empty)) as f64 / a.leases as f64
    );
    let _ = writeln!(
        s,
        "- {n} grants revoked one at a time with `grantwire-broker grant revoke USER {EDGE}`; the revoked client probed every {}, the {} others every {}\n",
        a.probe_interval,
        n.saturating_sub(1),
        a.background_interval
    );
    let _ = writeln!(s, "| over {n} revocations | p50 | p99 | max |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
    let rows: [(&str, Vec<Duration>); 9] = [
        (
            "**`grant revoke` started → first dropped probe**",
            r.revocations.iter().map(|v| v.latency).collect(),
        ),
        (
            "`grant revoke` started → the command exited",
            r.revocations.iter().map(|v| v.command).collect(),
        ),
        (
            "started → broker committed (its log line)",
            r.revocations.iter().filter_map(|v| v.commit).collect(),
        ),
        (
            "broker's read of the set and JSON (within the next)",
            r.revocations.iter().filter_map(|v| v.build).collect(),
        ),
        (
            "started → broker had the set as JSON",
            r.revocations.iter().filter_map(|v| v.built).collect(),
        ),
        (
            "started → edge parsed the new set",
            r.revocations.iter().filter_map(|v| v.received).collect(),
        ),
        (
            "edge's parse of the set (within the above)",
            r.revocations.iter().filter_map(|v| v.parse).collect(),
        ),
        (
            "started → edge applied the set",
            r.revocations.iter().filter_map(|v| v.applied).collect(),
        ),
        (
            "broker committed → edge applied",
            r.revocations
                .iter()
                .filter_map(|v| Some(v.applied? - v.commit?))
                .collect(),
        ),
    ];
    for (what, mut values) in rows {
        values.sort_unstable();
        if values.is_empty() {
            let _ = writeln!(s, "| {what} | n/a | n/a | n/a |");
            continue;
        }
        let _ = writeln!(
            s,
            "| {what} ({} of {n}) | {} | {} | {} |",
            values.len(),
            ms(pct(&values, 50)),
            ms(pct(&values, 99)),
            ms(*values.last().unwrap_or(&Duration::ZERO))
        );
    }
    let stray: usize = r.revocations.iter().map(|v| v.stray_losses).sum();
    let answered: usize = r.revocations.iter().map(|v| v.answered_after_start).sum();
    let worst = r
        .revocations
        .iter()
        .max_by_key(|v| v.latency)
        .map_or("-", |v| v.user.as_str());
    let _ = writeln!(
        s,
        "\nProbes answered after a `grant revoke` started and before the first dropped one: {answered} in all; lost earlier for other reasons: {stray}. Slowest: {worst}. All clients' probes: {} sent, {} answered (the unanswered are the revoked clients' last ones and those in flight at the end).",
        r.background.0, r.background.1
    );
    let _ = writeln!(
        s,
        "\nEdge resident memory (KiB) as the other {} leases are revoked (their {} grants) and issued again, {} times; the edge released freed memory {} times:\n",
        a.leases - a.revocations,
        a.fill_users,
        r.cycles.len(),
        r.released
    );
    let _ = writeln!(s, "| cycle | with the leases | after revoking them |");
    let _ = writeln!(s, "| ---: | ---: | ---: |");
    for (i, (with, after)) in r.cycles.iter().enumerate() {
        let _ = writeln!(s, "| {} | {with} | {after} |", i + 1);
    }
    let _ = writeln!(s, "\n(with no lease at the start: {} KiB)", r.rss_empty);
    s
}

/// Nearest-rank percentile of sorted `values`.
fn pct(values: &[Duration], p: usize) -> Duration {
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), ms)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |k| k.trim().to_owned());
    let loadavg = std::fs::read_to_string("/proc/loadavg").map_or("unknown".into(), |l| {
        l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    });
    format!(
        "\nMachine: {} cores ({cpu}), Linux {kernel}; load average at the start {loadavg}; {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        humantime::format_rfc3339_seconds(SystemTime::now())
    )
}
