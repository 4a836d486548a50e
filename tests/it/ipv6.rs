//! IPv6 as the outer transport: friends on DS-Lite and mobile networks often have no public
//! IPv4 at all. The broker and the edge run on their default listeners (`[::]`, both families).
//!
//! - A friend who reaches the broker over IPv6 is pinned to their /64, gets the edge's IPv6
//!   endpoint, the edge's `pins6` set follows, and a real wireguard-go client loads the stand-in
//!   Plex through a tunnel whose outer packets are IPv6 (captured on home's side of the link).
//!   The same profile used from another /64 gets nothing: a capture on home's side of that
//!   link counts zero packets sent to it (scenarios A1 and B4 over IPv6).
//! - Junk sent to the WireGuard port over IPv6 and IPv4 draws no answer at all, neither from the
//!   edge's socket nor from the kernel (ICMP port-unreachable): with the default dual-stack
//!   socket, and with `--listen 0.0.0.0:51820`, where no socket takes IPv6 and only the guard's
//!   rule keeps the kernel quiet (scenario B2's silence, over both families).
//! - A friend who reaches the broker over IPv6 asking for a lease on an edge with only an IPv4
//!   endpoint (a dual-stack mismatch, scenario B8) is refused: the pin would be IPv6 and the
//!   datagrams IPv4, so the tunnel could never come up. `grantwire profile` exits 1 with the
//!   broker's message saying so and what to do; no lease and no file are made. An edge known
//!   by a host name gets each client an endpoint of its own family, or a refusal saying why.
//! - A friend whose IPv6 address changes inside the /64 (privacy addresses rotate daily) keeps
//!   watching on the same lease without a renew; one who lands in another /64 is refused, the
//!   broker hears of the lease's key off its pin, and `grantwire renew` moves the pin to the new
//!   /64 (in the lease and the edge's `pins6`), after which the same tunnel works (B7 over IPv6).

use std::time::{Duration, Instant};

use grantwire_e2e::harness::capture::{Capture, Direction, ANSWERS};
use grantwire_e2e::harness::grantwire::EdgeArgs;
use grantwire_e2e::harness::lab::{HOME_OTHER_IP6, HOME_OUTSIDE_IP6, OTHER_IP6};
use grantwire_e2e::harness::wg::set_peer_endpoint;
use grantwire_e2e::{http_get, require_env, Edge, EdgeStart, Family, Lab, WgClient};

const FIRST_LOAD: Duration = Duration::from_secs(10);
const DROPPED_UNPINNED: &str = "grantwire_edge_dropped_unpinned_total";
const BYTES_SENT_UNPINNED: &str = "grantwire_edge_bytes_sent_unpinned_total";
const EDGE_WG_PORT: u16 = 51820;

