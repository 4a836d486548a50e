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
//!   (scenario G1). Without the keepalive line the answer is lost (checked by hand).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use grantwire_e2e::harness::capture::{Capture, Direction};
use grantwire_e2e::harness::lab::{Nat, CLIENT_IP, FIRST_LOAD, HOME_OUTSIDE_IP};
use grantwire_e2e::{http_get, require_env, Lab, WgClient};

const POLL_TIMEOUT: Duration = Duration::from_millis(300);
const EDGE_WG_PORT: u16 = 51820;

#[test]
fn two_clients_behind_one_address_hold_their_own_leases_and_a_revoke_ends_only_one() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::behind_nat("cg", Nat::Home);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let client2 = lab.client2.as_ref().expect("a NAT lab has a second client");
    let (alice, bob) = (lab.add_user("alice"), lab.add_user("bob"));
    lab.broker.grant(&lab.home, "alice", "home", None);
    lab.broker.grant(&lab.home, "bob", "home", None);
    let (phone, laptop) = (lab.device("alice-phone"), lab.device("bob-laptop"));
    lab.login(&phone, &alice);
    lab.login_from(client2, &laptop, &bob, &lab.broker_url());
    let alice_profile = lab.profile(&phone, "alice-home.conf");
    let bob_profile = lab.profile_from(client2, &laptop, "bob-home.conf");

    let leases = lab.broker.leases(&lab.home);
    let pins: Vec<&str> = leases.iter().filter_map(|l| l["pin"].as_str()).collect();
    assert_eq!(
        pins,
        [format!("{CLIENT_IP}/32"), format!("{CLIENT_IP}/32")],
        "both leases must be pinned to the NAT's public address: {leases:?}"
    );

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
        "{} polls over 4 s after bob's revoke: alice loaded every one, bob none after 1 s",
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
    let url = lab.plex_url(&edge);
    let (wg, _) = lab.tunnel_up(&edge, "alice");
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
    // The tunnel is up; once more on the port the NAT gave it, for the capture.
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the page did not load behind the hard NAT: {last:?}"));
    // Idle past the NAT's memory (the profile's keepalive, 25 s, does not come this soon):
    // the next packet gets a fresh mapping on a random port.
    std::thread::sleep(Duration::from_secs(u64::from(idle_secs) * 2));
    let took = lab
        .wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| {
            panic!("after the NAT forgot the client's mapping the page did not load: {last:?}")
        });
    let packets = arriving.packets();
    let ports = source_ports(&packets);
    assert!(
        ports.len() >= 2,
        "the NAT should have moved the client to a new port after {idle_secs} s idle; the edge \
         saw WireGuard from {CLIENT_IP} on ports {ports:?}:\n{}",
        packets.join("\n")
    );
    assert_eq!(
        terms(lab.broker.leases(&lab.home)),
        lease_before,
        "the tunnel must carry on under the same lease, with no renew"
    );
    eprintln!("after the NAT moved the client across ports {ports:?}, the page loaded in {took:?}");
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

#[test]
fn keepalives_hold_the_nat_open_so_plex_can_answer_after_40_s_of_silence() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let (idle_secs, silence_secs) = (30, 40);
    let mut lab = Lab::behind_nat("ka", Nat::Hard { idle_secs });
    let edge = lab.enrol_edge();
    let (wg, profile) = lab.tunnel_up(&edge, "alice");
    let text = std::fs::read_to_string(&profile).expect("profile");
    assert!(
        text.contains("PersistentKeepalive = 25\n"),
        "the profile should keep NAT mappings open:\n{text}"
    );

    let url = format!("{}wait?secs={silence_secs}", lab.plex_url(&edge));
    let asked = Instant::now();
    let got = http_get(&lab.client, &url, Duration::from_secs(silence_secs + 15));
    assert!(
        got.has(lab.plex.marker()),
        "Plex's answer after {silence_secs} s of silence, longer than the NAT's {idle_secs} s \
         memory, did not reach the client: {got:?}"
    );
    eprintln!("the long poll's answer arrived after {:?}", asked.elapsed());
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

/// Source ports of `192.0.2.2.PORT > 192.0.2.1.51820` lines of `tcpdump -r -n`.
fn source_ports(lines: &[String]) -> BTreeSet<u16> {
    let to = format!(" > {HOME_OUTSIDE_IP}.{EDGE_WG_PORT}:");
    let from = format!("IP {CLIENT_IP}.");
    lines
        .iter()
        .filter(|l| l.contains(&to))
        .filter_map(|l| {
            let rest = &l[l.find(&from)? + from.len()..];
            rest.split(' ').next()?.parse().ok()
        })
        .collect()
}
