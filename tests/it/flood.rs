//! Floods cost nothing and answer nothing (issue 4): from an address no lease is pinned to,
//! (a) random datagrams and (b) handshake initiations carrying a valid MAC1 for the edge's
//! public key (what anyone holding an old profile can make) are sent at the edge as fast as one
//! socket can, for a few seconds each. For each flood the test asserts:
//!
//! - not one byte comes back to the flooding address (an nftables counter in the client's
//!   namespace, at prerouting, on everything addressed to it; a probe sent to that address from
//!   the edge's namespace beforehand proves the counter and the route back would see an answer,
//!   and a second counter in the same chain sees the edge's replies to the pinned client);
//! - `grantwire_edge_handshake_dh_total` grows by exactly the number of handshake messages the
//!   pinned client sent (an nftables counter in the edge's namespace), so by nothing for the
//!   flood; a burst of the same MAC1-valid initiations from the pinned address beforehand shows
//!   they do cost Diffie-Hellman work when the source is pinned;
//! - the flood arrived: the edge's veth and an nftables counter ahead of the guard saw far more
//!   datagrams than the guard's 256/s, the edge counted some as dropped unpinned, and no more
//!   than the guard lets through;
//! - meanwhile the pinned, granted client brings a fresh tunnel up (a new handshake) and loads
//!   the stand-in Plex page.
//!
//! The flood generator is `scripts/bench/flood.py`, shared with the manual benchmark
//! `scripts/bench/edge.sh`. Topology as in `harness/lab.rs`, plus the flooding address
//! 203.0.113.66/32 on the client's veth, routed back to from the edge's namespace.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::lab::{CLIENT_IP, HOME_OUTSIDE_IP};
use grantwire_e2e::harness::nft::{self, Counter};
use grantwire_e2e::harness::wg::profile_peer_key;
use grantwire_e2e::{assert_safe_host, require_env, Lab, Metrics, Netns, WgClient};

/// The unpinned source of the floods, a second address on the client namespace's veth.
const FLOOD_IP: &str = "203.0.113.66";
/// The edge's WireGuard endpoint, as the profile names it.
const EDGE_UDP_PORT: u16 = 51820;
const FLOOD_PY: &str = include_str!("../../scripts/bench/flood.py");
/// The guard's rate for datagrams from outside every pin (`UNPINNED_PER_SEC` in the edge's
/// guard.rs), all sources together.
const GUARD_UNPINNED_PER_SEC: f64 = 256.0;
/// How long each flood is measured; the pinned client's page load falls inside it.
const FLOOD_WINDOW: Duration = Duration::from_secs(3);
const FIRST_LOAD: Duration = Duration::from_secs(10);
/// A burst of MAC1-valid initiations from the pinned address (under the edge's global handshake
/// limit of 100 a second, so none is answered with a cookie instead).
const CONTROL_INITIATIONS: u64 = 5;

const DH: &str = "grantwire_edge_handshake_dh_total";
const DROPPED_UNPINNED: &str = "grantwire_edge_dropped_unpinned_total";
const BYTES_SENT_UNPINNED: &str = "grantwire_edge_bytes_sent_unpinned_total";
const HANDSHAKES: &str = "grantwire_edge_handshakes_total";
const LEASES: &str = "grantwire_edge_leases";

/// The test's own nftables table, in both namespaces (it goes with them).
const TABLE: &str = "gwtest_flood";