#[test]
fn a_friend_over_ipv6_is_pinned_to_their_64_and_tunnels_over_ipv6() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("v6", true);
    lab.add_ipv6();
    let edge = lab.enrol_edge_dual_stack();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let phone = lab.device("alice-phone");
    lab.login_at(&phone, &alice, &lab.broker_url6());
    let profile = lab.profile(&phone, "alice-home.conf");
    let text = std::fs::read_to_string(&profile).expect("profile");
    let endpoint6 = format!("[{HOME_OUTSIDE_IP6}]:{EDGE_WG_PORT}");
    assert!(
        text.contains(&format!("Endpoint = {endpoint6}\n")),
        "a lease asked for over IPv6 must name the edge's IPv6 endpoint:\n{text}"
    );
    let leases = lab.broker.leases(&lab.home);
    assert_eq!(
        leases.len(),
        1,
        "one lease after `grantwire profile`: {leases:?}"
    );
    assert_eq!(
        leases[0]["pin"], "2001:db8:1::/64",
        "the lease must be pinned to the friend's /64: {leases:?}"
    );
    let pins6 = grantwire_e2e::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let set = lab
            .home
            .exec_ok(&["nft", "list", "set", "inet", "grantwire", "pins6"]);
        set.stdout.contains("2001:db8:1::/64").then_some(set.stdout)
    });
    assert!(
        pins6.is_some(),
        "the guard's pins6 set never held 2001:db8:1::/64"
    );

    // The tunnel's outer packets are IPv6: captured arriving at home's side of the link.
    let inbound = Capture::start(
        &lab.home,
        &lab.home_client_if,
        Direction::In,
        &format!("ip6 and udp dst port {EDGE_WG_PORT}"),
        lab.dir.path(),
    );
    let url = lab.plex_url(&edge);
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    let took = lab
        .wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the page did not load over the IPv6 tunnel: {last:?}"));
    eprintln!("page loaded through the IPv6 tunnel after {took:?}");
    let seen = inbound.packets();
    assert!(
        !seen.is_empty(),
        "no IPv6 datagram reached the edge's port, yet the page loaded"
    );
    let endpoints = lab
        .client
        .exec_ok(&["wg", "show", wg.ifname(), "endpoints"]);
    assert!(
        endpoints.stdout.contains(&endpoint6),
        "the client's peer endpoint must be the IPv6 one: {}",
        endpoints.stdout
    );

    // The same profile from another /64: nothing comes back, not even ICMP.
    let other = lab.other.as_ref().expect("lab with the other namespace");
    let home_other_if = lab.home_other_if.clone().expect("home's link to other");
    let dropped_before = lab.edge().metrics(&lab.home).require(DROPPED_UNPINNED);
    let answers = Capture::start(
        &lab.home,
        &home_other_if,
        Direction::Out,
        ANSWERS,
        lab.dir.path(),
    );
    let copy = lab.dir.path().join("copied-profile.conf");
    std::fs::copy(&profile, &copy).expect("copy the profile");
    let stolen = WgClient::up(other, &format!("{}o", lab.base), &copy);
    let trying_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < trying_until {
        let got = http_get(other, &url, Duration::from_secs(1));
        assert!(
            !got.ok(),
            "the copied profile loaded {url} from {OTHER_IP6}, outside the pin: {got:?}"
        );
    }
    let peers = stolen.dev.peers();
    let sent_to_other = answers.packets();
    assert!(
        peers.len() == 1 && peers[0].tx_bytes > 0,
        "the copied profile's interface should have sent handshakes: {peers:?}"
    );
    assert!(
        sent_to_other.is_empty(),
        "home sent {} packets to the unpinned /64 ({OTHER_IP6}):\n{}",
        sent_to_other.len(),
        sent_to_other.join("\n")
    );
    let metrics = lab.edge().metrics(&lab.home);
    let dropped = metrics.require(DROPPED_UNPINNED) - dropped_before;
    assert!(
        dropped > 0.0,
        "the edge counted no datagram dropped from {OTHER_IP6}: the capture proves nothing \
         if nothing arrived\n{}",
        metrics.text
    );
    assert_eq!(metrics.require(BYTES_SENT_UNPINNED), 0.0);
    drop(stolen);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the pinned client lost the page: {last:?}"));
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

/// Sends junk to the WireGuard port of each of `targets` from `ns`: one byte, each WireGuard
/// message type at a wrong length and at its own, and a large random datagram.
const JUNK_PY: &str = r#"
import os, socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    for kind, length in [(0, 1), (1, 148), (1, 100), (2, 92), (3, 64), (4, 32), (4, 1400), (9, 700)]:
        payload = bytes([kind, 0, 0, 0]) + os.urandom(max(length - 4, 0))
        s.sendto(payload[:length], (host, int(port)))
    s.close()
"#;

