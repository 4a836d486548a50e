//! `grantwire-edge`: the tokio shell around `grantwire-edge-core`. It enrols with the broker
//! once, keeps the lease-set stream open, guards Plex's ports with nftables, and moves packets
//! between the WireGuard UDP socket, the core and the TUN device Plex answers on.
//!
//! Exit codes (DESIGN.md): 0 clean stop, 1 runtime failure, 2 usage error, 3 refused by the
//! broker (spent or wrong enrolment token). `doctor` has its own (see `doctor.rs`).

mod broker;
mod cli;
mod dataplane;
mod doctor;
mod guard;
mod memory;
mod metrics;
mod report;
mod sse;
mod state;
mod tun;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use grantwire_client_core::tls::http_client;
use grantwire_edge_core::EdgeCore;
use grantwire_proto::{EdgeConfig, LeaseSet, PrivateKey};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::broker::BrokerError;
use crate::cli::{Cli, Command, RunArgs};
use crate::guard::{Guard, GuardSpec, NftGuard};
use crate::metrics::Snapshot;
use crate::state::{Credential, StateDir};
use crate::tun::{TunRs, TUN_MTU};

/// A mistake in how the edge was started that clap cannot see (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(&'static str);

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match cli.command {
        Command::Run(args) => args,
        Command::Doctor(args) => return doctor::main(&args),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        2
    } else if err
        .downcast_ref::<BrokerError>()
        .is_some_and(BrokerError::is_refused)
    {
        3
    } else {
        1
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let state = StateDir::open(&args.state_dir).context("opening the state directory")?;
    let key = state.private_key().context("loading the edge key")?;
    let client = http_client(args.broker_fingerprint);
    let (credential, config) = match state.enrolment()? {
        Some(enrolled) => enrolled,
        None => enrol(&args, &state, &client, &key).await?,
    };

    let mut guard = NftGuard;
    let spec = GuardSpec {
        tun_name: args.tun_name.clone(),
        allow_lan: args.allow_lan.clone(),
        wg_port: args.listen.port(),
    };
    guard
        .install(&spec)
        .context("installing the nftables guard for Plex's ports")?;
    info!(tun = %spec.tun_name, allow_lan = ?spec.allow_lan, "guard installed (nftables table inet grantwire)");

    // Only a clean stop removes the guard: after a failure Plex stays shielded (fails closed),
    // and the next start replaces the table anyway.
    serve(args, state, client, credential, config, key).await?;
    guard.remove().context("removing the nftables guard")?;
    info!("stopped; guard removed");
    Ok(())
}

async fn enrol(
    args: &RunArgs,
    state: &StateDir,
    client: &reqwest::Client,
    key: &PrivateKey,
) -> Result<(Credential, EdgeConfig)> {
    let Some(token_file) = &args.token_file else {
        bail!(UsageError(
            "this edge has not enrolled yet: give --token-file with the token from `grantwire-broker edge add`"
        ));
    };
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading the token file {}", token_file.display()))?;
    let response = broker::enrol(client, &args.broker, token.trim(), key.public_key())
        .await
        .context("enrolling with the broker")?;
    let credential = Credential::new(response.credential);
    state
        .store_enrolment(&credential, &response.config)
        .context("storing the enrolment")?;
    info!(edge = %response.config.name, "enrolled with the broker");
    Ok((credential, response.config))
}

