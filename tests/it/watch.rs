//! `grantwire status` and `grantwire watch` through a real address change: the laptop's tunnel
//! is up (wireguard-go) and the page loads; the laptop moves from 192.0.2.2 to 192.0.2.3;
//! `status` exits 3 naming the old pin and the new address; `watch` renews the lease from the
//! new address by itself, and the page loads again through the same running tunnel, which was
//! never touched; a second move while watch runs is followed the same way. Topology in
//! `harness/lab.rs`.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::lab::CLIENT_IP;
use grantwire_e2e::{require_env, Lab, WgClient, EXIT_REFUSED};

const MOVED_IP: &str = "192.0.2.3";
const MOVED_AGAIN_IP: &str = "192.0.2.4";
/// A first page load: handshake plus one TCP exchange, with room for a loaded CI machine.
const FIRST_LOAD: Duration = Duration::from_secs(10);
/// After the move: a check (every second), the renew, the edge learning the new pin, and
/// wireguard-go's next handshake attempt (it retries every 5 s), with room to spare.
const AFTER_MOVE: Duration = Duration::from_secs(25);

#[test]
fn watch_keeps_a_moving_laptop_working_and_status_names_the_moved_pin() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("wa", false);
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let laptop = lab.device("alice-laptop");
    lab.login(&laptop, &alice);
    let profile = lab.profile(&laptop, "alice-home.conf");
    let url = lab.plex_url(&edge);
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the page never loaded before the move: {last:?}"));

    let old_pin = format!("{CLIENT_IP}/32");
    let ok = laptop
        .status(&lab.client, "home", true)
        .expect_ok("grantwire status home before the move");
    let v = ok.json();
    assert_eq!(v["state"], "ok", "{ok}");
    assert_eq!(v["pin"], old_pin.as_str(), "{ok}");
    assert_eq!(v["source_ip"], CLIENT_IP, "{ok}");
    let lease_id = v["lease_id"].as_str().expect("lease_id").to_owned();

    // The laptop moves: same keys, session and running tunnel, new source address.
    lab.move_client(MOVED_IP, wg.ifname());
    assert!(
        !lab.page_loads(&lab.client, &url, Duration::from_secs(1)),
        "the page loaded from {MOVED_IP} before the pin moved"
    );
    let moved = laptop
        .status(&lab.client, "home", false)
        .expect_code(EXIT_REFUSED, "grantwire status home after the move");
    let says = format!(
        "your lease for home is pinned to {old_pin} but the broker now sees you at {MOVED_IP}: \
         run `grantwire renew home` (or keep `grantwire watch home` running)"
    );
    assert!(moved.stderr.contains(&says), "{moved}");
    let moved = laptop
        .status(&lab.client, "home", true)
        .expect_code(EXIT_REFUSED, "grantwire status home --json after the move");
    let v = moved.json();
    assert_eq!(v["state"], "pin_moved", "{moved}");
    assert_eq!(v["pinned_here"], false, "{moved}");
    assert_eq!(v["source_ip"], MOVED_IP, "{moved}");

    // No manual renew: watch notices the new address and moves the pin.
    let mut watch = laptop.watch(&lab.client, "home", "1s");
    let started = Instant::now();
    let took = lab
        .wait_page(&lab.client, &url, AFTER_MOVE)
        .unwrap_or_else(|last| {
            panic!(
                "the page did not load again within {AFTER_MOVE:?} of starting watch: {last:?}\n{}",
                watch.logs()
            )
        });
    eprintln!("page loaded from {MOVED_IP} {took:?} after watch started");
    assert!(started.elapsed() <= AFTER_MOVE + Duration::from_secs(2));
    let leases = lab.broker.leases(&lab.home);
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(
        leases[0]["id"],
        lease_id.as_str(),
        "the same lease moved: {leases:?}"
    );
    assert_eq!(leases[0]["pin"], format!("{MOVED_IP}/32"), "{leases:?}");
    laptop
        .status(&lab.client, "home", false)
        .expect_ok("grantwire status home once watch renewed");
    let renewed = lab
        .broker
        .audit(&lab.home)
        .into_iter()
        .find(|e| e["kind"] == "lease_renewed")
        .unwrap_or_else(|| panic!("no lease_renewed audit row\n{}", watch.logs()));
    assert_eq!(renewed["source_ip"], MOVED_IP, "{renewed}");

    let log = watch.stderr();
    assert!(
        log.contains(&format!("pin moved to {MOVED_IP}/32 (was {old_pin})")),
        "{}",
        watch.logs()
    );
    let conf = std::fs::read_to_string(&profile).expect("profile");
    let key = conf
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .expect("PrivateKey line");
    assert!(!log.contains(key), "watch printed the private key");
    assert!(
        conf.contains(&format!("Works only from {MOVED_IP}/32")),
        "watch rewrote the profile it was made with:\n{conf}"
    );

    // While watch runs, the laptop moves again: the running watch follows by itself.
    lab.move_client_from(MOVED_IP, MOVED_AGAIN_IP, wg.ifname());
    let took = lab
        .wait_page(&lab.client, &url, AFTER_MOVE)
        .unwrap_or_else(|last| {
            panic!(
                "the page did not load again within {AFTER_MOVE:?} of the second move: \
                 {last:?}\n{}",
                watch.logs()
            )
        });
    eprintln!("page loaded from {MOVED_AGAIN_IP} {took:?} after the second move");
    let leases = lab.broker.leases(&lab.home);
    assert_eq!(
        leases[0]["pin"],
        format!("{MOVED_AGAIN_IP}/32"),
        "{leases:?}"
    );
    assert!(
        watch.stderr().contains(&format!(
            "pin moved to {MOVED_AGAIN_IP}/32 (was {MOVED_IP}/32)"
        )),
        "{}",
        watch.logs()
    );
    watch.assert_running("the watch to follow the second move");

    watch.stop(Duration::from_secs(5));
    let status = watch.exit_status().expect("watch stopped");
    assert_eq!(status.code(), Some(0), "{}", watch.logs());
    assert!(
        watch.stderr().contains("stopped (SIGTERM)"),
        "{}",
        watch.logs()
    );
    lab.assert_no_unexpected_warnings(&[]);
}
