//! Inside the tunnel, only Plex (scenarios B10 and B11): a friend's tunnel reaches TCP 32400 on
//! the edge's tunnel address and nothing else, whatever the client puts into it.
//!
//! alice's client widens its side of the tunnel to everything (`AllowedIPs = 0.0.0.0/0` on the
//! edge's peer, as a curious or compromised device could) and routes probes into it: TCP to the
//! edge's tunnel address on Plex's other ports (32469, 8324), SSH, the metrics port, the broker's
//! port, UDP to
//! Plex's discovery ports (1900, 5353, 32410 to 32414) and to 32400; TCP and UDP to another
//! tunnel address, to home's address on a second link (198.51.100.1) and to an address beyond
//! (203.0.113.77); and Plex's own port from a second address on her interface (10.77.0.99, an
//! inner source that is not her lease's). Every probe times out; an nftables counter on the
//! edge's TUN device in the Plex host sees exactly the packets of her plain page loads (TCP
//! from her tunnel address to 10.77.0.1:32400) and nothing else; the edge counts the probes as
//! dropped by its inner filter. The guard accepts everything on the TUN device, so this is the
//! edge's userspace filter alone, through a real WireGuard client.
//!
//! And what Plex sees of her (scenario I2): the stand-in's `/whoami`, asked through the tunnel,
//! reports her lease's tunnel address as the peer (not 127.0.0.1, which Plex trusts as local,
//! and not the edge's own address), and exactly the headers curl sent: the edge routes IP and
//! adds no forwarding header.

use std::time::Duration;

use grantwire_e2e::harness::nft;
use grantwire_e2e::{http_get, require_env, Lab};

const TABLE: &str = "gwtest_lateral";
const INNER_FILTER: &str = "grantwire_edge_dropped_inner_filter_total";
/// An inner source that is not alice's lease's tunnel address.
const FORGED_INNER: &str = "10.77.0.99";

