//! The data path through the core, in-process, with a shell's batching modelled: one lease with
//! an established session, then `N` full-size packets one way. `download` seals packets from
//! Plex into a UDP send batch (flushed every 64, as a GSO run); `upload` opens datagrams from the
//! client into TUN write slots (flushed every 128, tun-rs's batch). The client's datagrams are
//! sealed before the measured loop, so the loop is the edge's work only.
//!
//!   cargo run --release -p grantwire-edge-core --example datapath -- download 100000
//!
//! Prints the time per packet. For instructions per packet, which machine load does not move,
//! run it under `valgrind --tool=callgrind --toggle-collect='datapath::download'` (or
//! `upload`), which counts that function alone, and divide by N.

// A measurement program: it prints its report on stdout, and a panic is its failure report.
// It is the caller of the core, so it reads the clock, as the edge's shell does.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use grantwire_edge_core::{build_ipv4, EdgeCore, Output, Transmit, TunPacket};
use grantwire_proto::{EdgeConfig, EdgeLease, LeaseSet, PresharedKey, PrivateKey};

const EDGE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The TUN's MTU in grantwire-edge: a full packet.
const PACKET_LEN: usize = 1420;
const GSO_RUN: usize = 64;
const TUN_BATCH: usize = 128;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let direction = args.first().map_or("download", String::as_str);
    let n: usize = args
        .get(1)
        .map_or(100_000, |a| a.parse().expect("packet count"));
    let src: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let now = SystemTime::now();
    let (mut core, mut client) = established(src, now);
    let elapsed = match direction {
        "download" => download(&mut core, n, now),
        "upload" => {
            let sealed = seal_all(&mut client, n);
            upload(&mut core, &sealed, src, now)
        }
        other => panic!("direction {other:?}: expected download or upload"),
    };
    let per_packet = elapsed.as_nanos() as f64 / n.max(1) as f64;
    println!("{direction}: {n} packets of {PACKET_LEN} bytes, {per_packet:.0} ns per packet");
}

/// Plex's packets sealed into a UDP send batch, as the shell's `UdpTx` holds them. Never
/// inlined, so that callgrind can count this function alone (`--toggle-collect`).
#[inline(never)]
fn download(core: &mut EdgeCore, n: usize, now: SystemTime) -> Duration {
    let packet = full_packet(EDGE, CLIENT, 32400, 50000);
    let mut batch = vec![0u8; GSO_RUN * EdgeCore::transmit_capacity(PACKET_LEN)];
    let (mut filled, mut in_run, mut sent) = (0, 0, 0);
    let start = Instant::now();
    for _ in 0..n {
        let room = &mut batch[filled..filled + EdgeCore::transmit_capacity(packet.len())];
        if let Some(Transmit { len, .. }) = core.handle_tun_packet(&packet, now, room).unwrap() {
            filled += len;
            in_run += 1;
            sent += 1;
        }
        while core.poll_output().is_some() {}
        if in_run == GSO_RUN {
            (filled, in_run) = (0, 0);
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(sent, n, "every packet sealed");
    elapsed
}

/// `n` of the client's packets to Plex, sealed.
fn seal_all(client: &mut Tunn, n: usize) -> Vec<Vec<u8>> {
    let packet = full_packet(CLIENT, EDGE, 50000, 32400);
    let mut buf = vec![0u8; 2048];
    (0..n)
        .map(|_| match client.encapsulate(&packet, &mut buf) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// The client's datagrams opened into TUN write slots, as the shell's `TunTx` holds them.
/// Never inlined, like [`download`].
#[inline(never)]
fn upload(core: &mut EdgeCore, sealed: &[Vec<u8>], src: SocketAddr, now: SystemTime) -> Duration {
    let n = sealed.len();
    let mut slots = vec![vec![0u8; 2048]; TUN_BATCH];
    let (mut slot, mut written) = (0, 0);
    let start = Instant::now();
    for datagram in sealed {
        let room = &mut slots[slot][..datagram.len()];
        if let Some(TunPacket { .. }) = core.handle_datagram(src, datagram, now, room).unwrap() {
            slot = (slot + 1) % TUN_BATCH;
            written += 1;
        }
        while core.poll_output().is_some() {}
    }
    let elapsed = start.elapsed();
    assert_eq!(written, n, "every datagram opened");
    elapsed
}

/// An IPv4 TCP packet of `PACKET_LEN` bytes.
fn full_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = build_ipv4(6, src, dst, sport, dport);
    p.resize(PACKET_LEN, 0xab);
    p[2..4].copy_from_slice(&(PACKET_LEN as u16).to_be_bytes());
    p
}

/// An edge with one lease and its client's session: initiation, response, keepalive.
fn established(src: SocketAddr, now: SystemTime) -> (EdgeCore, Tunn) {
    let edge_key = PrivateKey::from_random_bytes([3; 32]);
    let client_key = PrivateKey::from_random_bytes([4; 32]);
    let psk = PresharedKey::from_bytes([5; 32]);
    let config = EdgeConfig {
        name: "datapath".into(),
        subnet: "10.77.0.0/24".parse().unwrap(),
        tunnel_address: EDGE,
    };
    let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let lease = EdgeLease {
        id: "l1".into(),
        public_key: client_key.public_key(),
        preshared_key: psk.clone(),
        tunnel_address: CLIENT,
        pin: format!("{}/32", src.ip()).parse().unwrap(),
        ports: vec![32400],
        expires_at: unix + 3600,
    };
    let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let mut core = EdgeCore::new(*edge_key.as_bytes(), config.clone(), rng);
    core.apply_lease_set(
        &LeaseSet {
            config,
            leases: vec![lease],
            generated_at: unix,
            broker_time_ms: None,
        },
        now,
    );
    let edge_public = x25519::PublicKey::from(*edge_key.public_key().as_bytes());
    let secret = x25519::StaticSecret::from(*client_key.as_bytes());
    let mut client = Tunn::new(secret, edge_public, Some(*psk.as_bytes()), None, 9, None);
    let mut buf = vec![0u8; 2048];
    let mut room = vec![0u8; 2048];
    let TunnResult::WriteToNetwork(init) = client.format_handshake_initiation(&mut buf, false)
    else {
        panic!("no initiation");
    };
    let init = init.to_vec();
    core.handle_datagram(src, &init, now, &mut room).unwrap();
    let Some(Output::Transmit { payload, .. }) = core.poll_output() else {
        panic!("no handshake response");
    };
    let TunnResult::WriteToNetwork(keepalive) = client.decapsulate(None, &payload, &mut buf) else {
        panic!("client refused the response");
    };
    let keepalive = keepalive.to_vec();
    let opened = core.handle_datagram(src, &keepalive, now, &mut room);
    assert_eq!(opened, Ok(None), "a keepalive carries nothing for the TUN");
    while core.poll_output().is_some() {}
    (core, client)
}
