//! Clients behind NAT, as most friends are: a home router, or a carrier's NAT that puts many
//! households behind one address (topology in `Lab::behind_nat`). The broker and the edge see
//! only the NAT's public address, 192.0.2.2, so both clients are pinned there.
//!
//! - Two clients behind one address, each with their own key and lease, both load the page;
//!   revoking one's grant stops that one within a second and leaves the other loading
//!   (scenario B9, CGNAT).
//! - Behind a hard NAT (`masquerade fully-random`, UDP mappings forgotten after 2 s idle), the
//!   client's mapping expires while it is idle and its next packet leaves from a new port: the
//!   tunnel carries on, with no renew, because the pin is the address, not the port (scenarios
//!   B6, NAT rebinding, and G2, hard NAT).
//! - Behind a NAT that forgets a UDP mapping after 30 s of silence, Plex answers a long poll
//!   40 s after the request, with nothing but WireGuard keepalives crossing meanwhile: the
//!   profile's `PersistentKeepalive = 25` keeps the mapping, so the answer reaches the client
//!   (scenario G1). Without the keepalive the answer is lost: `GW_NAT_NO_KEEPALIVE=1 cargo
//!   test -p grantwire-e2e --test it nat::keepalives` turns it off and both tests fail.
//!
//! Over IPv6 the router does what home routers with a delegated prefix do: it routes the
//! client's /64 untranslated and filters (`Lab::firewall_ipv6`: from outside only what belongs
//! to a flow the client started, UDP flows forgotten as fast as the IPv4 mappings). The
//! keepalive test runs over it too, and B6's port change is made by the client (wireguard-go
//! rebinding to another port) since nothing translates. B9's twin is two devices of one
//! household: their own addresses in one /64 (the second routed to it by a host route), both
//! leases pinned to that /64.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use grantwire_e2e::harness::capture::{Capture, Direction};
use grantwire_e2e::harness::grantwire::EdgeInfo;
use grantwire_e2e::harness::lab::{Nat, CLIENT_IP, FIRST_LOAD, ROUTED_CLIENT_IP6};
use grantwire_e2e::{http_get, require_env, Family, Lab, WgClient};

const POLL_TIMEOUT: Duration = Duration::from_millis(300);
const EDGE_WG_PORT: u16 = 51820;

#[test]
fn two_clients_behind_one_address_hold_their_own_leases_and_a_revoke_ends_only_one() {
    two_clients_one_pin(Family::V4);
}

/// Over IPv6 nothing is shared but the pin: two devices of one household have their own
/// addresses in one /64, and each lease is pinned to that /64.
#[test]
fn two_clients_in_one_64_hold_their_own_leases_and_a_revoke_ends_only_one() {
    two_clients_one_pin(Family::V6);
}