#[test]
fn a_tunnel_reaches_plex_and_nothing_else_whatever_the_client_sends_into_it() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("lat", true);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    let alice_ip = wg.addresses[0]
        .split('/')
        .next()
        .expect("alice's tunnel address")
        .to_owned();
    let tun = format!("{}t", lab.base);
    nft::load(
        &lab.home,
        &format!(
            "table inet {TABLE} {{\n\
             \x20   counter plex {{}}\n\
             \x20   counter other {{}}\n\
             \x20   chain pre {{\n\
             \x20       type filter hook prerouting priority raw - 10; policy accept;\n\
             \x20       iifname \"{tun}\" ip saddr {alice_ip} ip daddr {plex} tcp dport 32400 \
             counter name plex accept\n\
             \x20       iifname \"{tun}\" counter name other\n\
             \x20   }}\n\
             }}\n",
            plex = edge.tunnel_ip,
        ),
    );

    // Her side of the tunnel opened to everything, and the probes' destinations routed into it.
    let ifname = wg.ifname().to_owned();
    let peers = lab.client.exec_ok(&["wg", "show", &ifname, "peers"]);
    lab.client.exec_ok(&[
        "wg",
        "set",
        &ifname,
        "peer",
        peers.stdout.trim(),
        "allowed-ips",
        "0.0.0.0/0",
    ]);
    for dest in ["10.77.0.0/24", "198.51.100.1/32", "203.0.113.77/32"] {
        lab.client.route_dev(dest, &ifname);
    }
    lab.client.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{FORGED_INNER}/32"),
        "dev",
        &ifname,
    ]);

    let before = lab.edge().metrics(&lab.home).require(INNER_FILTER);
    let plex = edge.tunnel_ip.as_str();
    let mut tcp: Vec<(&str, u16)> = [32469, 8324, 22, 9586, 8443, 80]
        .iter()
        .map(|port| (plex, *port))
        .collect();
    tcp.extend([
        ("10.77.0.3", 32400),
        ("198.51.100.1", 32400),
        ("198.51.100.1", 22),
        ("203.0.113.77", 32400),
    ]);
    let mut udp: Vec<(&str, u16)> = [1900, 5353, 32410, 32411, 32412, 32413, 32414, 32400]
        .iter()
        .map(|port| (plex, *port))
        .collect();
    udp.extend([("10.77.0.3", 32400), ("203.0.113.77", 5353)]);
    let script = format!(
        "import socket\n\
         reached = []\n\
         for host, port in {tcp:?}:\n\
         \x20   s = socket.socket(); s.settimeout(1.5)\n\
         \x20   try:\n\
         \x20       s.connect((host, port)); reached.append(('tcp', host, port))\n\
         \x20   except socket.timeout:\n\
         \x20       pass\n\
         \x20   except OSError as e:\n\
         \x20       reached.append(('tcp', host, port, str(e)))\n\
         \x20   s.close()\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for host, port in {udp:?}:\n\
         \x20   u.sendto(b'probe', (host, port))\n\
         print(reached)\n"
    );
    let probes = lab
        .client
        .exec_with(&["python3", "-c", &script], None, Duration::from_secs(60));
    assert!(probes.success(), "the probes failed to run:\n{probes}");
    assert_eq!(
        probes.stdout.trim(),
        "[]",
        "a probe inside the tunnel was answered (connected or refused) instead of timing out"
    );
    // Plex's own port, from an inner address that is not her lease's.
    let forged = lab.client.exec_with(
        &[
            "curl",
            "-sS",
            "--max-time",
            "2",
            "--interface",
            FORGED_INNER,
            &url,
        ],
        None,
        Duration::from_secs(10),
    );
    assert_eq!(
        forged.code,
        Some(28),
        "Plex answered a request from {FORGED_INNER}, not alice's tunnel address:\n{forged}"
    );
    // What Plex sees of her: her own tunnel address, and only the headers she sent.
    let seen = http_get(
        &lab.client,
        &format!("http://{plex}:32400/whoami"),
        Duration::from_secs(3),
    );
    assert!(
        seen.ok(),
        "/whoami did not answer through the tunnel: {seen:?}"
    );
    let seen: serde_json::Value = serde_json::from_str(&seen.body).expect("/whoami's JSON");
    assert_eq!(
        seen["peer"], alice_ip,
        "Plex must see alice's tunnel address, not a local or proxy address: {seen}"
    );
    let mut headers: Vec<String> = seen["headers"]
        .as_object()
        .expect("the headers Plex saw")
        .keys()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    headers.sort();
    assert_eq!(
        headers,
        ["accept", "host", "user-agent"],
        "Plex saw headers curl did not send: {seen}"
    );

    // The plain page still loads: the probes cut nothing, and the counter sees Plex traffic.
    let page = http_get(&lab.client, &url, Duration::from_secs(3));
    assert!(
        page.has(lab.plex.marker()),
        "the page no longer loads: {page:?}"
    );

    let plex_packets = nft::counter(&lab.home, TABLE, "plex").packets;
    let other = nft::counter(&lab.home, TABLE, "other");
    let dropped = lab.edge().metrics(&lab.home).require(INNER_FILTER) - before;
    eprintln!(
        "{} TCP and {} UDP probes and a forged inner source: {} packets of them left the TUN; \
         {plex_packets} Plex packets did; the edge's inner filter dropped {dropped}",
        tcp.len(),
        udp.len(),
        other.packets
    );
    assert!(
        plex_packets > 0,
        "the counter never saw alice's Plex traffic"
    );
    assert_eq!(
        other.packets, 0,
        "packets other than alice's TCP to Plex's port came out of the edge's TUN"
    );
    let least = (tcp.len() + udp.len() + 1) as f64;
    assert!(
        dropped >= least,
        "the edge's inner filter dropped {dropped}, fewer than the {least} probes"
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
