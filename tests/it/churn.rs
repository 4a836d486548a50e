//! Churn under traffic (scenario C5): while alice watches a film through her tunnel at
//! 20 Mbit/s, another user adds 200 leases on the same running edge through the broker's HTTPS
//! API, waits until the edge holds them all, revokes them, waits until the edge holds only
//! alice's again, five times over: 1,000 leases added to and removed from a running edge.
//!
//! - alice's film plays through it all, whole (the sender's SHA-256), never waiting 3 s for
//!   data, and her lease is untouched: peers coming and going beside hers neither stall nor
//!   corrupt her session. (The churned leases carry no traffic themselves; that keys and
//!   indices are never crossed between peers is shown in edge-core's unit tests.)
//! - afterwards the edge's and the broker's open file descriptors (but the broker's database
//!   files: its pool opens readers on demand, up to its size) are what they were before, their
//!   threads within two of it (tokio's blocking pool), the edge's tokio tasks
//!   (`grantwire_edge_tasks`, its main runtime's) no more than they were, and the edge's resident memory has not
//!   grown by more than 4 KiB a lease
//!   (printed each run; `scripts/bench/edge-scale.sh` measures memory per lease and over
//!   cycles). "Before" is a steady state: after a first film and a first round of churn, and
//!   12 s idle, so lazily opened things (the broker's pooled database readers) and idle worker
//!   threads are not mistaken for leaks. The broker's resident memory is printed, not bounded:
//!   it grows with SQLite's page caches.
//!
//! The broker runs with its per-address lease budget raised (`GRANTWIRE_LEASE_BURST` and
//! `GRANTWIRE_LEASE_PER_SEC`), and the churning user's grant holds up to 256 leases: the edge's
//! /24 has room for 253 clients, so churn stays inside the lab's 10.77.0.0/24.

use std::time::{Duration, Instant};

use grantwire_e2e::harness::plex::play;
use grantwire_e2e::harness::proc::Usage;
use grantwire_e2e::{require_env, Broker, Lab};

const CHURN_PY: &str = include_str!("../harness/churn.py");
const ROUNDS: u32 = 5;
const BATCH: u32 = 200;
/// 20 Mbit/s for 45 s: six times as long as the churn takes here (about 7 s, debug builds).
const FILM_BYTES: u64 = 112_500_000;
const RATE_BPS: u64 = 20_000_000;
/// What the edge's resident memory may grow by over the churn: 4 KiB a lease, less than one
/// peer's state, so a peer left behind each time would show. The edge releases freed memory to
/// the system after big removals; what stays is allocator slack (about 0.3 MiB here).
const RSS_GROWTH_BOUND_KIB: u64 = 4 * 1024;
/// Threads above the count before the churn that are not a leak (see the check).
const THREAD_SLACK: u64 = 2;
/// Longer than tokio keeps an idle blocking thread (10 s).
const SETTLE: Duration = Duration::from_secs(12);

