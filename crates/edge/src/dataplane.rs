//! The one task that owns the [`EdgeCore`]: it waits on the UDP socket, the TUN, new lease sets
//! and the core's timer, feeds the core, and carries out its outputs. Single-owner, so the core
//! needs no locks and every decision sees a consistent lease table.

use std::future::Future;
use std::time::{Duration, SystemTime};

use grantwire_edge_core::{EdgeCore, Output, Transmit, TunPacket};
use grantwire_proto::{EdgeEvent, LeaseSet, LeaseUsage};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::clock::LeaseClock;
use crate::metrics::Snapshot;
use crate::tun::{TunDevice, TunRx, TunSetup, TunTx};
use crate::udp::{Udp, UdpTx};

/// Most reads taken from the socket, and from the TUN, in one turn of the loop before what they
/// produced is written out: a flood then costs the edge a receive call per 32 datagrams and
/// little more, and neither side waits long behind the other.
const READS_PER_TURN: usize = 4;
/// Sleep used when the core has no deadline (no leases): a wake-up that does nothing.
const IDLE: Duration = Duration::from_secs(3600);
/// Off-pin events are handed to the reporter at most this often: the first at once, later ones
/// gathered (one per lease and source, with a count) rather than one per datagram checked.
const EVENT_BATCH: Duration = Duration::from_secs(10);

/// Which batching the data plane uses. Both are on unless `GRANTWIRE_EDGE_OFFLOAD` says
/// otherwise (`none`, `tun`, `udp`, or `all`): a switch for the benchmark, which measures each
/// step, and a way out should a kernel misbehave with one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// TSO/GRO on the TUN device (see [`crate::tun`]).
    pub tun: bool,
    /// GSO sends on the UDP socket (see [`crate::udp`]).
    pub udp: bool,
}

impl Offload {
    pub const VAR: &'static str = "GRANTWIRE_EDGE_OFFLOAD";

