//! In-memory harness: a client-side boringtun `Tunn` (as the official WireGuard apps run it)
//! joined to an `EdgeCore`, with time passed in and no sockets. [`Shell`] plays the edge's
//! shell: it owns the buffers the core seals and opens packets into, each exactly as long as
//! the core's contract asks, so every test here also checks that those sizes suffice.

// Helpers outside `#[test]` functions are still test code; a panic here is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use grantwire_edge_core::{build_ipv4, EdgeCore, Transmit, TunPacket};
use grantwire_proto::{EdgeConfig, EdgeLease, LeaseSet, Pin, PresharedKey, PrivateKey};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const EDGE_TUN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const A_TUN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const B_TUN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const A_SRC: &str = "192.0.2.10:40000";
const B_SRC: &str = "192.0.2.20:40000";
const STRANGER: &str = "198.51.100.9:40000";
const EDGE_UDP: &str = "203.0.113.1:51820";
const T0: u64 = 1_700_000_000;
const TTL: i64 = 3600;

fn now(offset_secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + offset_secs)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> EdgeConfig {
    EdgeConfig {
        name: "home".into(),
        subnet: "10.77.0.0/24".parse().unwrap(),
        tunnel_address: EDGE_TUN,
    }
}

struct Client {
    tunn: Tunn,
    lease: EdgeLease,
    buf: Vec<u8>,
}

const EDGE_KEY: [u8; 32] = [0x11; 32];

fn edge_public() -> x25519::PublicKey {
    x25519::PublicKey::from(&x25519::StaticSecret::from(
        *PrivateKey::from_random_bytes(EDGE_KEY).as_bytes(),
    ))
}

/// A client with its own key and psk, and the lease the broker would push for it.
fn client(seed: u8, id: &str, tunnel: Ipv4Addr, pinned_at: &str) -> Client {
    let key = PrivateKey::from_random_bytes([seed; 32]);
    let psk = PresharedKey::from_bytes([seed.wrapping_add(100); 32]);
    let lease = EdgeLease {
        id: id.into(),
        public_key: key.public_key(),
        preshared_key: psk.clone(),
        tunnel_address: tunnel,
        pin: Pin::for_source(addr(pinned_at).ip(), 32, 64).unwrap(),
        ports: vec![32400],
        expires_at: (T0 as i64) + TTL,
    };
    let tunn = Tunn::new(
        x25519::StaticSecret::from(*key.as_bytes()),
        edge_public(),
        Some(*psk.as_bytes()),
        Some(25),
        u32::from(seed),
        None,
    );
    Client {
        tunn,
        lease,
        buf: vec![0; 65_600],
    }
}

fn edge(leases: &[&EdgeLease]) -> Shell {
    let key = *PrivateKey::from_random_bytes(EDGE_KEY).as_bytes();
    let mut core = Shell::new(EdgeCore::new(key, config(), index_rng()));
    core.apply_lease_set(&set(leases), now(0));
    core
}

/// What the edge asked its shell to do, whether written into the shell's buffer (a packet
/// sealed or opened) or queued in the core (handshake replies and the like).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Transmit { dst: SocketAddr, payload: Vec<u8> },
    ToTun(Vec<u8>),
}

/// The shell's side of the core's contract. Its `handle_*` and `poll_output` stand in for the
/// core's (the rest of the core is reached through `Deref`), so a test reads as a sequence of
/// calls on the edge.
struct Shell {
    core: EdgeCore,
    /// Direct results not yet polled, in the order they came.
    written: std::collections::VecDeque<Output>,
}

impl Shell {
    fn new(core: EdgeCore) -> Self {
        Self {
            core,
            written: Default::default(),
        }
    }

    fn handle_datagram(&mut self, src: SocketAddr, datagram: &[u8], at: SystemTime) {
        let mut buf = vec![0; datagram.len()];
        let result = self.core.handle_datagram(src, datagram, at, &mut buf);
        if let Some(TunPacket { len }) = result.expect("a buffer as long as the datagram") {
            self.written.push_back(Output::ToTun(buf[..len].to_vec()));
        }
    }

    fn handle_tun_packet(&mut self, packet: &[u8], at: SystemTime) {
        let mut buf = vec![0; EdgeCore::transmit_capacity(packet.len())];
        let result = self.core.handle_tun_packet(packet, at, &mut buf);
        if let Some(Transmit { dst, len }) = result.expect("a buffer of transmit_capacity") {
            let payload = buf[..len].to_vec();
            self.written.push_back(Output::Transmit { dst, payload });
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.written.pop_front().or_else(|| {
            self.core
                .poll_output()
                .map(
                    |grantwire_edge_core::Output::Transmit { dst, payload }| Output::Transmit {
                        dst,
                        payload,
                    },
                )
        })
    }
}

impl std::ops::Deref for Shell {
    type Target = EdgeCore;
    fn deref(&self) -> &EdgeCore {
        &self.core
    }
}

impl std::ops::DerefMut for Shell {
    fn deref_mut(&mut self) -> &mut EdgeCore {
        &mut self.core
    }
}

/// A fixed seed, so every run draws the same receiver indices.
fn index_rng() -> StdRng {
    StdRng::seed_from_u64(0x6772_616e_7477_6972)
}

fn set(leases: &[&EdgeLease]) -> LeaseSet {
    LeaseSet {
        config: config(),
        leases: leases.iter().map(|l| (*l).clone()).collect(),
        generated_at: T0 as i64,
        broker_time_ms: None,
    }
}

fn drain(core: &mut Shell) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

impl Client {
    fn initiation(&mut self) -> Vec<u8> {
        match self.tunn.format_handshake_initiation(&mut self.buf, true) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("no initiation: {other:?}"),
        }
    }

