//! A small path with an ICMP black hole (scenario F1): the client's link behind its router has
//! an MTU of 1280, and the router drops every ICMP message, so no "too big" ever reaches the
//! edge. Datagrams larger than the path vanish silently; WireGuard's usual 1420-byte tunnel
//! makes 1480-byte datagrams and a film stalls after its first small packets.
//!
//! The edge's TUN MTU is 1200 (`crates/edge/src/tun.rs`), so Plex's TCP segments, and through
//! Plex's SYN-ACK the client's, fit a 1280-byte path over IPv6 or IPv4: the fix is the MTU on
//! the edge's side, with MSS following it; the profile's MTU is left as the apps set it. Here a
//! 20 MB film arrives whole through the black hole, and the router never had a "too big" to
//! send (a counter on its dropped ICMP stays at 0).

use std::time::Duration;

use grantwire_e2e::harness::lab::Nat;
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
    let nat = lab.nat.as_ref().expect("a NAT lab");
    let nat_inside = lab
        .nat_client_if
        .clone()
        .expect("the router's link to the client");
    nat.exec_ok(&["ip", "link", "set", &nat_inside, "mtu", PATH_MTU]);
    lab.client
        .exec_ok(&["ip", "link", "set", &lab.client_if, "mtu", PATH_MTU]);
    // The black hole: the router tells no one that a datagram was too big (nor anything else).
    let ruleset = "table inet gwblackhole {\n\
                   \x20   chain leaving { type filter hook output priority 0; icmp type destination-unreachable icmp code frag-needed counter drop; meta l4proto { icmp, ipv6-icmp } drop; }\n\
                   \x20   chain passing { type filter hook forward priority 0; meta l4proto { icmp, ipv6-icmp } drop; }\n\
                   }\n";
    nat.exec_with(
        &["nft", "-f", "-"],
        Some(ruleset.as_bytes()),
        Duration::from_secs(10),
    )
    .expect_ok("the router's ICMP black hole");

    let edge = lab.enrol_edge();
    let (wg, _) = lab.tunnel_up(&edge, "alice");

    let played = play(
        &lab.client,
        lab.dir.path(),
        &edge.tunnel_ip,
        FILM_BYTES,
        17,
        0,
    );
    // Every datagram too big for the path made the router try to say so ("fragmentation
    // needed", which it dropped): the count of those counts too-big datagrams (at the kernel's
    // ICMP rate limit, so at least one if there were any).
    let nat = lab.nat.as_ref().expect("a NAT lab");
    let leaving = nat.exec_ok(&["nft", "list", "chain", "inet", "gwblackhole", "leaving"]);
    let told = icmp_dropped(&leaving.stdout);
    assert_eq!(
        played.bytes, FILM_BYTES,
        "the film arrived short: {played:?}"
    );
    assert_eq!(
        played.sha256,
        lab.plex.film_sha256(&lab.home, FILM_BYTES, 17),
        "the film that crossed the small path differs from the one sent"
    );
    assert_eq!(
        told, 0,
        "the router had {told} ICMP messages to send (datagrams too big for its 1280-byte \
         link), all dropped:\n{}",
        leaving.stdout
    );
    eprintln!(
        "{FILM_BYTES} bytes through a 1280-byte path with ICMP dropped in {:.1} s, longest wait \
         {:.2} s",
        played.seconds, played.longest_wait
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

/// The packet count of the `counter` in `nft list chain` output.
fn icmp_dropped(listing: &str) -> u64 {
    listing
        .split("counter packets ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in:\n{listing}"))
}
