//! The probe: an IPv4 TCP SYN to the edge's tunnel address, with real checksums (the edge hands
//! it to its kernel through the TUN, and the kernel checks them), and the reading of the
//! kernel's answer (RST, or SYN-ACK if something listens) to tell which probe it answers.

use std::net::Ipv4Addr;

/// A SYN from `src:sport` to `dst:dport` whose sequence number is `seq`: the answer acknowledges
/// `seq + 1`, which names the probe.
pub fn syn(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let ip_sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp = 20;
    p[tcp..tcp + 2].copy_from_slice(&sport.to_be_bytes());
    p[tcp + 2..tcp + 4].copy_from_slice(&dport.to_be_bytes());
    p[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    p[tcp + 12] = 0x50; // 5 words, no options
    p[tcp + 13] = 0x02; // SYN
    p[tcp + 14..tcp + 16].copy_from_slice(&65_535u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let tcp_sum = checksum(&[&pseudo, &p[tcp..]]);
    p[tcp + 16..tcp + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    p
}

/// The probe sequence number a packet from `from` to `to` answers (its acknowledgement less
/// one), if it is a TCP RST or SYN-ACK between those addresses.
pub fn answered_seq(packet: &[u8], from: Ipv4Addr, to: Ipv4Addr) -> Option<u32> {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != 6 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let tcp = packet.get(ihl..ihl + 20)?;
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let flags = tcp[13];
    let ack_flag = flags & 0x10 != 0;
    let rst_or_synack = flags & 0x04 != 0 || flags & 0x12 == 0x12;
    if src != from || dst != to || !ack_flag || !rst_or_synack {
        return None;
    }
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    Some(ack.wrapping_sub(1))
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each of even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