    /// Feeds an edge datagram to the client; returns what the client sends back.
    fn receive(&mut self, datagram: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut net, mut tun) = (vec![], vec![]);
        let edge_ip = Some(addr(EDGE_UDP).ip());
        let mut input = datagram;
        loop {
            match self.tunn.decapsulate(edge_ip, input, &mut self.buf) {
                TunnResult::WriteToNetwork(p) => net.push(p.to_vec()),
                TunnResult::WriteToTunnelV4(p, _) => {
                    tun.push(p.to_vec());
                    break;
                }
                TunnResult::Done => break,
                other => panic!("client refused edge datagram: {other:?}"),
            }
            input = &[];
        }
        (net, tun)
    }

    fn seal(&mut self, packet: &[u8]) -> Vec<u8> {
        match self.tunn.encapsulate(packet, &mut self.buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("no session: {other:?}"),
        }
    }

    fn tcp_to_plex(&self, port: u16) -> Vec<u8> {
        build_ipv4(6, self.lease.tunnel_address, EDGE_TUN, 50000, port)
    }
}

/// Runs the full handshake from `src`; returns the edge's outputs for the initiation.
fn handshake(core: &mut Shell, client: &mut Client, src: &str, at: SystemTime) {
    let init = client.initiation();
    core.handle_datagram(addr(src), &init, at);
    let out = drain(core);
    let [Output::Transmit { dst, payload }] = out.as_slice() else {
        panic!("expected one handshake response, got {out:?}");
    };
    assert_eq!(*dst, addr(src), "reply goes to the datagram's source");
    let (replies, _) = client.receive(payload);
    for reply in replies {
        core.handle_datagram(addr(src), &reply, at);
        assert!(drain(core).is_empty(), "a keepalive produces nothing");
    }
}

fn established() -> (Shell, Client) {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    let mut core = edge(&[&a.lease]);
    handshake(&mut core, &mut a, A_SRC, now(1));
    (core, a)
}

#[test]
fn handshake_and_plex_packet_reach_the_tun() {
    let (mut core, mut a) = established();
    assert_eq!(core.stats().handshakes_completed, 1);
    assert_eq!(core.stats().handshake_dh, 1, "one initiation identified");
    let packet = a.tcp_to_plex(32400);
    let sealed = a.seal(&packet);
    core.handle_datagram(addr(A_SRC), &sealed, now(2));
    assert_eq!(drain(&mut core), vec![Output::ToTun(packet.clone())]);
    assert_eq!(core.stats().packets_to_tun, 1);
    assert_eq!(core.stats().bytes_to_tun, packet.len() as u64);
    assert_eq!(core.stats().bytes_sent_unpinned, 0);
}

#[test]
fn same_datagrams_from_another_source_get_nothing() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    let mut core = edge(&[&a.lease]);
    // A real initiation for a live lease's key (valid mac1), from a source no pin covers: it
    // costs no Diffie-Hellman and gets no answer.
    let init = a.initiation();
    core.handle_datagram(addr(STRANGER), &init, now(1));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_unpinned, 1);
    assert_eq!(core.stats().handshake_dh, 0);

    handshake(&mut core, &mut a, A_SRC, now(1));
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(STRANGER), &sealed, now(2));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_unpinned, 2);
    assert_eq!(core.stats().packets_to_tun, 0);
}

#[test]
fn a_key_is_refused_from_another_lease_pin() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    let b = client(2, "lease-b", B_TUN, B_SRC);
    let mut core = edge(&[&a.lease, &b.lease]);
    // A's key from B's pinned address: pinned source, wrong pin for that key.
    let init = a.initiation();
    core.handle_datagram(addr(B_SRC), &init, now(1));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_pin_mismatch, 1);
    assert_eq!(core.stats().dropped_unpinned, 0);

    // After a proper handshake, A's data from B's address is refused the same way.
    handshake(&mut core, &mut a, A_SRC, now(1));
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(B_SRC), &sealed, now(2));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_pin_mismatch, 2);
}

#[test]
fn after_expiry_nothing_passes_and_the_peer_is_gone() {
    let (mut core, mut a) = established();
    let sealed = a.seal(&a.tcp_to_plex(32400));
    let end = now(TTL as u64);
    assert_eq!(core.poll_timeout().map(|t| t <= end), Some(true));
    core.handle_timeout(end);
    assert!(!core.has_lease("lease-a"));
    assert_eq!(core.lease_count(), 0);
    assert_eq!(core.stats().leases_expired, 1);
    core.handle_datagram(addr(A_SRC), &sealed, end);
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_unpinned, 1);
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn expiry_applies_without_a_timeout_call() {
    let (mut core, mut a) = established();
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(A_SRC), &sealed, now(TTL as u64 + 5));
    assert!(drain(&mut core).is_empty());
    assert!(!core.has_lease("lease-a"));
}

#[test]
fn expired_leases_are_not_installed() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    a.lease.expires_at = T0 as i64;
    let core = edge(&[&a.lease]);
    assert_eq!(core.lease_count(), 0);
}

#[test]
fn a_lease_set_without_the_lease_removes_it() {
    let (mut core, mut a) = established();
    let sealed = a.seal(&a.tcp_to_plex(32400));
    let summary = core.apply_lease_set(&set(&[]), now(2));
    assert_eq!(summary.removed, 1);
    core.handle_datagram(addr(A_SRC), &sealed, now(2));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().leases_removed, 1);
}

#[test]
fn re_sent_lease_set_keeps_the_session() {
    let (mut core, mut a) = established();
    let summary = core.apply_lease_set(&set(&[&a.lease]), now(2));
    assert_eq!((summary.kept, summary.installed), (1, 0));
    let packet = a.tcp_to_plex(32400);
    let sealed = a.seal(&packet);
    core.handle_datagram(addr(A_SRC), &sealed, now(3));
    assert_eq!(drain(&mut core), vec![Output::ToTun(packet)]);
}

