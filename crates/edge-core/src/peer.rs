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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// pin *and* was accepted by the `Tunn`, so it is never outside the pin.
    pub endpoint: Option<SocketAddr>,
    /// When a datagram from outside the pin was last checked against this peer's session keys
    /// (at most one a second; see `EdgeCore::note_off_pin`).
    pub off_pin_checked_at: Option<SystemTime>,
    tunn: Tunn,
}

impl Peer {
    /// A responder-side tunnel: preshared key from the lease, no persistent keepalive (the
    /// client keeps its NAT mapping open; the edge has no reason to talk first), and boringtun's
    /// own per-peer handshake rate limiter.
    pub fn new(static_private: &x25519::StaticSecret, lease: EdgeLease, index: u32) -> Self {
        let peer_public = x25519::PublicKey::from(*lease.public_key.as_bytes());
        let tunn = Tunn::new(
            static_private.clone(),
            peer_public,
            Some(*lease.preshared_key.as_bytes()),
            None,
            index,
            None,
        );
        Self {
            lease,
            index,
            endpoint: None,
            off_pin_checked_at: None,
            tunn,
        }
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

    pub fn expires_at(&self) -> SystemTime {
        lease_expiry(&self.lease)
    }

    pub fn decapsulate<'a>(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        dst: &'a mut [u8],
    ) -> TunnResult<'a> {
        // Always with the source address: without it boringtun cannot check a cookie (mac2)
        // under load and drops every handshake instead.
        self.tunn.decapsulate(Some(src.ip()), datagram, dst)
    }

    pub fn encapsulate<'a>(&mut self, packet: &[u8], dst: &'a mut [u8]) -> TunnResult<'a> {
        self.tunn.encapsulate(packet, dst)
    }

    /// Time since the last completed handshake (by boringtun's own clock), and bytes sent to
    /// and received from the client since this tunnel was made.
    pub fn traffic(&self) -> (Option<Duration>, u64, u64) {
        let (since, tx, rx, _, _) = self.tunn.stats();
        (since, tx as u64, rx as u64)
    }

    pub fn update_timers<'a>(&mut self, dst: &'a mut [u8]) -> TunnResult<'a> {
        self.tunn.update_timers(dst)
    }
}

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
