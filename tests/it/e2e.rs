//! End-to-end scenarios: the real broker, edge and client binaries in network namespaces, with
//! wireguard-go importing the profile the client wrote and a stand-in Plex behind the edge.
//! Written against DESIGN.md's command-line contract; topology in `harness/lab.rs`.
//!
//! Each test has its own namespaces, broker and edge, and they run in parallel:
//! - the shared one covers (1) the granted client loads the page, (3) Plex's port is dropped
//!   outside the tunnel, (2) the same profile from another source IP gets nothing, and
//!   (6) refusals with exit code 3 (no grant; wrong TOTP code);
//! - (4) revocation stops the page within a second;
//! - (5) an 8 s lease stops at expiry by the edge's own clock, with the broker gone;
//! - (7) a client that moves network is reported (its key used off the pin) and `grantwire
//!   renew` moves the pin, after which the old address gets nothing and the new one works;
//! - (8) an edge cut off from its broker keeps the leases it had, also across a restart (from
//!   its 0600 lease cache), and once the broker is reachable a lease revoked meanwhile stops;
//! - (9) a session captured on the wire and replayed from the pinned address opens nothing, to
//!   the same edge or to a restarted one;
//! - (10) an edge started as root with `--user nobody` runs as nobody with CAP_NET_ADMIN alone
//!   (held by its guard's thread, which runs `nft`), serves a granted client, keeps its lease
//!   cache and the guard's pin set through a second lease and two revokes, and removes its guard
//!   at a clean stop;
//! - (11) so does an edge started as its systemd unit starts it: never root, CAP_NET_ADMIN only.
//!
//! On failure every process's command line and logs are printed (broker, edge, wireguard-go,
//! stand-in Plex).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use grantwire_e2e::harness::lab::{CLIENT_IP, CLIENT_IP6, HOME_OUTSIDE_IP, OTHER_IP};
use grantwire_e2e::{
    http_get, require_env, totp, unix_now, user_ids, Edge, EdgeInfo, EdgeStart, Family, Lab,
    PagePoll, WgClient, EDGE_ROOT_WARNING, EXIT_REFUSED,
};

/// How long a first page load may take: handshake plus one TCP exchange, with room for a
/// loaded CI machine.
const FIRST_LOAD: Duration = Duration::from_secs(10);
use grantwire_e2e::harness::lab::{POLL_EVERY, POLL_TIMEOUT};

const DROPPED_UNPINNED: &str = "grantwire_edge_dropped_unpinned_total";
const BYTES_SENT_UNPINNED: &str = "grantwire_edge_bytes_sent_unpinned_total";
const BROKER_CONNECTED: &str = "grantwire_edge_broker_connected";
const PACKETS_TO_TUN: &str = "grantwire_edge_packets_to_tun_total";
const HANDSHAKES: &str = "grantwire_edge_handshakes_total";
const LEASES: &str = "grantwire_edge_leases";

