//! Admission helpers of [`EdgeCore`]: which leases a set may install, the index each peer
//! gets, and which peer a datagram or TUN packet belongs to. Split from `core.rs` to keep the
//! driver readable; these are `impl EdgeCore` blocks with access to its fields.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use grantwire_proto::{EdgeEvent, EdgeEventKind, EdgeLease};
use tracing::trace;

use super::{EdgeCore, Output, Queued, INDEX_MASK, MAX_PENDING_EVENTS};
use crate::packet::parse_ipv4_tcp;
use crate::peer::{is_expired, Peer};

/// A transport data message: type 4, three reserved zero bytes, receiver index, counter, and at
/// least the 16-byte tag (a keepalive carries nothing else).
const DATA_HEADER: [u8; 4] = [4, 0, 0, 0];
const DATA_MIN_LEN: usize = 32;

/// After a datagram authenticated off its lease's pin, the next check of that lease waits this
/// long: the event is known, and a roaming client's full-rate traffic costs nothing more.
const OFF_PIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Off-pin checks per second across all leases: what a flood of forged datagrams naming real
/// receiver indices can cost. (Such a flood can use up the budget and hide a real event for as
/// long as it lasts; it cannot cause a reply or a Diffie-Hellman.)
const OFF_PIN_CHECKS_PER_SEC: u32 = 64;

impl EdgeCore {
    /// A datagram from outside the pin of the lease its receiver index names: if it is
    /// transport data that authenticates under the lease's session keys, the holder of those
    /// keys is sending from the wrong address (a client that moved network without renewing,
    /// or a copied device key), and an event is recorded for the broker. Dropped either way.
    ///
    /// Only transport data is checked: its receiver index names the session and its AEAD tag
    /// proves the sender holds the session's keys, for symmetric-crypto cost. Telling whose an
    /// initiation is would take a Diffie-Hellman, which sources outside a pin never get. The
    /// checks are capped edge-wide per second, and a lease whose key was just seen off its pin is
    /// not checked again for a second; a replayed datagram fails boringtun's replay window.
    pub(super) fn note_off_pin(&mut self, src: SocketAddr, datagram: &[u8], now: SystemTime) {
        if datagram.len() < DATA_MIN_LEN || datagram[..4] != DATA_HEADER {
            return;
        }
        let receiver = u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
        let Some(peer) = self.peers.get_mut(&(receiver >> 8)) else {
            return;
        };
        // `now < last` (the clock stepped back) counts as due, so checks never stop.
        let recently = |last: SystemTime| now >= last && now < last + OFF_PIN_CHECK_INTERVAL;
        if peer.lease.pin.covers(src.ip()) || peer.off_pin_checked_at.is_some_and(recently) {
            return;
        }
        let (window, used) = &mut self.off_pin_window;
        if window.is_none_or(|start| !(now >= start && now < start + Duration::from_secs(1))) {
            *window = Some(now);
            *used = 0;
        }
        if *used >= OFF_PIN_CHECKS_PER_SEC {
            return;
        }
        *used += 1;
        self.stats.off_pin_checked += 1;
        // The plaintext (if any) is dropped with the buffer's next use; nothing goes out.
        let authentic = matches!(
            peer.decapsulate(src, datagram, &mut self.scratch),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) | TunnResult::Done
        );
        if !authentic {
            return;
        }
        peer.off_pin_checked_at = Some(now);
        self.stats.off_pin_authenticated += 1;
        trace!(%src, lease_id = %peer.lease.id, "lease key used from outside its pin");
        let key = (peer.lease.id.clone(), src.ip());
        if let Some(event) = self.events.get_mut(&key) {
            event.count += 1;
        } else if self.events.len() < MAX_PENDING_EVENTS {
            let first_at = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let event = EdgeEvent {
                kind: EdgeEventKind::KeyUsedOffPin,
                lease_id: key.0.clone(),
                source_ip: src.ip(),
                count: 1,
                first_at,
            };
            self.events.insert(key, event);
        }
    }

    pub(super) fn refuse_reason(&self, lease: &EdgeLease, now: SystemTime) -> Option<&'static str> {
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

    /// A random nonzero 24-bit index held by no peer in the table and by none being replaced,
    /// so a stale datagram for a removed session cannot reach its successor. With the table far
    /// below 2^24 peers a draw almost never collides; the loop only retries.
    pub(super) fn allocate_index(&mut self, old: &BTreeMap<u32, Box<Peer>>) -> u32 {
        loop {
            let candidate = self.index_rng.next_u32() & INDEX_MASK;
            if candidate != 0
                && !old.contains_key(&candidate)
                && !self.peers.contains_key(&candidate)
            {
                return candidate;
            }
        }
    }

    /// Which peer a datagram from a pinned source claims to be for. Initiations are identified
    /// by decrypting the initiator's static key (after the mac1 check and the global cookie
    /// demand), everything else by the receiver index boringtun gave out.
    pub(super) fn identify(&mut self, src: SocketAddr, datagram: &[u8]) -> Option<u32> {
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
        let verified = self
            .rate_limiter
            .verify_packet(Some(src.ip()), datagram, &mut self.scratch);
        let init = match verified {
            Ok(Packet::HandshakeInit(init)) => init,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                // Under load, and the one reply the edge sends before the per-peer pin check:
                // which peer this is can only be learnt from `parse_handshake_anon`, a
                // Diffie-Hellman, and sparing that work under a flood is what cookies are for.
                // It goes only to `src`, which the first admission step found inside some pin,
                // and carries no session: a retry with the cookie still meets the pin check.
                self.stats.cookies_sent += 1;
                trace!(%src, "under load: cookie reply sent");
                self.outputs.push_back(Queued {
                    peer: None,
                    output: Output::Transmit {
                        dst: src,
                        payload: cookie.to_vec(),
                    },
                });
                return None;
            }
            _ => {
                self.stats.dropped_invalid += 1;
                trace!(%src, "dropped: initiation failed mac1");
                return None;
            }
        };
        self.stats.handshake_dh += 1;
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
    pub(super) fn outbound_peer(&self, packet: &[u8]) -> Option<u32> {
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
