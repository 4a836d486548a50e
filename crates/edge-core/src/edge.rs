//! [`EdgeCore`]: the lease table and the admission path of every datagram and packet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::TunnResult;
use boringtun::x25519;
use grantwire_proto::{EdgeConfig, EdgeEvent, LeaseSet, LeaseUsage};
use rand::{CryptoRng, RngCore};
use tracing::{debug, trace, warn};

use crate::datapath::decapsulate_all;
use crate::peer::{is_expired, Peer};
use crate::pins::PinIndex;
use crate::Stats;

mod admission;

/// How often boringtun's timers run. WireGuard's timers have one-second resolution; a quarter
/// second keeps handshake retries and rekeys close to their nominal times at negligible cost.
pub const TICK: Duration = Duration::from_millis(250);

/// Handshake initiations per second (across all peers) before the edge demands cookies.
/// A home edge sees a handful of clients; 100 leaves room for all of them to reconnect at once.
const GLOBAL_HANDSHAKE_LIMIT: u64 = 100;

/// The largest IP packet.
const MAX_PACKET: usize = 65_535;

/// Bytes WireGuard adds to a packet: a 16-byte header and a 16-byte authentication tag.
pub const OVERHEAD: usize = 32;

/// A handshake initiation, the longest datagram sealing a packet can turn into (when the session
/// has expired, boringtun queues the packet and starts a handshake instead).
const HANDSHAKE_INIT_LEN: usize = 148;

/// The core's own buffer, for what the shell's buffers need not be sized for: handshake
/// replies, timers, and packets boringtun queued during a handshake (any IP packet).
const SCRATCH_LEN: usize = MAX_PACKET + OVERHEAD;

/// Most distinct (lease, source) off-pin events held until the shell takes them; more are
/// counted in the stats but not itemised.
const MAX_PENDING_EVENTS: usize = 256;

/// Peer indices are 24 bits: boringtun shifts them left by 8 for its receiver indices.
const INDEX_MASK: u32 = 0x00ff_ffff;

/// Where peer indices come from: a cryptographically secure generator the shell passes in
/// (seeded from the OS there, from a constant in tests), so the core reads no randomness of its
/// own. Random rather than sequential indices keep a stranger from naming live leases by
/// counting, which would let a flood from outside every pin spend the edge-wide off-pin check
/// budget and hide a real key used off its pin.
pub type IndexRng = Box<dyn RngCore + Send>;

/// What the core queued for the shell: the datagrams that are not the direct result of sealing
/// or opening one packet (handshake replies, cookie replies, timers' retries and keepalives,
/// packets held back during a handshake). Rare next to data, so each owns its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `payload` as one UDP datagram to `dst`, which always lies inside the pin of the lease
    /// the datagram belongs to ([`EdgeCore::poll_output`] withholds it otherwise). The one
    /// datagram that belongs to no lease yet, a cookie reply under load, goes to the source of
    /// the initiation it answers, which lies inside some pin (see the crate docs).
    Transmit { dst: SocketAddr, payload: Vec<u8> },
}

/// A sealed packet that [`EdgeCore::handle_tun_packet`] wrote at the start of the shell's
/// buffer: send `buf[..len]` as one UDP datagram to `dst`, which lies inside the pin of the
/// lease it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub len: usize,
}

/// An opened packet that [`EdgeCore::handle_datagram`] wrote at the start of the shell's
/// buffer: write `buf[..len]`, an IPv4 packet that has passed the inner filter, to the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunPacket {
    pub len: usize,
}

/// The shell passed a buffer shorter than the call's contract (see [`EdgeCore`]). The call did
/// nothing: no state changed and nothing was counted, so the shell may retry with a larger one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("output buffer of {given} bytes is too small; this call needs {needed}")]
pub struct BufferTooSmall {
    pub needed: usize,
    pub given: usize,
}

/// What [`EdgeCore::apply_lease_set`] did, for the shell's log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub installed: usize,
    pub kept: usize,
    pub removed: usize,
    /// Already expired at `now`, or inconsistent (duplicate key or address, address outside
    /// the subnet); never installed.
    pub skipped: usize,
}