#[test]
fn changed_psk_replaces_the_tunnel() {
    let (mut core, mut a) = established();
    let mut changed = a.lease.clone();
    changed.preshared_key = PresharedKey::from_bytes([0xee; 32]);
    let summary = core.apply_lease_set(&set(&[&changed]), now(2));
    assert_eq!((summary.kept, summary.installed), (0, 1));
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(A_SRC), &sealed, now(3));
    assert!(drain(&mut core).is_empty(), "old session's index is gone");
}

#[test]
fn inner_filter_drops_wrong_source_destination_protocol_and_port() {
    let (mut core, mut a) = established();
    let bad = [
        build_ipv4(6, B_TUN, EDGE_TUN, 50000, 32400),
        build_ipv4(6, A_TUN, Ipv4Addr::new(10, 77, 0, 9), 50000, 32400),
        build_ipv4(6, A_TUN, Ipv4Addr::new(192, 168, 1, 1), 50000, 32400),
        build_ipv4(17, A_TUN, EDGE_TUN, 50000, 32400),
        build_ipv4(6, A_TUN, EDGE_TUN, 50000, 22),
        build_ipv4(6, A_TUN, EDGE_TUN, 50000, 32469),
    ];
    for packet in &bad {
        let sealed = a.seal(packet);
        core.handle_datagram(addr(A_SRC), &sealed, now(2));
        assert!(drain(&mut core).is_empty(), "{packet:?}");
    }
    assert_eq!(core.stats().dropped_inner_filter, bad.len() as u64);
    assert_eq!(
        core.stats().dropped_inner,
        grantwire_edge_core::InnerDrops {
            malformed: 1,
            source: 1,
            destination: 2,
            port: 2,
        }
    );
    assert_eq!(core.stats().packets_to_tun, 0);
}

#[test]
fn plex_replies_go_only_to_the_pinned_endpoint() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    let mut core = edge(&[&a.lease]);
    let reply = build_ipv4(6, EDGE_TUN, A_TUN, 32400, 50000);
    core.handle_tun_packet(&reply, now(1));
    assert!(
        drain(&mut core).is_empty(),
        "no endpoint before a handshake"
    );

    handshake(&mut core, &mut a, A_SRC, now(1));
    core.handle_tun_packet(&reply, now(2));
    let out = drain(&mut core);
    let [Output::Transmit { dst, payload }] = out.as_slice() else {
        panic!("expected one transmit, got {out:?}");
    };
    assert_eq!(*dst, addr(A_SRC));
    assert_eq!(a.receive(payload).1, vec![reply.clone()]);

    for refused in [
        build_ipv4(6, EDGE_TUN, A_TUN, 22, 50000),
        build_ipv4(17, EDGE_TUN, A_TUN, 32400, 50000),
        build_ipv4(6, Ipv4Addr::new(10, 77, 0, 9), A_TUN, 32400, 50000),
        build_ipv4(6, EDGE_TUN, B_TUN, 32400, 50000),
    ] {
        core.handle_tun_packet(&refused, now(2));
        assert!(drain(&mut core).is_empty());
    }
    assert_eq!(core.stats().dropped_tun, 5);
    assert_eq!(core.stats().packets_from_tun, 1);
    assert_eq!(core.stats().bytes_from_tun, reply.len() as u64);
}

#[test]
fn poll_timeout_is_the_earlier_of_tick_and_expiry() {
    let (mut core, _a) = established();
    core.handle_timeout(now(1));
    assert_eq!(
        core.poll_timeout(),
        Some(now(1) + grantwire_edge_core::TICK)
    );
    core.handle_timeout(now(TTL as u64) - Duration::from_millis(100));
    assert_eq!(core.poll_timeout(), Some(now(TTL as u64)));
}

fn outside_pins() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(v.into())),
    ]
    .prop_filter("outside every pin", |ip| {
        let ip = ip.to_canonical();
        ip != addr(A_SRC).ip() && ip != addr(B_SRC).ip()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unpinned_sources_never_get_output(
        ip in outside_pins(),
        port in any::<u16>(),
        junk in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut a = client(1, "lease-a", A_TUN, A_SRC);
        let b = client(2, "lease-b", B_TUN, B_SRC);
        let mut core = edge(&[&a.lease, &b.lease]);
        handshake(&mut core, &mut a, A_SRC, now(1));
        let src = SocketAddr::new(ip, port);
        let init = a.initiation();
        let data = a.seal(&a.tcp_to_plex(32400));
        for datagram in [&init[..], &data[..], &junk[..]] {
            core.handle_datagram(src, datagram, now(2));
            prop_assert!(core.poll_output().is_none());
        }
        core.handle_timeout(now(3));
        for out in drain(&mut core) {
            if let Output::Transmit { dst, .. } = out {
                prop_assert_eq!(dst, addr(A_SRC));
            }
        }
        prop_assert_eq!(core.stats().dropped_unpinned, 3);
        prop_assert_eq!(core.stats().bytes_sent_unpinned, 0);
    }
}

/// Where the edge sends Plex's next reply to `a`: the peer's current endpoint.
fn endpoint_of(core: &mut Shell, a: &Client, at: SystemTime) -> SocketAddr {
    let reply = build_ipv4(6, EDGE_TUN, a.lease.tunnel_address, 32400, 50000);
    core.handle_tun_packet(&reply, at);
    let out = drain(core);
    let [Output::Transmit { dst, .. }] = out.as_slice() else {
        panic!("expected one transmit, got {out:?}");
    };
    *dst
}

#[test]
fn refused_datagrams_do_not_move_the_endpoint() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    // A /24 pin, so that another address inside the pin can be tried too.
    a.lease.pin = Pin::new(addr(A_SRC).ip(), 24).unwrap();
    let mut core = edge(&[&a.lease]);
    handshake(&mut core, &mut a, A_SRC, now(1));
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(A_SRC), &sealed, now(2));
    assert_eq!(drain(&mut core).len(), 1, "accepted once");

    // Valid receiver index (the peer is found, its pin covers the source), but the Tunn refuses:
    // a replay of an accepted packet, and one with a corrupted authentication tag.
    let mut corrupted = a.seal(&a.tcp_to_plex(32400));
    *corrupted.last_mut().unwrap() ^= 1;
    let mut refused = 0;
    for src in ["192.0.2.10:40001", "192.0.2.99:40000"] {
        for datagram in [&sealed, &corrupted] {
            core.handle_datagram(addr(src), datagram, now(3));
            assert!(drain(&mut core).is_empty());
            refused += 1;
            assert_eq!(
                endpoint_of(&mut core, &a, now(3)),
                addr(A_SRC),
                "after {src}"
            );
        }
    }
    assert_eq!(core.stats().dropped_invalid, refused);
    assert_eq!(core.stats().dropped_pin_mismatch, 0);

    // Contrast: an authentic datagram from a new address inside the pin does move it (roaming).
    let fresh = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr("192.0.2.99:40000"), &fresh, now(4));
    assert_eq!(drain(&mut core).len(), 1);
    assert_eq!(endpoint_of(&mut core, &a, now(4)), addr("192.0.2.99:40000"));
}