/// Scenario B9: two clients whose leases have the same pin, each with its own key, both load
/// the page; revoking one's grant stops that one within a second and never costs the other.
fn two_clients_one_pin(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::behind_nat("cg", Nat::Home);
    let (edge, pin) = match family {
        Family::V4 => (lab.enrol_edge(), format!("{CLIENT_IP}/32")),
        Family::V6 => {
            lab.add_ipv6();
            (lab.enrol_edge_dual_stack(), "2001:db8:3::/64".to_owned())
        }
    };
    let url = lab.plex_url(&edge);
    let client2 = lab.client2.as_ref().expect("a NAT lab has a second client");
    let (alice, bob) = (lab.add_user("alice"), lab.add_user("bob"));
    lab.broker.grant(&lab.home, "alice", "home", None);
    lab.broker.grant(&lab.home, "bob", "home", None);
    let (phone, laptop) = (lab.device("alice-phone"), lab.device("bob-laptop"));
    let broker = lab.broker_url_for(family);
    lab.login_at(&phone, &alice, &broker);
    lab.login_from(client2, &laptop, &bob, &broker);
    let alice_profile = lab.profile(&phone, "alice-home.conf");
    let bob_profile = lab.profile_from(client2, &laptop, "bob-home.conf");

    let leases = lab.broker.leases(&lab.home);
    let pins: Vec<&str> = leases.iter().filter_map(|l| l["pin"].as_str()).collect();
    assert_eq!(
        pins,
        [&pin, &pin],
        "both leases must be pinned to {pin} ({family:?}): {leases:?}"
    );
    family.assert_profile(&alice_profile);
    family.assert_profile(&bob_profile);

    let alice_wg = WgClient::up(&lab.client, &format!("{}a", lab.base), &alice_profile);
    let bob_wg = WgClient::up(client2, &format!("{}b", lab.base), &bob_profile);
    for (ns, who) in [(&lab.client, "alice"), (client2, "bob")] {
        lab.wait_page(ns, &url, FIRST_LOAD)
            .unwrap_or_else(|last| panic!("{who} behind the NAT did not load the page: {last:?}"));
    }

    let revoked_at = Instant::now();
    lab.broker.revoke(&lab.home, "bob", "home");
    let mut polls = Vec::new();
    while revoked_at.elapsed() < Duration::from_secs(4) {
        let at = revoked_at.elapsed();
        let alice_loads = lab.page_loads(&lab.client, &url, POLL_TIMEOUT);
        let bob_loads = lab.page_loads(client2, &url, POLL_TIMEOUT);
        polls.push((at, alice_loads, bob_loads));
        std::thread::sleep(Duration::from_millis(100));
    }
    let alice_missed: Vec<_> = polls.iter().filter(|p| !p.1).map(|p| p.0).collect();
    assert!(
        alice_missed.is_empty(),
        "revoking bob's grant cost alice, behind the same address, the page at {alice_missed:?}"
    );
    let bob_late: Vec<_> = polls
        .iter()
        .filter(|p| p.2 && p.0 > Duration::from_secs(1))
        .map(|p| p.0)
        .collect();
    assert!(
        bob_late.is_empty(),
        "bob's revoked lease still loaded the page at {bob_late:?} after the revoke"
    );
    eprintln!(
        "{family:?}: {} polls over 4 s after bob's revoke: alice loaded every one, bob none \
         after 1 s",
        polls.len()
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop((alice_wg, bob_wg));
}

#[test]
fn a_hard_nat_moving_the_clients_port_does_not_interrupt_the_tunnel() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let idle_secs = 2;
    let mut lab = Lab::behind_nat("rb", Nat::Hard { idle_secs });
    let edge = lab.enrol_edge();
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    // Idle past the NAT's memory (the profile's keepalive, 25 s, does not come this soon):
    // the next packet gets a fresh mapping on a random port.
    let new_port = || std::thread::sleep(Duration::from_secs(u64::from(idle_secs) * 2));
    a_new_source_port_keeps_the_lease(&lab, &edge, Family::V4, new_port);
    drop(wg);
}

/// IPv6 has no NAT here (the router routes a delegated /64, as home routers do), so the port
/// changes at the client: wireguard-go rebinds to another port, as a phone's WireGuard does
/// when its app restarts. The router's stateful filter forgets flows after 2 s, so inbound
/// datagrams get through only on the flow the client's new port opened.
#[test]
fn a_client_changing_its_source_port_over_ipv6_keeps_its_tunnel_and_lease() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::behind_nat("r6", Nat::Hard { idle_secs: 2 });
    lab.add_ipv6();
    lab.firewall_ipv6();
    let edge = lab.enrol_edge_dual_stack();
    let (wg, _) = lab.tunnel_up6(&edge, "alice");
    let ifname = wg.ifname().to_owned();
    let new_port = || {
        lab.client
            .exec_ok(&["wg", "set", &ifname, "listen-port", "40123"]);
    };
    a_new_source_port_keeps_the_lease(&lab, &edge, Family::V6, new_port);
    drop(wg);
}