#[test]
fn a_thousand_leases_come_and_go_on_a_running_edge_while_a_film_plays() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("chn", false);
    let data = lab.dir.path().join("broker");
    lab.broker.stop();
    lab.broker = Broker::start_wrapped(
        &lab.home,
        &data,
        &[
            "env",
            "GRANTWIRE_LEASE_BURST=100000",
            "GRANTWIRE_LEASE_PER_SEC=100000",
        ],
    );
    let edge = lab.enrol_edge();
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    let alice_lease = live_leases(&lab);
    let churner = lab.add_user("churn");
    lab.broker
        .admin(
            &lab.home,
            &[
                "grant",
                "add",
                "churn",
                "home",
                "--max-leases",
                "256",
                "--json",
            ],
            None,
        )
        .expect_ok("grant add churn --max-leases 256");

    let edge_pid = lab.edge().proc().pid().expect("the edge's pid");
    let broker_pid = lab.broker.proc().pid().expect("the broker's pid");
    let script = lab.dir.path().join("churn.py");
    std::fs::write(&script, CHURN_PY).expect("write churn.py");
    let metrics_url = "http://127.0.0.1:9586/metrics".to_owned();
    let churn_argv = |rounds: &str| -> Vec<String> {
        [
            "python3",
            script.to_str().expect("UTF-8 path"),
            "127.0.0.1",
            "8443",
            "churn",
            "home",
            rounds,
            &BATCH.to_string(),
            &metrics_url,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // A steady state first: a film and one round of churn open what the processes keep open
    // (the broker's pooled database readers, the edge's buffers), and idle worker threads end
    // (tokio lets an idle blocking thread go after 10 s).
    play(
        &lab.client,
        lab.dir.path(),
        &edge.tunnel_ip,
        20_000_000,
        1,
        0,
    );
    let warm_code = churner.totp_at(grantwire_e2e::unix_now());
    let warm = lab.home.exec_with(
        &churn_argv("1")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        Some(format!("{}\n{warm_code}\n", churner.password).as_bytes()),
        Duration::from_secs(120),
    );
    assert!(warm.success(), "the warm-up churn failed:\n{warm}");
    std::thread::sleep(SETTLE);
    let (edge_before, broker_before) = (Usage::of(edge_pid), Usage::of(broker_pid));
    let tasks = || {
        lab.edge()
            .metrics(&lab.home)
            .require("grantwire_edge_tasks")
    };
    let tasks_before = tasks();

    let argv = churn_argv(&ROUNDS.to_string());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let home = &lab.home;
    let (played, film_ended, churn, churn_ended) = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            // Give the film a head start, so the churn runs entirely under traffic.
            std::thread::sleep(Duration::from_secs(2));
            // A code is good once: the login needs a step after the warm-up's, and the code is
            // taken just before it is used.
            while churner.totp_at(grantwire_e2e::unix_now()) == warm_code {
                std::thread::sleep(Duration::from_millis(200));
            }
            let stdin = format!(
                "{}\n{}\n",
                churner.password,
                churner.totp_at(grantwire_e2e::unix_now())
            );
            let out = home.exec_with(&argv, Some(stdin.as_bytes()), Duration::from_secs(300));
            (out, Instant::now())
        });
        let played = play(
            &lab.client,
            lab.dir.path(),
            &edge.tunnel_ip,
            FILM_BYTES,
            5,
            RATE_BPS,
        );
        let film_ended = Instant::now();
        let (churn, churn_ended) = churn.join().expect("the churn thread");
        (played, film_ended, churn, churn_ended)
    });
    assert!(churn.success(), "the churn failed:\n{churn}");
    let report = churn.json();
    eprintln!("churn: {report}; film: {played:?}");
    assert_eq!(report["added"], ROUNDS * BATCH, "{report}");
    assert_eq!(report["revoked"], ROUNDS * BATCH, "{report}");
    assert!(
        churn_ended < film_ended,
        "the churn outlasted the film ({report}): part of it ran without traffic; make the film \
         longer"
    );
    assert_eq!(
        played.bytes, FILM_BYTES,
        "alice's film arrived short: {played:?}"
    );
    assert_eq!(
        played.sha256,
        lab.plex.film_sha256(&lab.home, FILM_BYTES, 5),
        "alice's film was corrupted during the churn"
    );
    assert!(
        played.longest_wait < 3.0,
        "alice's film waited {:.2} s for data during the churn",
        played.longest_wait
    );
    assert_eq!(
        live_leases(&lab),
        alice_lease,
        "alice's lease changed, or churn leases are left"
    );

    // As before the churn: connections closed, idle threads gone, freed memory released. The
    // counts are read until they match (at most a few seconds more), so a connection still
    // closing is not taken for a leak; a leak never matches. Descriptors must come back exactly;
    // threads to within THREAD_SLACK, because tokio keeps a blocking-pool thread for 10 s after
    // its last task and the edge's reports (every second) keep some of the broker's in use, so
    // how many are alive depends on how recently two database reads overlapped. A thread a lease
    // would be a thousand more.
    std::thread::sleep(SETTLE);
    let back = |now: &Usage, before: &Usage| {
        now.fds == before.fds && now.threads <= before.threads + THREAD_SLACK
    };
    let settled =
        grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(250), || {
            let (edge_now, broker_now) = (Usage::of(edge_pid), Usage::of(broker_pid));
            (back(&edge_now, &edge_before)
                && back(&broker_now, &broker_before)
                && tasks() <= tasks_before)
                .then_some((edge_now, broker_now))
        });
    let (edge_after, broker_after) = settled.unwrap_or_else(|| {
        panic!(
            "the descriptors, threads or tasks did not come back after the churn: edge before \
             {edge_before:?} and {tasks_before} tasks, now {:?} and {} tasks; broker before \
             {broker_before:?}, now {:?}",
            Usage::of(edge_pid),
            tasks(),
            Usage::of(broker_pid)
        )
    });
    eprintln!(
        "edge before {edge_before:?}, after {edge_after:?}, {tasks_before} tasks before and {} after; \
         broker before {broker_before:?}, after {broker_after:?}",
        tasks()
    );
    assert!(
        edge_after.rss_kib <= edge_before.rss_kib + RSS_GROWTH_BOUND_KIB,
        "the edge's memory grew by {} KiB over 1,000 leases added and removed",
        edge_after.rss_kib.saturating_sub(edge_before.rss_kib)
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

/// `lease list --json` without the figures the edge reports as traffic flows.
fn live_leases(lab: &Lab) -> Vec<String> {
    lab.broker
        .leases(&lab.home)
        .iter()
        .map(|l| {
            [
                "id",
                "user",
                "pin",
                "public_key",
                "tunnel_address",
                "expires_at",
            ]
            .map(|k| l[k].to_string())
            .join(" ")
        })
        .collect()
}