/// The edge's data plane, without I/O: a table of leases, each with a pin, an expiry, a port
/// list and a boringtun `Tunn`.
///
/// # How the shell drives it
///
/// 1. Make it with [`EdgeCore::new`], then [`apply_lease_set`](Self::apply_lease_set) each set
///    the broker sends (the complete set: the table is replaced).
/// 2. For every UDP datagram call [`handle_datagram`](Self::handle_datagram) with a buffer of
///    at least `datagram.len()` bytes; a returned [`TunPacket`] is in that buffer, for the TUN.
///    For every packet read from the TUN call [`handle_tun_packet`](Self::handle_tun_packet)
///    with a buffer of at least [`transmit_capacity(packet.len())`](Self::transmit_capacity)
///    bytes; a returned [`Transmit`] is in that buffer, for the UDP socket. The buffers are the
///    shell's (a slot of its TUN write batch, the tail of its UDP send batch), so a packet is
///    sealed or opened straight into the place it is written from; the core keeps no reference
///    to them after the call. A shorter buffer is refused with [`BufferTooSmall`] before
///    anything happens.
/// 3. After **each** `handle_*`/`apply_lease_set`/`handle_timeout` call, drain
///    [`poll_output`](Self::poll_output) until `None`, sending each [`Output::Transmit`] on the
///    UDP socket. A call leaves its result in the shell's buffer (a data packet) or in this
///    queue (everything else), never both, so the shell need not order one against the other.
/// 4. Arm one timer for [`poll_timeout`](Self::poll_timeout); when it fires, call
///    [`handle_timeout`](Self::handle_timeout), drain outputs again, and re-arm. Call it even
///    when the broker is unreachable: that is how leases expire by the edge's own clock.
///
/// Every method takes `now` as wall-clock time because lease expiry is in unix seconds. The
/// `Tunn`s keep their own monotonic clock for WireGuard's timers (see `peer.rs`).
pub struct EdgeCore {
    config: EdgeConfig,
    /// Shared with every peer, which makes its `Tunn` with it on first use.
    static_private: Arc<x25519::StaticSecret>,
    static_public: x25519::PublicKey,
    /// Shared by all peers for the mac1 check and cookie demand *before* `parse_handshake_anon`
    /// spends a Diffie-Hellman on an initiation.
    rate_limiter: Arc<RateLimiter>,
    /// Boxed: a `Peer` holds a whole boringtun `Tunn` (kilobytes), and a B-tree moves its
    /// values around inside its nodes on every insert.
    peers: BTreeMap<u32, Box<Peer>>,
    by_key: HashMap<[u8; 32], u32>,
    by_address: HashMap<Ipv4Addr, u32>,
    /// The peers' pins, for the first admission check of every datagram.
    pins: PinIndex,
    /// The earliest expiry in the table, so a datagram need not look at every lease to learn
    /// that none has expired.
    next_expiry: Option<SystemTime>,
    index_rng: IndexRng,
    next_tick: Option<SystemTime>,
    outputs: VecDeque<Queued>,
    /// See [`SCRATCH_LEN`]. Never holds a data packet on its way through.
    scratch: Vec<u8>,
    stats: Stats,
    /// Off-pin use of a lease's keys, by (lease id, source), until [`EdgeCore::take_events`].
    events: HashMap<(String, std::net::IpAddr), EdgeEvent>,
    /// Off-pin checks in the current second, edge-wide, and when that second began.
    off_pin_window: (Option<SystemTime>, u32),
}

