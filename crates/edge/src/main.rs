//! `grantwire-edge`: the tokio shell around `grantwire-edge-core`. It enrols with the broker
//! once, keeps the lease-set stream open, guards Plex's ports with nftables, and moves packets
//! between the WireGuard UDP socket, the core and the TUN device Plex answers on.
//!
//! Exit codes (DESIGN.md): 0 clean stop, 1 runtime failure, 2 usage error, 3 refused by the
//! broker (spent or wrong enrolment token). `doctor` has its own (see `doctor.rs`).

mod broker;
mod cli;
mod clock;
mod dataplane;
mod doctor;
mod guard;
mod listen;
mod memory;
mod metrics;
mod privileges;
mod report;
mod sse;
mod state;
mod tun;
mod udp;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use grantwire_edge_core::EdgeCore;
use grantwire_pinned_tls::http_client;
use grantwire_proto::{EdgeConfig, LeaseSet, PrivateKey};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::broker::BrokerError;
use crate::cli::{Cli, Command, RunArgs};
use crate::guard::{Guard, GuardSpec, GuardThread, HostPolicy, NftGuard};
use crate::metrics::Snapshot;
use crate::privileges::{Account, Plan};
use crate::state::{Credential, StateDir};
use crate::tun::{TunSetup, TUN_MTU};

