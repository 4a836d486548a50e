//! [`EdgeCore`]: the lease table and the admission path of every datagram and packet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519;
use grantwire_proto::{EdgeConfig, EdgeLease, LeaseSet};
use tracing::{debug, trace, warn};

use crate::datapath::decapsulate_all;
use crate::packet::parse_ipv4_tcp;
use crate::peer::{is_expired, Peer};
use crate::Stats;

/// How often boringtun's timers run. WireGuard's timers have one-second resolution; a quarter
/// second keeps handshake retries and rekeys close to their nominal times at negligible cost.
pub const TICK: Duration = Duration::from_millis(250);

/// Handshake initiations per second (across all peers) before the edge demands cookies.
/// A home edge sees a handful of clients; 100 leaves room for all of them to reconnect at once.
const GLOBAL_HANDSHAKE_LIMIT: u64 = 100;

/// Largest IP packet plus WireGuard's 32 bytes of overhead, so any buffer boringtun writes fits.
const BUF_LEN: usize = 65_535 + 32;

/// Peer indices are 24 bits: boringtun shifts them left by 8 for its receiver indices.
const INDEX_MASK: u32 = 0x00ff_ffff;

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `payload` as one UDP datagram to `dst`, which always lies inside the pin of the lease
    /// the datagram belongs to.
    Transmit { dst: SocketAddr, payload: Vec<u8> },
    /// Write this IPv4 packet to the TUN device. It has passed the inner filter.
    ToTun(Vec<u8>),
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
/// 2. For every UDP datagram call [`handle_datagram`](Self::handle_datagram); for every packet
///    read from the TUN call [`handle_tun_packet`](Self::handle_tun_packet).
/// 3. After **each** `handle_*`/`apply_lease_set` call, drain [`poll_output`](Self::poll_output)
///    until `None`, sending each [`Output::Transmit`] on the UDP socket and writing each
///    [`Output::ToTun`] to the TUN.
/// 4. Arm one timer for [`poll_timeout`](Self::poll_timeout); when it fires, call
///    [`handle_timeout`](Self::handle_timeout), drain outputs again, and re-arm. Call it even
///    when the broker is unreachable: that is how leases expire by the edge's own clock.
///
/// Every method takes `now` as wall-clock time because lease expiry is in unix seconds. The
/// `Tunn`s keep their own monotonic clock for WireGuard's timers (see `peer.rs`).
pub struct EdgeCore {
    config: EdgeConfig,
    static_private: x25519::StaticSecret,
    static_public: x25519::PublicKey,
    /// Shared by all peers for the mac1 check and cookie demand *before* `parse_handshake_anon`
    /// spends a Diffie-Hellman on an initiation.
    rate_limiter: Arc<RateLimiter>,
    peers: BTreeMap<u32, Peer>,
    by_key: HashMap<[u8; 32], u32>,
    by_address: HashMap<Ipv4Addr, u32>,
    next_index: u32,
    next_tick: Option<SystemTime>,
    outputs: VecDeque<Output>,
    buf: Vec<u8>,
    stats: Stats,
}