impl EdgeCore {
    /// `static_private` is the edge's clamped X25519 key; the core keeps it only inside
    /// zeroise-on-drop types. The caller should zeroise its own copy. `rng` draws the peers'
    /// receiver indices (see [`IndexRng`]).
    pub fn new<R>(static_private: [u8; 32], config: EdgeConfig, rng: R) -> Self
    where
        R: RngCore + CryptoRng + Send + 'static,
    {
        let static_private = Arc::new(x25519::StaticSecret::from(static_private));
        let static_public = x25519::PublicKey::from(&*static_private);
        let rate_limiter = Arc::new(RateLimiter::new(&static_public, GLOBAL_HANDSHAKE_LIMIT));
        Self {
            config,
            static_private,
            static_public,
            rate_limiter,
            peers: BTreeMap::new(),
            by_key: HashMap::new(),
            by_address: HashMap::new(),
            pins: PinIndex::default(),
            next_expiry: None,
            index_rng: Box::new(rng),
            next_tick: None,
            outputs: VecDeque::new(),
            scratch: vec![0; SCRATCH_LEN],
            stats: Stats::default(),
            events: HashMap::new(),
            off_pin_window: (None, 0),
        }
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of leases in the table.
    pub fn lease_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether a lease with this id is in the table.
    pub fn has_lease(&self, id: &str) -> bool {
        self.peers.values().any(|p| p.lease.id == id)
    }

    /// Replaces the table with `set`. A lease whose id, key and preshared key are unchanged
    /// keeps its `Tunn` (and session) and takes the set's pin, ports and expiry (a moved pin
    /// forgets an endpoint outside it); others get a fresh one; leases missing from
    /// `set` are removed and their keys zeroised. Leases already expired at `now` are skipped.
    pub fn apply_lease_set(&mut self, set: &LeaseSet, now: SystemTime) -> ApplySummary {
        if set.config.tunnel_address != self.config.tunnel_address {
            // The TUN was configured from our stored config; follow it, not the set.
            warn!(
                stored = %self.config.tunnel_address,
                broker = %set.config.tunnel_address,
                "broker reports a different edge tunnel address; restart the edge to adopt it"
            );
        }
        let mut old = std::mem::take(&mut self.peers);
        // Fresh maps sized for this set: cleared ones would keep the capacity of the largest
        // set ever applied (over a megabyte at 10,000 leases) after the leases are gone.
        self.by_key = HashMap::with_capacity(set.leases.len());
        self.by_address = HashMap::with_capacity(set.leases.len());
        self.pins.reset(set.leases.len());
        self.next_expiry = None;
        // The running peers by lease id, so each lease of the set finds its own in one lookup.
        let mut old_by_id: HashMap<String, u32> = old
            .iter()
            .map(|(index, peer)| (peer.lease.id.clone(), *index))
            .collect();
        let mut summary = ApplySummary::default();
        for lease in &set.leases {
            if let Some(reason) = self.refuse_reason(lease, now) {
                debug!(lease_id = %lease.id, reason, "lease not installed");
                summary.skipped += 1;
                continue;
            }
            let kept = old_by_id
                .remove(&lease.id)
                .filter(|idx| old.get(idx).is_some_and(|p| p.same_identity(lease)))
                .and_then(|idx| old.remove(&idx));
            let peer = match kept {
                Some(mut peer) => {
                    peer.update_terms(lease.clone());
                    summary.kept += 1;
                    peer
                }
                None => {
                    let index = self.allocate_index(&old);
                    debug!(lease_id = %lease.id, index, pin = %lease.pin, "lease installed");
                    summary.installed += 1;
                    self.stats.leases_installed += 1;
                    Box::new(Peer::new(&self.static_private, lease.clone(), index))
                }
            };
            self.insert(peer);
        }
        summary.removed = old.len();
        self.stats.leases_removed += old.len() as u64;
        for peer in old.values() {
            debug!(lease_id = %peer.lease.id, "lease removed");
        }
        drop(old);
        if self.next_tick.is_none() {
            self.next_tick = Some(now);
        }
        summary
    }

    /// The shortest buffer [`handle_tun_packet`](Self::handle_tun_packet) takes for a packet of
    /// `packet_len` bytes: the packet sealed, or a handshake initiation if it must wait for one.
    pub const fn transmit_capacity(packet_len: usize) -> usize {
        let sealed = packet_len.saturating_add(OVERHEAD);
        if sealed > HANDSHAKE_INIT_LEN {
            sealed
        } else {
            HANDSHAKE_INIT_LEN
        }
    }

    /// One UDP datagram from `src`. See the crate docs for the order of checks. A packet it
    /// carried for the TUN is opened into `buf`, which must hold at least `datagram.len()` bytes.
    pub fn handle_datagram(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        now: SystemTime,
        buf: &mut [u8],
    ) -> Result<Option<TunPacket>, BufferTooSmall> {
        check_room(datagram.len(), buf)?;
        self.remove_expired(now);
        let src = SocketAddr::new(src.ip().to_canonical(), src.port());
        // First, before parsing anything: a source no pin covers gets nothing, ever.
        if !self.pins.covers(src.ip()) {
            self.stats.dropped_unpinned += 1;
            trace!(%src, "dropped: source outside every pin");
            self.note_off_pin(src, datagram, now);
            return Ok(None);
        }
        let Some(index) = self.identify(src, datagram) else {
            return Ok(None);
        };
        let Some(peer) = self.peers.get_mut(&index) else {
            self.stats.dropped_unknown_peer += 1;
            trace!(%src, index, "dropped: no peer with this index");
            return Ok(None);
        };
        if !peer.lease.pin.covers(src.ip()) {
            self.stats.dropped_pin_mismatch += 1;
            trace!(%src, lease_id = %peer.lease.id, "dropped: source outside this lease's pin");
            self.note_off_pin(src, datagram, now);
            return Ok(None);
        }
        let edge_address = self.config.tunnel_address;
        let mut sink = Sink {
            outputs: &mut self.outputs,
            stats: &mut self.stats,
        };
        Ok(decapsulate_all(
            peer,
            src,
            datagram,
            buf,
            &mut self.scratch,
            edge_address,
            &mut sink,
        ))
    }

    /// Each lease's traffic: last handshake (unix seconds, by `now`) and bytes since its tunnel
    /// was made, for the broker's lease list.
    pub fn lease_usage(&self, now: SystemTime) -> Vec<LeaseUsage> {
        self.peers
            .values()
            .map(|peer| {
                let (since, tx_bytes, rx_bytes) = peer.traffic();
                let last_handshake_at = since
                    .and_then(|d| now.checked_sub(d))
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_secs()).ok());
                LeaseUsage {
                    lease_id: peer.lease.id.clone(),
                    last_handshake_at,
                    rx_bytes,
                    tx_bytes,
                }
            })
            .collect()
    }

    /// Whether [`take_events`](Self::take_events) has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The off-pin events seen since the last call, one per (lease, source) with a count, for
    /// the broker (which audits them and raises an alert).
    pub fn take_events(&mut self) -> Vec<EdgeEvent> {
        if self.events.is_empty() {
            return Vec::new();
        }
        self.events.drain().map(|(_, e)| e).collect()
    }

    /// One IP packet read from the TUN (Plex answering a peer). It is sealed into `buf`, which
    /// must hold at least [`transmit_capacity(packet.len())`](Self::transmit_capacity) bytes.
    pub fn handle_tun_packet(
        &mut self,
        packet: &[u8],
        now: SystemTime,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        check_room(Self::transmit_capacity(packet.len()), buf)?;
        self.remove_expired(now);
        let Some(index) = self.outbound_peer(packet) else {
            self.stats.dropped_tun += 1;
            return Ok(None);
        };
        let Some(peer) = self.peers.get_mut(&index) else {
            self.stats.dropped_tun += 1;
            return Ok(None);
        };
        let Some(endpoint) = peer.endpoint else {
            // The peer has not yet handshaken from inside its pin: there is nowhere safe to send.
            self.stats.dropped_tun += 1;
            trace!(lease_id = %peer.lease.id, "dropped from tun: peer has no endpoint yet");
            return Ok(None);
        };
        if packet.len() > MAX_PACKET {
            self.stats.dropped_tun += 1;
            return Ok(None);
        }
        match peer.encapsulate(packet, buf) {
            TunnResult::WriteToNetwork(payload) => {
                self.stats.packets_from_tun += 1;
                self.stats.bytes_from_tun += packet.len() as u64;
                // The same defence in depth as `poll_output`'s, for the datagram that skips the
                // queue: the endpoint is inside the pin by construction, and stays checked.
                if !peer.lease.pin.covers(endpoint.ip()) {
                    self.stats.bytes_sent_unpinned += payload.len() as u64;
                    return Ok(None);
                }
                Ok(Some(Transmit {
                    dst: endpoint,
                    len: payload.len(),
                }))
            }
            TunnResult::Err(e) => {
                self.stats.dropped_tun += 1;
                trace!(lease_id = %peer.lease.id, error = ?e, "encapsulate failed");
                Ok(None)
            }
            // Done: queued inside the Tunn until a session exists; sent on the next handshake.
            _ => Ok(None),
        }
    }

    /// Expires leases ended at `now` and runs boringtun's timers (retries, rekeys, and the
    /// session cleanup that zeroises old keys).
    pub fn handle_timeout(&mut self, now: SystemTime) {
        self.remove_expired(now);
        self.rate_limiter.reset_count();
        for peer in self.peers.values_mut() {
            let result = peer.update_timers(&mut self.scratch);
            if let TunnResult::WriteToNetwork(payload) = result {
                // Handshake retries and keepalives go only to an endpoint proven inside the pin.
                if let Some(dst) = peer.endpoint {
                    self.outputs.push_back(Queued::for_peer(
                        peer.index,
                        Output::Transmit {
                            dst,
                            payload: payload.to_vec(),
                        },
                    ));
                }
            }
        }
        self.next_tick = Some(now + TICK);
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the earlier of the next
    /// timer tick and the next lease expiry. `None` while the table is empty.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let expiry = self.next_expiry?;
        Some(match self.next_tick {
            Some(tick) => tick.min(expiry),
            None => expiry,
        })
    }

    /// The next thing to send or write; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            let Queued { peer, output } = self.outputs.pop_front()?;
            let Output::Transmit { dst, payload } = &output;
            // Defence in depth for the invariant `bytes_sent_unpinned == 0`: should a future
            // change ever route a transmit elsewhere, it is counted and withheld, not sent.
            // "Some pin covers it" would not do: a reply for lease A sent into lease B's pin
            // is exactly the cross-lease leak the per-peer pin check exists to prevent.
            let inside = match peer {
                Some(index) => self
                    .peers
                    .get(&index)
                    .is_some_and(|p| p.lease.pin.covers(dst.ip())),
                // A cookie reply belongs to no peer yet (see `identify_initiator`); it goes to
                // the datagram's own source, which the first admission step found in a pin.
                None => self.pins.covers(dst.ip()),
            };
            if !inside {
                self.stats.bytes_sent_unpinned += payload.len() as u64;
                continue;
            }
            return Some(output);
        }
    }

    fn insert(&mut self, peer: Box<Peer>) {
        self.by_key
            .insert(*peer.lease.public_key.as_bytes(), peer.index);
        self.by_address
            .insert(peer.lease.tunnel_address, peer.index);
        self.pins.add(&peer.lease.pin);
        let expiry = peer.expires_at();
        self.next_expiry = Some(self.next_expiry.map_or(expiry, |e| e.min(expiry)));
        self.peers.insert(peer.index, peer);
    }

    fn remove_expired(&mut self, now: SystemTime) {
        // Called for every datagram and packet: nothing to do until the earliest expiry.
        if self.next_expiry.is_none_or(|e| now < e) {
            return;
        }
        let expired: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| is_expired(&p.lease, now))
            .map(|(idx, _)| *idx)
            .collect();
        for index in expired {
            if let Some(peer) = self.peers.remove(&index) {
                self.by_key.remove(peer.lease.public_key.as_bytes());
                self.by_address.remove(&peer.lease.tunnel_address);
                self.pins.remove(&peer.lease.pin);
                self.stats.leases_expired += 1;
                debug!(lease_id = %peer.lease.id, "lease expired");
            }
        }
        self.next_expiry = self.peers.values().map(|p| p.expires_at()).min();
    }
}

/// Refuses a buffer shorter than `needed`, before the call changes anything.
fn check_room(needed: usize, buf: &[u8]) -> Result<(), BufferTooSmall> {
    if buf.len() < needed {
        return Err(BufferTooSmall {
            needed,
            given: buf.len(),
        });
    }
    Ok(())
}

/// An output waiting for [`EdgeCore::poll_output`], with the peer it belongs to, so that a
/// transmit can be checked against that peer's own pin rather than against any pin.
pub(crate) struct Queued {
    /// `None` only for a cookie reply, sent before the initiation is tied to a peer.
    pub peer: Option<u32>,
    pub output: Output,
}

impl Queued {
    pub fn for_peer(index: u32, output: Output) -> Self {
        Self {
            peer: Some(index),
            output,
        }
    }
}

/// Where the datapath puts its results: disjoint borrows of the core's queue and counters, so
/// a peer can be borrowed mutably at the same time.
pub(crate) struct Sink<'a> {
    pub outputs: &'a mut VecDeque<Queued>,
    pub stats: &'a mut Stats,
}

#[cfg(test)]
mod tests;
