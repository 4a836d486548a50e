//! Load generator behind `scripts/bench/broker.sh`. Starts a real `grantwire-broker serve` (the
//! binary the script passes) on 127.0.0.1 with a fresh data directory and SQLite file, sets it
//! up through the admin CLI and the HTTPS API, and measures:
//!
//! 1. lease issuance with valid sessions at several concurrency levels;
//! 2. login throughput under the bounded argon2 pool (wrong passwords for unknown users, which
//!    cost the same argon2id work as real ones), and how many were turned away with 429;
//! 3. the latency of a lone lease request while an open loop offers logins at a fixed rate.
//!
//! Prints Markdown on stdout, progress on stderr. A measurement, not a test: nothing here
//! asserts a timing.
// An output program: its report goes to stdout.
#![allow(clippy::print_stdout)]

mod broker;
mod load;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use grantwire_pinned_tls::http_client;
use serde_json::json;

use broker::{Broker, Session};
use load::{closed_loop, fresh_public_key, sequential, CpuMeter, MakeRequest, OpenLoop};

#[derive(Debug, clap::Parser)]
#[command(about = "Measures a real grantwire-broker over HTTPS; prints Markdown")]
struct Args {
    /// The `grantwire-broker` binary to measure (a release build).
    #[arg(long)]
    broker_bin: PathBuf,
    /// Scratch directory for the broker's data, log and PID file. SQLite fsyncs here, so it
    /// should be on the disk a broker would use (not tmpfs).
    #[arg(long)]
    work_dir: PathBuf,
    /// Concurrent clients for the lease measurement, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    lease_concurrency: Vec<usize>,
    /// Length of each lease level.
    #[arg(long, default_value = "8s")]
    lease_time: humantime::Duration,
    /// Concurrent clients for the login measurement, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,128")]
    login_concurrency: Vec<usize>,
    /// Length of each login level.
    #[arg(long, default_value = "5s")]
    login_time: humantime::Duration,
    /// Logins per second offered in the background of the lone-lease measurement.
    #[arg(long, default_value_t = 200)]
    background_logins: u32,
    /// Length of the lone-lease measurement under login load (and, a third of it, without).
    #[arg(long, default_value = "12s")]
    lone_time: humantime::Duration,
    /// Users (each with one session) the lease requests are spread over.
    #[arg(long, default_value_t = 4)]
    users: usize,
}

/// Leases one edge may hold: a /16 has 65,533 client addresses; stay clear of the end.
const MAX_LEASES_PER_EDGE: u64 = 60_000;
/// Pause between the lone lease requests, so each meets a broker with nothing else of ours
/// in flight.
const LONE_GAP: Duration = Duration::from_millis(20);
/// How long the background logins run before the lone requests start: at 200 offered and tens
/// answered a second, the argon2 queue (64 waiting) is full well within it.
const FLOOD_FILL: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.lease_concurrency.len() < 100,
        "at most 99 lease levels (one /16 edge each)"
    );
    eprintln!("broker_bench: probing the machine and the data disk");
    let machine = report::Machine::probe(&args.work_dir).await?;
    let broker = Broker::start(&args.broker_bin, &args.work_dir)?;
    eprintln!(
        "broker_bench: broker PID {} at {}",
        broker.pid(),
        broker.url
    );
    let sessions = broker.sessions(args.users).await?;

    let leases = lease_levels(&broker, &sessions, &args).await?;
    let logins = login_levels(&broker, &args).await?;
    let lone = lone_leases(&broker, &sessions, &args).await?;

    report::print(&report::Report {
        machine,
        serve_flags: broker::serve_flags().join(" "),
        users: args.users,
        leases,
        logins,
        lone,
    });
    drop(broker);
    Ok(())
}

/// Measurement 1: each level on a fresh /16 edge, so every level starts from an empty lease
/// table for its edge.
async fn lease_levels(
    broker: &Broker,
    sessions: &[Session],
    args: &Args,
) -> anyhow::Result<Vec<report::Level>> {
    let mut out = Vec::new();
    for (i, &concurrency) in args.lease_concurrency.iter().enumerate() {
        let subnet = format!("10.{}.0.0/16", 100 + i);
        let edge = broker
            .edge(&format!("lease-c{concurrency}"), &subnet, sessions)
            .await?;
        eprintln!(
            "broker_bench: leases, {concurrency} concurrent, {}",
            args.lease_time
        );
        let client = http_client(Some(broker.fingerprint));
        let cpu = CpuMeter::start(broker.pid());
        let samples = closed_loop(
            &client,
            &warmup_url(broker),
            concurrency,
            args.lease_time.into(),
            MAX_LEASES_PER_EDGE,
            lease_request(broker, sessions, &edge),
        )
        .await;
        out.push(report::Level {
            concurrency,
            duration: args.lease_time.into(),
            cpu: cpu.stop(),
            samples,
        });
    }
    Ok(out)
}