#[test]
fn an_ipv4_mapped_source_is_admitted_like_the_plain_ipv4_source() {
    // What a dual-stack ([::]) socket reports for an IPv4 client.
    let mapped = "[::ffff:192.0.2.10]:40000";
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    let mut core = edge(&[&a.lease]);
    let init = a.initiation();
    core.handle_datagram(addr(mapped), &init, now(1));
    let out = drain(&mut core);
    let [Output::Transmit { dst, payload }] = out.as_slice() else {
        panic!("expected one handshake response, got {out:?}");
    };
    // The reply goes to the client, in the canonical (plain IPv4) form the pin check used.
    assert_eq!(*dst, addr(A_SRC));
    let (replies, _) = a.receive(payload);
    for reply in replies {
        core.handle_datagram(addr(mapped), &reply, now(1));
        assert!(drain(&mut core).is_empty());
    }
    for src in [mapped, A_SRC] {
        let packet = a.tcp_to_plex(32400);
        let sealed = a.seal(&packet);
        core.handle_datagram(addr(src), &sealed, now(2));
        assert_eq!(drain(&mut core), vec![Output::ToTun(packet)], "from {src}");
    }
    assert_eq!(endpoint_of(&mut core, &a, now(2)), addr(A_SRC));
    let stats = core.stats();
    assert_eq!(stats.handshakes_completed, 1);
    assert_eq!(stats.packets_to_tun, 2);
    assert_eq!(
        stats.dropped_unpinned + stats.dropped_pin_mismatch + stats.dropped_invalid,
        0
    );

    // And a mapped address outside the pin is refused like its IPv4 form.
    core.handle_datagram(addr("[::ffff:192.0.2.11]:40000"), &init, now(3));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_unpinned, 1);
}

#[test]
fn an_ipv6_pin_covers_its_slash_64_only() {
    // The broker pins an IPv6 client to its /64 by default.
    let mut a = client(1, "lease-a", A_TUN, "[2001:db8:1:2::10]:40000");
    assert_eq!(a.lease.pin.to_string(), "2001:db8:1:2::/64");
    let mut core = edge(&[&a.lease]);
    // Same /64, another address (privacy addresses change): admitted.
    let inside = "[2001:db8:1:2:abcd::99]:5000";
    handshake(&mut core, &mut a, inside, now(1));
    let packet = a.tcp_to_plex(32400);
    let sealed = a.seal(&packet);
    core.handle_datagram(addr(inside), &sealed, now(2));
    assert_eq!(drain(&mut core), vec![Output::ToTun(packet)]);

    // The neighbouring /64, and the same interface id in another /64: refused, no reply.
    for outside in ["[2001:db8:1:3::10]:40000", "[2001:db8:1:1:abcd::99]:5000"] {
        let init = a.initiation();
        core.handle_datagram(addr(outside), &init, now(3));
        let sealed = a.seal(&a.tcp_to_plex(32400));
        core.handle_datagram(addr(outside), &sealed, now(3));
        assert!(drain(&mut core).is_empty(), "{outside}");
    }
    assert_eq!(core.stats().dropped_unpinned, 4);
    assert_eq!(core.stats().packets_to_tun, 1);
}

#[test]
fn of_two_leases_with_one_key_only_the_first_is_installed() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    // Same key as a, but its own id, tunnel address and pin.
    let mut twin = client(1, "lease-twin", B_TUN, B_SRC);
    assert_eq!(twin.lease.public_key, a.lease.public_key);
    let mut core = Shell::new(EdgeCore::new(
        *PrivateKey::from_random_bytes(EDGE_KEY).as_bytes(),
        config(),
        index_rng(),
    ));
    let summary = core.apply_lease_set(&set(&[&a.lease, &twin.lease]), now(0));
    assert_eq!((summary.installed, summary.skipped), (1, 1));
    assert!(core.has_lease("lease-a"));
    assert!(!core.has_lease("lease-twin"));
    assert_eq!(core.lease_count(), 1);
    assert_eq!(core.stats().leases_installed, 1);

    // The twin's pin was never installed: its source is unpinned and gets nothing.
    let init = twin.initiation();
    core.handle_datagram(addr(B_SRC), &init, now(1));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_unpinned, 1);
    // The installed lease works as usual.
    handshake(&mut core, &mut a, A_SRC, now(1));
    assert_eq!(core.stats().handshakes_completed, 1);

    // Order decides: the same two the other way round install the twin instead.
    let summary = core.apply_lease_set(&set(&[&twin.lease, &a.lease]), now(2));
    assert_eq!(
        (summary.installed, summary.removed, summary.skipped),
        (1, 1, 1)
    );
    assert!(core.has_lease("lease-twin"));
    assert!(!core.has_lease("lease-a"));
}