#[test]
fn junk_to_the_wireguard_port_draws_no_answer_on_either_family_or_listener() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("v6j", true);
    lab.add_ipv6();
    lab.enrol_edge_dual_stack();
    let other = lab.other.as_ref().expect("lab with the other namespace");
    let home_other_if = lab.home_other_if.clone().expect("home's link to other");
    let script = lab.dir.path().join("junk.py");
    std::fs::write(&script, JUNK_PY).expect("junk script");
    let script = script.to_str().expect("UTF-8 path").to_owned();
    let targets = [
        format!("[{HOME_OTHER_IP6}]:{EDGE_WG_PORT}"),
        format!("[{HOME_OUTSIDE_IP6}]:{EDGE_WG_PORT}"),
        format!("198.51.100.1:{EDGE_WG_PORT}"),
    ];
    let send_junk = |what: &str| {
        let answers = Capture::start(
            &lab.home,
            &home_other_if,
            Direction::Out,
            ANSWERS,
            lab.dir.path(),
        );
        let arrived = Capture::start(
            &lab.home,
            &home_other_if,
            Direction::In,
            &format!("udp dst port {EDGE_WG_PORT}"),
            lab.dir.path(),
        );
        let mut argv = vec!["python3", script.as_str()];
        argv.extend(targets.iter().map(String::as_str));
        other.exec_ok(&argv);
        // ICMP errors leave at once; a second is ample for any answer to show.
        std::thread::sleep(Duration::from_secs(1));
        let (answered, arrived) = (answers.packets(), arrived.packets());
        assert_eq!(
            arrived.len(),
            8 * targets.len(),
            "{what}: every junk datagram should have reached home:\n{}",
            arrived.join("\n")
        );
        assert!(
            answered.is_empty(),
            "{what}: home answered junk to its WireGuard port with {} packets:\n{}",
            answered.len(),
            answered.join("\n")
        );
        eprintln!("{what}: {} junk datagrams, no answer", arrived.len());
    };
    send_junk("default dual-stack listener");
    lab.edge
        .as_mut()
        .expect("the edge")
        .assert_running("the junk to be over (it must not have died of it)");

    // An edge told to listen on IPv4 only: no socket takes the IPv6 datagrams, so without the
    // guard's rule the kernel would answer each with ICMPv6 port-unreachable.
    lab.edge = None;
    let tun = format!("{}t", lab.base);
    lab.edge = Some(Edge::start_with_args(
        &lab.home,
        &lab.broker,
        "spent",
        lab.dir.path(),
        &tun,
        EdgeStart::Root,
        EdgeArgs {
            flags: &["--listen", &format!("0.0.0.0:{EDGE_WG_PORT}")],
            ..EdgeArgs::default()
        },
    ));
    let ruleset = lab
        .home
        .exec_ok(&["nft", "list", "table", "inet", "grantwire"]);
    assert!(
        ruleset
            .stdout
            .contains(&format!("meta nfproto ipv6 udp dport {EDGE_WG_PORT} drop")),
        "an IPv4-only edge's guard must drop IPv6 to its port:\n{}",
        ruleset.stdout
    );
    send_junk("--listen 0.0.0.0:51820");
    lab.edge
        .as_mut()
        .expect("the edge")
        .assert_running("the junk to be over (it must not have died of it)");
    lab.assert_no_unexpected_warnings(&[]);
}

#[test]
fn a_friend_over_ipv6_on_an_edge_without_an_ipv6_endpoint_is_told_why_and_gets_no_lease() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("v6m", false);
    lab.add_ipv6();
    // The usual lab edge: an IPv4 endpoint only.
    lab.enrol_edge();
    refused_profile(
        &lab,
        "alice",
        Family::V6,
        &[
            "the broker sees you over IPv6 (at 2001:db8:1::2)",
            "edge home has no IPv6 endpoint",
            "add an IPv6 endpoint to edge home",
        ],
    );
    assert!(
        lab.broker.leases(&lab.home).is_empty(),
        "the refusal made a lease"
    );
    lab.assert_no_unexpected_warnings(&[]);
}

