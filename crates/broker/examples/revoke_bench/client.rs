//! A synthetic WireGuard client: boringtun's `Tunn` on a UDP socket bound to the lease's pinned
//! address, sending a TCP SYN probe through the tunnel to the edge's address every `interval`
//! and recording which probes the edge's kernel answered (RST through the tunnel) and when.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::packet;

/// The granted port on the edge's tunnel address.
const PLEX_PORT: u16 = 32400;
/// How often WireGuard's timers run (handshake retries, rekeying).
const TIMER_TICK: Duration = Duration::from_millis(100);

pub struct ClientSpec {
    pub user: String,
    pub private_key: [u8; 32],
    pub preshared_key: [u8; 32],
    pub edge_public_key: [u8; 32],
    /// The client's tunnel address.
    pub address: Ipv4Addr,
    /// The edge's tunnel address.
    pub edge_address: Ipv4Addr,
    /// The pinned source address the client sends from.
    pub source: Ipv4Addr,
    pub endpoint: SocketAddr,
    pub index: u32,
}

/// Every probe sent (index = its sequence number) and when its answer came, if it did.
#[derive(Default)]
pub struct ProbeLog {
    pub sent: Vec<Instant>,
    pub answered: Vec<Option<Instant>>,
}

pub struct Client {
    pub user: String,
    /// Time between probes; zero stops probing. The client picks a change up at once.
    interval: watch::Sender<Duration>,
    pub log: Arc<Mutex<ProbeLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    pub async fn start(spec: ClientSpec, interval: Duration) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(spec.source), 0)).await?;
        socket.connect(spec.endpoint).await?;
        let (interval, interval_rx) = watch::channel(interval);
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let user = spec.user.clone();
        let task = tokio::spawn(run(spec, socket, interval_rx, Arc::clone(&log)));
        Ok(Self {
            user,
            interval,
            log,
            task,
        })
    }

    pub fn set_interval(&self, interval: Duration) {
        self.interval.send_replace(interval);
    }

    /// Probes sent and answered so far.
    pub fn counts(&self) -> (usize, usize) {
        let log = self.log.lock().expect("probe log");
        (log.sent.len(), log.answered.iter().flatten().count())
    }

    /// Send time of the newest answered probe.
    pub fn last_answered_sent(&self) -> Option<Instant> {
        let log = self.log.lock().expect("probe log");
        log.answered
            .iter()
            .rposition(Option::is_some)
            .map(|i| log.sent[i])
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    spec: ClientSpec,
    socket: UdpSocket,
    mut interval: watch::Receiver<Duration>,
    log: Arc<Mutex<ProbeLog>>,
) {
    let mut tunn = Tunn::new(
        x25519::StaticSecret::from(spec.private_key),
        x25519::PublicKey::from(spec.edge_public_key),
        Some(spec.preshared_key),
        None,
        spec.index,
        None,
    );
    let edge_ip = spec.endpoint.ip();
    let mut out = vec![0u8; 2048];
    let mut inbound = vec![0u8; 2048];
    if let TunnResult::WriteToNetwork(p) = tunn.format_handshake_initiation(&mut out, false) {
        let _ = socket.send(p).await;
    }
    let mut timers = tokio::time::interval(TIMER_TICK);
    timers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut every = *interval.borrow_and_update();
    let mut next_probe = Instant::now();
    loop {
        let paused = every.is_zero();
        tokio::select! {
            received = socket.recv(&mut inbound) => {
                let Ok(n) = received else { continue };
                let mut datagram = &inbound[..n];
                loop {
                    match tunn.decapsulate(Some(edge_ip), datagram, &mut out) {
                        TunnResult::WriteToNetwork(p) => {
                            let _ = socket.send(p).await;
                            // Queued packets follow a completed handshake.
                            datagram = &[];
                        }
                        TunnResult::WriteToTunnelV4(p, _) => {
                            if let Some(seq) = packet::answered_seq(p, spec.edge_address, spec.address) {
                                let now = Instant::now();
                                let mut log = log.lock().expect("probe log");
                                if let Some(slot) = log.answered.get_mut(seq as usize) {
                                    slot.get_or_insert(now);
                                }
                            }
                            break;
                        }
                        _ => break,
                    }
                }
            }
            () = tokio::time::sleep_until(next_probe), if !paused => {
                let seq = {
                    let mut log = log.lock().expect("probe log");
                    let seq = log.sent.len() as u32;
                    log.sent.push(Instant::now());
                    log.answered.push(None);
                    seq
                };
                let sport = 10_000 + (seq % 50_000) as u16;
                let syn = packet::syn(spec.address, spec.edge_address, sport, PLEX_PORT, seq);
                if let TunnResult::WriteToNetwork(p) = tunn.encapsulate(&syn, &mut out) {
                    let _ = socket.send(p).await;
                }
                // The timer wakes on whole milliseconds: a late probe is made up by an early
                // next one, so the mean interval is the one asked for; after a stall, start
                // afresh rather than send a burst.
                next_probe += every;
                let now = Instant::now();
                if next_probe + every * 4 < now {
                    next_probe = now + every;
                }
            }
            changed = interval.changed() => {
                if changed.is_err() {
                    return;
                }
                every = *interval.borrow_and_update();
                next_probe = Instant::now();
            }
            _ = timers.tick() => {
                if let TunnResult::WriteToNetwork(p) = tunn.update_timers(&mut out) {
                    let _ = socket.send(p).await;
                }
            }
        }
    }
}