#[test]
fn granted_client_pinned_source_guarded_port_and_refusals() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("sh", true);
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let phone = lab.device("alice-phone");
    lab.login(&phone, &alice);
    let profile = lab.profile(&phone, "alice-home.conf");
    let url = lab.plex_url(&edge);

    // (1) The granted client, from the address it asked from, loads the page in the tunnel.
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    let took = lab
        .wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| {
            panic!("(1) the granted client did not load {url} through the tunnel: {last:?}")
        });
    eprintln!("(1) page loaded through the tunnel after {took:?}");
    let leases = lab.broker.leases(&lab.home);
    assert!(
        !leases.is_empty(),
        "(1) `lease list --json` shows no lease after `grantwire profile`"
    );

    // (3) Plex's port is silently dropped on every outside address (a timeout, not a refusal:
    // a reject would tell a scanner something is there), and still answers on loopback.
    let other = lab.other.as_ref().expect("lab with the other namespace");
    let probes = [
        (&lab.client, format!("http://{HOME_OUTSIDE_IP}:32400/")),
        (other, "http://198.51.100.1:32400/".to_owned()),
    ];
    for (ns, outside) in &probes {
        let got = http_get(ns, outside, Duration::from_millis(1500));
        assert!(
            got.timed_out(),
            "(3) {outside} from {} must time out (the guard drops); curl exit {:?} \
             (0 = Plex answered, 7 = refused): {got:?}",
            ns.name(),
            got.curl_exit
        );
    }
    let inside = http_get(&lab.home, "http://127.0.0.1:32400/", Duration::from_secs(2));
    assert!(
        inside.has(lab.plex.marker()),
        "(3) the stand-in Plex must still answer on 127.0.0.1:32400 in the home namespace: \
         {inside:?}"
    );

    // (2) The same profile copied to another source address gets no reply at all.
    let before = lab.edge().metrics(&lab.home);
    let dropped_before = before.require(DROPPED_UNPINNED);
    let copy = lab.dir.path().join("copied-profile.conf");
    std::fs::copy(&profile, &copy).expect("copy the profile");
    let stolen = WgClient::up(other, &format!("{}o", lab.base), &copy);
    let trying_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < trying_until {
        let got = http_get(other, &url, Duration::from_secs(1));
        assert!(
            !got.ok(),
            "(2) the copied profile loaded {url} from {OTHER_IP}, which holds no pin: {got:?}"
        );
    }
    let peers = stolen.dev.peers();
    // One peer that did send (handshake initiations), and got nothing back.
    assert!(
        peers.len() == 1 && peers[0].tx_bytes > 0,
        "(2) the copied profile's interface should have one peer that sent handshakes: {peers:?}"
    );
    assert!(
        peers[0].rx_bytes == 0 && peers[0].latest_handshake == 0,
        "(2) the copied profile's interface received something: {peers:?}"
    );
    let after = lab.edge().metrics(&lab.home);
    let dropped = after.require(DROPPED_UNPINNED) - dropped_before;
    let sent = after.require(BYTES_SENT_UNPINNED);
    assert!(
        dropped > 0.0,
        "(2) the edge counted no dropped datagram from the unpinned source:\n{}",
        after.text
    );
    assert!(
        sent == 0.0,
        "(2) the edge sent {sent} bytes to unpinned sources:\n{}",
        after.text
    );
    eprintln!(
        "(2) edge dropped {dropped} datagrams from the unpinned source, sent it {sent} bytes"
    );
    drop(stolen);
    // The copy's attempts do not disturb the real client.
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("(2) the pinned client lost the page: {last:?}"));

    // (6) Refusals: no grant means no lease; a wrong TOTP code means no session. Exit code 3.
    let bob = lab.add_user("bob");
    let laptop = lab.device("bob-laptop");
    lab.login(&laptop, &bob);
    let bob_profile = lab.dir.path().join("bob-home.conf");
    let refused = laptop.profile(&lab.client, "home", &bob_profile);
    assert_eq!(
        refused.code,
        Some(EXIT_REFUSED),
        "(6) `grantwire profile home` for a user without a grant must exit 3:\n{refused}"
    );
    assert!(
        !bob_profile.exists(),
        "(6) a refused profile request wrote {}",
        bob_profile.display()
    );
    let tablet = lab.device("alice-tablet");
    let wrong = totp::wrong_code(&alice.totp_secret, unix_now());
    let refused = tablet.login(
        &lab.client,
        &lab.broker_url(),
        "alice",
        &alice.password,
        &lab.broker.fingerprint,
        &wrong,
    );
    assert_eq!(
        refused.code,
        Some(EXIT_REFUSED),
        "(6) `grantwire login` with a wrong TOTP code must exit 3:\n{refused}"
    );

    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

#[test]
fn revoked_grant_stops_the_page_within_one_second() {
    revoked_grant_stops_the_page(Family::V4);
}

/// The same over IPv6: the pin is the client's /64, in the guard's set `pins6`.
#[test]
fn revoked_grant_stops_the_page_within_one_second_over_ipv6() {
    revoked_grant_stops_the_page(Family::V6);
}

