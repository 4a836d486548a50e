//! Rotating a device's key (scenario C6). grantwire has no single rotate command: a device gets
//! a new key by taking a new profile (`grantwire profile EDGE`, a fresh keypair made on the
//! device and a new lease), and retires the old key by revoking its lease (`grantwire revoke
//! ID`), which the edge applies at once, as for an admin's revocation. Here: alice's laptop
//! loads the page with key A; takes a profile with key B and switches to it; revokes A's lease.
//! Within 2 s the edge holds only B's lease; a fresh interface with key A then sends
//! initiations for 12 s and draws no handshake response (an nftables counter in home), while B
//! keeps loading the page.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::lab::FIRST_LOAD;
use grantwire_e2e::{require_env, Family, Lab, WgClient};

#[test]
fn a_rotated_key_is_refused_at_once_and_the_new_one_works() {
    rotation(Family::V4);
}

#[test]
fn a_rotated_key_is_refused_at_once_and_the_new_one_works_over_ipv6() {
    rotation(Family::V6);
}

fn rotation(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("rot", false);
    let edge = lab.enrol_edge_for(family);
    let url = lab.plex_url(&edge);
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let laptop = lab.device("alice-laptop");
    lab.login_at(&laptop, &alice, &lab.broker_url_for(family));
    let profile_a = lab.profile(&laptop, "alice-home-a.conf");
    family.assert_profile(&profile_a);
    let lease_a = lab.broker.leases(&lab.home)[0]["id"]
        .as_str()
        .expect("lease A's id")
        .to_owned();
    let wg_a = WgClient::up(&lab.client, &format!("{}a", lab.base), &profile_a);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("key A never loaded the page: {last:?}"));

    // Key B: a new profile, brought up in A's place.
    let profile_b = lab.profile(&laptop, "alice-home-b.conf");
    drop(wg_a);
    let wg_b = WgClient::up(&lab.client, &format!("{}b", lab.base), &profile_b);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("key B never loaded the page: {last:?}"));

    // A retired: its lease revoked by the device itself.
    lab.count_handshake_responses();
    let revoked_at = Instant::now();
    laptop
        .revoke(&lab.client, &lease_a)
        .expect_ok("grantwire revoke A");
    let applied =
        grantwire_e2e::wait_for(Duration::from_secs(2), Duration::from_millis(50), || {
            let m = lab.edge().metrics(&lab.home);
            (m.require("grantwire_edge_leases") == 1.0).then(|| revoked_at.elapsed())
        });
    let applied = applied.expect("the edge still held key A's lease 2 s after the revoke");
    eprintln!("key A's lease left the edge {applied:?} after `grantwire revoke`");

    let wg_a = WgClient::up(&lab.client, &format!("{}e", lab.base), &profile_a);
    std::thread::sleep(Duration::from_secs(12));
    let sent = wg_a.dev.peers().iter().map(|p| p.tx_bytes).sum::<u64>();
    assert!(
        sent > 0,
        "key A's interface sent nothing: this shows nothing"
    );
    assert_eq!(
        lab.handshake_responses(),
        0,
        "the edge answered a handshake with the retired key A"
    );
    assert_eq!(wg_a.dev.latest_handshake(), 0);
    drop(wg_a);
    // B, brought back as the route to the edge's tunnel address, still works.
    for allowed in &wg_b.allowed_ips {
        lab.client.route_dev(allowed, wg_b.ifname());
    }
    lab.wait_page(&lab.client, &url, Duration::from_secs(5))
        .unwrap_or_else(|last| panic!("key B stopped working: {last:?}"));
    let leases = lab.broker.leases(&lab.home);
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_ne!(leases[0]["id"], lease_a.as_str());
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg_b);
}
