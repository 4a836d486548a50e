//! Unit tests of the lease table and the output queue, with access to the core's internals.

use super::*;
use grantwire_proto::{EdgeLease, PresharedKey, PrivateKey};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::UNIX_EPOCH;

fn edge() -> EdgeCore {
    EdgeCore::new([7; 32], config(), StdRng::seed_from_u64(7))
}

fn config() -> EdgeConfig {
    EdgeConfig {
        name: "home".into(),
        subnet: "10.77.0.0/24".parse().unwrap(),
        tunnel_address: Ipv4Addr::new(10, 77, 0, 1),
    }
}

fn lease(id: &str, seed: u8, host: u8) -> EdgeLease {
    EdgeLease {
        id: id.into(),
        public_key: PrivateKey::from_random_bytes([seed; 32]).public_key(),
        preshared_key: PresharedKey::from_bytes([seed; 32]),
        tunnel_address: Ipv4Addr::new(10, 77, 0, host),
        pin: "192.0.2.1/32".parse().unwrap(),
        ports: vec![32400],
        expires_at: 2_000_000_000,
    }
}

fn apply(core: &mut EdgeCore, leases: Vec<EdgeLease>) -> ApplySummary {
    let set = LeaseSet {
        config: config(),
        leases,
        generated_at: 0,
        broker_time_ms: None,
    };
    core.apply_lease_set(&set, UNIX_EPOCH + Duration::from_secs(1_900_000_000))
}

#[test]
fn duplicates_and_foreign_addresses_are_skipped() {
    let mut core = edge();
    let summary = apply(
        &mut core,
        vec![
            lease("a", 1, 2),
            lease("same-key", 1, 3),
            lease("same-address", 2, 2),
            lease("edge-address", 3, 1),
            lease("outside", 4, 0).tap(|l| l.tunnel_address = Ipv4Addr::new(10, 78, 0, 5)),
        ],
    );
    assert_eq!((summary.installed, summary.skipped), (1, 4));
    assert!(core.has_lease("a"));
}

#[test]
fn indices_are_unique_and_not_reused_on_replacement() {
    let mut core = edge();
    apply(&mut core, vec![lease("a", 1, 2), lease("b", 2, 3)]);
    let first: Vec<u32> = core.peers.keys().copied().collect();
    let mut changed = lease("a", 1, 2);
    changed.preshared_key = PresharedKey::from_bytes([9; 32]);
    apply(&mut core, vec![changed, lease("b", 2, 3)]);
    let second: Vec<u32> = core.peers.keys().copied().collect();
    assert_eq!(first.len(), 2);
    assert!(second.iter().all(|i| *i <= INDEX_MASK && *i != 0));
    // b kept its index; a got a new one, not its old one.
    assert!(second.contains(&first[1]));
    assert!(!second.contains(&first[0]));
}

/// A transmit of `len` bytes, so the withheld byte count shows which ones were withheld.
fn transmit(dst: &str, len: usize) -> Output {
    Output::Transmit {
        dst: dst.parse().unwrap(),
        payload: vec![4; len],
    }
}

fn drain(core: &mut EdgeCore) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

#[test]
fn poll_output_withholds_a_transmit_outside_its_own_lease_pin() {
    let mut core = edge();
    let b = lease("b", 2, 3).tap(|l| l.pin = "198.51.100.0/24".parse().unwrap());
    apply(&mut core, vec![lease("a", 1, 2), b]);
    let index_of =
        |core: &EdgeCore, id: &str| *core.peers.iter().find(|(_, p)| p.lease.id == id).unwrap().0;
    let (a, b) = (index_of(&core, "a"), index_of(&core, "b"));
    // A transmit for lease a aimed into lease b's pin: some pin covers it, a's does not.
    core.outputs
        .push_back(Queued::for_peer(a, transmit("198.51.100.7:51820", 10)));
    // For a peer no longer in the table (index 0 is never given out): no pin of its own.
    core.outputs
        .push_back(Queued::for_peer(0, transmit("192.0.2.1:51820", 100)));
    // Inside its own pin: passes.
    core.outputs
        .push_back(Queued::for_peer(b, transmit("198.51.100.7:51820", 1)));
    core.outputs
        .push_back(Queued::for_peer(a, transmit("192.0.2.1:51820", 2)));
    assert_eq!(
        drain(&mut core),
        vec![
            transmit("198.51.100.7:51820", 1),
            transmit("192.0.2.1:51820", 2)
        ]
    );
    assert_eq!(core.stats().bytes_sent_unpinned, 110);
}