#[test]
fn floods_from_an_unpinned_address_cost_no_diffie_hellman_and_get_no_answer() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::new("fl", false);
    let (profile, url) = granted_alice(&mut lab);
    let edge_key = profile_peer_key(&profile);
    let edge_endpoint = format!("{HOME_OUTSIDE_IP}:{EDGE_UDP_PORT}");
    for ip in [FLOOD_IP, CLIENT_IP, HOME_OUTSIDE_IP] {
        assert_safe_host(ip);
    }

    // The edge holds the lease and the guard exempts its pin from the unpinned rate limit.
    let ready =
        grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            let leases = lab.edge().metrics(&lab.home).require(LEASES);
            let pins = lab
                .home
                .exec_ok(&["nft", "list", "set", "inet", "grantwire", "pins4"]);
            (leases == 1.0 && pins.stdout.contains(CLIENT_IP)).then_some(())
        });
    assert!(
        ready.is_some(),
        "the edge never installed alice's lease with its pin {CLIENT_IP} in the guard's set"
    );

    // The flooding address, and a route back to it from the edge's namespace: were the edge to
    // answer, the answer would arrive.
    lab.client
        .add_addr(&format!("{FLOOD_IP}/32"), &lab.client_if);
    lab.home.route_via(&format!("{FLOOD_IP}/32"), CLIENT_IP);
    let home_if = interface_with(&lab.home, HOME_OUTSIDE_IP);
    nft::load(
        &lab.client,
        &format!(
            "table inet {TABLE} {{\n\
             \x20   counter to_flood {{}}\n\
             \x20   counter to_pinned {{}}\n\
             \x20   chain pre {{\n\
             \x20       type filter hook prerouting priority raw; policy accept;\n\
             \x20       ip daddr {FLOOD_IP} counter name to_flood\n\
             \x20       ip saddr {HOME_OUTSIDE_IP} ip daddr {CLIENT_IP} udp sport {EDGE_UDP_PORT} \
             counter name to_pinned\n\
             \x20   }}\n\
             }}\n"
        ),
    );
    // Ahead of the guard (priority filter - 10): what arrives, before the rate limit drops it.
    nft::load(
        &lab.home,
        &format!(
            "table inet {TABLE} {{\n\
             \x20   counter from_flood {{}}\n\
             \x20   counter pinned_handshake {{}}\n\
             \x20   chain input {{\n\
             \x20       type filter hook input priority filter - 20; policy accept;\n\
             \x20       ip saddr {FLOOD_IP} udp dport {EDGE_UDP_PORT} counter name from_flood\n\
             \x20       ip saddr {CLIENT_IP} udp dport {EDGE_UDP_PORT} @th,64,8 {{ 1, 2 }} \
             counter name pinned_handshake\n\
             \x20   }}\n\
             }}\n"
        ),
    );

    // Negative control for "nothing came back": a datagram from the edge's address to the
    // flooding address is seen by the counter.
    lab.home.exec_ok(&[
        "python3",
        "-c",
        &format!(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('{HOME_OUTSIDE_IP}', 0)); s.sendto(b'probe', ('{FLOOD_IP}', 9))"
        ),
    ]);
    let probed = grantwire_e2e::wait_for(Duration::from_secs(2), Duration::from_millis(50), || {
        let c = nft::counter(&lab.client, TABLE, "to_flood");
        (c.packets == 1).then_some(c)
    });
    let baseline_back = probed.unwrap_or_else(|| {
        panic!(
            "the counter of traffic to {FLOOD_IP} did not see a probe sent there from the edge's \
             namespace ({:?}): it could not see an answer to the flood either",
            nft::counter(&lab.client, TABLE, "to_flood")
        )
    });

    let script = lab.dir.path().join("flood.py");
    std::fs::write(&script, FLOOD_PY).expect("write flood.py");
    let script = script.to_str().expect("UTF-8 path").to_owned();

    // Control for flood (b): the same MAC1-valid initiations from the pinned address do reach
    // the Diffie-Hellman step (and fail there: their static key is garbage). So the edge checks
    // their MAC1 against its key, and only the pin check spares that work during the flood.
    let before = Snapshot::take(&lab, &home_if);
    let count = CONTROL_INITIATIONS.to_string();
    let sent = lab.client.exec_ok(&[
        "python3",
        &script,
        "initiation",
        "5",
        &edge_key,
        "--from",
        CLIENT_IP,
        "--to",
        &edge_endpoint,
        "--count",
        &count,
    ]);
    let control =
        grantwire_e2e::wait_for(Duration::from_secs(3), Duration::from_millis(100), || {
            let after = Snapshot::take(&lab, &home_if);
            (after.dh() - before.dh() >= CONTROL_INITIATIONS as f64).then_some(after)
        });
    let after = control.unwrap_or_else(|| {
        panic!(
            "control: {CONTROL_INITIATIONS} MAC1-valid initiations from the pinned address {CLIENT_IP} \
             should each cost the edge one Diffie-Hellman step; {DH} went from {} to {} \
             (flood.py: {}); a MAC1 the edge rejects would make flood (b) prove nothing\n{}",
            before.dh(),
            Snapshot::take(&lab, &home_if).dh(),
            sent.stdout.trim(),
            lab.edge().proc().logs()
        )
    });
    assert_eq!(
        after.dh() - before.dh(),
        CONTROL_INITIATIONS as f64,
        "control: exactly one Diffie-Hellman step per initiation from the pinned address"
    );
    assert_eq!(
        after.pinned_handshake.packets - before.pinned_handshake.packets,
        CONTROL_INITIATIONS,
        "control: the counter of the pinned address's handshake messages must see the burst"
    );
    eprintln!("control: {CONTROL_INITIATIONS} MAC1-valid initiations from the pin cost {CONTROL_INITIATIONS} DH steps");

    for (kind, suffix) in [("random", "a"), ("initiation", "b")] {
        let what = format!("flood ({suffix}) of {kind} datagrams from {FLOOD_IP}");
        let mut flood = lab.client.spawn(
            &what,
            &[
                "python3",
                &script,
                kind,
                "30",
                &edge_key,
                "--from",
                FLOOD_IP,
                "--to",
                &edge_endpoint,
            ],
        );
        std::thread::sleep(Duration::from_millis(700));
        flood.assert_running("the flood to start");
        let before = Snapshot::take(&lab, &home_if);
        let window_start = Instant::now();

        // During the flood: the pinned client brings a fresh interface up, which must complete
        // a new handshake and load the page.
        std::thread::sleep(Duration::from_millis(500));
        let wg = WgClient::up(&lab.client, &format!("{}{suffix}", lab.base), &profile);
        let took = lab
            .wait_page(&lab.client, &url, FIRST_LOAD)
            .unwrap_or_else(|last| {
                panic!("{what}: the pinned client did not load {url} during the flood: {last:?}")
            });
        let handshake = wg.dev.latest_handshake();
        assert!(
            handshake > 0,
            "{what}: the fresh client interface loaded the page without a handshake? {:?}",
            wg.dev.peers()
        );
        std::thread::sleep(FLOOD_WINDOW.saturating_sub(window_start.elapsed()));
        flood.assert_running("the page load to finish during the flood");
        flood.stop(Duration::from_secs(2));
        drop(wg);
        // Let the edge drain its socket and the last replies land in the counters.
        std::thread::sleep(Duration::from_millis(500));
        let after = Snapshot::take(&lab, &home_if);
        let secs = window_start.elapsed().as_secs_f64();

        let arrived = after.from_flood.packets - before.from_flood.packets;
        let rx = after.home_rx - before.home_rx;
        let dropped = after.metric(DROPPED_UNPINNED) - before.metric(DROPPED_UNPINNED);
        let dh = after.dh() - before.dh();
        let pinned_hs = after.pinned_handshake.packets - before.pinned_handshake.packets;
        let back = after.to_flood.bytes - baseline_back.bytes;
        let to_pinned = after.to_pinned.packets - before.to_pinned.packets;
        let report = format!(
            "{what}: over {secs:.1} s, {arrived} flood datagrams reached the edge's namespace \
             ({rx} packets on its veth), the edge dropped {dropped} as unpinned, {back} bytes came \
             back to {FLOOD_IP}; DH steps {dh} for {pinned_hs} handshake messages of the pinned \
             client; {to_pinned} packets from the edge to the pinned client; page after {took:?}; \
             {}",
            flood.stdout().trim()
        );
        eprintln!("{report}");

        // Every check is evaluated, so a failure names all that went wrong at once.
        let guard_allows = GUARD_UNPINNED_PER_SEC * (secs + 1.0);
        let bytes_sent_unpinned = after.metric(BYTES_SENT_UNPINNED);
        let new_handshakes = after.metric(HANDSHAKES) - before.metric(HANDSHAKES);
        let checks = [
            // The flood was real: far over what the guard lets through, and the edge saw some.
            (
                arrived.min(rx) as f64 >= 2.0 * guard_allows,
                format!(
                    "the flood must reach the edge's namespace at well over the guard's \
                     {GUARD_UNPINNED_PER_SEC}/s (at least {:.0} datagrams), or this test proves \
                     nothing",
                    2.0 * guard_allows
                ),
            ),
            (
                dropped > 0.0,
                format!(
                    "the edge counted none of the flood as dropped unpinned (the guard lets \
                     {GUARD_UNPINNED_PER_SEC}/s through), so its behaviour went untested"
                ),
            ),
            (
                dropped <= guard_allows,
                format!(
                    "the edge got more unpinned datagrams than the guard's rate limit lets \
                     through ({guard_allows:.0})"
                ),
            ),
            // Nothing answered, nothing computed.
            (
                back == 0,
                format!("the flooding address received {back} bytes: the edge answered"),
            ),
            (
                bytes_sent_unpinned == 0.0,
                format!("{BYTES_SENT_UNPINNED} is {bytes_sent_unpinned}"),
            ),
            (
                pinned_hs >= 1,
                "no handshake message from the pinned client reached the edge".to_owned(),
            ),
            (
                dh == pinned_hs as f64,
                format!(
                    "{DH} must grow by exactly the pinned client's {pinned_hs} handshake \
                     messages: the flood cost the edge {} Diffie-Hellman steps",
                    dh - pinned_hs as f64
                ),
            ),
            // The pinned client was served by a new handshake, and the counter that saw nothing
            // for the flooding address saw the edge's replies to the pinned client.
            (
                new_handshakes >= 1.0,
                "the edge completed no new handshake for the pinned client".to_owned(),
            ),
            (
                to_pinned > 0,
                "the prerouting counter saw no reply from the edge to the pinned client".to_owned(),
            ),
        ];
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, why)| why.as_str())
            .collect();
        assert!(
            failed.is_empty(),
            "{report}\n- {}\nedge metrics after the flood:\n{}",
            failed.join("\n- "),
            after.metrics.text
        );
        lab.edge
            .as_mut()
            .expect("edge")
            .assert_running(&format!("the end of {what}"));
    }

    lab.assert_no_unexpected_warnings(&[]);
    eprintln!("flood test took {:?}", started.elapsed());
}