fn revoked_grant_stops_the_page(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("rv", false);
    let edge = lab.enrol_edge_for(family);
    let (_wg, _) = lab.tunnel(&edge, "alice", family);
    let url = lab.plex_url(&edge);
    // The poll budget is enough on this machine, so a failure later means the tunnel stopped.
    assert!(
        (0..5).any(|_| lab.page_loads(&lab.client, &url, POLL_TIMEOUT)),
        "(4) the page does not load within {POLL_TIMEOUT:?} even before the revoke"
    );

    // The kernel lets the pinned client's datagrams through unthrottled: its pin is in the
    // guard's set (and leaves it with the lease, below).
    let (set, pin) = match family {
        Family::V4 => ("pins4", "192.0.2.2"),
        Family::V6 => ("pins6", "2001:db8:1::/64"),
    };
    let pins = || {
        lab.home
            .exec_ok(&["nft", "list", "set", "inet", "grantwire", set])
            .stdout
    };
    let listed = pins();
    assert!(
        listed.contains(pin),
        "(4) the client's pin {pin} is missing from the guard's set {set}:\n{listed}"
    );

    lab.broker.revoke(&lab.home, "alice", "home");
    let revoked = Instant::now();
    let polls = lab.poll_page(&url, revoked, Duration::from_secs(3));
    let first_failure = polls.iter().find(|p| !p.loaded).map(|p| p.at);
    let late: Vec<&PagePoll> = polls
        .iter()
        .filter(|p| p.loaded && p.at >= Duration::from_secs(1))
        .collect();
    assert!(
        first_failure.is_some() && late.is_empty(),
        "(4) after `grant revoke` the page must stop loading within 1 s and stay stopped; \
         polls (time since the revoke returned, loaded?): {polls:?}\nleases: {:?}",
        lab.broker.leases(&lab.home)
    );
    eprintln!("(4) {family:?}: first failed poll {first_failure:?} after the revoke returned");
    let listed = pins();
    assert!(
        !listed.contains(pin),
        "(4) the revoked lease's pin {pin} is still in the guard's set {set}:\n{listed}"
    );
    lab.assert_no_unexpected_warnings(&[]);
}

#[test]
fn lease_expires_by_the_edges_own_clock() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    const TTL: Duration = Duration::from_secs(12);
    let mut lab = Lab::new("ex", false);
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", Some("12s"));
    let device = lab.device("alice");
    lab.login(&device, &alice);
    let issued_after = Instant::now();
    let profile = lab.profile(&device, "alice-home.conf");
    let issued_by = Instant::now();
    let url = lab.plex_url(&edge);
    let _wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);

    // Expiry is at most TTL after issue; a broker keeping whole seconds may make it up to 1 s
    // earlier, so "before expiry" means before TTL - 1 s.
    let surely_valid_until = issued_after + TTL - Duration::from_secs(1);
    let budget = surely_valid_until.saturating_duration_since(Instant::now());
    lab.wait_page(&lab.client, &url, budget)
        .unwrap_or_else(|last| {
            panic!("(5) the page did not load before the lease expired: {last:?}")
        });

    // From here only the edge's own clock can end the lease.
    let edge_log = lab.edge().proc().stderr();
    lab.broker.stop();
    assert!(
        Instant::now() + Duration::from_secs(1) < surely_valid_until,
        "(5) setup took so long that the lease is about to expire before the broker-down check; \
         the check must run, so this fails rather than skips"
    );
    let still = (0..3).any(|_| lab.page_loads(&lab.client, &url, POLL_TIMEOUT * 2));
    assert!(
        still,
        "(5) with the broker stopped the lease must keep working until it expires \
         (the edge holds its lease set)"
    );

    // Slack after the latest possible expiry: whole-second expiry times and the edge's timer.
    let must_stop_at = issued_by + TTL + Duration::from_secs(2);
    std::thread::sleep(must_stop_at.saturating_duration_since(Instant::now()));
    let polls = lab.poll_page(&url, must_stop_at, Duration::from_secs(2));
    assert!(
        polls.iter().all(|p| !p.loaded),
        "(5) the page still loads {:?} after the lease's {TTL:?} ended; polls: {polls:?}",
        Duration::from_secs(2)
    );
    lab.edge
        .as_mut()
        .expect("edge")
        .assert_running("(5) the lease expiry, with the broker stopped");

    let mut found = grantwire_e2e::unexpected_warnings(&lab.broker.proc().stderr(), &[]);
    found.extend(grantwire_e2e::unexpected_warnings(
        &edge_log,
        &[grantwire_e2e::EDGE_ROOT_WARNING],
    ));
    assert!(
        found.is_empty(),
        "unexpected WARN/ERROR lines:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_client_that_moves_is_reported_and_renew_moves_its_pin() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    const MOVED_IP: &str = "192.0.2.3";
    let mut lab = Lab::new("mv", false);
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let laptop = lab.device("alice-laptop");
    lab.login(&laptop, &alice);
    let profile = lab.profile(&laptop, "alice-home.conf");
    let url = lab.plex_url(&edge);
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("(7) the page never loaded before the move: {last:?}"));

    // The edge reports the lease's traffic; `lease list` shows it.
    let reported = grantwire_e2e::wait_for(Duration::from_secs(10), POLL_EVERY, || {
        let leases = lab.broker.leases(&lab.home);
        let usage = leases.first()?.get("usage")?.clone();
        let ok = usage["last_handshake_at"].as_i64().is_some()
            && usage["rx_bytes"].as_u64().is_some_and(|b| b > 0)
            && usage["tx_bytes"].as_u64().is_some_and(|b| b > 0);
        ok.then_some(usage)
    });
    let usage = reported.unwrap_or_else(|| {
        panic!(
            "(7) `lease list --json` shows no handshake and bytes from the edge: {:?}",
            lab.broker.leases(&lab.home)
        )
    });
    eprintln!("(7) lease list shows the edge's figures: {usage}");

    // The laptop moves: same keys and session, new source address.
    lab.move_client(MOVED_IP, wg.ifname());
    let key_off_pin = grantwire_e2e::wait_for(Duration::from_secs(10), POLL_EVERY, || {
        // Traffic from the new address: the page request travels the old session.
        let got = http_get(&lab.client, &url, POLL_TIMEOUT);
        assert!(
            !got.ok(),
            "(7) the page loaded from {MOVED_IP}, outside the pin: {got:?}"
        );
        lab.broker
            .audit(&lab.home)
            .into_iter()
            .find(|e| e["kind"] == "lease_key_off_pin")
    });
    let row = key_off_pin.unwrap_or_else(|| {
        panic!(
            "(7) no lease_key_off_pin audit row after the client moved; audit: {:?}\n\
             edge metrics:\n{}\nedge log:\n{}",
            lab.broker.audit(&lab.home),
            lab.edge().metrics(&lab.home).text,
            lab.edge().proc().stderr()
        )
    });
    assert_eq!(row["source_ip"], MOVED_IP, "(7) {row}");
    assert_eq!(row["actor"], "alice", "(7) {row}");
    let metrics = lab.edge().metrics(&lab.home);
    assert_eq!(
        metrics.require(BYTES_SENT_UNPINNED),
        0.0,
        "(7) the edge answered the moved client before renew:\n{}",
        metrics.text
    );

    // `grantwire renew` from the new address moves the pin; the same tunnel works again.
    laptop
        .renew(&lab.client, "home", &profile)
        .expect_ok("(7) grantwire renew home");
    let took = lab
        .wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("(7) the page did not load after renew: {last:?}"));
    eprintln!("(7) page loaded from {MOVED_IP} {took:?} after renew");
    let leases = lab.broker.leases(&lab.home);
    assert_eq!(leases.len(), 1, "(7) {leases:?}");
    assert_eq!(leases[0]["pin"], format!("{MOVED_IP}/32"), "(7) {leases:?}");
    lab.assert_no_unexpected_warnings(&[]);
}