impl EdgeCore {
    /// `static_private` is the edge's clamped X25519 key; the core keeps it only inside
    /// zeroise-on-drop types. The caller should zeroise its own copy.
    pub fn new(static_private: [u8; 32], config: EdgeConfig) -> Self {
        let static_private = x25519::StaticSecret::from(static_private);
        let static_public = x25519::PublicKey::from(&static_private);
        let rate_limiter = Arc::new(RateLimiter::new(&static_public, GLOBAL_HANDSHAKE_LIMIT));
        Self {
            config,
            static_private,
            static_public,
            rate_limiter,
            peers: BTreeMap::new(),
            by_key: HashMap::new(),
            by_address: HashMap::new(),
            next_index: 0,
            next_tick: None,
            outputs: VecDeque::new(),
            buf: vec![0; BUF_LEN],
            stats: Stats::default(),
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

    /// Replaces the table with `set`. A lease whose id, key, preshared key and pin are
    /// unchanged keeps its `Tunn` (and session); others get a fresh one; leases missing from
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
        self.by_key.clear();
        self.by_address.clear();
        let mut summary = ApplySummary::default();
        for lease in &set.leases {
            if let Some(reason) = self.refuse_reason(lease, now) {
                debug!(lease_id = %lease.id, reason, "lease not installed");
                summary.skipped += 1;
                continue;
            }
            let kept = old
                .iter()
                .find(|(_, p)| p.same_identity(lease))
                .map(|(idx, _)| *idx)
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
                    Peer::new(&self.static_private, lease.clone(), index)
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

    /// One UDP datagram from `src`. See the crate docs for the order of checks.
    pub fn handle_datagram(&mut self, src: SocketAddr, datagram: &[u8], now: SystemTime) {
        self.remove_expired(now);
        let src = SocketAddr::new(src.ip().to_canonical(), src.port());
        // First, before parsing anything: a source no pin covers gets nothing, ever.
        if !self.peers.values().any(|p| p.lease.pin.covers(src.ip())) {
            self.stats.dropped_unpinned += 1;
            trace!(%src, "dropped: source outside every pin");
            return;
        }
        let Some(index) = self.identify(src, datagram) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&index) else {
            self.stats.dropped_unknown_peer += 1;
            trace!(%src, index, "dropped: no peer with this index");
            return;
        };
        if !peer.lease.pin.covers(src.ip()) {
            self.stats.dropped_pin_mismatch += 1;
            trace!(%src, lease_id = %peer.lease.id, "dropped: source outside this lease's pin");
            return;
        }
        let edge_address = self.config.tunnel_address;
        let mut out = Sink {
            outputs: &mut self.outputs,
            stats: &mut self.stats,
        };
        decapsulate_all(peer, src, datagram, &mut self.buf, edge_address, &mut out);
    }

    /// One IP packet read from the TUN (Plex answering a peer).
    pub fn handle_tun_packet(&mut self, packet: &[u8], now: SystemTime) {
        self.remove_expired(now);
        let Some(index) = self.outbound_peer(packet) else {
            self.stats.dropped_tun += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(&index) else {
            self.stats.dropped_tun += 1;
            return;
        };
        let Some(endpoint) = peer.endpoint else {
            // The peer has not yet handshaken from inside its pin: there is nowhere safe to send.
            self.stats.dropped_tun += 1;
            trace!(lease_id = %peer.lease.id, "dropped from tun: peer has no endpoint yet");
            return;
        };
        if packet.len() + 32 > self.buf.len() {
            self.stats.dropped_tun += 1;
            return;
        }
        match peer.encapsulate(packet, &mut self.buf) {
            TunnResult::WriteToNetwork(payload) => {
                self.stats.packets_from_tun += 1;
                self.outputs.push_back(Output::Transmit {
                    dst: endpoint,
                    payload: payload.to_vec(),
                });
            }
            TunnResult::Err(e) => {
                self.stats.dropped_tun += 1;
                trace!(lease_id = %peer.lease.id, error = ?e, "encapsulate failed");
            }
            // Done: queued inside the Tunn until a session exists; sent on the next handshake.
            _ => {}
        }
    }

    /// Expires leases ended at `now` and runs boringtun's timers (retries, rekeys, and the
    /// session cleanup that zeroises old keys).
    pub fn handle_timeout(&mut self, now: SystemTime) {
        self.remove_expired(now);
        self.rate_limiter.reset_count();
        for peer in self.peers.values_mut() {
            let result = peer.update_timers(&mut self.buf);
            if let TunnResult::WriteToNetwork(payload) = result {
                // Handshake retries and keepalives go only to an endpoint proven inside the pin.
                if let Some(dst) = peer.endpoint {
                    self.outputs.push_back(Output::Transmit {
                        dst,
                        payload: payload.to_vec(),
                    });
                }
            }
        }
        self.next_tick = Some(now + TICK);
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the earlier of the next
    /// timer tick and the next lease expiry. `None` while the table is empty.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let expiry = self.peers.values().map(Peer::expires_at).min()?;
        Some(match self.next_tick {
            Some(tick) => tick.min(expiry),
            None => expiry,
        })
    }

    /// The next thing to send or write; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            let output = self.outputs.pop_front()?;
            if let Output::Transmit { dst, payload } = &output {
                // Defence in depth for the invariant `bytes_sent_unpinned == 0`: should a future
                // change ever route a transmit elsewhere, it is counted and withheld, not sent.
                if !self.peers.values().any(|p| p.lease.pin.covers(dst.ip())) {
                    self.stats.bytes_sent_unpinned += payload.len() as u64;
                    continue;
                }
            }
            return Some(output);
        }
    }

    fn refuse_reason(&self, lease: &EdgeLease, now: SystemTime) -> Option<&'static str> {
        if is_expired(lease, now) {
            return Some("already expired");
        }
        if lease.tunnel_address == self.config.tunnel_address
            || !self.config.subnet.contains(&lease.tunnel_address)
        {
            return Some("tunnel address is the edge's own or outside the subnet");
        }
        // Two leases with one key could not be told apart in a handshake, and two with one
        // address could not be told apart on the way back from Plex: install the first only.
        if self.by_key.contains_key(lease.public_key.as_bytes()) {
            return Some("public key already used by another lease in the set");
        }
        if self.by_address.contains_key(&lease.tunnel_address) {
            return Some("tunnel address already used by another lease in the set");
        }
        None
    }

