//! TCP through the tunnel both ways and in parallel, with iperf3 (scenario A2), over IPv4 and
//! over IPv6 as the outer transport.
//!
//! alice's grant reaches Plex's port and 5201, where an iperf3 server listens on the edge's
//! tunnel address in the Plex host (home). From her namespace, through wireguard-go: one stream
//! from Plex to her (`-R`, what watching is) and one from her to Plex, then 4 streams each way,
//! then 50 streams from Plex at once. Each must move data and finish without an error; the
//! figures are printed (debug builds on a shared machine: no threshold, see
//! `scripts/bench/edge.sh` for measured throughput).
//!
//! UDP is not carried: the edge passes TCP to the granted ports only (DESIGN.md). iperf3's UDP
//! test, whose control connection is TCP and so does get through, cannot open its UDP stream,
//! and a counter on the edge's TUN device in the Plex host sees no UDP come out of it.

use std::time::Duration;

use grantwire_e2e::harness::lab::{FIRST_LOAD, HOME_OUTSIDE_IP6};
use grantwire_e2e::harness::nft;
use grantwire_e2e::harness::proc::Proc;
use grantwire_e2e::{require_env, Lab, Netns, WgClient};
use serde_json::Value;

const IPERF_PORT: &str = "5201";
const SECS: &str = "3";
/// The test's nftables table in home (it goes with the namespace).
const TABLE: &str = "gwtest_iperf";

/// `iperf3 -s -1` on the edge's tunnel address in home: one test, then it exits (a fresh
/// server per test, so none answers "busy" while the last test's cleanup runs).
struct Server(Proc);

impl Server {
    fn start(home: &Netns, tunnel_ip: &str) -> Server {
        let mut proc = home.spawn(
            "iperf3 server",
            &["iperf3", "-s", "-1", "-B", tunnel_ip, "-p", IPERF_PORT],
        );
        let ready =
            grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
                proc.assert_running("iperf3 to listen");
                let ss = home.exec_ok(&["ss", "-Htln", &format!("sport = :{IPERF_PORT}")]);
                (!ss.stdout.trim().is_empty()).then_some(())
            });
        assert!(ready.is_some(), "iperf3 never listened:\n{}", proc.logs());
        Server(proc)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.0.stop(Duration::from_secs(2));
    }
}

