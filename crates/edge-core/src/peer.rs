//! One admitted lease and the boringtun [`Tunn`] that speaks WireGuard with it.
//!
//! # Why an adapter
//!
//! The core is sans-IO and takes every `now` from its caller, but `Tunn` reads
//! `std::time::Instant::now()` itself (handshake timestamps, rekey and session timers, cookie
//! secrets). Rather than fork boringtun, this adapter is the single place where the two clocks
//! meet: the core decides *when* boringtun runs (`update_timers` only from
//! `EdgeCore::handle_timeout`), boringtun measures WireGuard's own protocol intervals with its
//! monotonic clock, and everything grantwire decides (lease expiry, admission) uses only the
//! caller's `now`. Tests therefore see real WireGuard timer behaviour over real seconds, while
//! lease expiry can be driven instantly by advancing `now`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use grantwire_proto::EdgeLease;

/// A lease in the table. The lease (with its preshared key, which zeroises itself on drop) and
/// the `Tunn` (whose x25519 secrets zeroise on drop) go away together when the peer is removed.
pub(crate) struct Peer {
    pub lease: EdgeLease,
    /// The 24-bit index given to `Tunn::new`; boringtun puts it in the top 24 bits of every
    /// receiver index it hands out, so `receiver_idx >> 8` finds this peer.
    pub index: u32,
    /// Where replies and outbound data go. Set only from a datagram that came from inside the
    /// pin *and* authenticated under the lease's keys (a handshake or transport data; never a
    /// cookie reply, which anyone knowing the public key can seal), so it is never outside the
    /// pin and never an address that merely shares the pin.
    pub endpoint: Option<SocketAddr>,
    /// When a datagram from outside the pin was last checked against this peer's session keys
    /// (at most one a second; see `EdgeCore::note_off_pin`).
    pub off_pin_checked_at: Option<SystemTime>,
    /// The edge's static key, shared by every peer, to make the `Tunn` with.
    edge_key: Arc<x25519::StaticSecret>,
    /// Made on the first handshake initiation that reaches this peer, not when the lease is
    /// installed: a lease nobody uses costs a few hundred bytes instead of a whole `Tunn`
    /// (about 10 KiB and a Diffie-Hellman), which is what lets an edge hold thousands.
    tunn: Option<Box<Tunn>>,
}

impl Peer {
    /// A peer with no tunnel yet (see [`Peer::tunn`]).
    pub fn new(edge_key: &Arc<x25519::StaticSecret>, lease: EdgeLease, index: u32) -> Self {
        Self {
            lease,
            index,
            endpoint: None,
            off_pin_checked_at: None,
            edge_key: Arc::clone(edge_key),
            tunn: None,
        }
    }

    /// The tunnel, made now if this is the first time: responder side, preshared key from the
    /// lease, no persistent keepalive (the client keeps its NAT mapping open; the edge has no
    /// reason to talk first), and boringtun's own per-peer handshake rate limiter.
    fn tunn(&mut self) -> &mut Tunn {
        let (key, lease, index) = (&self.edge_key, &self.lease, self.index);
        self.tunn.get_or_insert_with(|| {
            Box::new(Tunn::new(
                x25519::StaticSecret::clone(key),
                x25519::PublicKey::from(*lease.public_key.as_bytes()),
                Some(*lease.preshared_key.as_bytes()),
                None,
                index,
                None,
            ))
        })
    }

    /// Whether `other` is the same lease with the same cryptographic identity, so the running
    /// session may be kept (a re-sent lease set must not break established tunnels, and a
    /// renewal that moves the pin must not make a roaming client wait for a new handshake).
    pub fn same_identity(&self, other: &EdgeLease) -> bool {
        self.lease.id == other.id
            && self.lease.public_key == other.public_key
            && self.lease.preshared_key == other.preshared_key
    }

    /// Takes the fields that may change without a new tunnel (pin, ports, expiry, address).
    /// An endpoint the new pin does not cover is forgotten: replies wait until the client sends
    /// from inside the new pin, and the old address gets nothing from now on.
    pub fn update_terms(&mut self, lease: EdgeLease) {
        if self.endpoint.is_some_and(|e| !lease.pin.covers(e.ip())) {
            self.endpoint = None;
        }
        self.lease = lease;
    }

    /// Whether the tunnel has been made (a handshake initiation reached this peer).
    #[cfg(test)]
    pub fn has_tunnel(&self) -> bool {
        self.tunn.is_some()
    }

    pub fn expires_at(&self) -> SystemTime {
        lease_expiry(&self.lease)
    }

    pub fn decapsulate<'a>(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        dst: &'a mut [u8],
    ) -> TunnResult<'a> {
        // Only an initiation can start a session; anything else for a peer without a tunnel
        // belongs to no session.
        if self.tunn.is_none() && datagram.first() != Some(&HANDSHAKE_INIT) {
            return TunnResult::Err(WireGuardError::NoCurrentSession);
        }
        // Always with the source address: without it boringtun cannot check a cookie (mac2)
        // under load and drops every handshake instead.
        self.tunn().decapsulate(Some(src.ip()), datagram, dst)
    }

    pub fn encapsulate<'a>(&mut self, packet: &[u8], dst: &'a mut [u8]) -> TunnResult<'a> {
        match self.tunn.as_mut() {
            Some(tunn) => tunn.encapsulate(packet, dst),
            // Never reached through the core, which sends only to a peer with an endpoint,
            // learnt from a datagram its tunnel accepted.
            None => TunnResult::Err(WireGuardError::NoCurrentSession),
        }
    }

    /// Time since the last completed handshake (by boringtun's own clock), and bytes sent to
    /// and received from the client since this tunnel was made.
    pub fn traffic(&self) -> (Option<Duration>, u64, u64) {
        match &self.tunn {
            Some(tunn) => {
                let (since, tx, rx, _, _) = tunn.stats();
                (since, tx as u64, rx as u64)
            }
            None => (None, 0, 0),
        }
    }

    pub fn update_timers<'a>(&mut self, dst: &'a mut [u8]) -> TunnResult<'a> {
        match self.tunn.as_mut() {
            Some(tunn) => tunn.update_timers(dst),
            None => TunnResult::Done,
        }
    }
}

/// WireGuard's message type of a handshake initiation.
const HANDSHAKE_INIT: u8 = 1;

/// A lease's end as a point in time. A negative `expires_at` (before 1970) is simply expired.
pub(crate) fn lease_expiry(lease: &EdgeLease) -> SystemTime {
    let secs = u64::try_from(lease.expires_at).unwrap_or(0);
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

/// Expired at `now` means `now >= expires_at`: a lease ending at T admits nothing at T.
pub(crate) fn is_expired(lease: &EdgeLease, now: SystemTime) -> bool {
    now >= lease_expiry(lease)
}
