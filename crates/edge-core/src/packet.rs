//! The few IPv4/TCP header fields the inner filter needs, read without trusting any length.
//!
//! Only IPv4 is parsed: the tunnel subnet is IPv4 (`EdgeConfig::subnet`), so anything else
//! inside the tunnel is dropped by construction.

use std::net::Ipv4Addr;

const IPV4_MIN_HEADER: usize = 20;
const PROTO_TCP: u8 = 6;

/// The parts of an IPv4 packet the filters look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Tcp {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Why a packet is not a well-formed IPv4 TCP segment. The variants exist for TRACE logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotTcp {
    NotIpv4,
    Truncated,
    /// Another protocol (UDP, ICMP, ...): the grant opens TCP ports only.
    Protocol(u8),
    /// A non-first fragment carries no TCP header, so its ports cannot be checked; WireGuard's
    /// MTU makes fragments unnecessary inside the tunnel, so they are refused.
    Fragment,
}

/// Reads source, destination and TCP ports, checking every length against the buffer and the
/// header's own total-length field.
pub(crate) fn parse_ipv4_tcp(packet: &[u8]) -> Result<Ipv4Tcp, NotTcp> {
    let first = *packet.first().ok_or(NotTcp::Truncated)?;
    if first >> 4 != 4 {
        return Err(NotTcp::NotIpv4);
    }
    if packet.len() < IPV4_MIN_HEADER {
        return Err(NotTcp::Truncated);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if header_len < IPV4_MIN_HEADER || total_len < header_len || total_len > packet.len() {
        return Err(NotTcp::Truncated);
    }
    let frag = u16::from_be_bytes([packet[6], packet[7]]);
    // More-fragments flag or a non-zero offset: either way not a whole segment.
    if frag & 0x3fff != 0 {
        return Err(NotTcp::Fragment);
    }
    if packet[9] != PROTO_TCP {
        return Err(NotTcp::Protocol(packet[9]));
    }
    let tcp = &packet[header_len..total_len];
    if tcp.len() < 20 {
        return Err(NotTcp::Truncated);
    }
    Ok(Ipv4Tcp {
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
    })
}

/// Builds a minimal IPv4 packet (no options, zero checksums) for tests of this crate and of
/// the shell. `proto` 6 gets a 20-byte TCP header, anything else an 8-byte header carrying
/// the ports in the same place (as UDP does).
#[doc(hidden)]
pub fn build_ipv4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let l4_len = if proto == PROTO_TCP { 20 } else { 8 };
    let total = IPV4_MIN_HEADER + l4_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    if proto == PROTO_TCP {
        p[32] = 0x50; // data offset 5 words
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

    #[test]
    fn reads_addresses_and_ports() {
        let p = build_ipv4(6, A, B, 50000, 32400);
        assert_eq!(
            parse_ipv4_tcp(&p),
            Ok(Ipv4Tcp {
                src: A,
                dst: B,
                src_port: 50000,
                dst_port: 32400
            })
        );
    }

    #[test]
    fn refuses_other_protocols_fragments_and_short_packets() {
        assert_eq!(
            parse_ipv4_tcp(&build_ipv4(17, A, B, 1, 32400)),
            Err(NotTcp::Protocol(17))
        );
        let mut frag = build_ipv4(6, A, B, 1, 32400);
        frag[7] = 1;
        assert_eq!(parse_ipv4_tcp(&frag), Err(NotTcp::Fragment));
        let p = build_ipv4(6, A, B, 1, 32400);
        assert_eq!(parse_ipv4_tcp(&p[..30]), Err(NotTcp::Truncated));
        assert_eq!(parse_ipv4_tcp(&[0x60; 40]), Err(NotTcp::NotIpv4));
        assert_eq!(parse_ipv4_tcp(&[]), Err(NotTcp::Truncated));
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_ipv4_tcp(&bytes);
        }
    }
}
