//! The sans-IO core of `grantwire-edge`: the lease table, source-address pins, lease expiry by
//! the edge's own clock, the inner filter, and one boringtun `Tunn` per lease.
//!
//! It has no tokio, socket or TUN dependency and never reads a clock of its own: the shell
//! (`grantwire-edge`) reads UDP and the TUN, calls [`EdgeCore`]'s `handle_*` methods with
//! `now` and buffers of its own to seal and open packets into, and carries out what comes back
//! (the direct result of each call, then the queued [`Output`]s). See [`EdgeCore`] for the call
//! order and the buffer sizes.
//!
//! # Admission of a datagram
//!
//! 1. Source IP covered by no lease's pin: dropped, counted, no reply of any kind. This runs
//!    before any parsing or asymmetric cryptography, so a scanner learns nothing and costs
//!    nothing. The one look taken: a transport-data datagram whose receiver index names a
//!    lease is checked against that lease's session keys (symmetric only, at most once a second
//!    per lease), and if it authenticates, an event tells the broker the lease's key is in use
//!    off its pin ([`EdgeCore::take_events`]). It is dropped all the same.
//! 2. Handshake initiation: mac1 (and, under load, cookie) check, then the initiator's static
//!    key is recovered with `parse_handshake_anon` and looked up. Other messages: the peer is
//!    found by `receiver_idx >> 8`. Either way, a peer whose own pin does not cover the source
//!    is refused, so lease A's key cannot be used from lease B's address.
//!
//!    The one exception to "no reply before the per-peer pin check": under load (more
//!    initiations per second than the edge-wide limit) an initiation without a valid cookie
//!    gets a cookie reply right after the mac1 check. Telling which peer it is from would take
//!    `parse_handshake_anon`, a Diffie-Hellman, and sparing that is what cookies exist for. The
//!    reply goes only to the datagram's source, which step 1 found inside some pin, carries no
//!    session, and is counted in `Stats::cookies_sent`; the retry with the cookie then passes
//!    through the per-peer pin check like any other initiation.
//! 3. The peer's `Tunn` decrypts (always given the source IP); replies go to that source only,
//!    and [`EdgeCore::poll_output`] withholds any transmit outside its own lease's pin.
//! 4. Decrypted packets pass the inner filter (IPv4 TCP, lease address → edge address, a
//!    granted port) before they reach the TUN.

mod datapath;
mod edge;
pub mod memory;
mod packet;
mod peer;
mod pins;
mod stats;

pub use crate::edge::{
    ApplySummary, BufferTooSmall, EdgeCore, IndexRng, Output, Transmit, TunPacket, OVERHEAD, TICK,
};
pub use crate::packet::build_ipv4;
pub use crate::stats::{InnerDrops, Stats};