/// `GLOBAL_HANDSHAKE_LIMIT` in core.rs: initiations per second before the edge demands cookies.
const GLOBAL_HANDSHAKE_LIMIT: usize = 100;

#[test]
fn under_load_a_cookie_reply_goes_only_to_the_sending_source() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    let b = client(2, "lease-b", B_TUN, B_SRC);
    let mut core = edge(&[&a.lease, &b.lease]);
    handshake(&mut core, &mut a, A_SRC, now(1));
    // Use up the rest of the limit with initiations that pass mac1 (which is what counts) from
    // a key without a lease: each is dropped after the Diffie-Hellman, with no reply.
    let mut nobody = client(3, "no-lease", Ipv4Addr::new(10, 77, 0, 4), A_SRC);
    for _ in 1..GLOBAL_HANDSHAKE_LIMIT {
        core.handle_datagram(addr(A_SRC), &nobody.initiation(), now(1));
        assert!(drain(&mut core).is_empty());
    }
    assert_eq!(
        core.stats().dropped_unknown_peer,
        GLOBAL_HANDSHAKE_LIMIT as u64 - 1
    );
    assert_eq!(core.stats().cookies_sent, 0);

    // Under load now. A's key from B's pinned address: the cookie reply comes before the
    // per-peer pin check, and goes to that source only, not to A's endpoint.
    core.handle_datagram(addr(B_SRC), &a.initiation(), now(1));
    let out = drain(&mut core);
    let [Output::Transmit { dst, payload }] = out.as_slice() else {
        panic!("expected one cookie reply, got {out:?}");
    };
    assert_eq!(*dst, addr(B_SRC));
    assert_eq!(payload[0], 3, "a cookie reply, not a handshake response");
    assert_eq!(core.stats().cookies_sent, 1);
    assert_eq!(core.stats().handshakes_completed, 1);

    // The cookie buys a retry, not admission: with a valid mac2 the initiation reaches the
    // per-peer pin check, which refuses it without any reply.
    assert_eq!(a.receive(payload), (vec![], vec![]));
    core.handle_datagram(addr(B_SRC), &a.initiation(), now(1));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.stats().dropped_pin_mismatch, 1);
    assert_eq!(core.stats().cookies_sent, 1);

    // From A's own address the same dance completes the handshake (cookies work under load).
    core.handle_datagram(addr(A_SRC), &a.initiation(), now(1));
    let out = drain(&mut core);
    let [Output::Transmit { dst, payload }] = out.as_slice() else {
        panic!("expected one cookie reply, got {out:?}");
    };
    assert_eq!((*dst, payload[0]), (addr(A_SRC), 3));
    a.receive(payload);
    handshake(&mut core, &mut a, A_SRC, now(1));
    assert_eq!(core.stats().cookies_sent, 2);
    assert_eq!(core.stats().handshakes_completed, 2);
    assert_eq!(core.stats().bytes_sent_unpinned, 0);
}

#[test]
fn a_lease_key_used_off_its_pin_is_reported_once_a_second_and_never_answered() {
    let (mut core, mut a) = established();
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(STRANGER), &sealed, now(2));
    assert!(drain(&mut core).is_empty(), "nothing goes back off the pin");
    assert_eq!(core.stats().packets_to_tun, 0, "nor to Plex");
    assert_eq!(core.stats().off_pin_checked, 1);
    assert_eq!(core.stats().off_pin_authenticated, 1);

    // More within the same second are not even decrypted.
    for _ in 0..50 {
        let more = a.seal(&a.tcp_to_plex(32400));
        core.handle_datagram(addr(STRANGER), &more, now(2));
    }
    assert_eq!(core.stats().off_pin_checked, 1);
    let later = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(STRANGER), &later, now(3));
    assert_eq!(core.stats().off_pin_authenticated, 2);

    let events = core.take_events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.kind, grantwire_proto::EdgeEventKind::KeyUsedOffPin);
    assert_eq!(e.lease_id, "lease-a");
    assert_eq!(e.source_ip, addr(STRANGER).ip());
    assert_eq!(e.count, 2);
    assert_eq!(e.first_at, (T0 + 2) as i64);
    assert!(core.take_events().is_empty(), "taken once");
    assert_eq!(core.stats().bytes_sent_unpinned, 0);

    // The lease still works from its pin.
    let packet = a.tcp_to_plex(32400);
    let sealed = a.seal(&packet);
    core.handle_datagram(addr(A_SRC), &sealed, now(4));
    assert_eq!(drain(&mut core), vec![Output::ToTun(packet)]);
}

#[test]
fn forged_replayed_and_handshake_datagrams_off_the_pin_report_nothing() {
    let (mut core, mut a) = established();
    // A captured datagram, delivered from the pin, then replayed from elsewhere.
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(A_SRC), &sealed, now(2));
    drain(&mut core);
    core.handle_datagram(addr(STRANGER), &sealed, now(3));
    // A real receiver index with a forged body.
    let mut forged = a.seal(&a.tcp_to_plex(32400));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    core.handle_datagram(addr(STRANGER), &forged, now(5));
    assert_eq!(core.stats().off_pin_checked, 2);
    assert_eq!(core.stats().off_pin_authenticated, 0);
    // An initiation with a valid key off the pin is not examined at all: no Diffie-Hellman.
    let init = a.initiation();
    core.handle_datagram(addr(STRANGER), &init, now(7));
    assert_eq!(core.stats().off_pin_checked, 2);
    assert!(drain(&mut core).is_empty());
    assert!(core.take_events().is_empty());
}

