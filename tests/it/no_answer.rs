//! Handshakes the edge must not answer, even from a pinned address (scenarios B3 and C1).
//!
//! - A key with no lease (B3): from alice's own address, where her lease is pinned and her
//!   tunnel works, a second wireguard-go interface holding her profile but a fresh private key
//!   sends initiations. They pass the pin check and cost the edge a Diffie-Hellman, which finds
//!   no lease for the key: no handshake response leaves home (an nftables counter of WireGuard
//!   type-2 messages to the client stays at 0 while her real tunnel's handshake counts), and
//!   the edge counts them as for no known peer.
//! - An expired lease (C1): the same profile, brought up on a fresh interface after its lease
//!   ended, draws no handshake response and the edge holds no lease.
//!
//! Both run over each outer family: the counter matches WireGuard responses over IPv4 and
//! IPv6, and over IPv6 the pin is the client's /64.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::wg::genkey;
use grantwire_e2e::{require_env, Family, Lab, WgClient};

const UNKNOWN_PEER: &str = "grantwire_edge_dropped_unknown_peer_total";
/// wireguard-go sends an initiation at once and retries every 5 s: two chances and a margin.
const LISTEN: Duration = Duration::from_secs(12);

/// `profile` with its `PrivateKey` replaced by `private`, written beside it.
fn with_private_key(profile: &std::path::Path, private: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(profile).expect("the profile");
    let swapped: Vec<String> = text
        .lines()
        .map(|line| {
            if line
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("privatekey")
            {
                format!("PrivateKey = {private}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_ne!(
        swapped.join("\n"),
        text.trim_end(),
        "no PrivateKey line in:\n{text}"
    );
    let path = profile.with_file_name("stranger-key.conf");
    std::fs::write(&path, swapped.join("\n") + "\n").expect("write the swapped profile");
    path
}

#[test]
fn a_key_with_no_lease_gets_no_answer_even_from_a_pinned_address() {
    a_key_with_no_lease(Family::V4);
}

#[test]
fn a_key_with_no_lease_gets_no_answer_even_from_a_pinned_address_over_ipv6() {
    a_key_with_no_lease(Family::V6);
}

fn a_key_with_no_lease(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("nak", false);
    let edge = lab.enrol_edge_for(family);
    lab.count_handshake_responses();
    let (wg, profile) = lab.tunnel(&edge, "alice", family);
    let answered = lab.handshake_responses();
    assert!(
        answered >= 1,
        "the counter did not see the edge's answer to alice's own handshake"
    );
    let before = lab.edge().metrics(&lab.home).require(UNKNOWN_PEER);

    let stranger = with_private_key(&profile, &genkey().private);
    let unknown = WgClient::up(&lab.client, &format!("{}u", lab.base), &stranger);
    std::thread::sleep(LISTEN);
    let sent = unknown.dev.peers().iter().map(|p| p.tx_bytes).sum::<u64>();
    let after = lab.edge().metrics(&lab.home).require(UNKNOWN_PEER);
    eprintln!(
        "{family:?}: the unknown key sent {sent} bytes; responses to the client {} (alice's own: \
         {answered}); the edge dropped {} for no known peer",
        lab.handshake_responses(),
        after - before
    );
    assert!(
        sent > 0,
        "the unknown key's interface sent nothing: this shows nothing"
    );
    assert_eq!(
        lab.handshake_responses(),
        answered,
        "the edge answered a handshake from a key with no lease"
    );
    assert_eq!(unknown.dev.latest_handshake(), 0);
    assert!(
        after - before >= 1.0,
        "the edge did not count the unknown key's initiations as for no known peer"
    );
    // Alice's own tunnel is untouched. (The second interface took the route to the edge's
    // tunnel address, as wg-quick would; it goes back to hers.)
    drop(unknown);
    for allowed in &wg.allowed_ips {
        lab.client.route_dev(allowed, wg.ifname());
    }
    lab.wait_page(&lab.client, &lab.plex_url(&edge), Duration::from_secs(5))
        .unwrap_or_else(|last| panic!("alice's page stopped loading: {last:?}"));
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

#[test]
fn an_expired_lease_gets_no_handshake_answer() {
    an_expired_lease(Family::V4);
}

#[test]
fn an_expired_lease_gets_no_handshake_answer_over_ipv6() {
    an_expired_lease(Family::V6);
}

fn an_expired_lease(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    const TTL: Duration = Duration::from_secs(12);
    let mut lab = Lab::new("nax", false);
    let edge = lab.enrol_edge_for(family);
    lab.count_handshake_responses();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", Some("12s"));
    let device = lab.device("alice");
    lab.login_at(&device, &alice, &lab.broker_url_for(family));
    let profile = lab.profile(&device, "alice-home.conf");
    let issued_by = Instant::now();
    let url = lab.plex_url(&edge);
    family.assert_profile(&profile);
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, TTL - Duration::from_secs(4))
        .unwrap_or_else(|last| panic!("the page did not load before the lease expired: {last:?}"));
    drop(wg);

    // Past the lease's end (whole-second expiry and the edge's timer: 2 s of slack).
    std::thread::sleep(
        (issued_by + TTL + Duration::from_secs(2)).saturating_duration_since(Instant::now()),
    );
    let answered = lab.handshake_responses();
    let fresh = WgClient::up(&lab.client, &format!("{}d", lab.base), &profile);
    std::thread::sleep(LISTEN);
    let sent = fresh.dev.peers().iter().map(|p| p.tx_bytes).sum::<u64>();
    assert!(
        sent > 0,
        "the fresh interface sent nothing: this shows nothing"
    );
    assert_eq!(
        lab.handshake_responses(),
        answered,
        "the edge answered a handshake for an expired lease"
    );
    assert_eq!(fresh.dev.latest_handshake(), 0);
    let metrics = lab.edge().metrics(&lab.home);
    assert_eq!(
        metrics.require("grantwire_edge_leases"),
        0.0,
        "{}",
        metrics.text
    );
    lab.assert_no_unexpected_warnings(&[]);
}