/// Runs `iperf3 -c TUNNEL_IP -p 5201 -J` with `args` in the client's namespace and returns its
/// JSON report, panicking with it on an error.
fn iperf(client: &Netns, tunnel_ip: &str, args: &[&str], what: &str) -> Value {
    let mut argv = vec![
        "iperf3",
        "-c",
        tunnel_ip,
        "-p",
        IPERF_PORT,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    argv.extend_from_slice(args);
    let out = client.exec_with(&argv, None, Duration::from_secs(60));
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: iperf3 printed no JSON ({e}):\n{out}"));
    assert!(
        out.success() && report.get("error").is_none(),
        "{what}: iperf3 failed:\n{out}"
    );
    report
}

/// The TCP figures of a report: (bytes the receiver got, its bits per second, sender
/// retransmits).
fn tcp_figures(report: &Value) -> (u64, f64, u64) {
    let end = &report["end"];
    let bytes = end["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let retransmits = end["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    (bytes, bps, retransmits)
}

fn tcp_both_ways_and_in_parallel(lab: &Lab, tunnel_ip: &str, family: &str) {
    for (what, args) in [
        ("1 stream, Plex to alice", vec!["-R", "-P", "1"]),
        ("1 stream, alice to Plex", vec!["-P", "1"]),
        ("4 streams, Plex to alice", vec!["-R", "-P", "4"]),
        ("4 streams, alice to Plex", vec!["-P", "4"]),
        ("50 streams, Plex to alice", vec!["-R", "-P", "50"]),
    ] {
        let mut args = args;
        args.extend_from_slice(&["-t", SECS]);
        let _server = Server::start(&lab.home, tunnel_ip);
        let report = iperf(&lab.client, tunnel_ip, &args, &format!("{family}: {what}"));
        let streams = report["end"]["streams"].as_array().map_or(0, Vec::len);
        let (bytes, bps, retransmits) = tcp_figures(&report);
        eprintln!(
            "{family}: {what}: {:.0} Mbit/s, {bytes} bytes, {retransmits} retransmits",
            bps / 1e6
        );
        let wanted: usize = args[args.iter().position(|a| *a == "-P").expect("-P") + 1]
            .parse()
            .expect("a stream count");
        assert_eq!(streams, wanted, "{family}: {what}: streams in the report");
        assert!(
            bytes > 1_000_000,
            "{family}: {what}: only {bytes} bytes crossed the tunnel in {SECS} s"
        );
    }

    // UDP: the control connection (TCP) gets through, the datagrams do not. Counted where
    // they would arrive, in the Plex host on the edge's TUN device (the kernel's counters).
    let tun = format!("{}t", lab.base);
    nft::load(
        &lab.home,
        &format!(
            "table inet {TABLE} {{\n\
             \x20   counter udp_in {{}}\n\
             \x20   counter tcp_in {{}}\n\
             \x20   chain input {{\n\
             \x20       type filter hook input priority filter - 10; policy accept;\n\
             \x20       iifname \"{tun}\" udp dport {IPERF_PORT} counter name udp_in\n\
             \x20       iifname \"{tun}\" tcp dport {IPERF_PORT} counter name tcp_in\n\
             \x20   }}\n\
             }}\n"
        ),
    );
    let _server = Server::start(&lab.home, tunnel_ip);
    let mut argv = vec!["iperf3", "-c", tunnel_ip, "-p", IPERF_PORT, "-J"];
    argv.extend_from_slice(&["--connect-timeout", "5000", "-u", "-b", "1M", "-t", "2"]);
    let out = lab.client.exec_with(&argv, None, Duration::from_secs(60));
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{family}: UDP: iperf3 printed no JSON ({e}):\n{out}"));
    let udp_in = nft::counter(&lab.home, TABLE, "udp_in").packets;
    let tcp_in = nft::counter(&lab.home, TABLE, "tcp_in").packets;
    eprintln!(
        "{family}: UDP: iperf3 says {:?}; {udp_in} UDP and {tcp_in} TCP packets came out of the \
         edge's TUN",
        report["error"]
    );
    assert!(
        tcp_in > 0,
        "{family}: iperf3's control connection never reached the server: the UDP check shows \
         nothing"
    );
    assert_eq!(
        udp_in, 0,
        "{family}: UDP datagrams crossed the tunnel to Plex's host; the edge carries TCP only"
    );
    // iperf3 opens its UDP stream with one datagram the server must answer, which never
    // arrives: it reports an error (its wording differs between iperf3 versions).
    assert!(
        report["error"].is_string(),
        "{family}: iperf3's UDP test should have failed to open its stream:\n{out}"
    );
}

/// alice's grant for Plex's port and iperf3's.
fn grant_with_iperf(lab: &Lab) {
    lab.broker
        .admin(
            &lab.home,
            &[
                "grant",
                "add",
                "alice",
                "home",
                "--ports",
                "32400,5201",
                "--json",
            ],
            None,
        )
        .expect_ok("grantwire-broker grant add --ports");
}

#[test]
fn tcp_crosses_the_tunnel_both_ways_and_in_parallel_and_udp_does_not() {
    // Alone, not beside the IPv6 twin: each fills the machine.
    let _alone = crate::one_module_at_a_time(concat!(module_path!(), "::v4"));
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("ipf", false);
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    grant_with_iperf(&lab);
    let laptop = lab.device("alice-laptop");
    lab.login(&laptop, &alice);
    let profile = lab.profile(&laptop, "alice-home.conf");
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &lab.plex_url(&edge), FIRST_LOAD)
        .unwrap_or_else(|last| panic!("alice's page did not load: {last:?}"));
    tcp_both_ways_and_in_parallel(&lab, &edge.tunnel_ip, "IPv4");
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

#[test]
fn tcp_crosses_an_ipv6_tunnel_both_ways_and_in_parallel_and_udp_does_not() {
    let _alone = crate::one_module_at_a_time(concat!(module_path!(), "::v6"));
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("ipf6", false);
    lab.add_ipv6();
    let edge = lab.enrol_edge_dual_stack();
    let alice = lab.add_user("alice");
    grant_with_iperf(&lab);
    let laptop = lab.device("alice-laptop");
    lab.login_at(&laptop, &alice, &lab.broker_url6());
    let profile = lab.profile(&laptop, "alice-home.conf");
    let text = std::fs::read_to_string(&profile).expect("profile");
    assert!(
        text.contains(&format!("Endpoint = [{HOME_OUTSIDE_IP6}]:51820\n")),
        "alice's lease must be for the edge's IPv6 endpoint:\n{text}"
    );
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &lab.plex_url(&edge), FIRST_LOAD)
        .unwrap_or_else(|last| panic!("alice's page did not load over IPv6: {last:?}"));
    tcp_both_ways_and_in_parallel(&lab, &edge.tunnel_ip, "IPv6");
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
