//! A silent host (scenario B1): a port scan of the edge's host from outside draws nothing.
//!
//! By default the guard closes only Plex's ports, and the host's other closed ports answer a
//! scan as any Linux host does (a TCP reset, an ICMP port-unreachable). With `grantwire-edge
//! run --silent-host --host-allow tcp/8443` (the broker shares the host here) the guard drops
//! everything unsolicited from outside but the WireGuard port and the listed ports.
//!
//! From the other namespace, nmap scans every TCP port (`-sS -p-`, and with stray ACKs, `-sA
//! -p-`) and every UDP port (`-sU -p-`) of home, over IPv4 and IPv6, and pings it. An nftables counter on home's link to the
//! scanner counts every packet home sends that way (neighbour discovery aside: link
//! bookkeeping, as ARP is): it stays where it was, while a second counter sees the broker's
//! SYN-ACKs on 8443, the one listed port (the negative control: the counter would see an
//! answer, and the listed port does answer). nmap itself reports 8443 open and no port closed.
//! Before the edge starts, a scan of the first 1,024 TCP ports draws resets into the same
//! counter: it is the guard that silences the host. Friends still log in on 8443 and tunnel over
//! both families meanwhile.

use std::time::Duration;

use grantwire_e2e::harness::grantwire::EdgeArgs;
use grantwire_e2e::harness::lab::HOME_OTHER_IP6;
use grantwire_e2e::harness::nft;
use grantwire_e2e::{require_env, Family, Lab, Netns};

const HOME_OTHER_IP: &str = "198.51.100.1";
const SCAN_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn a_port_scan_of_a_silent_host_draws_nothing_on_either_family() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("sh", true);
    lab.add_ipv6();
    let toward = lab
        .home_other_if
        .clone()
        .expect("home's link to the scanner");
    nft::load(
        &lab.home,
        &format!(
            "table inet gwtest_scan {{\n\
             \x20   counter answers {{}}\n\
             \x20   counter listed {{}}\n\
             \x20   chain post {{\n\
             \x20       type filter hook postrouting priority srcnat + 10; policy accept;\n\
             \x20       oifname != \"{toward}\" return\n\
             \x20       icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, \
             mld-listener-report, mld2-listener-report }} return\n\
             \x20       tcp sport 8443 counter name listed return\n\
             \x20       counter name answers\n\
             \x20   }}\n\
             }}\n"
        ),
    );
    let answers = |lab: &Lab| nft::counter(&lab.home, "gwtest_scan", "answers").packets;

    // Before the edge: an ordinary host answers a scan of its closed ports.
    let baseline = nmap(
        scanner(&lab),
        &["-Pn", "-sS", "-p", "1-1024", HOME_OTHER_IP],
    );
    let open_host = answers(&lab);
    assert!(
        open_host >= 1000,
        "without the guard, home should have reset the scan's SYNs to its 1,024 closed ports; \
         the counter saw {open_host} packets:\n{baseline}"
    );

    let edge = lab.enrol_edge_dual_stack_with(EdgeArgs {
        prefix: &[],
        flags: &["--silent-host", "--host-allow", "tcp/8443"],
    });
    let before = answers(&lab);
    let other = scanner(&lab);
    for host in [HOME_OTHER_IP, HOME_OTHER_IP6] {
        let tcp = nmap(other, &["-Pn", "-sS", "-p-", host]);
        assert!(
            tcp.contains("8443/open/tcp"),
            "nmap should find the listed port 8443 open on {host}:\n{tcp}"
        );
        let tcp_ports = tcp.matches("/tcp/").count();
        assert!(
            !tcp.contains("/closed/") && tcp_ports == 1,
            "every TCP port of {host} but 8443 must be filtered (no reset):\n{tcp}"
        );
        // Stray ACKs (of a connection nobody made) draw resets from an open host; here only
        // from the listed port, whose connections are accepted.
        let ack = nmap(other, &["-Pn", "-sA", "-p-", host]);
        assert!(
            ack.matches("/unfiltered/").count() == 1 && ack.contains("8443/unfiltered/"),
            "{host} answered stray ACKs with resets on ports other than 8443:\n{ack}"
        );
        let udp = nmap(other, &["-Pn", "-sU", "-p-", host]);
        assert!(
            !udp.contains("/closed/") && !udp.contains("/open/"),
            "no UDP port of {host} may answer, with data or port-unreachable:\n{udp}"
        );
        let ping = nmap(other, &["-sn", "-PE", "--disable-arp-ping", host]);
        assert!(
            !ping.contains("Status: Up"),
            "{host} answered an ICMP echo request:\n{ping}"
        );
    }
    let after = answers(&lab);
    let listed = nft::counter(&lab.home, "gwtest_scan", "listed").packets;
    eprintln!(
        "silent host: {} packets toward the scanner over four TCP and two UDP scans of every port \
         and echo requests (before the edge, 1,024 ports drew {open_host}); 8443 answered {listed}",
        after - before
    );
    assert_eq!(
        after,
        before,
        "the silent host sent packets toward the scanner: {}",
        lab.home
            .exec_ok(&["nft", "list", "table", "inet", "gwtest_scan"])
            .stdout
    );
    assert!(
        listed >= 2,
        "the listed port 8443 should have answered each family's SYN (the counter's negative \
         control); it counted {listed}"
    );

    // Friends are not strangers: over each family, a login on 8443, a lease, and the page
    // through the tunnel.
    for (family, name) in [(Family::V4, "alice"), (Family::V6, "bob")] {
        let (wg, _) = lab.tunnel(&edge, name, family);
        drop(wg);
    }
    lab.assert_no_unexpected_warnings(&[]);
}

/// Runs nmap from `ns` with `args` as fast as a scan of a silent host allows (one probe a port,
/// numeric; `-Pn` skips host discovery); returns its greppable report.
fn nmap(ns: &Netns, args: &[&str]) -> String {
    let mut argv = vec![
        "nmap",
        "-n",
        "--max-retries",
        "0",
        "--min-rate",
        "20000",
        "-oG",
        "-",
    ];
    if args.last().is_some_and(|h| h.contains(':')) {
        argv.push("-6");
    }
    argv.extend(args);
    ns.exec_with(&argv, None, SCAN_TIMEOUT)
        .expect_ok("nmap")
        .stdout
}

fn scanner(lab: &Lab) -> &Netns {
    lab.other.as_ref().expect("the scanner's namespace")
}