#[test]
fn an_edge_cut_off_from_its_broker_keeps_its_leases_and_drops_a_revoked_one_on_return() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("cut", false);
    let (profile, url) = granted_alice(&mut lab);
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("(8) the page never loaded: {last:?}"));
    let leases = lab.broker.leases(&lab.home);
    let lease_id = leases[0]["id"].as_str().expect("lease id").to_owned();

    // The cut: in the home namespace, the edge's connections to the broker (127.0.0.1:8443)
    // are refused; the broker itself keeps running for the admin and the client.
    lab.cut_edge_from_broker();

    // Restart the edge while it cannot reach the broker: it comes back with the lease it had,
    // from its cache (0600), and the same profile loads the page again.
    let cache = lab.dir.path().join("edge-state").join("leases.json");
    lab.edge = None;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cache)
            .unwrap_or_else(|e| panic!("(8) no lease cache at {}: {e}", cache.display()))
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "(8) the lease cache holds preshared keys"
    );
    let tun = format!("{}t", lab.base);
    lab.edge = Some(Edge::start(
        &lab.home,
        &lab.broker,
        "spent",
        lab.dir.path(),
        &tun,
    ));
    // A fresh client interface handshakes at once (the old one would wait out its rekey timer
    // before noticing the restarted edge has no session).
    drop(wg);
    let _wg = WgClient::up(&lab.client, &format!("{}d", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| {
            panic!(
            "(8) after a restart with the broker unreachable, the cached lease must still load \
             the page: {last:?}\nedge log:\n{}",
            lab.edge().proc().logs()
        )
        });
    assert_eq!(
        lab.edge().metrics(&lab.home).require(BROKER_CONNECTED),
        0.0,
        "(8) the metrics must show the broker link down"
    );
    let logs = lab.edge().proc().logs();
    assert!(
        logs.contains("enforcing the cached lease set") && !logs.contains("broker sync connected"),
        "(8) the restarted edge must be serving from its cache, cut off from the broker:\n{logs}"
    );

    // Revoked while the edge is away: the edge cannot know yet, and keeps the last set.
    lab.broker.revoke(&lab.home, "alice", "home");
    assert!(
        lab.page_loads(&lab.client, &url, Duration::from_secs(2)),
        "(8) while cut off, the edge enforces the last set it had"
    );

    // The broker is reachable again: the edge resyncs (its retry backoff is at most 10 s), the
    // revoked lease stops and stays stopped, and the cache no longer holds it.
    lab.heal_edge_from_broker();
    let back = Instant::now();
    let mut stopped = None;
    while back.elapsed() < Duration::from_secs(25) {
        if !lab.page_loads(&lab.client, &url, POLL_TIMEOUT) {
            stopped = Some(back.elapsed());
            break;
        }
        std::thread::sleep(POLL_EVERY);
    }
    let stopped = stopped.unwrap_or_else(|| {
        panic!(
            "(8) the lease revoked during the cut still works 25 s after the broker came back\n\
             edge log:\n{}",
            lab.edge().proc().logs()
        )
    });
    eprintln!("(8) the revoked lease stopped {stopped:?} after the broker became reachable");
    let polls = lab.poll_page(&url, Instant::now(), Duration::from_secs(2));
    assert!(
        polls.iter().all(|p| !p.loaded),
        "(8) the revoked lease came back: {polls:?}"
    );
    assert_eq!(
        lab.edge().metrics(&lab.home).require(BROKER_CONNECTED),
        1.0,
        "(8) the metrics must show the broker link up again"
    );
    let cached = std::fs::read_to_string(&cache).expect("lease cache");
    assert!(
        !cached.contains(&lease_id),
        "(8) the cache still holds the revoked lease {lease_id}"
    );
    lab.assert_no_unexpected_warnings(&["broker sync failing"]);
}

