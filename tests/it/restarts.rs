//! Restarts and crashes, with a friend watching (scenario C4, and issue 16's restarts).
//!
//! - The broker restarts while an edge serves: with the broker down alice's tunnel still loads
//!   the page (the edge enforces its last set), a lease revoked before the restart does not
//!   come back, and once the edge is connected again it holds exactly alice's lease and her
//!   page loads.
//! - The edge is killed with SIGKILL while a film plays: Plex's port stays closed from outside
//!   (the guard is the kernel's, and outlives the process), and the edge started again comes
//!   back with the same one lease, nothing more, and serves the same profile.
//! - A restore drill, as the README's "Backup and restore" says: `backup` while serving, stop
//!   the broker, wipe its database, copy the backup in, start it: the same users, grants and
//!   leases, and the edge resyncs and serves the same tunnel.
//! - A lease that expired while the edge was down (and cut off from the broker) is not served
//!   from the edge's cache when it starts again: it never resurrects a grant past its expiry.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::lab::FIRST_LOAD;
use grantwire_e2e::harness::metrics::Metrics;
use grantwire_e2e::{http_get, require_env, Broker, Edge, Lab, WgClient};

const LEASES: &str = "grantwire_edge_leases";
const BROKER_CONNECTED: &str = "grantwire_edge_broker_connected";
/// The edge retries the broker at most every 10 s.
const RECONNECT: Duration = Duration::from_secs(25);

/// Waits until both sides say the edge `home` is connected: the broker (whose view starts empty
/// in a new process) and the edge's `grantwire_edge_broker_connected` (which starts at 0 in a new
/// edge process). Either alone can be stale: right after a broker restart the edge's metric still
/// says 1 until it notices the stream is gone, and right after an edge is killed the broker may
/// still count the dead connection. Returns the edge's metrics.
fn wait_edge_back(lab: &Lab, what: &str) -> Metrics {
    let back = grantwire_e2e::wait_for(RECONNECT, Duration::from_millis(200), || {
        let out = lab
            .broker
            .admin(&lab.home, &["edge", "list", "--json"], None)
            .expect_ok("grantwire-broker edge list");
        let edges = out.json()["edges"].as_array().cloned().unwrap_or_default();
        let at_broker = edges
            .iter()
            .any(|e| e["name"] == "home" && e["connected"] == true);
        let metrics = lab.edge().metrics(&lab.home);
        (at_broker && metrics.require(BROKER_CONNECTED) == 1.0).then_some(metrics)
    });
    back.unwrap_or_else(|| {
        panic!(
            "{what}: the broker and the edge did not both see the edge connected within \
             {RECONNECT:?}:\n{}",
            lab.edge().proc().logs()
        )
    })
}