    /// The next free 24-bit index, never one held by a peer being replaced, so a stale datagram
    /// for a removed session cannot reach its successor. Wraps after 16 million leases.
    fn allocate_index(&mut self, old: &BTreeMap<u32, Peer>) -> u32 {
        loop {
            self.next_index = (self.next_index + 1) & INDEX_MASK;
            let candidate = self.next_index;
            if candidate != 0
                && !old.contains_key(&candidate)
                && !self.peers.contains_key(&candidate)
            {
                return candidate;
            }
        }
    }

    fn insert(&mut self, peer: Peer) {
        self.by_key
            .insert(*peer.lease.public_key.as_bytes(), peer.index);
        self.by_address
            .insert(peer.lease.tunnel_address, peer.index);
        self.peers.insert(peer.index, peer);
    }

    fn remove_expired(&mut self, now: SystemTime) {
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
                self.stats.leases_expired += 1;
                debug!(lease_id = %peer.lease.id, "lease expired");
            }
        }
    }

    /// Which peer a datagram from a pinned source claims to be for. Initiations are identified
    /// by decrypting the initiator's static key (after the mac1 check and the global cookie
    /// demand), everything else by the receiver index boringtun gave out.
    fn identify(&mut self, src: SocketAddr, datagram: &[u8]) -> Option<u32> {
        let packet = match Tunn::parse_incoming_packet(datagram) {
            Ok(packet) => packet,
            Err(e) => {
                self.stats.dropped_invalid += 1;
                trace!(%src, error = ?e, "dropped: not a WireGuard message");
                return None;
            }
        };
        let receiver_idx = match packet {
            Packet::HandshakeInit(_) => return self.identify_initiator(src, datagram),
            Packet::HandshakeResponse(p) => p.receiver_idx,
            Packet::PacketCookieReply(p) => p.receiver_idx,
            Packet::PacketData(p) => p.receiver_idx,
        };
        Some(receiver_idx >> 8)
    }

    fn identify_initiator(&mut self, src: SocketAddr, datagram: &[u8]) -> Option<u32> {
        let init = match self
            .rate_limiter
            .verify_packet(Some(src.ip()), datagram, &mut self.buf)
        {
            Ok(Packet::HandshakeInit(init)) => init,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                // Under load: the cookie reply goes to the datagram's source, which is inside a
                // pin (checked above) and costs us no Diffie-Hellman.
                self.outputs.push_back(Output::Transmit {
                    dst: src,
                    payload: cookie.to_vec(),
                });
                return None;
            }
            _ => {
                self.stats.dropped_invalid += 1;
                trace!(%src, "dropped: initiation failed mac1");
                return None;
            }
        };
        let Ok(half) = parse_handshake_anon(&self.static_private, &self.static_public, &init)
        else {
            self.stats.dropped_invalid += 1;
            trace!(%src, "dropped: initiation not for this edge's key");
            return None;
        };
        let index = self.by_key.get(&half.peer_static_public).copied();
        if index.is_none() {
            self.stats.dropped_unknown_peer += 1;
            trace!(%src, "dropped: initiation from a key with no lease");
        }
        index
    }

    /// The peer a packet from Plex is for, if the outbound filter allows it: IPv4 TCP from the
    /// edge's tunnel address, to a lease's address, from one of that lease's ports.
    fn outbound_peer(&self, packet: &[u8]) -> Option<u32> {
        let Ok(hdr) = parse_ipv4_tcp(packet) else {
            trace!("dropped from tun: not an IPv4 TCP segment");
            return None;
        };
        if hdr.src != self.config.tunnel_address {
            trace!(src = %hdr.src, "dropped from tun: source is not the edge");
            return None;
        }
        let index = *self.by_address.get(&hdr.dst)?;
        let peer = self.peers.get(&index)?;
        if !peer.lease.ports.contains(&hdr.src_port) {
            trace!(lease_id = %peer.lease.id, port = hdr.src_port, "dropped from tun: port");
            return None;
        }
        Some(index)
    }
}