/// Captures, in the client's namespace, the UDP datagrams its WireGuard interface sends to the
/// edge (one hex line each), until stopped.
const SNIFFER: &str = r#"
import binascii, socket, sys
ifname, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((ifname, 0))
with open(out, "w") as f:
    while True:
        frame, meta = s.recvfrom(65535)
        if meta[2] != socket.PACKET_OUTGOING:
            continue
        ip = frame[14:]
        if frame[12:14] == b"\x08\x00":
            proto, udp = ip[9], (ip[0] & 15) * 4
        elif frame[12:14] == b"\x86\xdd":
            proto, udp = ip[6], 40
        else:
            continue
        if proto != 17 or int.from_bytes(ip[udp + 2:udp + 4], "big") != 51820:
            continue
        f.write(binascii.hexlify(ip[udp + 8:]).decode() + "\n")
        f.flush()
"#;

/// Sends each captured datagram again, from the client's own (pinned) address to the edge's.
const REPLAYER: &str = r#"
import binascii, socket, sys, time
capture, source, edge = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((source, 0))
for line in open(capture):
    s.sendto(binascii.unhexlify(line.strip()), (edge, 51820))
    time.sleep(0.005)
"#;

#[test]
fn a_captured_session_replayed_opens_nothing_before_or_after_an_edge_restart() {
    replayed_session(Family::V4);
}

#[test]
fn a_captured_session_replayed_opens_nothing_before_or_after_an_edge_restart_over_ipv6() {
    replayed_session(Family::V6);
}

