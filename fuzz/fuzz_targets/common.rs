//! The edge both targets drive: two leases on 10.77.0.0/24, each pinned to one address, and
//! the keys of their clients (fixed, so a crash reproduces). Each target uses part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grantwire_edge_core::EdgeCore;
use grantwire_proto::{EdgeConfig, EdgeLease, LeaseSet, Pin, PresharedKey, PrivateKey};

pub const EDGE_KEY: [u8; 32] = [7; 32];
pub const EDGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Client A at 192.0.2.2 (10.77.0.2), client B at 198.51.100.2 (10.77.0.3).
pub const CLIENTS: [(u8, &str, Ipv4Addr); 2] = [
    (1, "192.0.2.2", Ipv4Addr::new(10, 77, 0, 2)),
    (2, "198.51.100.2", Ipv4Addr::new(10, 77, 0, 3)),
];
/// Where datagrams come from: both pins, and two addresses no pin covers.
pub const SOURCES: [&str; 4] = [
    "192.0.2.2:40000",
    "198.51.100.2:40000",
    "203.0.113.9:40000",
    "[2001:db8::9]:40000",
];
pub const PLEX_PORT: u16 = 32400;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

pub fn client_key(seed: u8) -> PrivateKey {
    PrivateKey::from_random_bytes([seed; 32])
}

pub fn psk(seed: u8) -> [u8; 32] {
    [seed.wrapping_add(100); 32]
}

pub fn lease(seed: u8, pin_at: &str, address: Ipv4Addr) -> EdgeLease {
    EdgeLease {
        id: format!("lease-{seed}"),
        public_key: client_key(seed).public_key(),
        preshared_key: PresharedKey::from_bytes(psk(seed)),
        tunnel_address: address,
        pin: format!("{pin_at}/32").parse::<Pin>().unwrap(),
        ports: vec![PLEX_PORT],
        expires_at: 2_000_000_000,
    }
}

pub fn edge() -> EdgeCore {
    let config = EdgeConfig {
        name: "fuzz".into(),
        subnet: "10.77.0.0/24".parse().unwrap(),
        tunnel_address: EDGE_ADDRESS,
    };
    // A fixed seed: the same input must take the same path on every run.
    let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut core = EdgeCore::new(EDGE_KEY, config.clone(), rng);
    let set = LeaseSet {
        config,
        leases: CLIENTS
            .iter()
            .map(|(s, at, addr)| lease(*s, at, *addr))
            .collect(),
        generated_at: 0,
        broker_time_ms: None,
    };
    core.apply_lease_set(&set, now());
    core
}

pub fn source(selector: u8) -> SocketAddr {
    SOURCES[usize::from(selector) % SOURCES.len()]
        .parse()
        .unwrap()
}

/// Whether `dst` lies in some lease's pin.
pub fn pinned(dst: SocketAddr) -> bool {
    CLIENTS
        .iter()
        .any(|(_, at, _)| dst.ip().to_canonical() == at.parse::<std::net::IpAddr>().unwrap())
}