/// Scenario B6: the page loads, `new_port` makes the client's datagrams leave from another
/// source port, and the page loads again with no renew: a capture at home sees at least two
/// source ports from the client's address, and the lease (id, pin, expiry) is unchanged.
fn a_new_source_port_keeps_the_lease(
    lab: &Lab,
    edge: &EdgeInfo,
    family: Family,
    new_port: impl FnOnce(),
) {
    let url = lab.plex_url(edge);
    let terms = |leases: Vec<serde_json::Value>| -> Vec<(String, String, i64)> {
        leases
            .iter()
            .map(|l| {
                let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (
                    text("id"),
                    text("pin"),
                    l["expires_at"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    let lease_before = terms(lab.broker.leases(&lab.home));
    assert_eq!(lease_before.len(), 1, "one lease: {lease_before:?}");

    let arriving = Capture::start(
        &lab.home,
        &lab.home_client_if,
        Direction::In,
        &format!("udp dst port {EDGE_WG_PORT}"),
        lab.dir.path(),
    );
    // The tunnel is up; once more on the port it has, for the capture.
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the page did not load ({family:?}): {last:?}"));
    new_port();
    let took = lab
        .wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| {
            panic!("after the client's source port changed the page did not load ({family:?}): {last:?}")
        });
    let packets = arriving.packets();
    let client = match family {
        Family::V4 => CLIENT_IP,
        Family::V6 => ROUTED_CLIENT_IP6,
    };
    let ports = source_ports(&packets, client, family);
    assert!(
        ports.len() >= 2,
        "the client's datagrams should have come from a new port; the edge saw WireGuard from \
         {client} on ports {ports:?}:\n{}",
        packets.join("\n")
    );
    assert_eq!(
        terms(lab.broker.leases(&lab.home)),
        lease_before,
        "the tunnel must carry on under the same lease, with no renew"
    );
    eprintln!(
        "{family:?}: after the client moved across ports {ports:?}, the page loaded in {took:?}"
    );
    lab.assert_no_unexpected_warnings(&[]);
}

#[test]
fn keepalives_hold_the_nat_open_so_plex_can_answer_after_40_s_of_silence() {
    keepalives_hold(Family::V4);
}

/// Over IPv6 the router does not translate but filters: from outside it forwards only what
/// belongs to a flow its client started, and forgets an idle UDP flow after 30 s (RFC 6092's
/// home router, with a short timeout). The keepalive keeps the flow, as it keeps an IPv4
/// mapping.
#[test]
fn keepalives_hold_the_firewall_open_so_plex_can_answer_after_40_s_of_silence_over_ipv6() {
    keepalives_hold(Family::V6);
}

/// Scenario G1: behind a router that forgets UDP flows after 30 s, Plex answers a long poll
/// 40 s after the request, with only WireGuard keepalives crossing meanwhile.
fn keepalives_hold(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let (idle_secs, silence_secs) = (30, 40);
    let mut lab = Lab::behind_nat("ka", Nat::Hard { idle_secs });
    if family == Family::V6 {
        lab.add_ipv6();
        lab.firewall_ipv6();
    }
    let edge = match family {
        Family::V4 => lab.enrol_edge(),
        Family::V6 => lab.enrol_edge_dual_stack(),
    };
    let (wg, profile) = lab.tunnel(&edge, "alice", family);
    let text = std::fs::read_to_string(&profile).expect("profile");
    let keepalive = "PersistentKeepalive = 25\n";
    assert!(
        text.contains(keepalive),
        "the profile should keep NAT mappings open:\n{text}"
    );
    if std::env::var_os("GW_NAT_NO_KEEPALIVE").is_some() {
        // The negative control, by hand: without the keepalive the answer must be lost.
        lab.client.exec_ok(&[
            "wg",
            "set",
            wg.ifname(),
            "peer",
            &grantwire_e2e::harness::wg::profile_peer_key(&profile),
            "persistent-keepalive",
            "off",
        ]);
    }

    let url = format!("{}wait?secs={silence_secs}", lab.plex_url(&edge));
    let asked = Instant::now();
    let got = http_get(&lab.client, &url, Duration::from_secs(silence_secs + 15));
    assert!(
        got.has(lab.plex.marker()),
        "Plex's answer after {silence_secs} s of silence, longer than the router's {idle_secs} \
         s memory, did not reach the client ({family:?}): {got:?}"
    );
    if family == Family::V6 {
        assert_eq!(
            lab.firewall_ipv6_drops(),
            1,
            "only the router's own probe may have been dropped: the tunnel's datagrams from \
             outside all belonged to the client's flow"
        );
    }
    eprintln!(
        "{family:?}: the long poll's answer arrived after {:?}",
        asked.elapsed()
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

/// Source ports of `CLIENT.PORT > HOME.51820` lines of `tcpdump -r -n` (`IP` or `IP6`).
fn source_ports(lines: &[String], client: &str, family: Family) -> BTreeSet<u16> {
    let to = format!(" > {}.{EDGE_WG_PORT}:", family.edge_host());
    let from = match family {
        Family::V4 => format!("IP {client}."),
        Family::V6 => format!("IP6 {client}."),
    };
    lines
        .iter()
        .filter(|l| l.contains(&to))
        .filter_map(|l| {
            let rest = &l[l.find(&from)? + from.len()..];
            rest.split(' ').next()?.parse().ok()
        })
        .collect()
}