/// An edge registered by a host name (an owner's dynamic-DNS name), scenario B8's other half:
/// the client's WireGuard resolves the name itself and may pick the family it was not pinned
/// in. The broker resolves the name when it issues the lease (home's hosts file here): a name
/// with addresses of both families gives each client the address of its own family; a name
/// of the client's family only is handed out as the name; a name without the client's family,
/// or that does not resolve, is refused saying so, with no lease made.
#[test]
fn an_edge_known_by_a_host_name_gets_each_client_an_endpoint_of_its_own_family() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("dns", false);
    lab.add_ipv6();
    lab.home
        .set_hosts("192.0.2.1 edge.test\n2001:db8:1::1 edge.test\n");
    let endpoint = format!("edge.test:{EDGE_WG_PORT}");
    let edge = lab.enrol_edge_at(&[&endpoint], EdgeStart::Root, EdgeArgs::default());

    // Both families: each gets its own family's address; alice's loads over IPv6.
    let (wg, _) = lab.tunnel(&edge, "alice", Family::V6);
    drop(wg);
    lab.granted_profile("bob", Family::V4);

    // The name loses its IPv6 address: an IPv4 client gets the name itself.
    lab.home.set_hosts("192.0.2.1 edge.test\n");
    let carol = lab.add_user("carol");
    lab.broker.grant(&lab.home, "carol", "home", None);
    let laptop = lab.device("carol-laptop");
    lab.login(&laptop, &carol);
    let profile = lab.profile(&laptop, "carol-home.conf");
    let text = std::fs::read_to_string(&profile).expect("carol's profile");
    assert!(
        text.contains(&format!("Endpoint = {endpoint}\n")),
        "a name with addresses of the client's family only should be handed out as the name:\n{text}"
    );
    // Her WireGuard resolves it (the client's hosts file) and her page loads.
    lab.client.set_hosts("192.0.2.1 edge.test\n");
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &lab.plex_url(&edge), FIRST_LOAD)
        .unwrap_or_else(|last| panic!("carol's tunnel to edge.test did not load: {last:?}"));
    drop(wg);
    // A renewal looks the name up again: the name gains an IPv6 address, and carol's renewed
    // profile names the IPv4 address instead of the name.
    lab.home
        .set_hosts("192.0.2.1 edge.test\n2001:db8:1::1 edge.test\n");
    laptop
        .renew(&lab.client, "home", &profile)
        .expect_ok("grantwire renew home");
    Family::V4.assert_profile(&profile);
    lab.home.set_hosts("192.0.2.1 edge.test\n");
    let leases = lab.broker.leases(&lab.home).len();

    // An IPv6 client on the IPv4-only name, and anyone once the name is gone: refused.
    let refusals = [
        (
            "dave",
            Family::V6,
            "edge home's endpoint edge.test:51820 has no IPv6 address (it resolves to 192.0.2.1)",
        ),
        (
            "erin",
            Family::V4,
            "could not resolve edge home's endpoint edge.test:51820",
        ),
    ];
    for (name, family, says) in refusals {
        if name == "erin" {
            lab.home.set_hosts("");
        }
        refused_profile(&lab, name, family, &[says]);
        // A name with no address of the family is settled (409); one that did not resolve may
        // resolve in a moment (503), so the key waits for the retry.
        let pending = lab
            .dir
            .path()
            .join(format!("device-{name}-phone/profiles/home.pending"));
        assert_eq!(pending.exists(), name == "erin", "{name}'s pending key");
    }
    assert_eq!(
        lab.broker.leases(&lab.home).len(),
        leases,
        "a refusal made a lease"
    );
    lab.assert_no_unexpected_warnings(&[]);
}

/// `name` added, granted `home` and signed in over `family`, whose `grantwire profile home` is
/// refused: exit 1 (a lease that could never connect, not a policy refusal), the message
/// holding each of `says`, and no file written.
fn refused_profile(lab: &Lab, name: &str, family: Family, says: &[&str]) {
    let user = lab.add_user(name);
    lab.broker.grant(&lab.home, name, "home", None);
    let phone = lab.device(&format!("{name}-phone"));
    lab.login_at(&phone, &user, &lab.broker_url_for(family));
    let out = lab.dir.path().join(format!("{name}-home.conf"));
    let refused = phone.profile(&lab.client, "home", &out);
    assert_eq!(
        refused.code,
        Some(1),
        "{name} ({family:?}): a lease that could never connect must be refused (exit 1, not a \
         policy refusal):\n{refused}"
    );
    for words in says {
        assert!(
            refused.stderr.contains(words),
            "{name}'s refusal should say {words:?}:\n{refused}"
        );
    }
    assert!(!out.exists(), "a refused profile wrote {}", out.display());
}

/// `lease list --json`'s one lease's id and pin.
fn the_lease(lab: &Lab) -> (String, String) {
    let leases = lab.broker.leases(&lab.home);
    assert_eq!(leases.len(), 1, "{leases:?}");
    (leases[0]["id"].to_string(), leases[0]["pin"].to_string())
}

