//! An edge cut off from its broker fails closed for what it has not heard of (scenario H1).
//! alice's tunnel works; then the edge's connections to the broker are refused (the broker
//! itself keeps serving clients). bob, granted during the cut, gets a lease from the broker, but
//! the edge has never heard of it: his tunnel loads nothing, while alice's keeps working. When
//! the cut ends the edge resyncs and bob's same profile works.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::lab::{FIRST_LOAD, OTHER_IP};
use grantwire_e2e::{require_env, Lab, WgClient};

/// The edge retries the broker at most every 10 s.
const RESYNC: Duration = Duration::from_secs(25);

#[test]
fn a_lease_issued_while_the_edge_is_cut_off_works_only_once_the_edge_hears_of_it() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("prt", true);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let (alice_wg, _) = lab.tunnel_up(&edge, "alice");

    // The cut: in home, the edge's connections to the broker (127.0.0.1:8443) are refused.
    lab.cut_edge_from_broker();
    let cut = grantwire_e2e::wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let metrics = lab.edge().metrics(&lab.home);
        (metrics.require("grantwire_edge_broker_connected") == 0.0).then_some(())
    });
    assert!(cut.is_some(), "the edge never noticed the cut");

    // bob, from the other namespace, granted and leased during the cut.
    let other = lab.other.as_ref().expect("the other namespace");
    let bob = lab.add_user("bob");
    lab.broker.grant(&lab.home, "bob", "home", None);
    let laptop = lab.device("bob-laptop");
    lab.login_from(other, &laptop, &bob, "https://198.51.100.1:8443");
    let profile = lab.profile_from(other, &laptop, "bob-home.conf");
    let leases = lab.broker.leases(&lab.home);
    assert!(
        leases
            .iter()
            .any(|l| l["user"] == "bob" && l["pin"] == format!("{OTHER_IP}/32")),
        "the broker should have issued bob's lease: {leases:?}"
    );
    let bob_wg = WgClient::up(other, &format!("{}b", lab.base), &profile);
    let polls = lab.poll_page(&url, Instant::now(), Duration::from_secs(4));
    let bob_loads = (0..4).any(|_| lab.page_loads(other, &url, Duration::from_millis(500)));
    assert!(
        !bob_loads,
        "bob's lease, issued while the edge was cut off, worked before the edge heard of it"
    );
    assert!(
        polls.iter().all(|p| p.loaded),
        "alice's existing lease must keep working during the cut: {polls:?}"
    );
    assert_eq!(
        lab.edge()
            .metrics(&lab.home)
            .require("grantwire_edge_leases"),
        1.0,
        "the cut-off edge should hold alice's lease alone"
    );

    // The cut ends: the edge resyncs, and bob's same profile works.
    lab.heal_edge_from_broker();
    let back = Instant::now();
    lab.wait_page(other, &url, RESYNC + FIRST_LOAD)
        .unwrap_or_else(|last| panic!("bob's lease never worked after the cut ended: {last:?}"));
    eprintln!("bob's page loaded {:?} after the cut ended", back.elapsed());
    lab.assert_no_unexpected_warnings(&[]);
    drop(bob_wg);
    drop(alice_wg);
}