#[test]
fn lease_usage_reports_handshake_time_and_bytes() {
    let (mut core, mut a) = established();
    let before = core.lease_usage(now(1));
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].lease_id, "lease-a");
    let packet = a.tcp_to_plex(32400);
    let sealed = a.seal(&packet);
    core.handle_datagram(addr(A_SRC), &sealed, now(2));
    drain(&mut core);
    let usage = core.lease_usage(now(10));
    assert!(usage[0].rx_bytes > before[0].rx_bytes, "{usage:?}");
    // boringtun measures the handshake's age on its own clock (real seconds, ~0 here).
    let at = usage[0].last_handshake_at.expect("handshake time");
    assert!((T0 as i64 + 9..=T0 as i64 + 10).contains(&at), "{at}");
}

#[test]
fn a_moved_pin_keeps_the_session_and_only_the_new_address_works() {
    let (mut core, mut a) = established();
    let moved_to = "198.51.100.44:40001";
    let mut moved = a.lease.clone();
    moved.pin = Pin::for_source(addr(moved_to).ip(), 32, 64).unwrap();
    let summary = core.apply_lease_set(&set(&[&moved]), now(2));
    assert_eq!((summary.kept, summary.installed), (1, 0));

    // Plex's reply has nowhere to go until the client speaks from the new pin.
    core.handle_tun_packet(&build_ipv4(6, EDGE_TUN, A_TUN, 32400, 50000), now(2));
    assert!(drain(&mut core).is_empty(), "nothing to the old endpoint");

    // The old address is refused at once; the new one works with the same session.
    let packet = a.tcp_to_plex(32400);
    core.handle_datagram(addr(A_SRC), &a.seal(&packet), now(3));
    assert!(drain(&mut core).is_empty());
    core.handle_datagram(addr(moved_to), &a.seal(&packet), now(3));
    assert_eq!(drain(&mut core), vec![Output::ToTun(packet)]);
    core.handle_tun_packet(&build_ipv4(6, EDGE_TUN, A_TUN, 32400, 50000), now(3));
    let out = drain(&mut core);
    assert!(
        matches!(out.as_slice(), [Output::Transmit { dst, .. }] if *dst == addr(moved_to)),
        "{out:?}"
    );
    assert_eq!(
        core.stats().handshakes_completed,
        1,
        "no new handshake was needed"
    );
    assert_eq!(core.stats().bytes_sent_unpinned, 0);
}

#[test]
fn forged_datagrams_do_not_use_up_a_leases_check() {
    let (mut core, mut a) = established();
    // Forgeries naming the lease's real receiver index, from the address the key later shows
    // up at: each is checked and fails, and none stops the real one being seen.
    for _ in 0..10 {
        let mut forged = a.seal(&a.tcp_to_plex(32400));
        let last = forged.len() - 1;
        forged[last] ^= 1;
        core.handle_datagram(addr(STRANGER), &forged, now(2));
    }
    let real = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(STRANGER), &real, now(2));
    assert_eq!(core.stats().off_pin_authenticated, 1);
    assert_eq!(core.take_events().len(), 1);
    // The edge-wide budget bounds what a flood costs: 64 checks a second, whatever arrives.
    for _ in 0..200 {
        let mut forged = a.seal(&a.tcp_to_plex(32400));
        let last = forged.len() - 1;
        forged[last] ^= 1;
        core.handle_datagram(addr(STRANGER), &forged, now(5));
    }
    assert_eq!(core.stats().off_pin_checked, 11 + 64);
    assert!(drain(&mut core).is_empty());
}

/// Everything a client sent during a session, captured on the wire and replayed from the
/// client's own (pinned) address, to the same edge and to a restarted one: nothing of it
/// reaches Plex. A restarted edge answers the replayed initiation, as WireGuard's responder
/// does after losing its state, but the answer goes to the pinned address, and the captured
/// transport data belongs to a session that no longer exists.
#[test]
fn a_captured_session_replayed_opens_nothing_before_or_after_a_restart() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    let mut core = edge(&[&a.lease]);
    let init = a.initiation();
    core.handle_datagram(addr(A_SRC), &init, now(1));
    let out = drain(&mut core);
    let [Output::Transmit { payload, .. }] = out.as_slice() else {
        panic!("expected one handshake response, got {out:?}");
    };
    let (keepalives, _) = a.receive(payload);
    let mut captured = vec![init.clone()];
    captured.extend(keepalives.iter().cloned());
    for reply in &keepalives {
        core.handle_datagram(addr(A_SRC), reply, now(1));
    }
    let data = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(A_SRC), &data, now(2));
    assert_eq!(drain(&mut core).len(), 1, "the real data reached Plex once");
    captured.push(data);

    // Replayed to the same edge: the initiation's timestamp is not newer, the data's counter
    // is already used.
    let to_tun_before = core.stats().packets_to_tun;
    for datagram in &captured {
        core.handle_datagram(addr(A_SRC), datagram, now(3));
        assert!(drain(&mut core).is_empty(), "a replay got an answer");
    }
    assert_eq!(core.stats().packets_to_tun, to_tun_before);
    assert_eq!(core.stats().handshakes_completed, 1);

    // Replayed to a restarted edge (same key, same lease): the initiation is answered, to the
    // pinned address only; nothing reaches Plex.
    let mut restarted = edge(&[&a.lease]);
    for datagram in &captured {
        restarted.handle_datagram(addr(A_SRC), datagram, now(3));
        for output in drain(&mut restarted) {
            match output {
                Output::Transmit { dst, .. } => assert_eq!(dst, addr(A_SRC)),
                Output::ToTun(packet) => panic!("a replay reached Plex: {packet:02x?}"),
            }
        }
    }
    assert_eq!(restarted.stats().packets_to_tun, 0);
    assert_eq!(restarted.stats().bytes_sent_unpinned, 0);
}

