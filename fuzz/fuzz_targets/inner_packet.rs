//! The inner packet filters, through an established WireGuard session: the fuzz input is the
//! IP packet client A sends inside the tunnel (sealed with A's real session keys, so it reaches
//! the inbound filter), and also the packet Plex would write to the TUN (the outbound filter).
//!
//! Oracles, checked by parsing independently of the edge's own parser:
//! - a packet reaches the TUN only if it is the input unchanged (up to its IPv4 total
//!   length), IPv4, TCP, from A's tunnel
//!   address to the edge's, to a port of A's lease;
//! - a packet from the TUN is sent only to A's pinned endpoint, and only if it is IPv4 TCP from
//!   the edge's address and a port of A's lease to A's tunnel address.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use grantwire_edge_core::{EdgeCore, Output, Transmit};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// (protocol, source, destination, source port, destination port) of an IPv4 packet whose
/// header and TCP/UDP ports are all present.
fn five_tuple(p: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr, u16, u16)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl + 4 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let sport = u16::from_be_bytes([p[ihl], p[ihl + 1]]);
    let dport = u16::from_be_bytes([p[ihl + 2], p[ihl + 3]]);
    Some((p[9], src, dst, sport, dport))
}

/// An edge with client A's session established, and A's side of it.
fn established() -> (EdgeCore, Tunn) {
    let mut core = common::edge();
    let (seed, at, _) = common::CLIENTS[0];
    let edge_public = x25519::PublicKey::from(&x25519::StaticSecret::from(common::EDGE_KEY));
    let mut client = Tunn::new(
        x25519::StaticSecret::from(*common::client_key(seed).as_bytes()),
        edge_public,
        Some(common::psk(seed)),
        None,
        1,
        None,
    );
    let src = common::source(0);
    assert_eq!(src.ip().to_string(), at);
    let mut buf = vec![0u8; 65_600];
    let TunnResult::WriteToNetwork(init) = client.format_handshake_initiation(&mut buf, false)
    else {
        panic!("no initiation");
    };
    let init = init.to_vec();
    let mut out = vec![0u8; 65_600];
    let opened = core.handle_datagram(src, &init, common::now(), &mut out);
    assert_eq!(opened, Ok(None));
    let Some(Output::Transmit { payload, .. }) = core.poll_output() else {
        panic!("no handshake response");
    };
    let edge_ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
    if let TunnResult::WriteToNetwork(keepalive) = client.decapsulate(edge_ip, &payload, &mut buf) {
        let keepalive = keepalive.to_vec();
        let opened = core.handle_datagram(src, &keepalive, common::now(), &mut out);
        assert_eq!(opened, Ok(None));
        while core.poll_output().is_some() {}
    }
    (core, client)
}

fuzz_target!(|data: &[u8]| {
    let (mut core, mut client) = established();
    let (_, _, a_address) = common::CLIENTS[0];
    let src = common::source(0);
    let mut buf = vec![0u8; 65_600];
    // The shell's buffer, exactly as long as each call's contract asks.
    let mut out = vec![0u8; 65_600];

    // Inbound: A sends `data` through the tunnel.
    if data.len() <= 1400 {
        if let TunnResult::WriteToNetwork(sealed) = client.encapsulate(data, &mut buf) {
            let sealed = sealed.to_vec();
            let opened =
                core.handle_datagram(src, &sealed, common::now(), &mut out[..sealed.len()]);
            if let Some(opened) = opened.expect("a buffer as long as the datagram") {
                let packet = &out[..opened.len];
                // boringtun cuts a packet to its IPv4 total length (trailing bytes are not
                // part of it); nothing else may change.
                let total = usize::from(u16::from_be_bytes([data[2], data[3]]));
                assert_eq!(
                    packet,
                    &data[..total],
                    "the edge changed a packet on its way to Plex"
                );
                let (proto, s, d, _, dport) =
                    five_tuple(packet).expect("a packet without a full header reached Plex");
                assert_eq!(proto, 6, "not TCP");
                assert_eq!(s, a_address, "spoofed inner source reached Plex");
                assert_eq!(d, common::EDGE_ADDRESS, "inner destination is not the edge");
                assert_eq!(dport, common::PLEX_PORT, "port outside the lease");
            }
            assert!(
                core.poll_output().is_none(),
                "a data packet queued a datagram"
            );
        }
    }

    // Outbound: Plex writes `data` to the TUN.
    let capacity = EdgeCore::transmit_capacity(data.len());
    if capacity > out.len() {
        out.resize(capacity, 0);
    }
    let sealed = core.handle_tun_packet(data, common::now(), &mut out[..capacity]);
    if let Some(Transmit { dst, len }) = sealed.expect("a buffer of transmit_capacity") {
        assert_eq!(dst, src, "sent somewhere other than A's pinned endpoint");
        if let TunnResult::WriteToTunnelV4(inner, _) =
            client.decapsulate(Some("10.0.0.1".parse().unwrap()), &out[..len], &mut buf)
        {
            let (proto, s, d, sport, _) = five_tuple(inner).expect("sent a partial packet");
            assert_eq!(proto, 6, "not TCP");
            assert_eq!(s, common::EDGE_ADDRESS);
            assert_eq!(d, a_address, "sent to A a packet for another address");
            assert_eq!(sport, common::PLEX_PORT, "source port outside the lease");
        }
    }
    assert!(
        core.poll_output().is_none(),
        "a packet from the TUN queued a datagram"
    );
});