fn replayed_session(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("rp", false);
    let edge = lab.enrol_edge_for(family);
    let profile = lab.granted_profile("alice", family);
    let url = lab.plex_url(&edge);
    let (source, edge_host) = match family {
        Family::V4 => (CLIENT_IP, family.edge_host()),
        Family::V6 => (CLIENT_IP6, family.edge_host()),
    };
    let dir = lab.dir.path().to_owned();
    let (sniffer, replayer, capture) = (
        dir.join("sniff.py"),
        dir.join("replay.py"),
        dir.join("captured.hex"),
    );
    std::fs::write(&sniffer, SNIFFER).expect("sniffer script");
    std::fs::write(&replayer, REPLAYER).expect("replayer script");
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
    let replay = || {
        lab.client.exec_ok(&[
            "python3",
            &path(&replayer),
            &path(&capture),
            source,
            edge_host,
        ])
    };

    // (9) Capture a whole session on the wire: handshake, keepalives, the page's data.
    let mut sniff = lab.client.spawn(
        "sniffer",
        &["python3", &path(&sniffer), &lab.client_if, &path(&capture)],
    );
    std::thread::sleep(Duration::from_millis(500));
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("(9) the page never loaded: {last:?}"));
    std::thread::sleep(Duration::from_millis(300));
    drop(wg);
    sniff.stop(Duration::from_secs(1));
    let captured = std::fs::read_to_string(&capture).expect("capture file");
    let kinds: Vec<&str> = captured.lines().map(|l| &l[..2]).collect();
    assert!(
        kinds.contains(&"01") && kinds.contains(&"04"),
        "(9) the capture must hold an initiation and transport data; message types: {kinds:?}\n{}",
        sniff.logs()
    );

    // Replayed to the same edge: nothing is answered or delivered.
    let before = lab.edge().metrics(&lab.home);
    replay();
    std::thread::sleep(Duration::from_millis(500));
    let after = lab.edge().metrics(&lab.home);
    for name in [PACKETS_TO_TUN, HANDSHAKES] {
        assert_eq!(
            after.require(name),
            before.require(name),
            "(9) replaying {} captured datagrams changed {name}",
            kinds.len()
        );
    }

    // Replayed to a restarted edge that holds the same lease: a replayed initiation may be
    // answered (a responder that lost its state cannot tell), but only to the pinned address,
    // and nothing reaches Plex.
    lab.edge = None;
    let tun = format!("{}t", lab.base);
    lab.edge = Some(Edge::start(&lab.home, &lab.broker, "spent", &dir, &tun));
    let synced =
        grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            (lab.edge().metrics(&lab.home).require(LEASES) == 1.0).then_some(())
        });
    assert!(
        synced.is_some(),
        "(9) the restarted edge never got its lease set"
    );
    replay();
    std::thread::sleep(Duration::from_millis(500));
    let restarted = lab.edge().metrics(&lab.home);
    assert_eq!(
        restarted.require(PACKETS_TO_TUN),
        0.0,
        "(9) a replayed session reached Plex through a restarted edge"
    );
    assert_eq!(restarted.require(BYTES_SENT_UNPINNED), 0.0);
    // The negative control: the replay does reach the edge. A restarted edge has forgotten
    // the initiation's timestamp, so it takes the replayed one for new and answers it.
    assert!(
        restarted.require(HANDSHAKES) >= 1.0,
        "(9) the replayed initiation never reached the restarted edge ({family:?}), so the \
         unchanged counters above prove nothing"
    );
    eprintln!(
        "(9) {family:?}: {} datagrams replayed twice; the restarted edge answered {} handshakes",
        kinds.len(),
        restarted.require(HANDSHAKES)
    );
    lab.assert_no_unexpected_warnings(&[]);
}

/// The common start: an enrolled edge `home`, user alice granted on it and logged in from the
/// client namespace; returns her profile file and the stand-in Plex's URL on the tunnel.
fn granted_alice(lab: &mut Lab) -> (std::path::PathBuf, String) {
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let device = lab.device("alice");
    lab.login(&device, &alice);
    (lab.profile(&device, "alice-home.conf"), lab.plex_url(&edge))
}

/// CAP_NET_ADMIN (12) as `/proc/PID/status` shows a capability set.
const CAP_NET_ADMIN_ONLY: &str = "0000000000001000";

#[test]
fn an_edge_started_as_root_with_a_user_drops_to_it_keeping_only_cap_net_admin() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("pd", false);
    let edge = lab.enrol_edge_as(EdgeStart::DropTo("nobody"));
    let logs = lab.edge().proc().stderr();
    assert!(
        logs.contains("dropped root") && !logs.contains(EDGE_ROOT_WARNING),
        "(10) the edge must say it dropped root, and not warn about running as root:\n{logs}"
    );
    runs_as_nobody_with_cap_net_admin_alone(&mut lab, &edge, "(10)");
}