/// Reordering (scenario E3): WireGuard accepts each counter once within a window of recent
/// ones (boringtun's is 1,024 counters), so data that arrives out of order reaches Plex, while
/// data older than the window, or seen before, does not.
#[test]
fn reordered_data_inside_the_window_arrives_once_and_older_data_never() {
    let (mut core, mut a) = established();
    let packet = a.tcp_to_plex(32400);
    // Counters 1 to 1,100 (the handshake's keepalive took 0), sealed in order.
    let sealed: Vec<Vec<u8>> = (0..1100).map(|_| a.seal(&packet)).collect();
    let deliver = |core: &mut Shell, i: usize| -> bool {
        core.handle_datagram(addr(A_SRC), &sealed[i], now(2));
        match drain(core).as_slice() {
            [] => false,
            [Output::ToTun(p)] if *p == packet => true,
            other => panic!("unexpected output for datagram {i}: {other:?}"),
        }
    };

    // The first six, newest first: every one arrives.
    for i in (0..6).rev() {
        assert!(
            deliver(&mut core, i),
            "datagram {i}, six places out of order"
        );
    }
    // Far ahead, then back: 1,100 is the newest seen, and 200 is 900 behind it, inside the
    // window; 50 is 1,050 behind, outside it.
    assert!(deliver(&mut core, 1099), "the newest datagram");
    assert!(
        deliver(&mut core, 199),
        "900 behind the newest: inside the window"
    );
    let invalid_before = core.stats().dropped_invalid;
    assert!(!deliver(&mut core, 199), "the same datagram again");
    assert!(
        !deliver(&mut core, 49),
        "1,050 behind the newest: outside the window"
    );
    assert!(!deliver(&mut core, 3), "a datagram seen long ago");
    assert_eq!(core.stats().dropped_invalid, invalid_before + 3);
    assert_eq!(core.stats().packets_to_tun, 8);
}

/// A stand-in that answers the edge's handshake response with a cookie reply, as a peer under
/// load does. Everything it needs is public: the client's public key (the cookie key is derived
/// from it) and the response as seen on the wire (its mac1 is the reply's associated data).
fn cookie_reply_for(a: &Client, response: &[u8]) -> Vec<u8> {
    let key = x25519::StaticSecret::from(*PrivateKey::from_random_bytes([1; 32]).as_bytes());
    let public = x25519::PublicKey::from(&key);
    assert_eq!(public.as_bytes(), a.lease.public_key.as_bytes());
    // A limit of zero: every handshake message it sees is "under load".
    let limiter = Arc::new(RateLimiter::new(&public, 0));
    let mut forger = Tunn::new(key, edge_public(), None, None, 99, Some(limiter));
    let mut buf = vec![0u8; 256];
    match forger.decapsulate(Some(addr(EDGE_UDP).ip()), response, &mut buf) {
        TunnResult::WriteToNetwork(p) if p[0] == 3 => p.to_vec(),
        other => panic!("expected a cookie reply, got {other:?}"),
    }
}

#[test]
fn a_cookie_reply_from_inside_the_pin_does_not_move_the_endpoint() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    a.lease.pin = Pin::new(addr(A_SRC).ip(), 24).unwrap();
    let mut core = edge(&[&a.lease]);
    let init = a.initiation();
    core.handle_datagram(addr(A_SRC), &init, now(1));
    let out = drain(&mut core);
    let [Output::Transmit {
        payload: response, ..
    }] = out.as_slice()
    else {
        panic!("expected a handshake response, got {out:?}");
    };
    let cookie = cookie_reply_for(&a, response);
    let (replies, _) = a.receive(response);
    for reply in replies {
        core.handle_datagram(addr(A_SRC), &reply, now(1));
    }
    drain(&mut core);
    assert_eq!(endpoint_of(&mut core, &a, now(1)), addr(A_SRC));

    // Someone else inside the pin (another host behind the same /24, or another port of the
    // same address) sends the cookie reply. The edge's Tunn accepts it, but it proves nothing.
    for src in ["192.0.2.99:40000", "192.0.2.10:40001"] {
        core.handle_datagram(addr(src), &cookie, now(2));
        assert!(drain(&mut core).is_empty());
        assert_eq!(
            endpoint_of(&mut core, &a, now(2)),
            addr(A_SRC),
            "after {src}"
        );
    }
    assert_eq!(core.stats().bytes_sent_unpinned, 0);
}

