//! End-to-end: every way an admin cuts a user or an edge off stops a running tunnel within a
//! second, timed like the grant revocation in `e2e.rs` (the real broker, edge, wireguard-go
//! client and stand-in Plex, in network namespaces):
//! - (C1) `user disable`, `user reset-password`, `user reset-totp` and `user remove`, one user
//!   each (each TOTP step logs in once per user, so one user per cut keeps the test from
//!   waiting out 30-second steps);
//! - (C2) `edge remove`: the running edge is sent an empty set, then finds its credential
//!   refused, says so once at ERROR, empties its lease cache and keeps the guard in place, and
//!   a restart brings nothing back;
//! - (C3) a grant made with `--until` stops its tunnel at that moment, by the edge's clock.

use std::path::Path;
use std::time::{Duration, Instant};

use grantwire_e2e::harness::lab::POLL_TIMEOUT;
use grantwire_e2e::{require_env, Edge, Lab, PagePoll, WgClient};

/// How long a first page load may take: handshake plus one TCP exchange, with room for a
/// loaded CI machine.
const FIRST_LOAD: Duration = Duration::from_secs(10);
/// The promise: the page stops loading within this long after the admin's command returns.
const CUT_WITHIN: Duration = Duration::from_secs(1);

/// A user, the admin command that cuts them off, and what it reads on stdin.
type Cut = (&'static str, &'static [&'static str], Option<&'static [u8]>);

const EDGE_REFUSED: &str = "the broker refused this edge's credential";

#[test]
fn each_account_cut_stops_the_users_tunnel_within_one_second() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("cu", false);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let cuts: [Cut; 4] = [
        ("dora", &["user", "disable", "dora", "--json"], None),
        (
            "pete",
            &[
                "user",
                "reset-password",
                "pete",
                "--password-stdin",
                "--json",
            ],
            Some(b"a-new-and-long-enough-password\n"),
        ),
        ("tess", &["user", "reset-totp", "tess", "--json"], None),
        ("remy", &["user", "remove", "remy", "--json"], None),
    ];
    let mut report = Vec::new();
    for (i, (user, command, stdin)) in cuts.iter().enumerate() {
        let info = lab.add_user(user);
        lab.broker.grant(&lab.home, user, "home", None);
        let device = lab.device(user);
        lab.login(&device, &info);
        let profile = lab.profile(&device, &format!("{user}-home.conf"));
        // One interface at a time: each routes the edge's tunnel address.
        let wg = WgClient::up(&lab.client, &format!("{}c{i}", lab.base), &profile);
        lab.wait_page(&lab.client, &url, FIRST_LOAD)
            .unwrap_or_else(|last| panic!("(C1) {user}'s page never loaded: {last:?}"));

        let out = lab.broker.admin(&lab.home, command, *stdin);
        let cut = Instant::now();
        let out = out.expect_ok(&format!("grantwire-broker {}", command.join(" ")));
        let polls = lab.poll_page(&url, cut, Duration::from_secs(3));
        let first_failure = assert_stopped(&polls, &format!("`{}`", command.join(" ")), &lab);
        report.push(format!("{} {first_failure:?}", command[1]));

        let v = out.json();
        if command[1] != "reset-totp" {
            assert_eq!(v["revoked_leases"], 1, "(C1) {}: {}", command[1], out);
        }
        assert!(
            lab.broker.leases(&lab.home).is_empty(),
            "(C1) after {} no lease may stay live",
            command[1]
        );
        let audit = lab.broker.audit(&lab.home);
        let revoked = audit.iter().any(|row| {
            row["kind"] == "lease_revoked"
                && row["actor"] == "admin"
                && row["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("user={user} reason=")))
        });
        assert!(
            revoked,
            "(C1) {}: the lease's end is audited: {audit:?}",
            command[1]
        );
        // The session ended with the lease: asking again is refused, not a new lease.
        let again = device.profile(&lab.client, "home", &lab.dir.path().join("again.conf"));
        assert_eq!(
            again.code,
            Some(grantwire_e2e::EXIT_REFUSED),
            "(C1) after {} the user's session must be gone:\n{again}",
            command[1]
        );
        drop(wg);
    }
    eprintln!("(C1) first failed poll after the command returned: {report:?}");
    lab.assert_no_unexpected_warnings(&[]);
}

#[test]
fn removing_an_edge_empties_the_running_edge_and_its_cache() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("er", false);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let device = lab.device("alice");
    lab.login(&device, &alice);
    let profile = lab.profile(&device, "alice-home.conf");
    let _wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("(C2) the page never loaded: {last:?}"));
    let cache = lab.dir.path().join("edge-state").join("leases.json");
    assert_eq!(cached_leases(&cache), 1, "(C2) the edge caches its lease");

    lab.broker
        .admin(&lab.home, &["edge", "remove", "home"], None)
        .expect_ok("grantwire-broker edge remove home");
    let removed = Instant::now();
    let polls = lab.poll_page(&url, removed, Duration::from_secs(3));
    let first_failure = assert_stopped(&polls, "`edge remove`", &lab);
    eprintln!("(C2) first failed poll {first_failure:?} after `edge remove` returned");

    // The refusal of its credential reaches the edge within its reconnect backoff.
    let said = grantwire_e2e::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        lab.edge()
            .proc()
            .stderr()
            .contains(EDGE_REFUSED)
            .then_some(())
    });
    let logs = lab.edge().proc().stderr();
    assert!(
        said.is_some(),
        "(C2) the edge must say its credential was refused:\n{logs}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let logs = lab.edge().proc().stderr();
    assert_eq!(
        logs.matches(EDGE_REFUSED).count(),
        1,
        "(C2) the refusal is said once, not at every retry:\n{logs}"
    );
    assert_eq!(cached_leases(&cache), 0, "(C2) the lease cache is emptied");
    let pins = lab
        .home
        .exec_ok(&["nft", "list", "set", "inet", "grantwire", "pins4"]);
    assert!(
        !pins.stdout.contains("192.0.2.2"),
        "(C2) the guard's pin set is emptied:\n{}",
        pins.stdout
    );
    // Fails closed: the guard stays, so Plex's ports are still shut outside the tunnel.
    lab.home
        .exec_ok(&["nft", "list", "table", "inet", "grantwire"]);

    // A restart brings nothing back.
    lab.edge = None;
    let tun = format!("{}t", lab.base);
    lab.edge = Some(Edge::start(
        &lab.home,
        &lab.broker,
        "spent",
        lab.dir.path(),
        &tun,
    ));
    let _wg2 = WgClient::up(&lab.client, &format!("{}d", lab.base), &profile);
    assert!(
        !lab.page_loads(&lab.client, &url, Duration::from_secs(3)),
        "(C2) a restarted edge must not serve the removed edge's leases"
    );
    lab.assert_no_unexpected_warnings(&[EDGE_REFUSED]);
}