/// The start that scripts/install/grantwire-edge.service gives the edge (never root;
/// CAP_NET_ADMIN ambient and the whole bounding set; no_new_privs; its state directory made for
/// it) is enough for all it does, the guard's install, pin sets and removal included.
#[test]
fn an_edge_started_as_its_systemd_unit_does_needs_nothing_but_cap_net_admin() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("un", false);
    let edge = lab.enrol_edge_as(EdgeStart::AsUnit("nobody"));
    let logs = lab.edge().proc().stderr();
    assert!(
        !logs.contains("dropped root") && !logs.contains(EDGE_ROOT_WARNING),
        "(11) an edge that never was root has nothing to drop or warn about:\n{logs}"
    );
    runs_as_nobody_with_cap_net_admin_alone(&mut lab, &edge, "(11)");
}

/// What (10) and (11) check, from a running edge to its clean stop: the process is nobody with
/// exactly CAP_NET_ADMIN, owns its state, serves a granted client, keeps its lease cache and the
/// guard's pin set through a second lease and two revokes, and removes its guard when stopped.
fn runs_as_nobody_with_cap_net_admin_alone(lab: &mut Lab, edge: &EdgeInfo, n: &str) {
    let (uid, gid) = user_ids("nobody");
    let pid = lab.edge().proc().pid().expect("edge pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("edge status");
    assert_eq!(
        status_field(&status, "Name"),
        "grantwire-edge",
        "{n} pid {pid} is not the edge (do `ip netns exec` and setpriv still exec in place?)"
    );

    // The process (its main thread, which keeps the capability) is nobody with CAP_NET_ADMIN
    // alone, and can gain nothing through execve.
    let ids = |name: &str| {
        status_field(&status, name)
            .split_whitespace()
            .map(|n| n.parse::<u32>().expect("numeric id"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("Uid"),
        [uid; 4],
        "{n} real/effective/saved/fs uids\n{status}"
    );
    assert_eq!(
        ids("Gid"),
        [gid; 4],
        "{n} real/effective/saved/fs gids\n{status}"
    );
    assert!(
        ids("Groups").iter().all(|&g| g == gid),
        "{n} supplementary groups beyond nobody's\n{status}"
    );
    for set in ["CapPrm", "CapEff", "CapInh", "CapAmb"] {
        assert_eq!(
            status_field(&status, set),
            CAP_NET_ADMIN_ONLY,
            "{n} {set} must be CAP_NET_ADMIN exactly\n{status}"
        );
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{n}\n{status}");
    // Every other thread (tokio's workers) is nobody too, with no more than that; the guard's
    // thread, which runs `nft`, holds the capability, ambient included.
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("edge threads");
    let mut guard_thread = false;
    for task in tasks {
        let path = task.expect("task entry").path().join("status");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if status_field(&text, "Name") == "grantwire-guard" {
            guard_thread = true;
            for set in ["CapPrm", "CapEff", "CapAmb"] {
                assert_eq!(
                    status_field(&text, set),
                    CAP_NET_ADMIN_ONLY,
                    "{n} the guard's thread's {set}\n{text}"
                );
            }
        }
        for field in ["Uid", "Gid"] {
            let (thread, main) = (status_field(&text, field), status_field(&status, field));
            assert_eq!(thread, main, "{n} {} {field}", path.display());
        }
        for set in ["CapPrm", "CapEff", "CapAmb"] {
            let mask = u64::from_str_radix(status_field(&text, set), 16).expect("mask");
            assert_eq!(mask & !0x1000, 0, "{n} {} {set}\n{text}", path.display());
        }
    }
    assert!(guard_thread, "{n} no thread named grantwire-guard");

    // Its state directory is nobody's, with the modes it had.
    let state = lab.edge().state_dir.clone();
    assert_owned(&state, uid, 0o700, n);
    for file in ["private.key", "credential", "config.json"] {
        assert_owned(&state.join(file), uid, 0o600, n);
    }

    // It serves a granted client.
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let phone = lab.device("alice-phone");
    lab.login(&phone, &alice);
    let profile = lab.profile(&phone, "alice-home.conf");
    let url = lab.plex_url(edge);
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| {
            panic!("{n} the granted client did not load {url} through this edge: {last:?}")
        });

    wait_pin(lab, true, &format!("{n} the first lease's pin"));

    // It writes its lease cache whenever a new lease set comes: a second lease, then a revoke.
    let cache = state.join("leases.json");
    let first = lease_ids(lab);
    assert_eq!(first.len(), 1, "{n} {first:?}");
    wait_cache(&cache, &format!("{n} the first lease"), |c| {
        c.contains(&first[0])
    });
    let bob = lab.add_user("bob");
    lab.broker.grant(&lab.home, "bob", "home", None);
    let laptop = lab.device("bob-laptop");
    lab.login(&laptop, &bob);
    lab.profile(&laptop, "bob-home.conf");
    let both = lease_ids(lab);
    assert_eq!(both.len(), 2, "{n} {both:?}");
    let second = both
        .iter()
        .find(|id| **id != first[0])
        .expect("bob's lease");
    wait_cache(&cache, &format!("{n} the second lease"), |c| {
        c.contains(&first[0]) && c.contains(second)
    });
    lab.broker.revoke(&lab.home, "alice", "home");
    wait_cache(&cache, &format!("{n} the set after the revoke"), |c| {
        !c.contains(&first[0]) && c.contains(second)
    });
    assert_owned(&cache, uid, 0o600, n);
    drop(wg);

    // The guard's pin set follows the leases too: `nft` runs after the drop on every lease set,
    // so the kept capability must reach it from whichever thread runs it. Both leases were taken
    // from the client's one address, so its pin stays until the second one goes as well.
    wait_pin(lab, true, &format!("{n} the pin of the lease that remains"));
    lab.broker.revoke(&lab.home, "bob", "home");
    wait_cache(&cache, &format!("{n} the set after both revokes"), |c| {
        !c.contains(&first[0]) && !c.contains(second)
    });
    wait_pin(lab, false, &format!("{n} the pin after both revokes"));
    lab.assert_no_unexpected_warnings(&[]);

    // A clean stop (SIGTERM, as systemd stops it) removes the guard, through `nft` run with the
    // one capability kept.
    let running = lab.edge.as_mut().expect("edge");
    let exit = running.stop(Duration::from_secs(5));
    let logs = running.proc().logs();
    assert!(
        exit.is_some_and(|s| s.success()),
        "{n} the edge must exit 0 on SIGTERM, got {exit:?}\n{logs}"
    );
    let table = lab
        .home
        .exec(&["nft", "list", "table", "inet", "grantwire"]);
    assert!(
        !table.success() && table.stderr.contains("No such file"),
        "{n} the stopped edge left its nftables table:\n{table}\n{logs}"
    );
}

/// The value of one `Name:\tvalue` line of a `/proc` status file.
#[track_caller]
fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in\n{status}"))
        .trim()
}

#[track_caller]
fn assert_owned(path: &Path, uid: u32, mode: u32, n: &str) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{n} {}: {e}", path.display()));
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (uid, mode),
        "{n} owner and mode of {}",
        path.display()
    );
}