async fn serve(
    args: RunArgs,
    state: StateDir,
    client: reqwest::Client,
    credential: Credential,
    config: EdgeConfig,
    key: PrivateKey,
) -> Result<()> {
    let tun = TunRs::create(
        &args.tun_name,
        config.tunnel_address,
        config.subnet.prefix_len(),
    )
    .with_context(|| {
        format!(
            "creating TUN device {} (needs CAP_NET_ADMIN)",
            args.tun_name
        )
    })?;
    let udp = UdpSocket::bind(args.listen)
        .await
        .with_context(|| format!("binding UDP {}", args.listen))?;
    info!(
        listen = %udp.local_addr()?,
        tun = %args.tun_name,
        tunnel_address = %config.tunnel_address,
        subnet = %config.subnet,
        mtu = TUN_MTU,
        edge = %config.name,
        "grantwire-edge running"
    );

    let (snapshots, snapshot_rx) = watch::channel(Snapshot::default());
    let (link, link_rx) = watch::channel(false);
    if let Some(addr) = args.metrics_listen.0 {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics listener {addr}"))?;
        info!(metrics = %addr, "serving /metrics");
        tokio::spawn(metrics::serve(listener, snapshot_rx, link_rx));
    }
    let (sets, set_rx) = watch::channel(None);
    let (usage_tx, usage_rx) = watch::channel(Vec::new());
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(report::MAX_QUEUED_EVENTS);
    let reporter = report::Reporter {
        client: client.clone(),
        broker: args.broker.clone(),
        credential: credential.clone(),
        usage: usage_rx,
        events: events_rx,
    };
    let report = tokio::spawn(reporter.run());
    let cache = tokio::spawn(cache_lease_sets(state.clone(), sets.subscribe()));
    let pins = tokio::spawn(follow_pins(sets.subscribe()));
    tokio::spawn(memory::release_after_shrink(snapshots.subscribe()));
    let sync = tokio::spawn(broker::sync_forever(
        client,
        args.broker,
        credential,
        sets,
        link,
    ));

    let mut core = EdgeCore::new(*key.as_bytes(), config.clone());
    drop(key);
    // Until the broker answers, the leases the edge had (an edge restarted while the broker is
    // away keeps serving them); the broker's first set then replaces them whole.
    match state.cached_lease_set(&config, unix_now()) {
        Ok(Some(set)) => {
            info!(
                leases = set.leases.len(),
                "enforcing the cached lease set until the broker answers"
            );
            set_pins(&set).await;
            dataplane::apply(&mut core, &set);
        }
        Ok(None) => {}
        // Fails closed: no lease is admitted until the broker sends the set.
        Err(e) => warn!(error = %e, "ignoring the lease cache"),
    }
    let links = dataplane::Links {
        sets: set_rx,
        snapshots,
        usage: usage_tx,
        events: events_tx,
        report_every: std::time::Duration::from_secs(args.report_secs),
    };
    let result = dataplane::run(core, udp, tun, links, shutdown_signal()).await;
    sync.abort();
    report.abort();
    cache.abort();
    pins.abort();
    Ok(result?)
}

/// Writes each lease set the broker sends to the state directory (see
/// [`StateDir::store_lease_set`]); only the newest is written when several arrive at once.
async fn cache_lease_sets(state: StateDir, mut sets: watch::Receiver<Option<LeaseSet>>) {
    while sets.changed().await.is_ok() {
        let Some(set) = sets.borrow_and_update().clone() else {
            continue;
        };
        let state = state.clone();
        match tokio::task::spawn_blocking(move || state.store_lease_set(&set)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "could not cache the lease set"),
            Err(e) => warn!(error = %e, "could not cache the lease set"),
        }
    }
}

/// Keeps the guard's pin sets (see [`guard`]) to the pins of the newest lease set.
async fn follow_pins(mut sets: watch::Receiver<Option<LeaseSet>>) {
    while sets.changed().await.is_ok() {
        let Some(set) = sets.borrow_and_update().clone() else {
            continue;
        };
        set_pins(&set).await;
    }
}

async fn set_pins(set: &LeaseSet) {
    let pins: Vec<ipnet::IpNet> = set.leases.iter().map(|l| l.pin.network()).collect();
    match tokio::task::spawn_blocking(move || NftGuard.set_pins(&pins)).await {
        Ok(Ok(())) => {}
        // Degraded, not open: the edge still drops every datagram from outside a pin; only
        // the kernel's early drop of floods no longer matches the leases.
        Ok(Err(e)) => warn!(error = %e, "could not update the guard's pin sets"),
        Err(e) => warn!(error = %e, "could not update the guard's pin sets"),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// SIGINT or SIGTERM (systemd's stop). If the SIGTERM handler cannot be installed, SIGINT
/// alone still stops the edge cleanly.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    info!("shutdown signal received");
}
