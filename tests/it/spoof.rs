//! An attacker who can spoof the friend's address (scenarios B5, D1, D2 and E1, and B4's
//! endpoint).
//!
//! The pin is an address, and on the internet an address can be forged by anyone whose network
//! does not filter what its customers send. The attacker here sits in the "other" namespace on
//! a second link into home, gives itself the friend's address (192.0.2.2, the pin) and, holding
//! a copy of the friend's whole profile (private key and preshared key), throws everything at
//! the edge from that address:
//!
//! - a real WireGuard client (wireguard-go) with the stolen profile, its datagrams leaving from
//!   the pinned address, so the edge takes and answers its initiations;
//! - the friend's own transport data, captured on its way in while she loaded the page, sent
//!   again from the forged address and another port (scenario E1): none reaches Plex, each is
//!   counted invalid, and her page loads every time after, so her endpoint did not move;
//! - floods as fast as one socket can of random datagrams, of transport data naming random
//!   receiver indices, and of MAC1-valid handshake initiations, each until the friend's page
//!   has loaded during it (and, during the initiation flood, a fresh interface of hers has
//!   handshaken: the guard drops a one-port initiation flood in the kernel, see
//!   `crates/edge/src/guard.rs`); then MAC1-valid initiations at 490 a second over 200 ports
//!   (under the guard's per-source limits, past the edge's handshake budget, so the edge
//!   answers with cookies) while the friend starts a fresh interface.
//!
//! Last, the attacker sends the same initiations from its own address, outside every pin: the
//! negative control for "nothing goes back along the attacker's link".
//!
//! What must hold, counted by nftables counters in home (exact at any rate): every answer the
//! edge makes goes to the pin, never back along the attacker's link (zero packets, while another
//! counter proves the attack arrived); the edge did answer the forged initiations, at the pin
//! (the friend's link carries more handshake answers than the friend sent initiations), with
//! under 5 % of the bytes the attack sent (no amplifier); the stolen profile sends initiations
//! but never completes a handshake; a fresh handshake of the friend's goes through the cookie path while the edge is
//! under load; the friend's tunnel loads the page during every flood and every time after, on
//! the same lease, so the forged datagrams did not move the friend's endpoint; and the edge's
//! resident memory grows by less than 4 MiB over the floods (scenario D2's flat allocations).
//!
//! Over IPv4 and over IPv6 (where the pin is the friend's whole /64, so the attacker could pick
//! any address in it; it takes the friend's own). Home's IPv4 reverse-path filter is set off: an
//! edge host cannot rely on it (loose mode accepts any source it has a route to, and the pin
//! always has one), and the promise must hold without it; IPv6 has no such filter.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::capture::{Capture, Direction, ANSWERS};
use grantwire_e2e::harness::grantwire::EDGE_WG_PORT;
use grantwire_e2e::harness::lab::{
    CLIENT_IP, CLIENT_IP6, FIRST_LOAD, HOME_OTHER_IP6, HOME_OUTSIDE_IP, HOME_OUTSIDE_IP6, OTHER_IP,
    OTHER_IP6,
};
use grantwire_e2e::harness::nft;
use grantwire_e2e::harness::proc::Usage;
use grantwire_e2e::harness::wg::profile_peer_key;
use grantwire_e2e::{http_get, require_env, Lab, WgClient};

const FLOOD_PY: &str = include_str!("../../scripts/bench/flood.py");
/// Sends again, from `SOURCE` to `HOST:PORT` (IPv6 as `[ADDR]:PORT`), the WireGuard transport
/// data (type 4) in a tcpdump capture of an Ethernet link; prints how many it sent.
const REPLAY_PY: &str = r#"import socket, struct, sys
path, source, target = sys.argv[1:4]
host, port = target.rsplit(":", 1)
host = host.strip("[]")
family = socket.AF_INET6 if ":" in host else socket.AF_INET
data = open(path, "rb").read()
assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4, "not a little-endian pcap"
assert struct.unpack("<I", data[20:24])[0] == 1, "not an Ethernet capture"
payloads, at = [], 24
while at + 16 <= len(data):
    length = struct.unpack("<I", data[at + 8:at + 12])[0]
    frame = data[at + 16:at + 16 + length]
    at += 16 + length
    ethertype, ip = frame[12:14], frame[14:]
    header = (ip[0] & 15) * 4 if ethertype == b"\x08\x00" else 40
    payload = ip[header + 8:]
    if payload[:4] == b"\x04\x00\x00\x00":
        payloads.append(payload)
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((source, 0))
for p in payloads:
    s.sendto(p, (host, int(port)))
