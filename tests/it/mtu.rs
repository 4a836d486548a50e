//! A small path with an ICMP black hole (scenario F1): the client's link behind its router has
//! an MTU of 1280, and the router drops every ICMP message, so no "too big" ever reaches the
//! edge. Datagrams larger than the path vanish silently; WireGuard's usual 1420-byte tunnel
//! makes 1480-byte datagrams and a film stalls after its first small packets.
//!
//! The edge's TUN MTU is 1200 (`crates/edge/src/tun.rs`), so Plex's TCP segments, and through
//! Plex's SYN-ACK the client's, fit a 1280-byte path over IPv6 or IPv4: the fix is the MTU on
//! the edge's side, with MSS following it; the profile's MTU is left as the apps set it. Here a
//! 20 MB film arrives whole through the black hole, and the router never had a "too big" to
//! send (a counter on its dropped ICMP stays at 0). Over IPv4, and over IPv6, where the outer
//! headers are largest (40 + 8 + 32 bytes on a 1200-byte packet: exactly 1280) and routers
//! never fragment. The router routes IPv6 without translation ([`Lab::add_ipv6`]) and keeps
//! neighbour discovery, without which no IPv6 link works; every other ICMPv6 message it drops.

use std::time::Duration;

use grantwire_e2e::harness::lab::{Nat, ROUTED_CLIENT_IP6};
use grantwire_e2e::harness::nft;
use grantwire_e2e::harness::plex::play;
use grantwire_e2e::{require_env, Lab};

const FILM_BYTES: u64 = 20_000_000;
const PATH_MTU: &str = "1280";

#[test]
fn a_film_crosses_a_1280_byte_path_that_drops_every_icmp_message() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::behind_nat("mtu", Nat::Home);
    black_hole(&lab);
    let edge = lab.enrol_edge();
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    film_through(&lab, &edge.tunnel_ip, "IPv4", 0);
    drop(wg);
}

#[test]
fn a_film_crosses_a_1280_byte_ipv6_path_that_drops_every_icmpv6_message() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::behind_nat("mtu6", Nat::Home);
    lab.add_ipv6();
    black_hole(&lab);
    let edge = lab.enrol_edge_dual_stack();
    let (wg, _) = lab.tunnel_up6(&edge, "alice");
    // The counter counts: a 1,300-byte datagram from home to the client (routed, so the router
    // must forward it onto its 1280-byte link) makes the router try to send "packet too big".
    // (Over IPv4 the NAT lets nothing unasked reach the client, so there is no such check.)
    lab.home.exec_ok(&[
        "python3",
        "-c",
        &format!(
            "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); \
             s.sendto(bytes(1300), ('{ROUTED_CLIENT_IP6}', 9))"
        ),
    ]);
    let nat = lab.nat.as_ref().expect("a NAT lab");
    let told = grantwire_e2e::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        let told = nft::counter(nat, "gwblackhole", "too_big").packets;
        (told > 0).then_some(told)
    });
    let baseline = told.unwrap_or_else(|| {
        panic!("the router's too-big counter did not count a datagram too big for its link")
    });
    film_through(&lab, &edge.tunnel_ip, "IPv6", baseline);
    drop(wg);
}

/// The router's link to the client and the client's own at 1280 bytes, and the router telling
/// no one that a datagram was too big (nor anything else but neighbour discovery).
fn black_hole(lab: &Lab) {
    let nat = lab.nat.as_ref().expect("a NAT lab");
    let nat_inside = lab
        .nat_client_if
        .clone()
        .expect("the router's link to the client");
    nat.exec_ok(&["ip", "link", "set", &nat_inside, "mtu", PATH_MTU]);
    lab.client
        .exec_ok(&["ip", "link", "set", &lab.client_if, "mtu", PATH_MTU]);
    nft::load(
        nat,
        "table inet gwblackhole {\n\
         \x20   counter too_big {}\n\
         \x20   chain leaving {\n\
         \x20       type filter hook output priority 0;\n\
         \x20       icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, \
         nd-router-advert } accept\n\
         \x20       icmp type destination-unreachable icmp code frag-needed counter name too_big drop\n\
         \x20       icmpv6 type packet-too-big counter name too_big drop\n\
         \x20       meta l4proto { icmp, ipv6-icmp } drop\n\
         \x20   }\n\
         \x20   chain passing {\n\
         \x20       type filter hook forward priority 0;\n\
         \x20       meta l4proto { icmp, ipv6-icmp } drop\n\
         \x20   }\n\
         }\n",
    );
}

/// Plays the film from the stand-in at `tunnel_ip` through the client's tunnel and asserts it
/// arrived whole, with the router never having had a "too big" to send (its counter still at
/// `baseline`).
fn film_through(lab: &Lab, tunnel_ip: &str, family: &str, baseline: u64) {
    let played = play(&lab.client, lab.dir.path(), tunnel_ip, FILM_BYTES, 17, 0);
    // Every datagram too big for the path made the router try to say so ("fragmentation
    // needed" or "packet too big", which it dropped): that count counts too-big datagrams (at
    // the kernel's ICMP rate limit, so at least one if there were any).
    let nat = lab.nat.as_ref().expect("a NAT lab");
    let told = nft::counter(nat, "gwblackhole", "too_big").packets - baseline;
    assert_eq!(
        played.bytes, FILM_BYTES,
        "{family}: the film arrived short: {played:?}"
    );
    assert_eq!(
        played.sha256,
        lab.plex.film_sha256(&lab.home, FILM_BYTES, 17),
        "{family}: the film that crossed the small path differs from the one sent"
    );
    assert_eq!(
        told, 0,
        "{family}: the router had {told} ICMP messages to send (datagrams too big for its \
         1280-byte link), all dropped"
    );
    eprintln!(
        "{family}: {FILM_BYTES} bytes through a 1280-byte path with ICMP dropped in {:.1} s, \
         longest wait {:.2} s",
        played.seconds, played.longest_wait
    );
    lab.assert_no_unexpected_warnings(&[]);
}