/// A mistake in how the edge was started that clap cannot see (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> ExitCode {
    // Before anything allocates much (see the function's docs).
    grantwire_edge_core::memory::map_large_blocks();
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
    // Before the runtime starts its threads: no_new_privs is per thread (see `privileges`).
    let plan = match privileges::prepare(args.user.as_deref()) {
        Ok(plan) => plan,
        Err(err) => {
            let code = if err.is_usage() { 2 } else { 1 };
            error!("{:#}", anyhow::Error::from(err));
            return ExitCode::from(code);
        }
    };
    if plan == Plan::StayRoot {
        warn!(
            "running as root throughout: give --user (GRANTWIRE_EDGE_USER) so that the edge drops \
             to an unprivileged user, keeping only CAP_NET_ADMIN, once its guard and TUN device \
             are set up"
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args, plan)) {
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

/// Polled by `block_on` on the main thread, which is the thread that drops root and so the one
/// that keeps CAP_NET_ADMIN: it spawns the guard's thread right after the drop (see
/// [`leave_root`]), and nothing here may move into a task before that.
async fn run(args: RunArgs, plan: Plan) -> Result<()> {
    // A mistyped switch is refused before anything is set up.
    let offload = dataplane::Offload::from_env().map_err(UsageError)?;
    if !args.silent_host && !args.host_allow.is_empty() {
        // clap's `requires` sees GRANTWIRE_EDGE_SILENT_HOST=false as given: ports listed for a
        // host that is not silent would be ignored without a word.
        bail!(UsageError(
            "--host-allow lists the ports a silent host still serves: it needs --silent-host \
             (GRANTWIRE_EDGE_SILENT_HOST=true)"
                .into()
        ));
    }
    guard::check_host_allow(&args.host_allow, args.listen.port()).map_err(UsageError)?;
    let state = StateDir::open(&args.state_dir).context("opening the state directory")?;
    let key = state.private_key().context("loading the edge key")?;
    let client = http_client(args.broker_fingerprint);
    let (credential, config) = match state.enrolment()? {
        Some(enrolled) => enrolled,
        None => enrol(&args, &state, &client, &key).await?,
    };

    // Bound before the guard goes in, so the guard knows which datagrams to the port no socket
    // takes (see `listen`); nothing reads the socket until the data plane starts.
    let (udp, served) =
        listen::bind(args.listen).with_context(|| format!("binding UDP {}", args.listen))?;
    let spec = GuardSpec {
        tun_name: args.tun_name.clone(),
        allow_lan: args.allow_lan.clone(),
        host: if args.silent_host {
            HostPolicy::Silent(args.host_allow.clone())
        } else {
            HostPolicy::Open
        },
        wg_port: args.listen.port(),
        wg_served: served,
    };
    NftGuard
        .install(&spec)
        .context("installing the nftables guard for Plex's ports")?;
    info!(tun = %spec.tun_name, allow_lan = ?spec.allow_lan, "guard installed (nftables table inet grantwire)");
    if let HostPolicy::Silent(allowed) = &spec.host {
        let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        info!(
            wireguard = %format!("udp/{}", spec.wg_port),
            also_open = %allowed.join(","),
            "silent host: everything else unsolicited from outside is dropped"
        );
    }
    let (tun, metrics) = open_io(&args, &config, offload, &udp).await?;
    let guard = leave_root(&plan, &state).await?;
    let setup = Setup {
        tun,
        udp,
        offload,
        metrics,
        guard: guard.clone(),
    };

    // Only a clean stop removes the guard: after a failure Plex stays shielded (fails closed),
    // and the next start replaces the table anyway.
    serve(args, setup, state, client, credential, config, key).await?;
    guard
        .remove()
        .await
        .context("removing the nftables guard")?;
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
                .into()
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

/// What the edge sets up before it serves: the TUN device and the sockets, opened while it may
/// still be root, and the thread that makes every later guard change.
struct Setup {
    tun: TunSetup,
    udp: std::net::UdpSocket,
    offload: dataplane::Offload,
    metrics: Option<TcpListener>,
    guard: GuardThread<NftGuard>,
}

/// Creates the TUN device and binds the UDP socket and the metrics listener: with the guard's
/// install, all the edge does that needs privilege.
async fn open_io(
    args: &RunArgs,
    config: &EdgeConfig,
    offload: dataplane::Offload,
    udp: &std::net::UdpSocket,
) -> Result<(TunSetup, Option<TcpListener>)> {
    let tun = TunSetup::create(
        &args.tun_name,
        config.tunnel_address,
        config.subnet.prefix_len(),
        offload.tun,
    )
    .with_context(|| {
        format!(
            "creating TUN device {} (needs CAP_NET_ADMIN)",
            args.tun_name
        )
    })?;
    info!(
        listen = %udp.local_addr()?,
        tun = %args.tun_name,
        tunnel_address = %config.tunnel_address,
        subnet = %config.subnet,
        mtu = TUN_MTU,
        tun_offload = tun.offload(),
        edge = %config.name,
        "grantwire-edge running"
    );
    let metrics = match args.metrics_listen.0 {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics listener {addr}"))?,
        ),
        None => None,
    };
    Ok((tun, metrics))
}

/// Drops root as `plan` says, then starts the thread that makes every later guard change (see
/// [`GuardThread`]). Both happen here, on the thread `block_on` polls, with no await between
/// them: the guard's thread must be made by the thread that did the drop, after it, to start
/// with the one capability kept.
async fn leave_root(plan: &Plan, state: &StateDir) -> Result<GuardThread<NftGuard>> {
    let Plan::Drop(account) = plan else {
        return GuardThread::spawn(NftGuard).context("starting the guard's thread");
    };
    drop_privileges(state, account)?;
    let guard = GuardThread::spawn(NftGuard).context("starting the guard's thread")?;
    let check = account.clone();
    guard
        .run(move |_| privileges::verify_this_thread(&check))
        .await?
        .context("the guard's thread after the drop")?;
    info!(
        user = %account.name,
        uid = account.uid,
        gid = account.gid,
        "dropped root; keeping only CAP_NET_ADMIN, on the guard's thread, for nft"
    );
    Ok(guard)
}

async fn serve(
    args: RunArgs,
    setup: Setup,
    state: StateDir,
    client: reqwest::Client,
    credential: Credential,
    config: EdgeConfig,
    key: PrivateKey,
) -> Result<()> {
    let (snapshots, snapshot_rx) = watch::channel(Snapshot::default());
    let (link, link_rx) = watch::channel(false);
    if let Some(listener) = setup.metrics {
        info!(metrics = %listener.local_addr()?, "serving /metrics");
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
    let pins = tokio::spawn(follow_pins(setup.guard.clone(), sets.subscribe()));
    tokio::spawn(memory::release_after_shrink(snapshots.subscribe()));
    let sync = tokio::spawn(broker::sync_forever(
        client,
        args.broker,
        credential,
        config.clone(),
        sets,
        link,
    ));

    // Receiver indices must be unpredictable to strangers: seeded once from the OS.
    let index_rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
    let mut core = EdgeCore::new(*key.as_bytes(), config.clone(), index_rng);
    drop(key);
    // Until the broker answers, the leases the edge had (an edge restarted while the broker is
    // away keeps serving them); the broker's first set then replaces them whole.
    match state.cached_lease_set(&config, unix_now()) {
        Ok(Some(set)) => {
            info!(
                leases = set.leases.len(),
                "enforcing the cached lease set until the broker answers"
            );
            set_pins(&setup.guard, &set).await;
            // The wall clock: nothing better is known until the broker's first set.
            dataplane::apply(&mut core, &set, SystemTime::now());
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
    let result = dataplane::run_dedicated(
        core,
        setup.udp,
        setup.offload,
        setup.tun,
        links,
        shutdown_signal(),
    )
    .await;
    sync.abort();
    report.abort();
    cache.abort();
    pins.abort();
    // Finished before the caller removes the guard, so no pin update can follow the removal.
    let _ = pins.await;
    Ok(result?)
}

/// Hands the state directory to `account` and becomes it, keeping CAP_NET_ADMIN alone (see
/// `privileges`). Any error leaves the caller to stop: it must not serve with more privilege
/// than was asked for.
fn drop_privileges(state: &StateDir, account: &Account) -> Result<()> {
    let dir = state.path().display();
    state
        .hand_over(account.uid, account.gid)
        .with_context(|| format!("handing the state directory {dir} to {}", account.name))?;
    privileges::drop_to(account)
        .with_context(|| format!("dropping root to user {}", account.name))?;
    state.check_writable().with_context(|| {
        format!(
            "user {} cannot write the state directory {dir}; every directory above it must let \
             {} through",
            account.name, account.name
        )
    })
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
async fn follow_pins(guard: GuardThread<NftGuard>, mut sets: watch::Receiver<Option<LeaseSet>>) {
    while sets.changed().await.is_ok() {
        let Some(set) = sets.borrow_and_update().clone() else {
            continue;
        };
        set_pins(&guard, &set).await;
    }
}

async fn set_pins(guard: &GuardThread<NftGuard>, set: &LeaseSet) {
    let pins: Vec<ipnet::IpNet> = set.leases.iter().map(|l| l.pin.network()).collect();
    // Degraded, not open: the edge still drops every datagram from outside a pin; only the
    // kernel's early drop of floods no longer matches the leases.
    if let Err(e) = guard.set_pins(pins).await {
        warn!(error = %e, "could not update the guard's pin sets");
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