print(len(payloads))
"#;
/// The test's nftables table in home (it goes with the namespace).
const TABLE: &str = "gwtest_spoof";
/// What the edge's resident memory may grow by over the floods: the edge allocates nothing per
/// refused datagram, so only allocator slack.
const RSS_GROWTH_BOUND_KIB: u64 = 4 * 1024;

/// What differs between the two address families.
struct Family {
    name: &'static str,
    /// The friend's address, which the attacker forges.
    forged: &'static str,
    /// The edge's outside address, as the profile names it.
    edge_ip: &'static str,
    /// Home's address on the attacker's link.
    gateway: &'static str,
    host_prefix: &'static str,
    /// The attacker's own address on its link.
    other: &'static str,
    /// nftables' name of the family's header.
    ip: &'static str,
}

const V4: Family = Family {
    name: "IPv4",
    forged: CLIENT_IP,
    edge_ip: HOME_OUTSIDE_IP,
    gateway: "198.51.100.1",
    host_prefix: "32",
    other: OTHER_IP,
    ip: "ip",
};

const V6: Family = Family {
    name: "IPv6",
    forged: CLIENT_IP6,
    edge_ip: HOME_OUTSIDE_IP6,
    gateway: HOME_OTHER_IP6,
    host_prefix: "128",
    other: OTHER_IP6,
    ip: "ip6",
};

impl Family {
    /// The edge's WireGuard endpoint as `IP:PORT`.
    fn endpoint(&self) -> String {
        if self.edge_ip.contains(':') {
            format!("[{}]:{EDGE_WG_PORT}", self.edge_ip)
        } else {
            format!("{}:{EDGE_WG_PORT}", self.edge_ip)
        }
    }
}

/// The ids of `lease list --json` with their pins.
fn leases(lab: &Lab) -> Vec<(String, String)> {
    lab.broker
        .leases(&lab.home)
        .iter()
        .map(|l| (l["id"].to_string(), l["pin"].to_string()))
        .collect()
}

#[test]
fn an_attacker_forging_the_pinned_ipv4_address_gets_no_answer_and_the_friend_keeps_watching() {
    // Alone, not beside the IPv6 twin: both flood the machine.
    let _alone = crate::one_module_at_a_time(concat!(module_path!(), "::v4"));
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("spf", true);
    let edge = lab.enrol_edge();
    let (alice_wg, profile) = lab.tunnel_up(&edge, "alice");
    forged_pin_attack(&lab, &lab.plex_url(&edge), alice_wg, &profile, &V4);
}

#[test]
fn an_attacker_forging_the_pinned_ipv6_address_gets_no_answer_and_the_friend_keeps_watching() {
    let _alone = crate::one_module_at_a_time(concat!(module_path!(), "::v6"));
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("spf6", true);
    lab.add_ipv6();
    let edge = lab.enrol_edge_dual_stack();
    let (alice_wg, profile) = lab.tunnel_up6(&edge, "alice");
    let url = lab.plex_url(&edge);
    forged_pin_attack(&lab, &url, alice_wg, &profile, &V6);
}

