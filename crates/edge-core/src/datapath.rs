//! Driving one peer's `Tunn` with an admitted datagram, and the inner filter on what comes out.

use std::net::{Ipv4Addr, SocketAddr};

use boringtun::noise::TunnResult;
use grantwire_proto::EdgeLease;
use tracing::trace;

use crate::core::{Output, Queued, Sink};
use crate::packet::{parse_ipv4_tcp, NotTcp};
use crate::peer::Peer;

/// WireGuard message types, as the first byte of a datagram.
const HANDSHAKE_RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;
const DATA: u8 = 4;

/// Hands `datagram` (already pin-checked for this peer) to the peer's `Tunn` and collects what
/// it produces. Every reply goes to `src`, the datagram's own source. The peer's endpoint moves
/// to `src` only once the `Tunn` accepted the datagram, so it never leaves the pin.
pub(crate) fn decapsulate_all(
    peer: &mut Peer,
    src: SocketAddr,
    datagram: &[u8],
    buf: &mut [u8],
    edge_address: Ipv4Addr,
    out: &mut Sink<'_>,
) {
    let incoming_type = datagram.first().copied().unwrap_or(0);
    if incoming_type == HANDSHAKE_RESPONSE {
        out.stats.handshake_dh += 1;
    }
    let mut input = datagram;
    let mut first = true;
    let mut authenticated = false;
    // boringtun's contract: after WriteToNetwork, call again with an empty datagram until Done,
    // which flushes packets it queued while the handshake was in flight.
    loop {
        match peer.decapsulate(src, input, buf) {
            TunnResult::Done => {
                authenticated |= first;
                break;
            }
            TunnResult::Err(e) => {
                if first {
                    out.stats.dropped_invalid += 1;
                    trace!(%src, lease_id = %peer.lease.id, error = ?e, "dropped: tunnel refused datagram");
                }
                break;
            }
            TunnResult::WriteToNetwork(payload) => {
                let reply_type = payload.first().copied().unwrap_or(0);
                // A cookie reply is sent before any authentication: it proves nothing.
                authenticated |= reply_type != COOKIE_REPLY;
                if reply_type == COOKIE_REPLY {
                    // The peer's own rate limiter is under load (after the pin check, unlike
                    // the global one in `EdgeCore::identify_initiator`).
                    out.stats.cookies_sent += 1;
                }
                if first && is_handshake_done(incoming_type, reply_type) {
                    out.stats.handshakes_completed += 1;
                    trace!(%src, lease_id = %peer.lease.id, "handshake completed");
                }
                out.outputs.push_back(Queued::for_peer(
                    peer.index,
                    Output::Transmit {
                        dst: src,
                        payload: payload.to_vec(),
                    },
                ));
                input = &[];
                first = false;
            }
            TunnResult::WriteToTunnelV4(packet, _) => {
                authenticated = true;
                admit_inner(peer, packet, edge_address, out);
                break;
            }
            TunnResult::WriteToTunnelV6(_, _) => {
                authenticated = true;
                out.stats.dropped_inner_filter += 1;
                out.stats.dropped_inner.malformed += 1;
                trace!(lease_id = %peer.lease.id, "dropped inner: IPv6");
                break;
            }
        }
    }
    if authenticated {
        peer.endpoint = Some(src);
    }
}

/// Our response to their initiation, or our keepalive after their response to ours.
fn is_handshake_done(incoming: u8, reply: u8) -> bool {
    matches!(
        (incoming, reply),
        (1, HANDSHAKE_RESPONSE) | (HANDSHAKE_RESPONSE, DATA)
    )
}

fn admit_inner(peer: &Peer, packet: &[u8], edge_address: Ipv4Addr, out: &mut Sink<'_>) {
    match inner_filter(&peer.lease, packet, edge_address) {
        Ok(()) => {
            out.stats.packets_to_tun += 1;
            out.stats.bytes_to_tun += packet.len() as u64;
            out.outputs
                .push_back(Queued::for_peer(peer.index, Output::ToTun(packet.to_vec())));
        }
        Err(reason) => {
            out.stats.dropped_inner_filter += 1;
            let by_reason = &mut out.stats.dropped_inner;
            match reason {
                InnerRefusal::Malformed(_) => by_reason.malformed += 1,
                InnerRefusal::Source(_) => by_reason.source += 1,
                InnerRefusal::Destination(_) => by_reason.destination += 1,
                InnerRefusal::Port(_) => by_reason.port += 1,
            }
            trace!(lease_id = %peer.lease.id, ?reason, "dropped inner");
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