    pub fn from_env() -> Result<Self, String> {
        match std::env::var(Self::VAR) {
            Ok(value) => Self::parse(&value),
            Err(_) => Ok(Self::parse("all").unwrap_or(Self {
                tun: true,
                udp: true,
            })),
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        let (tun, udp) = match value.trim() {
            "all" | "" => (true, true),
            "none" => (false, false),
            "tun" => (true, false),
            "udp" => (false, true),
            other => {
                return Err(format!(
                    "{}={other:?}: expected all, none, tun or udp",
                    Self::VAR
                ))
            }
        };
        Ok(Self { tun, udp })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("reading the TUN device failed")]
    Tun(#[source] std::io::Error),
    #[error("setting up the data plane's thread failed")]
    Setup(#[source] std::io::Error),
    #[error("the data plane's thread stopped without a result")]
    Vanished,
}

/// Runs the data plane on a thread of its own with a single-threaded runtime, until `shutdown`
/// completes. One task owns the core either way; on its own thread it is never moved between
/// workers, and wakes no other thread to do so, which the benchmark counted as CPU time.
pub async fn run_dedicated(
    core: EdgeCore,
    udp: std::net::UdpSocket,
    offload: Offload,
    tun: TunSetup,
    links: Links,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DataplaneError> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel();
    let thread = move || {
        let result = (|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(DataplaneError::Setup)?;
            runtime.block_on(async move {
                let tun = tun.into_async().map_err(DataplaneError::Setup)?;
                let udp = tokio::net::UdpSocket::from_std(udp)
                    .and_then(|udp| Udp::new(udp, offload.udp))
                    .map_err(DataplaneError::Setup)?;
                info!(udp_gso_segments = udp.max_segments(), "data plane running");
                // Alone on its runtime, the loop needs no cooperative budget: with one, tokio
                // made it yield (and wake itself through the runtime's eventfd) every 128 I/O
                // operations, about 1,300 times a second on a bulk upload (strace).
                tokio::task::unconstrained(run(core, udp, tun, links, async {
                    let _ = stopped.await;
                }))
                .await
            })
        })();
        let _ = done.send(result);
    };
    std::thread::Builder::new()
        .name("dataplane".into())
        .spawn(thread)
        .map_err(DataplaneError::Setup)?;
    tokio::pin!(shutdown);
    tokio::pin!(finished);
    let result = tokio::select! {
        () = &mut shutdown => {
            let _ = stop.send(());
            (&mut finished).await
        }
        result = &mut finished => result,
    };
    result.unwrap_or(Err(DataplaneError::Vanished))
}

/// The data plane's channels to the rest of the edge.
pub struct Links {
    /// Lease sets from the broker sync task.
    pub sets: watch::Receiver<Option<LeaseSet>>,
    /// Counters for the metrics endpoint.
    pub snapshots: watch::Sender<Snapshot>,
    /// Each lease's traffic, every `report_every`, for the reporter.
    pub usage: watch::Sender<Vec<LeaseUsage>>,
    /// Off-pin events for the reporter, as they happen.
    pub events: mpsc::Sender<EdgeEvent>,
    pub report_every: Duration,
}

/// Runs until `shutdown` completes. UDP errors (ICMP-induced `ECONNREFUSED` and the like) are
/// per-datagram and never stop the loop; a TUN read error does, because Plex is then gone.
pub async fn run<T: TunDevice>(
    mut core: EdgeCore,
    mut udp: Udp,
    tun: T,
    links: Links,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DataplaneError> {
    tokio::pin!(shutdown);
    let Links {
        mut sets,
        snapshots,
        usage,
        events,
        report_every,
    } = links;
    let mut tun_rx = TunRx::default();
    let mut out = Outbox {
        udp: UdpTx::new(udp.max_segments()),
        tun: TunTx::default(),
    };
    let mut broker_link = true;
    // Lease time: the wall clock only until the first set from the broker (see `crate::clock`).
    let mut clock = LeaseClock::default();
    let mut events_taken: Option<Instant> = None;
    let mut report_tick = tokio::time::interval(report_every);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = core
            .poll_timeout()
            .map_or(Instant::now() + IDLE, |at| clock.instant_of(at));
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            received = udp.recv() => match received {
                Ok(()) => {
                    // This batch, then whatever else is already queued, without going back
                    // through the select (and the writes and metrics after it) for each.
                    for read in 0..READS_PER_TURN {
                        if read > 0 {
                            match udp.try_recv() {
                                Ok(()) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(e) => {
                                    debug!(error = %e, "udp receive failed");
                                    break;
                                }
                            }
                        }
                        let now = clock.now();
                        for (src, datagram) in udp.datagrams() {
                            let room = out.tun.spare(datagram.len());
                            match core.handle_datagram(src, datagram, now, room) {
                                Ok(Some(TunPacket { len })) => out.tun.commit(len),
                                Ok(None) => {}
                                Err(e) => debug!(error = %e, "datagram not handled"),
                            }
                            out.take(&mut core, &udp, &tun).await;
                        }
                    }
                }
                Err(e) => debug!(error = %e, "udp receive failed"),
            },
            read = tun.recv(&mut tun_rx) => {
                read.map_err(DataplaneError::Tun)?;
                for read in 0..READS_PER_TURN {
                    if read > 0 {
                        match tun.try_recv(&mut tun_rx) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(DataplaneError::Tun(e)),
                        }
                    }
                    let now = clock.now();
                    for packet in tun_rx.packets() {
                        let room = out.udp.spare(EdgeCore::transmit_capacity(packet.len()));
                        match core.handle_tun_packet(packet, now, room) {
                            Ok(Some(Transmit { dst, len })) => {
                                trace!(%dst, len, "sending");
                                out.udp.commit(dst, len);
                            }
                            Ok(None) => {}
                            Err(e) => debug!(error = %e, "tun packet not handled"),
                        }
                        out.take(&mut core, &udp, &tun).await;
                    }
                }
            }
            changed = sets.changed(), if broker_link => match changed {
                Ok(()) => {
                    let set = sets.borrow_and_update().clone();
                    if let Some(set) = set {
                        let first = !clock.follows_broker();
                        clock.follow(&set);
                        if first && clock.follows_broker() {
                            report_skew(&clock);
                        }
                        apply(&mut core, &set, clock.now());
                    }
                }
                // The sync task is gone (it never ends on its own); keep enforcing what we have.
                Err(_) => broker_link = false,
            },
            () = tokio::time::sleep_until(deadline) => core.handle_timeout(clock.now()),
            _ = report_tick.tick() => {
                usage.send_replace(core.lease_usage(clock.now()));
            }
        }
        out.take(&mut core, &udp, &tun).await;
        out.flush(&udp, &tun).await;
        if core.has_events() && events_taken.is_none_or(|t| t.elapsed() >= EVENT_BATCH) {
            events_taken = Some(Instant::now());
            for event in core.take_events() {
                // A full queue means the broker has been away long; the count still shows in
                // the metrics (off_pin_authenticated_total).
                if events.try_send(event).is_err() {
                    debug!("report queue full; off-pin event dropped");
                }
            }
        }
        snapshots.send_if_modified(|s| {
            let now = Snapshot {
                stats: core.stats(),
                leases: core.lease_count(),
                // Filled in by the metrics server, from the sync task's own channel and the
                // runtime.
                broker_connected: false,
                tasks: 0,
            };
            std::mem::replace(s, now) != now
        });
    }
}