#[test]
fn a_grant_that_ends_stops_its_tunnel_at_its_end() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("ge", false);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let alice = lab.add_user("alice");
    // The lease would last 8 h; the grant ends in 8 s, and the lease with it.
    let granted = lab
        .broker
        .admin(
            &lab.home,
            &["grant", "add", "alice", "home", "--until", "8s", "--json"],
            None,
        )
        .expect_ok("grantwire-broker grant add --until 8s");
    let ends_at = granted.json()["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("(C3) grant add --json names its end:\n{granted}"));
    let device = lab.device("alice");
    lab.login(&device, &alice);
    let profile = lab.profile(&device, "alice-home.conf");
    let _wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("(C3) the page never loaded: {last:?}"));
    let lease = &lab.broker.leases(&lab.home)[0];
    assert_eq!(
        lease["expires_at"].as_u64(),
        Some(ends_at),
        "(C3) the lease ends with its grant"
    );

    // Measured from the grant's end by the wall clock the edge shares here.
    let now = grantwire_e2e::unix_now();
    let until_end = Duration::from_secs(ends_at.saturating_sub(now));
    let end = Instant::now() + until_end;
    let polls = lab.poll_page(&url, end, until_end + Duration::from_secs(3));
    let loaded_before = polls.iter().any(|p| p.loaded);
    assert!(
        loaded_before,
        "(C3) the page must load until the grant ends: {polls:?}"
    );
    let late: Vec<&PagePoll> = polls
        .iter()
        .filter(|p| p.loaded && p.at > Duration::ZERO)
        .collect();
    // `at` is measured from `end`, a whole second that began up to 1 s before `ends_at`'s
    // second ended: allow that second plus the promise.
    assert!(
        late.iter()
            .all(|p| p.at < CUT_WITHIN + Duration::from_secs(1)),
        "(C3) the page must stop at the grant's end; polls after it: {late:?}"
    );
    assert!(
        !polls.last().is_some_and(|p| p.loaded),
        "(C3) the page must stay stopped: {polls:?}"
    );
    lab.assert_no_unexpected_warnings(&[]);
}

/// Asserts the page stopped loading within [`CUT_WITHIN`] of the cut and stayed stopped;
/// returns when the first failed poll started.
#[track_caller]
fn assert_stopped(polls: &[PagePoll], what: &str, lab: &Lab) -> Duration {
    let first_failure = polls.iter().find(|p| !p.loaded).map(|p| p.at);
    let late: Vec<&PagePoll> = polls
        .iter()
        .filter(|p| p.loaded && p.at >= CUT_WITHIN)
        .collect();
    assert!(
        first_failure.is_some() && late.is_empty(),
        "after {what} the page must stop loading within {CUT_WITHIN:?} and stay stopped \
         (polls of {POLL_TIMEOUT:?}, time since the command returned, loaded?): {polls:?}\n\
         leases: {:?}",
        lab.broker.leases(&lab.home)
    );
    first_failure.unwrap_or_default()
}

/// How many leases the edge's cache file holds.
fn cached_leases(cache: &Path) -> usize {
    let text = std::fs::read_to_string(cache)
        .unwrap_or_else(|e| panic!("no lease cache at {}: {e}", cache.display()));
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("lease cache {} is not JSON: {e}", cache.display()));
    v["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("lease cache without leases: {text}"))
        .len()
}