/// The ids of `lease list --json`.
fn lease_ids(lab: &Lab) -> Vec<String> {
    lab.broker
        .leases(&lab.home)
        .iter()
        .filter_map(|l| l["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_broker_restart_loses_no_lease_and_brings_no_revoked_one_back() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("rbr", false);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    let alice_lease = lease_ids(&lab);
    // Bob's lease, revoked before the restart.
    let bob = lab.add_user("bob");
    lab.broker.grant(&lab.home, "bob", "home", None);
    let laptop = lab.device("bob-laptop");
    lab.login(&laptop, &bob);
    lab.profile(&laptop, "bob-home.conf");
    lab.broker.revoke(&lab.home, "bob", "home");
    assert_eq!(lease_ids(&lab), alice_lease, "only alice's lease is live");

    let data = lab.dir.path().join("broker");
    lab.broker.stop();
    let down = Instant::now();
    assert!(
        lab.page_loads(&lab.client, &url, Duration::from_secs(2)),
        "with the broker down the edge keeps serving its last set"
    );
    lab.broker = Broker::start(&lab.home, &data);
    eprintln!("broker restarted after {:?} down", down.elapsed());
    let metrics = wait_edge_back(&lab, "after the broker restart");
    assert_eq!(
        metrics.require(LEASES),
        1.0,
        "after the restart the edge must hold alice's lease alone:\n{}",
        metrics.text
    );
    assert_eq!(
        lease_ids(&lab),
        alice_lease,
        "the broker lost or revived a lease"
    );
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("alice's tunnel failed after the restart: {last:?}"));
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

#[test]
fn an_edge_killed_mid_film_keeps_plex_closed_and_returns_with_the_same_lease() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("rke", true);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let (wg, profile) = lab.tunnel_up(&edge, "alice");
    let leases_before = lease_ids(&lab);

    // A film playing at 20 Mbit/s when the edge dies.
    let player = lab.dir.path().join("player.py");
    std::fs::write(&player, grantwire_e2e::harness::plex::PLAYER).expect("player script");
    let mut film = lab.client.spawn(
        "player",
        &[
            "python3",
            player.to_str().expect("UTF-8 path"),
            &edge.tunnel_ip,
            "32400",
            "/film?bytes=100000000&seed=3",
            "20000000",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = lab.edge().proc().pid().expect("the edge's pid").to_string();
    lab.home.exec_ok(&["kill", "-KILL", &pid]);
    let edge_exit =
        grantwire_e2e::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            lab.edge.as_mut().and_then(Edge::exited)
        });
    assert!(edge_exit.is_some(), "the edge did not die of SIGKILL");
    film.stop(Duration::from_secs(1));

    // Plex's port stays closed from outside: the guard's table is the kernel's.
    let table = lab
        .home
        .exec(&["nft", "list", "table", "inet", "grantwire"]);
    assert!(
        table.success(),
        "the guard's table went with the edge process:\n{table}"
    );
    let other = lab.other.as_ref().expect("lab with the other namespace");
    let probe = http_get(other, "http://198.51.100.1:32400/", Duration::from_secs(2));
    assert!(
        probe.timed_out(),
        "with the edge dead, Plex's port must still be dropped from outside: {probe:?}"
    );

    // Started again: from its cache, then the broker's set; the same one lease, nothing more.
    lab.edge = None;
    let tun = format!("{}t", lab.base);
    lab.edge = Some(Edge::start(
        &lab.home,
        &lab.broker,
        "spent",
        lab.dir.path(),
        &tun,
    ));
    let metrics = wait_edge_back(&lab, "after the edge restart");
    assert_eq!(metrics.require(LEASES), 1.0, "{}", metrics.text);
    assert_eq!(lease_ids(&lab), leases_before);
    // A fresh client interface handshakes at once (the old one waits out its timers).
    drop(wg);
    let _wg = WgClient::up(&lab.client, &format!("{}d", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the same profile did not load after the restart: {last:?}"));
    lab.assert_no_unexpected_warnings(&[]);
}

/// `user list`, `grant list` and `lease list` as JSON, with what changes by itself (last seen,
/// reported figures) left out: what a restore must bring back.
fn accounts_grants_leases(lab: &Lab) -> (Vec<String>, Vec<String>, Vec<String>) {
    let names = |args: &[&str], field: &str, key: &str| -> Vec<String> {
        let out = lab
            .broker
            .admin(&lab.home, args, None)
            .expect_ok(&format!("grantwire-broker {}", args.join(" ")));
        let mut got: Vec<String> = out.json()[field]
            .as_array()
            .unwrap_or_else(|| panic!("no `{field}` in:\n{out}"))
            .iter()
            .map(|v| {
                key.split(',')
                    .map(|k| v[k].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        got.sort();
        got
    };
    (
        names(
            &["user", "list", "--json"],
            "users",
            "name,disabled,created_at",
        ),
        names(
            &["grant", "list", "--json"],
            "grants",
            "user,edge,expires_at,ports,lease_ttl_secs",
        ),
        names(
            &["lease", "list", "--json"],
            "leases",
            "id,user,pin,public_key,expires_at",
        ),
    )
}

#[test]
fn a_backup_restored_as_the_readme_says_brings_everything_back_and_the_edge_resyncs() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("rrd", false);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    lab.add_user("bob");
    lab.broker.grant(&lab.home, "bob", "home", Some("2h"));
    let before = accounts_grants_leases(&lab);
    assert_eq!(
        (before.0.len(), before.1.len(), before.2.len()),
        (2, 2, 1),
        "{before:?}"
    );

    let backup = lab.dir.path().join("backup.db");
    let backup_arg = backup.to_str().expect("UTF-8 path");
    lab.broker
        .admin(&lab.home, &["backup", backup_arg], None)
        .expect_ok("grantwire-broker backup");
    let data = lab.dir.path().join("broker");
    lab.broker.stop();
    for name in ["broker.db", "broker.db-wal", "broker.db-shm"] {
        match std::fs::remove_file(data.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("wiping {name}: {e}"),
        }
    }
    std::fs::copy(&backup, data.join("broker.db")).expect("copy the backup in");
    lab.broker = Broker::start(&lab.home, &data);

    assert_eq!(
        accounts_grants_leases(&lab),
        before,
        "the restored broker differs from the one backed up"
    );
    let metrics = wait_edge_back(&lab, "after the restore");
    assert_eq!(metrics.require(LEASES), 1.0, "{}", metrics.text);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("alice's tunnel failed after the restore: {last:?}"));
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

#[test]
fn a_lease_that_expired_while_the_edge_was_down_is_not_served_from_its_cache() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    const TTL: Duration = Duration::from_secs(12);
    let mut lab = Lab::new("rex", false);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", Some("12s"));
    let laptop = lab.device("alice-laptop");
    lab.login(&laptop, &alice);
    let profile = lab.profile(&laptop, "alice-home.conf");
    let issued_by = Instant::now();
    let wg = WgClient::up(&lab.client, &format!("{}a", lab.base), &profile);
    lab.wait_page(&lab.client, &url, TTL - Duration::from_secs(4))
        .unwrap_or_else(|last| {
            panic!("alice's page did not load while the lease was new: {last:?}")
        });
    let lease_id = lease_ids(&lab).pop().expect("alice's lease");

    // The edge goes down, and the broker becomes unreachable from it (the broker keeps running
    // for the admin): when the edge comes back, its cache is all it has.
    lab.edge = None;
    lab.cut_edge_from_broker();
    let cache = lab.dir.path().join("edge-state").join("leases.json");
    let cached = std::fs::read_to_string(&cache).expect("the edge's lease cache");
    assert!(
        cached.contains(&lease_id),
        "the cache must hold alice's lease, or this test shows nothing:\n{cached}"
    );
    std::thread::sleep(
        (issued_by + TTL + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );

    let tun = format!("{}t", lab.base);
    lab.edge = Some(Edge::start(
        &lab.home,
        &lab.broker,
        "spent",
        lab.dir.path(),
        &tun,
    ));
    drop(wg);
    let _wg = WgClient::up(&lab.client, &format!("{}d", lab.base), &profile);
    let polls = lab.poll_page(&url, Instant::now(), Duration::from_secs(4));
    assert!(
        polls.iter().all(|p| !p.loaded),
        "a lease that expired while the edge was down was served from its cache: {polls:?}\n{}",
        lab.edge().proc().logs()
    );
    let metrics = lab.edge().metrics(&lab.home);
    assert_eq!(metrics.require(LEASES), 0.0, "{}", metrics.text);
    assert_eq!(metrics.require(BROKER_CONNECTED), 0.0, "the cut must hold");
    let logs = lab.edge().proc().logs();
    assert!(
        logs.contains("enforcing the cached lease set"),
        "the restarted edge must have read its cache (and dropped the expired lease):\n{logs}"
    );
    lab.heal_edge_from_broker();
}