/// Says, once, how far this host's wall clock is from the broker's, which the edge now judges
/// leases by: a large difference is worth an operator's look (other software on this host still
/// trusts the wall clock), but changes no lease.
fn report_skew(clock: &LeaseClock) {
    let (wall, broker) = (SystemTime::now(), clock.now());
    let skew = match wall.duration_since(broker) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    };
    if skew.abs() > SKEW_WORTH_A_WARNING.as_secs_f64() {
        warn!(
            skew_secs = %format!("{skew:+.0}"),
            "this host's wall clock is off the broker's; leases are judged by the broker's clock"
        );
    } else {
        info!(
            skew_secs = format!("{skew:+.3}"),
            "lease expiry follows the broker's clock"
        );
    }
}

/// A wall clock further than this from the broker's is reported as a warning.
const SKEW_WORTH_A_WARNING: Duration = Duration::from_secs(30);

/// Applies `set` as of `now` (lease time: [`LeaseClock::now`], or the wall clock for a set
/// loaded from the cache before the broker has said anything).
pub fn apply(core: &mut EdgeCore, set: &LeaseSet, now: SystemTime) {
    let summary = core.apply_lease_set(set, now);
    info!(
        leases = core.lease_count(),
        installed = summary.installed,
        kept = summary.kept,
        removed = summary.removed,
        skipped = summary.skipped,
        "lease set applied"
    );
}

/// What the core produced and is not yet written: datagrams gathered into GSO runs, packets for
/// the TUN gathered for one coalesced write. Written at the end of each turn of the loop, or
/// earlier when a batch is full.
struct Outbox {
    udp: UdpTx,
    tun: TunTx,
}

impl Outbox {
    /// Moves the core's queued outputs in, and writes out a full TUN batch.
    async fn take<T: TunDevice>(&mut self, core: &mut EdgeCore, udp: &Udp, tun: &T) {
        while let Some(Output::Transmit { dst, payload }) = core.poll_output() {
            trace!(%dst, len = payload.len(), "sending");
            self.udp.push(dst, &payload);
        }
        if self.tun.len() >= TunTx::MAX {
            self.flush(udp, tun).await;
        }
    }

