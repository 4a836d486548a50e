//! The one task that owns the [`EdgeCore`]: it waits on the UDP socket, the TUN, new lease sets
//! and the core's timer, feeds the core, and carries out its outputs. Single-owner, so the core
//! needs no locks and every decision sees a consistent lease table.

use std::future::Future;
use std::time::{Duration, SystemTime};

use grantwire_edge_core::{EdgeCore, Output};
use grantwire_proto::{EdgeEvent, LeaseSet, LeaseUsage};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, trace};

use crate::metrics::Snapshot;
use crate::tun::TunDevice;

/// Room for the largest UDP datagram; WireGuard's own are at most MTU + 32.
/// Most datagrams taken from the socket in one turn of the loop.
const UDP_BATCH: usize = 64;
const BUF_LEN: usize = 65_536;
/// Sleep used when the core has no deadline (no leases): a wake-up that does nothing.
const IDLE: Duration = Duration::from_secs(3600);
/// Off-pin events are handed to the reporter at most this often: the first at once, later ones
/// gathered (one per lease and source, with a count) rather than one per datagram checked.
const EVENT_BATCH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("reading the TUN device failed")]
    Tun(#[source] std::io::Error),
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
    udp: UdpSocket,
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
    let mut udp_buf = vec![0u8; BUF_LEN];
    let mut tun_buf = vec![0u8; BUF_LEN];
    let mut broker_link = true;
    let mut events_taken: Option<Instant> = None;
    let mut report_tick = tokio::time::interval(report_every);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = core
            .poll_timeout()
            .map_or(Instant::now() + IDLE, to_instant);
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            received = udp.recv_from(&mut udp_buf) => match received {
                Ok((n, src)) => {
                    core.handle_datagram(src, &udp_buf[..n], SystemTime::now());
                    // Whatever else is already queued, without going back through the select
                    // (and the flush and the metrics update after it) for every datagram: a
                    // flood then costs the edge a receive call per datagram and little more,
                    // and a granted client's handshake is not left waiting behind it.
                    for _ in 1..UDP_BATCH {
                        match udp.try_recv_from(&mut udp_buf) {
                            Ok((n, src)) => core.handle_datagram(src, &udp_buf[..n], SystemTime::now()),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                debug!(error = %e, "udp receive failed");
                                break;
                            }
                        }
                    }
                }
                Err(e) => debug!(error = %e, "udp receive failed"),
            },
            read = tun.recv(&mut tun_buf) => {
                let n = read.map_err(DataplaneError::Tun)?;
                core.handle_tun_packet(&tun_buf[..n], SystemTime::now());
            }
            changed = sets.changed(), if broker_link => match changed {
                Ok(()) => {
                    let set = sets.borrow_and_update().clone();
                    if let Some(set) = set {
                        apply(&mut core, &set);
                    }
                }
                // The sync task is gone (it never ends on its own); keep enforcing what we have.
                Err(_) => broker_link = false,
            },
            () = tokio::time::sleep_until(deadline) => core.handle_timeout(SystemTime::now()),
            _ = report_tick.tick() => {
                usage.send_replace(core.lease_usage(SystemTime::now()));
            }
        }
        flush(&mut core, &udp, &tun).await;
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
                // Filled in by the metrics server from the sync task's own channel.
                broker_connected: false,
            };
            std::mem::replace(s, now) != now
        });
    }
}

pub fn apply(core: &mut EdgeCore, set: &LeaseSet) {
    let summary = core.apply_lease_set(set, SystemTime::now());
    info!(
        leases = core.lease_count(),
        installed = summary.installed,
        kept = summary.kept,
        removed = summary.removed,
        skipped = summary.skipped,
        "lease set applied"
    );
}

async fn flush<T: TunDevice>(core: &mut EdgeCore, udp: &UdpSocket, tun: &T) {
    while let Some(output) = core.poll_output() {
        match output {
            Output::Transmit { dst, payload } => {
                if let Err(e) = udp.send_to(&payload, dst).await {
                    debug!(%dst, error = %e, "udp send failed");
                } else {
                    trace!(%dst, len = payload.len(), "sent");
                }
            }
            Output::ToTun(packet) => {
                if let Err(e) = tun.send(&packet).await {
                    debug!(error = %e, "tun write failed");
                }
            }
        }
    }
}

/// The core speaks wall-clock time (lease expiry is in unix seconds); tokio sleeps on the
/// monotonic clock. A wall-clock jump is corrected at the next wake-up, at most one tick later.
fn to_instant(deadline: SystemTime) -> Instant {
    let wait = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + wait
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
        async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
            let packet = self.from_plex.lock().await.recv().await;
            let packet = packet.ok_or(std::io::ErrorKind::BrokenPipe)?;
            buf[..packet.len()].copy_from_slice(&packet);
            Ok(packet.len())
        }

        async fn send(&self, packet: &[u8]) -> std::io::Result<usize> {
            let _ = self.to_plex.send(packet.to_vec()).await;
            Ok(packet.len())
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
        let udp = UdpSocket::bind(bind).await.unwrap();
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
        let core = EdgeCore::new(*edge_key.as_bytes(), config());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(core, udp, tun, links, async {
            let _ = stopped.await;
        }));
        sets.send_replace(Some(LeaseSet {
            config: config(),
            leases: vec![lease],
            generated_at: 0,
        }));

        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
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