#[test]
fn a_cookie_reply_needs_only_some_pin() {
    let mut core = edge();
    apply(&mut core, vec![lease("a", 1, 2)]);
    for (dst, len) in [("192.0.2.1:4000", 1), ("203.0.113.9:4000", 10)] {
        core.outputs.push_back(Queued {
            peer: None,
            output: transmit(dst, len),
        });
    }
    assert_eq!(drain(&mut core), vec![transmit("192.0.2.1:4000", 1)]);
    assert_eq!(core.stats().bytes_sent_unpinned, 10);
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for EdgeLease {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn an_idle_lease_has_no_tunnel_and_only_an_initiation_makes_one() {
    let mut core = edge();
    apply(&mut core, vec![lease("a", 1, 2)]);
    let index = *core.peers.keys().next().unwrap();
    assert!(
        !core.peers[&index].has_tunnel(),
        "installed without a tunnel"
    );

    // Transport data naming the peer's index, from its pin: no session exists, so it is
    // refused without making one.
    let mut data = vec![4u8, 0, 0, 0];
    data.extend_from_slice(&(index << 8).to_le_bytes());
    data.extend_from_slice(&[0; 8 + 32]);
    let src: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let mut buf = vec![0u8; 2048];
    assert_eq!(core.handle_datagram(src, &data, now, &mut buf), Ok(None));
    assert!(core.poll_output().is_none());
    assert!(
        !core.peers[&index].has_tunnel(),
        "a data datagram made a tunnel"
    );
    assert_eq!(core.stats().dropped_invalid, 1);

    // The lease's own client initiates: now there is a tunnel, and it answers.
    let client_key = PrivateKey::from_random_bytes([1; 32]);
    let mut client = boringtun::noise::Tunn::new(
        x25519::StaticSecret::from(*client_key.as_bytes()),
        x25519::PublicKey::from(&x25519::StaticSecret::from(
            *PrivateKey::from_random_bytes([7; 32]).as_bytes(),
        )),
        Some([1; 32]),
        None,
        1,
        None,
    );
    let mut client_buf = vec![0u8; 2048];
    let TunnResult::WriteToNetwork(init) =
        client.format_handshake_initiation(&mut client_buf, true)
    else {
        panic!("no initiation");
    };
    assert_eq!(core.handle_datagram(src, init, now, &mut buf), Ok(None));
    assert!(core.peers[&index].has_tunnel());
    assert!(matches!(core.poll_output(), Some(Output::Transmit { .. })));
}

/// `n` leases (at most 253, the /24's hosts), each with its own key and address.
fn leases(n: u8) -> Vec<EdgeLease> {
    (1..=n)
        .map(|i| lease(&format!("l{i}"), i, i.wrapping_add(1)))
        .collect()
}

fn indices(core: &EdgeCore) -> Vec<u32> {
    core.peers.keys().copied().collect()
}

#[test]
fn indices_are_random_24_bit_values_drawn_from_the_rng_passed_in() {
    let mut core = edge();
    apply(&mut core, leases(250));
    let drawn = indices(&core);
    assert_eq!(drawn.len(), 250, "unique");
    assert!(drawn.iter().all(|i| *i != 0 && *i <= INDEX_MASK));
    // Sequential indices would be 1..=250. Drawn uniformly from 2^24, 250 indices have two
    // neighbours with probability under 1% and all stay in the lower half with 2^-250; with
    // this fixed seed, neither happens.
    let neighbours = drawn.windows(2).filter(|w| w[1] - w[0] <= 1).count();
    assert_eq!(neighbours, 0, "{drawn:?}");
    assert!(drawn.iter().any(|i| *i > INDEX_MASK / 2));

    // The randomness is the caller's: the same seed draws the same indices, another seed others.
    let mut same = edge();
    apply(&mut same, leases(250));
    assert_eq!(indices(&same), drawn);
    let mut other = EdgeCore::new([7; 32], config(), StdRng::seed_from_u64(8));
    apply(&mut other, leases(250));
    assert_ne!(indices(&other), drawn);
}

/// An RNG that returns the values it was given, to force collisions.
struct Scripted(std::collections::VecDeque<u32>);

impl rand::RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        self.0.pop_front().expect("script ran out")
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(4) {
            let bytes = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand::CryptoRng for Scripted {}

#[test]
fn a_drawn_index_that_is_zero_taken_or_being_replaced_is_drawn_again() {
    // a: 0 is never given out. b: 5 is a's, and so is 5 with bits above the 24 set.
    // a again (new psk): 9 is b's, 5 is a's old index (being replaced), then 11.
    let script = [0, 5, 5, 5 | (1 << 24), 9, 9, 5, 11];
    let mut core = EdgeCore::new([7; 32], config(), Scripted(script.into()));
    apply(&mut core, vec![lease("a", 1, 2), lease("b", 2, 3)]);
    let index_of =
        |core: &EdgeCore, id: &str| *core.peers.iter().find(|(_, p)| p.lease.id == id).unwrap().0;
    assert_eq!((index_of(&core, "a"), index_of(&core, "b")), (5, 9));
    let mut changed = lease("a", 1, 2);
    changed.preshared_key = PresharedKey::from_bytes([9; 32]);
    apply(&mut core, vec![changed, lease("b", 2, 3)]);
    assert_eq!((index_of(&core, "a"), index_of(&core, "b")), (11, 9));
    assert_eq!(core.lease_count(), 2);
}

/// The shell's buffers are checked before anything else: a short one is refused with the
/// sizes, and the call changes nothing, not even the expiry it would otherwise have run.
#[test]
fn a_buffer_too_small_is_refused_before_anything_changes() {
    let mut core = edge();
    apply(&mut core, vec![lease("a", 1, 2)]);
    let index = *core.peers.keys().next().unwrap();
    let after_expiry = UNIX_EPOCH + Duration::from_secs(2_000_000_001);
    let before = core.stats();

    let mut data = vec![4u8, 0, 0, 0];
    data.extend_from_slice(&(index << 8).to_le_bytes());
    data.extend_from_slice(&[0; 8 + 32]);
    let src: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let mut short = vec![0u8; data.len() - 1];
    assert_eq!(
        core.handle_datagram(src, &data, after_expiry, &mut short),
        Err(BufferTooSmall {
            needed: data.len(),
            given: data.len() - 1
        })
    );

    let packet = crate::build_ipv4(
        6,
        Ipv4Addr::new(10, 77, 0, 1),
        Ipv4Addr::new(10, 77, 0, 2),
        32400,
        5,
    );
    // A 40-byte packet seals to 72 bytes, but may turn into a 148-byte handshake initiation.
    assert_eq!(EdgeCore::transmit_capacity(packet.len()), 148);
    assert_eq!(EdgeCore::transmit_capacity(1420), 1420 + OVERHEAD);
    let mut short = vec![0u8; 147];
    assert_eq!(
        core.handle_tun_packet(&packet, after_expiry, &mut short),
        Err(BufferTooSmall {
            needed: 148,
            given: 147
        })
    );

    assert_eq!(core.stats(), before, "nothing counted");
    assert!(core.has_lease("a"), "the refused calls ran no expiry");
    assert!(core.outputs.is_empty());
    // The next call with room does run it.
    let mut room = vec![0u8; 148];
    assert_eq!(
        core.handle_tun_packet(&packet, after_expiry, &mut room),
        Ok(None)
    );
    assert!(!core.has_lease("a"));
}