fn lease_ids(lab: &Lab) -> Vec<String> {
    lab.broker
        .leases(&lab.home)
        .iter()
        .map(|l| l["id"].as_str().expect("lease id").to_owned())
        .collect()
}

/// Waits (5 s at most) for the guard's set `pins4` to hold the client's address (or not).
#[track_caller]
fn wait_pin(lab: &Lab, present: bool, what: &str) {
    let list = || {
        lab.home
            .exec_ok(&["nft", "list", "set", "inet", "grantwire", "pins4"])
            .stdout
    };
    let got = grantwire_e2e::wait_for(Duration::from_secs(5), POLL_EVERY, || {
        (list().contains("192.0.2.2") == present).then_some(())
    });
    assert!(
        got.is_some(),
        "{what}: 192.0.2.2 should {}be in the guard's set pins4:\n{}\n{}",
        if present { "" } else { "no longer " },
        list(),
        lab.edge().proc().stderr()
    );
}

/// Waits (5 s at most) for the edge's lease cache to satisfy `ok`.
#[track_caller]
fn wait_cache(cache: &Path, what: &str, ok: impl Fn(&str) -> bool) {
    let got = grantwire_e2e::wait_for(Duration::from_secs(5), POLL_EVERY, || {
        let text = std::fs::read_to_string(cache).ok()?;
        ok(&text).then_some(())
    });
    assert!(
        got.is_some(),
        "{what} never reached the lease cache {}: {:?}",
        cache.display(),
        std::fs::read_to_string(cache)
    );
}
