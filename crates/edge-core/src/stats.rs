//! Counters the shell exports as metrics. Plain numbers, owned by the core, read by copy.

/// The inner filter's refusals by reason; they add up to `Stats::dropped_inner_filter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InnerDrops {
    /// Not an IPv4 TCP segment with a whole header (IPv6 included).
    pub malformed: u64,
    /// From an address other than the lease's own tunnel address.
    pub source: u64,
    /// To an address other than the edge's tunnel address.
    pub destination: u64,
    /// To a port the lease does not grant.
    pub port: u64,
}

/// Monotonic counters since the core was made. Every datagram or packet the core refuses
/// bumps exactly one `dropped_*` counter, with one exception: a handshake initiation answered
/// with a cookie reply under load bumps `cookies_sent` instead (it is not processed, but it is
/// answered, so counting it as a silent drop would hide the reply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams whose source IP lies in no lease's pin, dropped before any cryptography.
    pub dropped_unpinned: u64,
    /// Datagrams from a pinned source that belong to a peer whose own pin does not cover it.
    pub dropped_pin_mismatch: u64,
    /// Data datagrams from outside their lease's pin that were checked against the lease's
    /// session keys (at most one a second per lease), and of those, the ones that
    /// authenticated: sent by whoever holds the lease's keys, from the wrong address. Both are
    /// also counted as dropped. Only symmetric crypto is spent; never a Diffie-Hellman.
    pub off_pin_checked: u64,
    pub off_pin_authenticated: u64,
    /// Datagrams from a pinned source for no known peer (unknown key or receiver index).
    pub dropped_unknown_peer: u64,
    /// Datagrams that failed WireGuard parsing, MACs or decryption.
    pub dropped_invalid: u64,
    /// Decapsulated packets refused by the inner filter (address, protocol or port), in all,
    /// and by reason.
    pub dropped_inner_filter: u64,
    pub dropped_inner: InnerDrops,
    /// Packets from the TUN refused by the outbound filter or with no peer endpoint yet.
    pub dropped_tun: u64,
    /// Cookie replies sent to handshake initiations under load, by the edge-wide rate limiter
    /// (before the per-peer pin check, to the datagram's source only) or by a peer's own.
    pub cookies_sent: u64,
    /// Handshake messages that cost Diffie-Hellman work: initiations past mac1 and the first
    /// pin check (identifying the initiator is one X25519), and responses handed to a peer's
    /// tunnel. A source outside every pin never gets here, so a flood from one leaves this
    /// unchanged (the end-to-end flood measurement reads it).
    pub handshake_dh: u64,
    /// Handshakes this edge answered (response sent) or finished as initiator.
    pub handshakes_completed: u64,
    /// Packets handed to the TUN (after the inner filter), and their bytes (IP packets).
    pub packets_to_tun: u64,
    pub bytes_to_tun: u64,
    /// Packets from the TUN sent encrypted to a peer, and their bytes (IP packets, before
    /// encryption).
    pub packets_from_tun: u64,
    pub bytes_from_tun: u64,
    /// Peers created from lease sets (a kept peer is not counted again).
    pub leases_installed: u64,
    /// Peers removed because their lease ended by the edge's clock.
    pub leases_expired: u64,
    /// Peers removed because a lease set no longer held them (revoked or replaced).
    pub leases_removed: u64,
    /// Bytes withheld because a transmit's destination lay outside the pin of the lease it
    /// belongs to (or, for a cookie reply, outside every pin). Zero by construction: every
    /// transmit goes to a datagram's source after the pin check, or to a peer endpoint set the
    /// same way. Kept so that a regression would show up in the metrics and the end-to-end
    /// tests instead of on the wire.
    pub bytes_sent_unpinned: u64,
}