/// Measurement 2: wrong passwords for unknown users, back to back.
async fn login_levels(broker: &Broker, args: &Args) -> anyhow::Result<Vec<report::Level>> {
    let mut out = Vec::new();
    for &concurrency in &args.login_concurrency {
        eprintln!(
            "broker_bench: logins, {concurrency} concurrent, {}",
            args.login_time
        );
        let client = http_client(Some(broker.fingerprint));
        let cpu = CpuMeter::start(broker.pid());
        let samples = closed_loop(
            &client,
            &warmup_url(broker),
            concurrency,
            args.login_time.into(),
            u64::MAX,
            login_request(broker),
        )
        .await;
        out.push(report::Level {
            concurrency,
            duration: args.login_time.into(),
            cpu: cpu.stop(),
            samples,
        });
    }
    Ok(out)
}

/// Measurement 3: one lease request at a time, first on a quiet broker, then while an open loop
/// offers logins in the background.
async fn lone_leases(
    broker: &Broker,
    sessions: &[Session],
    args: &Args,
) -> anyhow::Result<report::Lone> {
    let lone_sessions = &sessions[..1];
    let edge = broker.edge("lone", "10.99.0.0/16", lone_sessions).await?;
    let make = lease_request(broker, lone_sessions, &edge);
    let client = http_client(Some(broker.fingerprint));
    let _ = client.get(warmup_url(broker)).send().await;
    let quiet_time = Duration::from(args.lone_time) / 3;
    eprintln!("broker_bench: lone leases on a quiet broker, {quiet_time:?}");
    let quiet = sequential(&client, quiet_time, LONE_GAP, &make).await;

    eprintln!(
        "broker_bench: lone leases while {} logins/s are offered, {}",
        args.background_logins, args.lone_time
    );
    let flood_client = http_client(Some(broker.fingerprint));
    let cpu = CpuMeter::start(broker.pid());
    let flood = OpenLoop::start(flood_client, args.background_logins, login_request(broker));
    // Let the flood fill the argon2 queue before measuring.
    tokio::time::sleep(FLOOD_FILL).await;
    let loaded = sequential(&client, args.lone_time.into(), LONE_GAP, &make).await;
    let (background, offered) = flood.finish().await?;
    Ok(report::Lone {
        quiet,
        loaded,
        background,
        background_from: FLOOD_FILL,
        offered,
        offered_per_sec: args.background_logins,
        cpu: cpu.stop(),
    })
}

/// A request that opens a connection without costing the broker a database query: an
/// unauthenticated `whoami` is refused before any lookup.
fn warmup_url(broker: &Broker) -> String {
    format!("{}/v1/whoami", broker.url)
}

/// `POST /v1/leases` on `edge` with a fresh key, worker `n` using session `n % len`.
fn lease_request(broker: &Broker, sessions: &[Session], edge: &str) -> MakeRequest {
    let url = format!("{}/v1/leases", broker.url);
    let tokens: Vec<String> = sessions.iter().map(|s| s.token.clone()).collect();
    let edge = edge.to_owned();
    Arc::new(move |client, n| {
        let body = json!({"edge": edge, "public_key": fresh_public_key()});
        client
            .post(&url)
            .bearer_auth(&tokens[n % tokens.len()])
            .json(&body)
    })
}

/// `POST /v1/login` for a user that does not exist: the broker still runs argon2id (against
/// its dummy hash) and writes an audit row, and no account's failure count grows.
fn login_request(broker: &Broker) -> MakeRequest {
    let url = format!("{}/v1/login", broker.url);
    Arc::new(move |client, n| {
        let body = json!({
            "user": format!("nobody-{n}"),
            "password": "not anybody's password",
            "code": "000000",
        });
        client.post(&url).json(&body)
    })
}