#[test]
fn an_initiation_answered_with_a_cookie_does_not_move_the_endpoint_or_draw_queued_traffic() {
    let mut a = client(1, "lease-a", A_TUN, A_SRC);
    a.lease.pin = Pin::new(addr(A_SRC).ip(), 24).unwrap();
    let mut core = edge(&[&a.lease]);
    let init = a.initiation();
    core.handle_datagram(addr(A_SRC), &init, now(1));
    let out = drain(&mut core);
    let [Output::Transmit {
        payload: response, ..
    }] = out.as_slice()
    else {
        panic!("expected a handshake response, got {out:?}");
    };
    let response = response.clone();
    // Plex answers before the client has confirmed the session: the edge's Tunn queues the
    // packet (and starts a handshake of its own, sent to the endpoint).
    core.handle_tun_packet(&build_ipv4(6, EDGE_TUN, A_TUN, 32400, 50000), now(1));
    let out = drain(&mut core);
    assert!(
        matches!(out.as_slice(), [Output::Transmit { dst, payload }] if *dst == addr(A_SRC) && payload[0] == 1),
        "{out:?}"
    );
    let (replies, _) = a.receive(&response);
    for reply in replies {
        core.handle_datagram(addr(A_SRC), &reply, now(1));
        assert!(drain(&mut core).is_empty());
    }

    // The captured initiation, replayed from elsewhere in the pin until the lease's own rate
    // limiter answers with a cookie instead of refusing the replay.
    let other = addr("192.0.2.99:40000");
    let mut cookie_seen = false;
    for _ in 0..20 {
        core.handle_datagram(other, &init, now(2));
        let out = drain(&mut core);
        match out.as_slice() {
            [] => {}
            [Output::Transmit { dst, payload }] if *dst == other && payload[0] == 3 => {
                cookie_seen = true;
                break;
            }
            other => panic!("the replay drew more than a cookie reply: {other:?}"),
        }
    }
    assert!(
        cookie_seen,
        "the lease's rate limiter never came under load"
    );
    assert_eq!(endpoint_of(&mut core, &a, now(2)), addr(A_SRC));
    assert_eq!(core.stats().bytes_sent_unpinned, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is corrupted in an authentic datagram, and from wherever inside the pin it
    /// comes, a refused datagram leaves the endpoint where the last authentic one put it.
    #[test]
    fn a_datagram_that_fails_decryption_never_moves_the_endpoint(
        host in 1u8..=254,
        port in 1u16..,
        byte in 16usize..,
        flip in 1u8..,
    ) {
        let mut a = client(1, "lease-a", A_TUN, A_SRC);
        a.lease.pin = Pin::new(addr(A_SRC).ip(), 24).unwrap();
        let mut core = edge(&[&a.lease]);
        handshake(&mut core, &mut a, A_SRC, now(1));
        let mut sealed = a.seal(&a.tcp_to_plex(32400));
        let at = byte % sealed.len();
        sealed[at.max(16)] ^= flip;
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)), port);
        core.handle_datagram(src, &sealed, now(2));
        prop_assert!(drain(&mut core).is_empty());
        prop_assert_eq!(endpoint_of(&mut core, &a, now(2)), addr(A_SRC));
    }
}

/// A transport-data datagram naming receiver index `index << 8`, with a zero counter and a
/// made-up tag: what a stranger can send without any key.
fn guessed_data(index: u32) -> Vec<u8> {
    let mut datagram = vec![4u8, 0, 0, 0];
    datagram.extend_from_slice(&(index << 8).to_le_bytes());
    datagram.extend_from_slice(&[0; 8 + 16]);
    datagram
}

#[test]
fn a_stranger_counting_receiver_indices_neither_hits_leases_nor_hides_a_key_used_off_its_pin() {
    let mut clients: Vec<Client> = (1..=200u8)
        .map(|n| {
            let pinned_at = format!("192.0.2.{n}:40000");
            client(
                n,
                &format!("lease-{n}"),
                Ipv4Addr::new(10, 77, 0, n + 1),
                &pinned_at,
            )
        })
        .collect();
    let leases: Vec<&EdgeLease> = clients.iter().map(|c| &c.lease).collect();
    let mut core = edge(&leases);
    let a = &mut clients[0];
    handshake(&mut core, a, "192.0.2.1:40000", now(1));

    // Counting up from 1, as one would against an edge that hands indices out in order, well
    // past the edge-wide budget of off-pin checks for the second.
    for index in 1..=4096 {
        core.handle_datagram(addr(STRANGER), &guessed_data(index), now(2));
    }
    assert!(drain(&mut core).is_empty());
    assert_eq!(
        core.stats().off_pin_checked,
        0,
        "a counted index named a live lease"
    );

    // In the same second, lease 1's real key shows up off its pin, and it is still reported.
    let sealed = a.seal(&a.tcp_to_plex(32400));
    core.handle_datagram(addr(STRANGER), &sealed, now(2));
    assert_eq!(core.stats().off_pin_authenticated, 1);
    let events = core.take_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].lease_id, "lease-1");
}

/// The shell's buffers, at the boundary of the contract: one byte short is refused before the
/// session sees the datagram (the same datagram is accepted afterwards, so its counter was not
/// spent) or the packet (nothing counted, nothing sealed); exactly the stated size works, and
/// the result is at the start of the shell's buffer.
#[test]
fn a_short_buffer_is_refused_and_the_exact_size_is_enough() {
    let (mut core, mut a) = established();
    let packet = a.tcp_to_plex(32400);
    let sealed = a.seal(&packet);
    let before = core.stats();
    let mut short = vec![0; sealed.len() - 1];
    let refused = core
        .core
        .handle_datagram(addr(A_SRC), &sealed, now(2), &mut short);
    let err = refused.unwrap_err();
    assert_eq!((err.needed, err.given), (sealed.len(), sealed.len() - 1));
    assert!(err.to_string().contains("too small"), "{err}");
    assert_eq!(core.stats(), before);
    assert!(drain(&mut core).is_empty());

    let mut exact = vec![0; sealed.len()];
    let opened = core
        .core
        .handle_datagram(addr(A_SRC), &sealed, now(2), &mut exact);
    assert_eq!(opened, Ok(Some(TunPacket { len: packet.len() })));
    assert_eq!(&exact[..packet.len()], &packet[..]);

    let reply = build_ipv4(6, EDGE_TUN, A_TUN, 32400, 50000);
    let needed = EdgeCore::transmit_capacity(reply.len());
    let before = core.stats();
    let mut short = vec![0; needed - 1];
    let refused = core.core.handle_tun_packet(&reply, now(3), &mut short);
    assert_eq!(refused.unwrap_err().needed, needed);
    assert_eq!(core.stats(), before);

    let mut exact = vec![0; needed];
    let sent = core.core.handle_tun_packet(&reply, now(3), &mut exact);
    let Ok(Some(Transmit { dst, len })) = sent else {
        panic!("expected a transmit, got {sent:?}");
    };
    assert_eq!(dst, addr(A_SRC));
    assert_eq!(a.receive(&exact[..len]).1, vec![reply]);
    assert!(drain(&mut core).is_empty(), "nothing queued besides");
}