/// The common start (as in e2e.rs): an enrolled edge `home`, user alice granted on it and
/// logged in from the client namespace; returns her profile file and the stand-in Plex's URL.
fn granted_alice(lab: &mut Lab) -> (std::path::PathBuf, String) {
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let device = lab.device("alice");
    lab.login(&device, &alice);
    (lab.profile(&device, "alice-home.conf"), lab.plex_url(&edge))
}

/// Everything the assertions compare, read at one moment.
struct Snapshot {
    metrics: Metrics,
    /// Client namespace, prerouting: everything addressed to the flooding address.
    to_flood: Counter,
    /// Client namespace, prerouting: the edge's datagrams to the pinned client.
    to_pinned: Counter,
    /// Edge namespace, input ahead of the guard: flood datagrams to the WireGuard port.
    from_flood: Counter,
    /// Edge namespace, input: handshake initiations and responses from the pinned address.
    pinned_handshake: Counter,
    /// Packets received on the edge namespace's veth.
    home_rx: u64,
}

impl Snapshot {
    fn take(lab: &Lab, home_if: &str) -> Snapshot {
        Snapshot {
            metrics: lab.edge().metrics(&lab.home),
            to_flood: nft::counter(&lab.client, TABLE, "to_flood"),
            to_pinned: nft::counter(&lab.client, TABLE, "to_pinned"),
            from_flood: nft::counter(&lab.home, TABLE, "from_flood"),
            pinned_handshake: nft::counter(&lab.home, TABLE, "pinned_handshake"),
            home_rx: rx_packets(&lab.home, home_if),
        }
    }

    fn metric(&self, name: &str) -> f64 {
        self.metrics.require(name)
    }

    fn dh(&self) -> f64 {
        self.metric(DH)
    }
}

/// The interface of `ns` that holds `ip`.
fn interface_with(ns: &Netns, ip: &str) -> String {
    let out = ns.exec_ok(&["ip", "-j", "-4", "addr", "show"]);
    let v = out.json();
    v.as_array()
        .into_iter()
        .flatten()
        .find(|i| {
            i["addr_info"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["local"] == ip))
        })
        .and_then(|i| i["ifname"].as_str())
        .unwrap_or_else(|| panic!("no interface with {ip} in {}:\n{out}", ns.name()))
        .to_owned()
}

fn rx_packets(ns: &Netns, ifname: &str) -> u64 {
    let out = ns.exec_ok(&["ip", "-j", "-s", "link", "show", "dev", ifname]);
    out.json()[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rx packet count for {ifname}:\n{out}"))
}
