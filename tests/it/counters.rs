//! Exact counters (scenario A4). The edge reports each lease's traffic to the broker (every
//! second in the lab), and `lease list --json` shows it: bytes received from the client and sent
//! to it (the IP packets inside the tunnel, as boringtun counts them) and the time of the last
//! handshake. After alice loads the page ten times and the tunnel goes quiet, those figures must
//! equal, to the byte, what nftables counted on the edge's TUN device in the Plex host: the
//! packets that came out of the tunnel from her address, and the ones that went into it to her
//! address. The handshake time must be the one her WireGuard client shows, within a second.

use std::time::Duration;

use grantwire_e2e::harness::lab::FIRST_LOAD;
use grantwire_e2e::harness::nft;
use grantwire_e2e::{http_get, require_env, Lab, WgClient};

const TABLE: &str = "gwtest_counters";
const PAGES: usize = 10;

#[test]
fn the_reported_bytes_equal_what_crossed_the_tun_and_the_handshake_time_is_the_clients() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("cnt", false);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let laptop = lab.device("alice-laptop");
    lab.login(&laptop, &alice);
    let profile = lab.profile(&laptop, "alice-home.conf");
    let lease = &lab.broker.leases(&lab.home)[0];
    let alice_ip = lease["tunnel_address"]
        .as_str()
        .expect("the lease's tunnel address")
        .to_owned();
    let tun = format!("{}t", lab.base);
    // Counting starts before her first packet.
    nft::load(
        &lab.home,
        &format!(
            "table inet {TABLE} {{\n\
             \x20   counter from_alice {{}}\n\
             \x20   counter to_alice {{}}\n\
             \x20   chain pre {{\n\
             \x20       type filter hook prerouting priority raw - 10; policy accept;\n\
             \x20       iifname \"{tun}\" ip saddr {alice_ip} counter name from_alice\n\
             \x20   }}\n\
             \x20   chain post {{\n\
             \x20       type filter hook postrouting priority srcnat + 10; policy accept;\n\
             \x20       oifname \"{tun}\" ip daddr {alice_ip} counter name to_alice\n\
             \x20   }}\n\
             }}\n"
        ),
    );
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the page did not load: {last:?}"));
    for _ in 1..PAGES {
        let page = http_get(&lab.client, &url, Duration::from_secs(3));
        assert!(page.has(lab.plex.marker()), "{page:?}");
    }
    // Quiet: TCP's last packets settled, then two reports.
    std::thread::sleep(Duration::from_secs(3));
    // Both sides read afresh each time, so a late packet between the two reads only delays
    // the match.
    let reported =
        grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
            let from_alice = nft::counter(&lab.home, TABLE, "from_alice");
            let to_alice = nft::counter(&lab.home, TABLE, "to_alice");
            let leases = lab.broker.leases(&lab.home);
            let usage = leases.first()?.get("usage")?.clone();
            (usage["rx_bytes"].as_u64() == Some(from_alice.bytes)
                && usage["tx_bytes"].as_u64() == Some(to_alice.bytes))
            .then_some((usage, from_alice, to_alice))
        });
    let (usage, from_alice, to_alice) = reported.unwrap_or_else(|| {
        panic!(
            "the reported bytes never equalled the TUN's: reported {:?}; from alice {:?}, to \
             alice {:?}",
            lab.broker
                .leases(&lab.home)
                .first()
                .map(|l| l["usage"].clone()),
            nft::counter(&lab.home, TABLE, "from_alice"),
            nft::counter(&lab.home, TABLE, "to_alice")
        )
    });
    let client_handshake = wg.dev.latest_handshake();
    let reported_handshake = usage["last_handshake_at"]
        .as_i64()
        .expect("a reported handshake time");
    eprintln!(
        "{PAGES} pages: reported rx {} tx {} bytes = TUN {} in {} packets, {} out in {} packets; \
         handshake {reported_handshake} (client says {client_handshake})",
        usage["rx_bytes"],
        usage["tx_bytes"],
        from_alice.bytes,
        from_alice.packets,
        to_alice.bytes,
        to_alice.packets
    );
    assert!(
        from_alice.packets >= PAGES as u64 * 3,
        "too few packets counted: {from_alice:?}"
    );
    assert!(
        (reported_handshake - client_handshake as i64).abs() <= 1,
        "the reported handshake time {reported_handshake} is not the client's {client_handshake}"
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