/// Where the datapath puts its results: disjoint borrows of the core's queue and counters, so
/// a peer can be borrowed mutably at the same time.
pub(crate) struct Sink<'a> {
    pub outputs: &'a mut VecDeque<Output>,
    pub stats: &'a mut Stats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantwire_proto::{PresharedKey, PrivateKey};
    use std::time::UNIX_EPOCH;

    fn config() -> EdgeConfig {
        EdgeConfig {
            name: "home".into(),
            subnet: "10.77.0.0/24".parse().unwrap(),
            tunnel_address: Ipv4Addr::new(10, 77, 0, 1),
        }
    }

    fn lease(id: &str, seed: u8, host: u8) -> EdgeLease {
        EdgeLease {
            id: id.into(),
            public_key: PrivateKey::from_random_bytes([seed; 32]).public_key(),
            preshared_key: PresharedKey::from_bytes([seed; 32]),
            tunnel_address: Ipv4Addr::new(10, 77, 0, host),
            pin: "192.0.2.1/32".parse().unwrap(),
            ports: vec![32400],
            expires_at: 2_000_000_000,
        }
    }

    fn apply(core: &mut EdgeCore, leases: Vec<EdgeLease>) -> ApplySummary {
        let set = LeaseSet {
            config: config(),
            leases,
            generated_at: 0,
        };
        core.apply_lease_set(&set, UNIX_EPOCH + Duration::from_secs(1_900_000_000))
    }

    #[test]
    fn duplicates_and_foreign_addresses_are_skipped() {
        let mut core = EdgeCore::new([7; 32], config());
        let summary = apply(
            &mut core,
            vec![
                lease("a", 1, 2),
                lease("same-key", 1, 3),
                lease("same-address", 2, 2),
                lease("edge-address", 3, 1),
                lease("outside", 4, 0).tap(|l| l.tunnel_address = Ipv4Addr::new(10, 78, 0, 5)),
            ],
        );
        assert_eq!((summary.installed, summary.skipped), (1, 4));
        assert!(core.has_lease("a"));
    }

    #[test]
    fn indices_are_unique_and_not_reused_on_replacement() {
        let mut core = EdgeCore::new([7; 32], config());
        apply(&mut core, vec![lease("a", 1, 2), lease("b", 2, 3)]);
        let first: Vec<u32> = core.peers.keys().copied().collect();
        let mut changed = lease("a", 1, 2);
        changed.preshared_key = PresharedKey::from_bytes([9; 32]);
        apply(&mut core, vec![changed, lease("b", 2, 3)]);
        let second: Vec<u32> = core.peers.keys().copied().collect();
        assert_eq!(first.len(), 2);
        assert!(second.iter().all(|i| *i <= INDEX_MASK && *i != 0));
        // b kept its index; a got a new one, not its old one.
        assert!(second.contains(&first[1]));
        assert!(!second.contains(&first[0]));
    }

    trait Tap: Sized {
        fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
    }

    impl Tap for EdgeLease {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }
}
