//! Driving one peer's `Tunn` with an admitted datagram, and the inner filter on what comes out.

use std::net::{Ipv4Addr, SocketAddr};

use boringtun::noise::TunnResult;
use grantwire_proto::EdgeLease;
use tracing::trace;

use crate::edge::{Output, Queued, Sink, TunPacket};
use crate::packet::{parse_ipv4_tcp, NotTcp};
use crate::peer::Peer;

/// WireGuard message types, as the first byte of a datagram.
const HANDSHAKE_RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;
const DATA: u8 = 4;

/// Hands `datagram` (already pin-checked for this peer) to the peer's `Tunn`. A packet for the
/// TUN is decrypted into `out` (the shell's buffer, at least `datagram.len()` bytes) and its
/// length returned; replies are queued, and every reply goes to `src`, the datagram's own
/// source.
///
/// The endpoint moves to `src`, and packets the `Tunn` queued are flushed, only when the
/// datagram itself proved the sender holds the lease's keys (see [`authenticates`]). Anything
/// else from inside the pin (a cookie reply, which only the public key seals; an initiation
/// answered with a cookie under load; a forged or replayed message) may still get its own reply
/// but leaves the endpoint, and the traffic queued for it, where they were.
pub(crate) fn decapsulate_all(
    peer: &mut Peer,
    src: SocketAddr,
    datagram: &[u8],
    out: &mut [u8],
    scratch: &mut [u8],
    edge_address: Ipv4Addr,
    sink: &mut Sink<'_>,
) -> Option<TunPacket> {
    let incoming_type = datagram.first().copied().unwrap_or(0);
    if incoming_type == HANDSHAKE_RESPONSE {
        sink.stats.handshake_dh += 1;
    }
    // The datagram's own result fits `out`: a decrypted packet is shorter than its datagram,
    // and every handshake reply shorter than the message it answers.
    let result = peer.decapsulate(src, datagram, out);
    if authenticates(incoming_type, &result) {
        peer.endpoint = Some(src);
    }
    match result {
        TunnResult::Done => return None,
        TunnResult::Err(e) => {
            sink.stats.dropped_invalid += 1;
            trace!(%src, lease_id = %peer.lease.id, error = ?e, "dropped: tunnel refused datagram");
            return None;
        }
        TunnResult::WriteToTunnelV4(packet, _) => {
            return admit_inner(peer, packet, edge_address, sink)
                .then_some(TunPacket { len: packet.len() });
        }
        TunnResult::WriteToTunnelV6(_, _) => {
            sink.stats.dropped_inner_filter += 1;
            sink.stats.dropped_inner.malformed += 1;
            trace!(lease_id = %peer.lease.id, "dropped inner: IPv6");
            return None;
        }
        TunnResult::WriteToNetwork(payload) => {
            let reply_type = payload.first().copied().unwrap_or(0);
            if is_handshake_done(incoming_type, reply_type) {
                sink.stats.handshakes_completed += 1;
                trace!(%src, lease_id = %peer.lease.id, "handshake completed");
            }
            queue_reply(peer.index, src, payload, sink);
        }
    }
    // Queued packets are for the endpoint: an unauthenticated datagram from elsewhere in the
    // pin must not draw them to its own address.
    if peer.endpoint != Some(src) {
        return None;
    }
    // boringtun's contract: after WriteToNetwork, call again with an empty datagram until Done,
    // which flushes packets it queued while the handshake was in flight. They were read from
    // the TUN, so they may be longer than `out`: the core's own buffer takes them.
    while let TunnResult::WriteToNetwork(payload) = peer.decapsulate(src, &[], scratch) {
        queue_reply(peer.index, src, payload, sink);
    }
    None
}

fn queue_reply(index: u32, dst: SocketAddr, payload: &[u8], sink: &mut Sink<'_>) {
    if payload.first() == Some(&COOKIE_REPLY) {
        // The peer's own rate limiter is under load (after the pin check, unlike the global
        // one in `EdgeCore::identify_initiator`).
        sink.stats.cookies_sent += 1;
    }
    sink.outputs.push_back(Queued::for_peer(
        index,
        Output::Transmit {
            dst,
            payload: payload.to_vec(),
        },
    ));
}

/// Whether the `Tunn`'s answer to a datagram shows the sender holds the lease's keys: it
/// accepted an initiation or a response (and answered it with a handshake message or a
/// keepalive), or decrypted transport data. A cookie reply it accepted proves nothing (it is
/// sealed under a key derived from the peer's *public* key), and neither does a cookie reply it
/// sends (that comes before any decryption) or a refusal.
fn authenticates(incoming_type: u8, result: &TunnResult<'_>) -> bool {
    if incoming_type == COOKIE_REPLY {
        return false;
    }
    match result {
        TunnResult::Done | TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
            true
        }
        TunnResult::WriteToNetwork(payload) => payload.first() != Some(&COOKIE_REPLY),
        TunnResult::Err(_) => false,
    }
}

/// Our response to their initiation, or our keepalive after their response to ours.
fn is_handshake_done(incoming: u8, reply: u8) -> bool {
    matches!(
        (incoming, reply),
        (1, HANDSHAKE_RESPONSE) | (HANDSHAKE_RESPONSE, DATA)
    )
}

/// Whether the decrypted `packet` passes the inner filter; counts it either way.
fn admit_inner(peer: &Peer, packet: &[u8], edge_address: Ipv4Addr, sink: &mut Sink<'_>) -> bool {
    match inner_filter(&peer.lease, packet, edge_address) {
        Ok(()) => {
            sink.stats.packets_to_tun += 1;
            sink.stats.bytes_to_tun += packet.len() as u64;
            true
        }
        Err(reason) => {
            sink.stats.dropped_inner_filter += 1;
            let by_reason = &mut sink.stats.dropped_inner;
            match reason {
                InnerRefusal::Malformed(_) => by_reason.malformed += 1,
                InnerRefusal::Source(_) => by_reason.source += 1,
                InnerRefusal::Destination(_) => by_reason.destination += 1,
                InnerRefusal::Port(_) => by_reason.port += 1,
            }
            trace!(lease_id = %peer.lease.id, ?reason, "dropped inner");
            false
        }
    }
}

/// Why the inner filter refused a decapsulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InnerRefusal {
    Malformed(NotTcp),
    /// The source is not the lease's tunnel address: a peer may not speak for another.
    Source(Ipv4Addr),
    /// Only the edge's own tunnel address is reachable; the tunnel is not a route elsewhere.
    Destination(Ipv4Addr),
    Port(u16),
}

/// The inner filter: IPv4 TCP, from the lease's tunnel address, to the edge's tunnel address,
/// to one of the lease's ports.
pub(crate) fn inner_filter(
    lease: &EdgeLease,
    packet: &[u8],
    edge_address: Ipv4Addr,
) -> Result<(), InnerRefusal> {
    let hdr = parse_ipv4_tcp(packet).map_err(InnerRefusal::Malformed)?;
    if hdr.src != lease.tunnel_address {
        return Err(InnerRefusal::Source(hdr.src));
    }
    if hdr.dst != edge_address {
        return Err(InnerRefusal::Destination(hdr.dst));
    }
    if !lease.ports.contains(&hdr.dst_port) {
        return Err(InnerRefusal::Port(hdr.dst_port));
    }
    Ok(())
}