/// The attack of the module comment, over `family`, on a lab where alice's tunnel (`profile`)
/// loads `url` from the client namespace.
fn forged_pin_attack(
    lab: &Lab,
    url: &str,
    alice_wg: WgClient,
    profile: &std::path::Path,
    family: &Family,
) {
    let Family { name, forged, .. } = family;
    let before = leases(lab);
    assert_eq!(before.len(), 1, "{before:?}");
    let edge_key = profile_peer_key(profile);

    let other = lab.other.as_ref().expect("lab with the other namespace");
    let other_if = lab.other_if.clone().expect("the other namespace's link");
    let home_other_if = lab.home_other_if.clone().expect("home's link to the other");
    for key in [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
    ] {
        lab.home.sysctl(key, "0");
    }
    lab.home
        .sysctl(&format!("net.ipv4.conf.{home_other_if}.rp_filter"), "0");
    // The forged address: alice's, on the attacker's own link, and the source of everything the
    // attacker sends to the edge.
    if family.host_prefix == "128" {
        other.exec_ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{forged}/128"),
            "dev",
            &other_if,
            "nodad",
        ]);
    } else {
        other.add_addr(&format!("{forged}/32"), &other_if);
    }
    other.exec_ok(&[
        "ip",
        "route",
        "replace",
        &format!("{}/{}", family.edge_ip, family.host_prefix),
        "via",
        family.gateway,
        "dev",
        &other_if,
        "src",
        forged,
    ]);

    // The kernel's own counters in home (exact at any rate, where a capture under a flood
    // drops packets and so could not prove that none went back). WireGuard's message type is
    // the first byte of the UDP payload (`@th,64,8`): 1 initiation, 2 response, 3 cookie reply.
    // Neighbour discovery and multicast (MLD reports) are a host's bookkeeping on a link and
    // answer nobody: not counted.
    let client_if = &lab.home_client_if;
    nft::load(
        &lab.home,
        &format!(
            "table inet {TABLE} {{\n\
             \x20   counter to_attacker {{}}\n\
             \x20   counter from_attacker {{}}\n\
             \x20   counter answers_to_pin {{}}\n\
             \x20   counter alice_initiations {{}}\n\
             \x20   chain pre {{\n\
             \x20       type filter hook prerouting priority raw - 10; policy accept;\n\
             \x20       iifname \"{home_other_if}\" {ip} saddr {forged} udp dport {EDGE_WG_PORT} \
             counter name from_attacker\n\
             \x20       iifname \"{client_if}\" udp dport {EDGE_WG_PORT} @th,64,8 1 \
             counter name alice_initiations\n\
             \x20   }}\n\
             \x20   chain post {{\n\
             \x20       type filter hook postrouting priority srcnat + 10; policy accept;\n\
             \x20       oifname \"{home_other_if}\" icmpv6 type {{ nd-router-solicit, \
             nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect }} return\n\
             \x20       oifname \"{home_other_if}\" ip6 daddr ff00::/8 return\n\
             \x20       oifname \"{home_other_if}\" counter name to_attacker\n\
             \x20       oifname \"{client_if}\" udp sport {EDGE_WG_PORT} @th,64,8 {{ 2, 3 }} \
             counter name answers_to_pin\n\
             \x20   }}\n\
             }}\n",
            ip = family.ip,
        ),
    );
    // Negative control for "nothing went back": a datagram from home to the attacker's own
    // address is counted.
    let probe_dst = format!("('{}', 9)", family.other);
    let af = if family.ip == "ip6" {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    lab.home.exec_ok(&[
        "python3",
        "-c",
        &format!(
            "import socket; s = socket.socket(socket.{af}, socket.SOCK_DGRAM); \
             s.sendto(b'probe', {probe_dst})"
        ),
    ]);
    let probed = nft::counter(&lab.home, TABLE, "to_attacker");
    // What went back, for the failure message (a capture can drop packets under a flood, so it
    // only shows; the counter decides).
    let shown = Capture::start(
        &lab.home,
        &home_other_if,
        Direction::Out,
        ANSWERS,
        lab.dir.path(),
    );
    assert_eq!(
        probed.packets, 1,
        "{name}: the counter of what home sends to the attacker did not see one probe: it could \
         not see an answer either"
    );

    // The stolen profile, brought up from the forged address.
    let attacker_wg = WgClient::up(other, &format!("{}x", lab.base), profile);
    let attack_started = Instant::now();

    let script = lab.dir.path().join("flood.py");
    std::fs::write(&script, FLOOD_PY).expect("write flood.py");
    let script = script.to_str().expect("UTF-8 path").to_owned();
    let endpoint = family.endpoint();

    // Replay (scenario E1): alice's own transport data, captured on its way into home while she
    // loads the page, sent again from the forged address and another port. Every datagram is
    // refused by the replay window (none reaches Plex, each is counted as invalid), and none
    // moves her endpoint: her page keeps loading after, from where she really is.
    let capture = Capture::start(
        &lab.home,
        &lab.home_client_if,
        Direction::In,
        &format!("udp and src host {forged} and dst port {EDGE_WG_PORT}"),
        lab.dir.path(),
    );
    for _ in 0..3 {
        lab.wait_page(&lab.client, url, FIRST_LOAD)
            .unwrap_or_else(|last| panic!("{name}: alice's page did not load: {last:?}"));
    }
    let pcap = capture.file().to_owned();
    let seen = capture.packets();
    let replay = lab.dir.path().join("replay.py");
    std::fs::write(&replay, REPLAY_PY).expect("write replay.py");
    let metrics_before = lab.edge().metrics(&lab.home);
    let replayed = other.exec_with(
        &[
            "python3",
            replay.to_str().expect("UTF-8 path"),
            pcap.to_str().expect("UTF-8 path"),
            forged,
            &endpoint,
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(replayed.success(), "{name}: the replay failed:\n{replayed}");
    let count: f64 = replayed.stdout.trim().parse().expect("the replay's count");
    std::thread::sleep(Duration::from_millis(500));
    let metrics_after = lab.edge().metrics(&lab.home);
    let delta = |m: &str| metrics_after.require(m) - metrics_before.require(m);
    eprintln!(
        "{name}: replayed {count} of alice's data datagrams ({} captured) from the forged address: \
         {} reached Plex, {} counted invalid",
        seen.len(),
        delta("grantwire_edge_packets_to_tun_total"),
        delta("grantwire_edge_dropped_invalid_total")
    );
    assert!(
        count >= 5.0,
        "{name}: too few of alice's datagrams were captured to replay"
    );
    assert_eq!(
        delta("grantwire_edge_packets_to_tun_total"),
        0.0,
        "{name}: a replayed datagram reached Plex"
    );
    assert!(
        delta("grantwire_edge_dropped_invalid_total") >= count,
        "{name}: the edge did not refuse every replayed datagram"
    );
    let polls = lab.poll_page(url, Instant::now(), Duration::from_secs(2));
    assert!(
        polls.iter().all(|p| p.loaded),
        "{name}: after the replay alice's page must load every time (the replay must not move \
         her endpoint): {polls:?}"
    );

    // As fast as one socket can, from the forged address: random datagrams, transport data
    // naming random receiver indices, and MAC1-valid initiations. Each runs until alice's
    // tunnel has loaded the page while it lasts. During the initiation flood alice also starts
    // a fresh interface (a new handshake, from a new port): the guard drops the flood's
    // initiations in the kernel past 5 a second from its one port, so hers get through. The
    // edge's memory is the same afterwards.
    let edge_pid = lab.edge().proc().pid().expect("the edge's pid");
    let rss_before = Usage::of(edge_pid).rss_kib;
    let mut alice_wg = Some(alice_wg);
    for kind in ["random", "data", "initiation"] {
        let mut flood = other.spawn(
            &format!("{kind} flood from the forged {forged}"),
            &[
                "python3", &script, kind, "30", &edge_key, "--from", forged, "--to", &endpoint,
            ],
        );
        std::thread::sleep(Duration::from_millis(500));
        flood.assert_running(&format!("the {kind} flood to start"));
        let loaded = lab.wait_page(&lab.client, url, FIRST_LOAD);
        let fresh = (kind == "initiation").then(|| {
            drop(alice_wg.take());
            let wg = WgClient::up(&lab.client, &format!("{}n", lab.base), profile);
            let loaded = lab.wait_page(&lab.client, url, FIRST_LOAD);
            let handshook = wg.dev.latest_handshake() > 0;
            alice_wg = Some(wg);
            (loaded, handshook)
        });
        let flooding = flood.exit_status().is_none();
        flood.stop(Duration::from_secs(2));
        eprintln!("{name}: {kind} flood: {}", flood.stdout().trim());
        loaded.unwrap_or_else(|last| {
            panic!(
                "{name}: during the {kind} flood from the forged address alice's page did not \
                 load: {last:?}"
            )
        });
        if let Some((loaded, handshook)) = fresh {
            loaded.unwrap_or_else(|last| {
                panic!(
                    "{name}: during the initiation flood from the forged address alice's fresh \
                     interface did not load the page: {last:?}"
                )
            });
            assert!(
                handshook,
                "{name}: the fresh interface loaded without a handshake?"
            );
        }
        assert!(
            flooding,
            "{name}: the {kind} flood ended before alice's page loaded:\n{}",
            flood.logs()
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = Usage::of(edge_pid).rss_kib;
    eprintln!(
        "{name}: the edge's resident memory {rss_before} KiB before the floods, {rss_after} KiB \
         after"
    );
    assert!(
        rss_after <= rss_before + RSS_GROWTH_BOUND_KIB,
        "{name}: the edge's memory grew by {} KiB under the floods",
        rss_after.saturating_sub(rss_before)
    );

    // MAC1-valid initiations from the forged address spread over 200 ports at 490 a second:
    // under the guard's limits (5 a second a port, 500 an address), so all reach the edge, and
    // past its handshake budget (100 a second, all sources, counted from zero each second), so
    // the edge is under load and answers initiations without a valid MAC2 with a cookie reply.
    // Alice starts a fresh interface meanwhile: its first initiation draws a cookie, its retry
    // carries MAC2 and goes through, and the page loads. An initiation that lands in the first
    // fifth of the edge's second, before the budget is spent, is answered directly; the test
    // then tries a fresh interface again, at most five times, so the cookie path is shown
    // without a flaky check.
    let mut flood = other.spawn(
        &format!("paced initiation flood from the forged {forged}"),
        &[
            "python3",
            &script,
            "initiation",
            "90",
            &edge_key,
            "--from",
            forged,
            "--to",
            &endpoint,
            "--rate",
            "490",
            "--ports",
            "200",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    flood.assert_running("the initiation flood to start");
    let cookies_before = lab
        .edge()
        .metrics(&lab.home)
        .require("grantwire_edge_cookies_sent_total");
    let mut by_cookie = false;
    for attempt in ["f", "g", "h", "i", "j"] {
        drop(alice_wg.take());
        let wg = WgClient::up(&lab.client, &format!("{}{attempt}", lab.base), profile);
        // wireguard-go retries an unanswered initiation after 5 s (REKEY_TIMEOUT, plus jitter).
        let loaded = lab.wait_page(&lab.client, url, FIRST_LOAD + Duration::from_secs(5));
        flood.assert_running("alice's fresh handshake to finish under load");
        loaded.unwrap_or_else(|last| {
            panic!(
                "{name}: during the paced initiation flood alice's fresh interface did not load \
                 the page: {last:?}\n{}",
                wg.dev.logs()
            )
        });
        assert!(
            wg.dev.latest_handshake() > 0,
            "{name}: loaded without a handshake?"
        );
        by_cookie = wg.dev.logs().contains("Receiving cookie response");
        eprintln!("{name}: alice's fresh interface {attempt} handshook, by cookie: {by_cookie}");
        alice_wg = Some(wg);
        if by_cookie {
            break;
        }
    }
    let cookies_during = lab
        .edge()
        .metrics(&lab.home)
        .require("grantwire_edge_cookies_sent_total")
        - cookies_before;
    flood.stop(Duration::from_secs(2));
    eprintln!("{name}: paced initiation flood: {}", flood.stdout().trim());
    assert!(
        cookies_during > 0.0,
        "{name}: the edge sent no cookie reply during the paced flood: it was never under load"
    );
    let alice_wg = alice_wg.expect("an interface");
    assert!(
        by_cookie,
        "{name}: five fresh handshakes of alice's under the paced flood, none through the cookie \
         path:\n{}",
        alice_wg.dev.logs()
    );
    let metrics = lab.edge().metrics(&lab.home);
    let cookies = metrics.require("grantwire_edge_cookies_sent_total");
    eprintln!(
        "{name}: edge counters after the floods: {cookies} cookie replies, {} Diffie-Hellman \
         steps, {} datagrams dropped as invalid",
        metrics.require("grantwire_edge_handshake_dh_total"),
        metrics.require("grantwire_edge_dropped_invalid_total"),
    );

    // From the attacker's own address, outside every pin, the same MAC1-valid initiations: an
    // edge that answered strangers would answer these along the attacker's link, which the
    // counter `to_attacker` would see.
    let unpinned = other.exec_with(
        &[
            "python3",
            &script,
            "initiation",
            "2",
            &edge_key,
            "--from",
            family.other,
            "--to",
            &endpoint,
        ],
        None,
        Duration::from_secs(20),
    );
    assert!(
        unpinned.success(),
        "{name}: the unpinned burst failed:\n{unpinned}"
    );

    // wireguard-go retries its initiation every 5 s: give it two answers' worth of chances.
    std::thread::sleep(
        (attack_started + Duration::from_secs(11)).saturating_duration_since(Instant::now()),
    );
    let stolen_handshake = attacker_wg.dev.latest_handshake();
    let stolen_sent = attacker_wg
        .dev
        .peers()
        .iter()
        .map(|p| p.tx_bytes)
        .sum::<u64>();
    let stolen_load = http_get(other, url, Duration::from_secs(2));

    // After the attack, alice's tunnel loads the page every time, on the same lease and pin.
    let polls = lab.poll_page(url, Instant::now(), Duration::from_secs(2));
    let count = |name: &str| nft::counter(&lab.home, TABLE, name);
    let (to_attacker, from_attacker) = (count("to_attacker"), count("from_attacker"));
    let (answers_to_pin, alice_initiations) = (count("answers_to_pin"), count("alice_initiations"));
    drop(attacker_wg);

    eprintln!(
        "{name}: from the forged address {} datagrams ({} bytes) arrived; {} packets went back \
         along its link after the probe; {} handshake answers ({} bytes) went to the pin for {} \
         initiations alice sent",
        from_attacker.packets,
        from_attacker.bytes,
        to_attacker.packets - probed.packets,
        answers_to_pin.packets,
        answers_to_pin.bytes,
        alice_initiations.packets
    );
    assert!(
        from_attacker.packets > 100_000,
        "{name}: the attack did not reach home ({from_attacker:?} from the forged {forged} on \
         home's link to the attacker): this test would show nothing"
    );
    let shown = shown.packets();
    assert_eq!(
        to_attacker,
        probed,
        "{name}: home sent packets back along the attacker's link; every answer must go to the \
         pin. Captured:\n{}",
        shown.join("\n")
    );
    assert!(
        answers_to_pin.packets > alice_initiations.packets,
        "{name}: the edge should have answered the forged initiations, at the pin: {} handshake \
         answers went to {forged} for {} initiations alice sent",
        answers_to_pin.packets,
        alice_initiations.packets
    );
    assert!(
        answers_to_pin.bytes * 20 < from_attacker.bytes,
        "{name}: the edge sent the pin more than 5 % of the bytes the attacker sent it ({} of {})",
        answers_to_pin.bytes,
        from_attacker.bytes
    );
    assert!(
        stolen_sent > 0,
        "{name}: the stolen profile sent nothing, so its failure shows nothing"
    );
    assert_eq!(
        stolen_handshake, 0,
        "{name}: the stolen profile completed a handshake from the forged address"
    );
    assert!(
        stolen_load.timed_out(),
        "{name}: the stolen profile loaded Plex from the forged address: {stolen_load:?}"
    );
    assert!(
        polls.iter().all(|p| p.loaded),
        "{name}: after the attack alice's page must load every time (the forged datagrams must not move \
         her endpoint): {polls:?}"
    );
    assert!(
        cookies > 0.0,
        "{name}: the edge sent no cookie reply under the flood"
    );
    assert_eq!(leases(lab), before, "{name}: the attack changed the leases");
    drop(alice_wg);
    lab.assert_no_unexpected_warnings(&[]);
}
