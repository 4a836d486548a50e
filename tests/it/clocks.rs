//! Expiry by the broker's clock, whatever the edge host's wall clock says (scenario C7). The
//! edge runs under libfaketime (Debian's `faketime`), which moves its wall clock only: its
//! monotonic clock, which it carries the broker's time on, stays true.
//!
//! - Mid-lease, the edge's wall clock steps an hour forward: the lease still works until its
//!   end, and ends then. With a second lease it steps an hour back: the lease ends on time,
//!   not an hour late.
//! - An edge whose wall clock is an hour ahead from the start (a skewed broker/edge pair)
//!   admits a fresh lease and ends it on time, and says in its log how far off its clock is.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grantwire_e2e::harness::grantwire::EdgeArgs;
use grantwire_e2e::harness::lab::{POLL_EVERY, POLL_TIMEOUT};
use grantwire_e2e::{require_env, Lab, WgClient, EDGE_ROOT_WARNING};

const TTL: Duration = Duration::from_secs(12);
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// The edge's warning when its wall clock is off the broker's.
const SKEW_WARNING: &str = "this host's wall clock is off the broker's";

/// The edge's wall-clock offset, as libfaketime reads it (`+0`, `+1h`, `-1h`), re-read on every
/// call; and the `env` prefix that starts the edge under it.
struct FakeWallClock {
    spec: PathBuf,
    prefix: Vec<String>,
}

impl FakeWallClock {
    fn new(dir: &Path, offset: &str) -> FakeWallClock {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: install Debian's faketime package (scripts/install-deps.sh)"
        );
        let spec = dir.join("edge-wall-clock");
        let clock = FakeWallClock {
            prefix: vec![
                "env".into(),
                format!("LD_PRELOAD={LIBFAKETIME}"),
                format!("FAKETIME_TIMESTAMP_FILE={}", spec.display()),
                "FAKETIME_NO_CACHE=1".into(),
                // Only the wall clock moves: the monotonic clock is what the edge relies on.
                "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
            ],
            spec,
        };
        clock.set(offset);
        clock
    }

    fn set(&self, offset: &str) {
        std::fs::write(&self.spec, format!("{offset}\n")).expect("write the faketime spec");
    }

    fn args(&self) -> Vec<&str> {
        self.prefix.iter().map(String::as_str).collect()
    }
}

/// A lab whose edge runs with its wall clock at `offset` from the true time; the page's URL.
fn lab_with_edge_clock(tag: &str, offset: &str) -> (Lab, FakeWallClock, String) {
    let mut lab = Lab::new(tag, false);
    let clock = FakeWallClock::new(lab.dir.path(), offset);
    let prefix = clock.args();
    let edge = lab.enrol_edge_with(EdgeArgs {
        prefix: &prefix,
        ..EdgeArgs::default()
    });
    let url = lab.plex_url(&edge);
    (lab, clock, url)
}

/// The edge process has libfaketime mapped: without it the steps below would move nothing and
/// the test would show nothing.
fn assert_faketime_loaded(lab: &Lab) {
    let pid = lab.edge().proc().pid().expect("the edge's pid");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("the edge's maps");
    assert!(
        maps.contains("libfaketime"),
        "the edge runs without libfaketime: its wall clock cannot be stepped"
    );
}

/// Issues a lease of [`TTL`] from the client, brings a tunnel up with it and waits until the
/// page loads. Returns the interface and when the lease surely started (issue began) and ended
/// (issue returned).
fn lease_and_load(lab: &Lab, url: &str, name: &str) -> (WgClient, Instant, Instant) {
    let alice = lab.add_user(name);
    lab.broker.grant(&lab.home, name, "home", Some("12s"));
    let device = lab.device(name);
    lab.login(&device, &alice);
    let issued_after = Instant::now();
    let profile = lab.profile(&device, &format!("{name}-home.conf"));
    let issued_by = Instant::now();
    let wg = WgClient::up(
        &lab.client,
        &format!("{}{}", lab.base, &name[..1]),
        &profile,
    );
    let budget =
        (issued_after + TTL - Duration::from_secs(2)).saturating_duration_since(Instant::now());
    lab.wait_page(&lab.client, url, budget)
        .unwrap_or_else(|last| {
            panic!("{name}'s page did not load while the lease was new: {last:?}")
        });
    (wg, issued_after, issued_by)
}

/// Asserts the page loads now (a few tries) and that there is time left before the lease's
/// earliest end to have checked that honestly.
fn assert_still_loads(lab: &Lab, url: &str, issued_after: Instant, what: &str) {
    let loads = (0..3).any(|_| lab.page_loads(&lab.client, url, POLL_TIMEOUT * 2));
    assert!(
        Instant::now() + Duration::from_secs(1) < issued_after + TTL - Duration::from_secs(1),
        "{what}: the check ran too close to the lease's end to mean anything; this fails rather \
         than skips"
    );
    assert!(
        loads,
        "{what}: the lease stopped working long before its end"
    );
}

/// Waits until 2 s past the lease's latest possible end, then asserts 2 s of polls all fail.
fn assert_ends_on_time(lab: &Lab, url: &str, issued_by: Instant, what: &str) {
    let must_stop_at = issued_by + TTL + Duration::from_secs(2);
    std::thread::sleep(must_stop_at.saturating_duration_since(Instant::now()));
    let polls = lab.poll_page(url, must_stop_at, Duration::from_secs(2));
    assert!(
        polls.iter().all(|p| !p.loaded),
        "{what}: the page still loads after the lease's {TTL:?} ended; polls every {POLL_EVERY:?}: \
         {polls:?}"
    );
}

#[test]
fn a_step_of_the_edges_wall_clock_neither_ends_a_lease_early_nor_keeps_it_late() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let (lab, clock, url) = lab_with_edge_clock("ck", "+0");
    assert_faketime_loaded(&lab);

    let (wg, issued_after, issued_by) = lease_and_load(&lab, &url, "alice");
    clock.set("+1h");
    std::thread::sleep(Duration::from_secs(1));
    assert_still_loads(&lab, &url, issued_after, "an hour forward");
    assert_ends_on_time(&lab, &url, issued_by, "an hour forward");
    drop(wg);

    clock.set("+0");
    let (wg, issued_after, issued_by) = lease_and_load(&lab, &url, "bob");
    clock.set("-1h");
    std::thread::sleep(Duration::from_secs(1));
    assert_still_loads(&lab, &url, issued_after, "an hour back");
    assert_ends_on_time(&lab, &url, issued_by, "an hour back");
    drop(wg);
    // The edge started with its clock right: nothing to warn about.
    lab.assert_no_unexpected_warnings(&[]);
}

#[test]
fn an_edge_an_hour_ahead_of_its_broker_admits_and_ends_leases_by_the_brokers_clock() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let (lab, _clock, url) = lab_with_edge_clock("sk", "+1h");
    assert_faketime_loaded(&lab);
    let (wg, issued_after, issued_by) = lease_and_load(&lab, &url, "alice");
    assert_still_loads(&lab, &url, issued_after, "an edge an hour ahead");
    assert_ends_on_time(&lab, &url, issued_by, "an edge an hour ahead");
    drop(wg);
    let log = lab.edge().proc().stderr();
    assert!(
        log.contains(SKEW_WARNING) && log.contains("skew_secs=+3600"),
        "the edge should say once that its wall clock is an hour off the broker's:\n{log}"
    );
    lab.assert_no_unexpected_warnings(&[SKEW_WARNING, EDGE_ROOT_WARNING]);
}