    async fn flush<T: TunDevice>(&mut self, udp: &Udp, tun: &T) {
        if !self.udp.is_empty() {
            udp.send(&mut self.udp).await;
        }
        if !self.tun.is_empty() {
            if let Err(e) = tun.send(&mut self.tun).await {
                debug!(error = %e, "tun write failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    use boringtun::noise::{Tunn, TunnResult};
    use boringtun::x25519;
    use grantwire_edge_core::build_ipv4;
    use grantwire_proto::{EdgeConfig, EdgeLease, PresharedKey, PrivateKey};
    use tokio::sync::{mpsc, Mutex};

    /// Plex's side as two channels: what the edge writes, and what "Plex" sends back.
    struct FakeTun {
        from_plex: Mutex<mpsc::Receiver<Vec<u8>>>,
        to_plex: mpsc::Sender<Vec<u8>>,
    }

    impl TunDevice for FakeTun {
        async fn recv(&self, rx: &mut TunRx) -> std::io::Result<()> {
            let packet = self.from_plex.lock().await.recv().await;
            let packet = packet.ok_or(std::io::ErrorKind::BrokenPipe)?;
            rx.set_single(&packet);
            Ok(())
        }

        fn try_recv(&self, rx: &mut TunRx) -> std::io::Result<()> {
            let mut from_plex = self
                .from_plex
                .try_lock()
                .map_err(|_| std::io::ErrorKind::WouldBlock)?;
            let packet = from_plex
                .try_recv()
                .map_err(|_| std::io::ErrorKind::WouldBlock)?;
            rx.set_single(&packet);
            Ok(())
        }

        async fn send(&self, tx: &mut TunTx) -> std::io::Result<()> {
            for packet in tx.packets() {
                let _ = self.to_plex.send(packet.to_vec()).await;
            }
            tx.clear();
            Ok(())
        }
    }

    const EDGE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    fn config() -> EdgeConfig {
        EdgeConfig {
            name: "home".into(),
            subnet: "10.77.0.0/24".parse().unwrap(),
            tunnel_address: EDGE,
        }
    }

    #[test]
    fn offload_switch_names_each_step_and_refuses_anything_else() {
        let both = Offload {
            tun: true,
            udp: true,
        };
        assert_eq!(Offload::parse("all"), Ok(both));
        assert_eq!(Offload::parse(""), Ok(both));
        assert_eq!(
            Offload::parse("none"),
            Ok(Offload {
                tun: false,
                udp: false
            })
        );
        assert_eq!(
            Offload::parse("tun"),
            Ok(Offload {
                tun: true,
                udp: false
            })
        );
        assert_eq!(
            Offload::parse("udp"),
            Ok(Offload {
                tun: false,
                udp: true
            })
        );
        let err = Offload::parse("gso").unwrap_err();
        assert!(
            err.contains("GRANTWIRE_EDGE_OFFLOAD") && err.contains("\"gso\""),
            "{err}"
        );
    }

    #[tokio::test]
    async fn loopback_client_reaches_plex_and_back() {
        round_trip_through("127.0.0.1:0").await;
    }

    /// A dual-stack socket (`--listen [::]:51820`) reports IPv4 clients v4-mapped, while the core
    /// hands back plain IPv4 destinations (it canonicalises sources so pins compare alike); Linux
    /// accepts an IPv4 destination on a dual-stack socket, which this test relies on.
    #[tokio::test]
    async fn dual_stack_socket_answers_an_ipv4_client() {
        round_trip_through("[::]:0").await;
    }

    async fn round_trip_through(bind: &str) {
        let edge_key = PrivateKey::from_random_bytes([3; 32]);
        let client_key = PrivateKey::from_random_bytes([4; 32]);
        let psk = PresharedKey::from_bytes([5; 32]);
        let lease = EdgeLease {
            id: "l1".into(),
            public_key: client_key.public_key(),
            preshared_key: psk.clone(),
            tunnel_address: CLIENT,
            pin: "127.0.0.1/32".parse().unwrap(),
            ports: vec![32400],
            expires_at: i64::MAX / 2,
        };
        let udp = Udp::new(tokio::net::UdpSocket::bind(bind).await.unwrap(), true).unwrap();
        let edge_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, udp.local_addr().unwrap().port()));
        let (to_edge, from_plex) = mpsc::channel(8);
        let (to_plex, mut plex) = mpsc::channel(8);
        let tun = FakeTun {
            from_plex: Mutex::new(from_plex),
            to_plex,
        };
        let (sets, set_rx) = watch::channel(None);
        let (snapshots, snap_rx) = watch::channel(Snapshot::default());
        let (usage, mut usage_rx) = watch::channel(Vec::new());
        let (events, _events_rx) = mpsc::channel(8);
        let links = Links {
            sets: set_rx,
            snapshots,
            usage,
            events,
            report_every: Duration::from_millis(50),
        };
        let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let core = EdgeCore::new(*edge_key.as_bytes(), config(), rng);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(core, udp, tun, links, async {
            let _ = stopped.await;
        }));
        sets.send_replace(Some(LeaseSet {
            config: config(),
            leases: vec![lease],
            generated_at: 0,
            broker_time_ms: None,
        }));

        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let edge_public = x25519::PublicKey::from(*edge_key.public_key().as_bytes());
        let secret = x25519::StaticSecret::from(*client_key.as_bytes());
        let mut tunn = Tunn::new(secret, edge_public, Some(*psk.as_bytes()), None, 9, None);
        let mut buf = vec![0u8; 2048];
        // The set may land a moment after the first datagram; retry the initiation until then.
        let keepalive = loop {
            let init = match tunn.format_handshake_initiation(&mut buf, true) {
                TunnResult::WriteToNetwork(p) => p.to_vec(),
                other => panic!("{other:?}"),
            };
            sock.send_to(&init, edge_addr).await.unwrap();
            let mut resp = vec![0u8; 2048];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut resp)).await
            {
                match tunn.decapsulate(Some(edge_addr.ip()), &resp[..n], &mut buf) {
                    TunnResult::WriteToNetwork(p) => break p.to_vec(),
                    other => panic!("{other:?}"),
                }
            }
        };
        sock.send_to(&keepalive, edge_addr).await.unwrap();

        let request = build_ipv4(6, CLIENT, EDGE, 50000, 32400);
        let sealed = match tunn.encapsulate(&request, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("{other:?}"),
        };
        sock.send_to(&sealed, edge_addr).await.unwrap();
        let at_plex = tokio::time::timeout(Duration::from_secs(5), plex.recv()).await;
        assert_eq!(at_plex.unwrap(), Some(request));

        let reply = build_ipv4(6, EDGE, CLIENT, 32400, 50000);
        to_edge.send(reply.clone()).await.unwrap();
        let mut datagram = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut datagram))
            .await
            .unwrap()
            .unwrap();
        let got = match tunn.decapsulate(Some(edge_addr.ip()), &datagram[..n], &mut buf) {
            TunnResult::WriteToTunnelV4(p, _) => p.to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, reply);
        assert_eq!(snap_rx.borrow().leases, 1);
        assert_eq!(snap_rx.borrow().stats.packets_to_tun, 1);
        // The usage published for the reporter counts this lease's traffic.
        let usage = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                usage_rx.changed().await.unwrap();
                let now = usage_rx.borrow_and_update().clone();
                if now.first().is_some_and(|u| u.tx_bytes > 0) {
                    return now;
                }
            }
        })
        .await
        .expect("usage with traffic published");
        assert_eq!(usage[0].lease_id, "l1");
        assert!(usage[0].rx_bytes > 0 && usage[0].last_handshake_at.is_some());

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