/// The client's address changes from `from` to `to` (both /64 on its link), and its WireGuard
/// interface is told the edge's endpoint again, as the apps do on a network change.
fn change_address(lab: &Lab, ifname: &str, from: &str, to: &str) {
    let dev = lab.client_if.as_str();
    lab.client.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        &format!("{to}/64"),
        "dev",
        dev,
        "nodad",
    ]);
    lab.client
        .exec_ok(&["ip", "-6", "addr", "del", &format!("{from}/64"), "dev", dev]);
    let endpoint = format!("[{HOME_OUTSIDE_IP6}]:{EDGE_WG_PORT}");
    set_peer_endpoint(&lab.client, ifname, &endpoint);
}

#[test]
fn a_new_address_in_the_64_keeps_the_tunnel_and_a_new_64_needs_a_renew() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    const PRIVACY_IP6: &str = "2001:db8:1::99";
    const MOVED_IP6: &str = "2001:db8:5::2";
    let mut lab = Lab::new("v6mv", false);
    lab.add_ipv6();
    let edge = lab.enrol_edge_dual_stack();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let laptop = lab.device("alice-laptop");
    lab.login_at(&laptop, &alice, &lab.broker_url6());
    let profile = lab.profile(&laptop, "alice-home.conf");
    let url = lab.plex_url(&edge);
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the page never loaded over IPv6: {last:?}"));
    let before = the_lease(&lab);
    assert_eq!(before.1, "\"2001:db8:1::/64\"", "{before:?}");

    // A privacy address rotates in: same /64, same lease, no renew.
    let from_privacy = Capture::start(
        &lab.home,
        &lab.home_client_if,
        Direction::In,
        &format!("ip6 and src host {PRIVACY_IP6} and udp dst port {EDGE_WG_PORT}"),
        lab.dir.path(),
    );
    change_address(&lab, wg.ifname(), "2001:db8:1::2", PRIVACY_IP6);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| {
            panic!("from a new address in the same /64 the page did not load: {last:?}")
        });
    let polls = lab.poll_page(&url, Instant::now(), Duration::from_secs(2));
    assert!(
        polls.iter().all(|p| p.loaded),
        "from {PRIVACY_IP6} every load must work: {polls:?}"
    );
    let seen = from_privacy.packets();
    assert!(
        !seen.is_empty(),
        "no datagram from {PRIVACY_IP6} reached the edge: the address did not really change"
    );
    assert_eq!(
        the_lease(&lab),
        before,
        "a new address in the /64 changed the lease"
    );

    // Another /64 on the same link (the laptop joined another network): refused until renew.
    lab.home.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:5::1/64",
        "dev",
        &lab.home_client_if,
        "nodad",
    ]);
    change_address(&lab, wg.ifname(), PRIVACY_IP6, MOVED_IP6);
    lab.client.exec_ok(&[
        "ip",
        "-6",
        "route",
        "replace",
        "2001:db8:1::/64",
        "via",
        "2001:db8:5::1",
    ]);
    let key_off_pin =
        grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            let got = http_get(&lab.client, &url, Duration::from_millis(300));
            assert!(
                !got.ok(),
                "the page loaded from {MOVED_IP6}, outside the pin: {got:?}"
            );
            lab.broker
                .audit(&lab.home)
                .into_iter()
                .find(|e| e["kind"] == "lease_key_off_pin")
        });
    let row = key_off_pin.unwrap_or_else(|| {
        panic!(
            "no lease_key_off_pin audit row after the client moved to another /64; audit: {:?}",
            lab.broker.audit(&lab.home)
        )
    });
    assert_eq!(row["source_ip"], MOVED_IP6, "{row}");
    assert_eq!(
        lab.edge().metrics(&lab.home).require(BYTES_SENT_UNPINNED),
        0.0,
        "the edge answered the moved client before renew"
    );

    laptop
        .renew(&lab.client, "home", &profile)
        .expect_ok("grantwire renew home");
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the page did not load after renew: {last:?}"));
    let after = the_lease(&lab);
    assert_eq!(after.0, before.0, "renew must move the same lease's pin");
    assert_eq!(after.1, "\"2001:db8:5::/64\"", "{after:?}");
    let pins6 = lab
        .home
        .exec_ok(&["nft", "list", "set", "inet", "grantwire", "pins6"]);
    assert!(
        pins6.stdout.contains("2001:db8:5::/64") && !pins6.stdout.contains("2001:db8:1::/64"),
        "the guard's pins6 must follow the pin:\n{}",
        pins6.stdout
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
