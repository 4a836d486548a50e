//! Reordering (scenario E3): a line that holds one datagram in ten 15 ms longer than the rest,
//! both ways, so later ones overtake it, as Wi-Fi retries and multipath links do. WireGuard
//! keeps a window of recent counters (1,024 in boringtun) and accepts any message inside it
//! once; only a counter older than the window, or one seen before, is refused.
//!
//! An 8 Mbit/s film plays through the line: it arrives whole, the relay held back hundreds of
//! datagrams each way, and the edge refused none of the client's (`dropped_invalid_total`, where
//! a message failing the replay window would be counted, does not move). That counters older
//! than the window and repeated ones are refused is shown in
//! `crates/edge-core/tests/it/harness.rs::reordered_data_inside_the_window_arrives_once_and_older_data_never`.

use grantwire_e2e::harness::lab::FIRST_LOAD;
use grantwire_e2e::harness::plex::play;
use grantwire_e2e::harness::wan::Line;
use grantwire_e2e::{require_env, Family, Lab};

const RELAY_PORT: u16 = 51998;
const DROPPED_INVALID: &str = "grantwire_edge_dropped_invalid_total";
/// 8 Mbit/s for 15 s.
const FILM_BYTES: u64 = 15_000_000;
const RATE_BPS: u64 = 8_000_000;

#[test]
fn a_film_plays_through_a_reordering_line_and_the_edge_refuses_none_of_it() {
    reordering(Family::V4);
}

#[test]
fn a_film_plays_through_a_reordering_line_and_the_edge_refuses_none_of_it_over_ipv6() {
    reordering(Family::V6);
}

fn reordering(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("ro", false);
    let edge = lab.enrol_edge_for(family);
    let line = Line {
        delay_ms: 5,
        reorder_percent: 10.0,
        hold_ms: 15,
        ..Line::default()
    };
    let (wg, link, _) = lab.tunnel_over(&edge, "alice", (RELAY_PORT, family), line, FIRST_LOAD);

    let before = lab.edge().metrics(&lab.home).require(DROPPED_INVALID);
    let played = play(
        &lab.client,
        lab.dir.path(),
        &edge.tunnel_ip,
        FILM_BYTES,
        23,
        RATE_BPS,
    );
    let after = lab.edge().metrics(&lab.home).require(DROPPED_INVALID);
    let counts = link.stop();
    eprintln!(
        "{family:?}: film {played:?}; relay {counts}; edge dropped_invalid {before} -> {after}"
    );
    assert_eq!(
        played.bytes, FILM_BYTES,
        "the film arrived short: {played:?}"
    );
    assert_eq!(
        played.sha256,
        lab.plex.film_sha256(&lab.home, FILM_BYTES, 23),
        "the film that crossed the reordering line differs from the one sent"
    );
    for way in ["up_held", "down_held"] {
        assert!(
            counts[way].as_u64().is_some_and(|n| n > 100),
            "the relay held back too few datagrams ({way}) to show anything: {counts}"
        );
    }
    assert_eq!(
        after - before,
        0.0,
        "the edge refused reordered datagrams from alice's client ({counts})"
    );
    assert!(
        played.longest_wait < 3.0,
        "the player waited {:.2} s for data: {played:?}",
        played.longest_wait
    );
    drop(wg);
}
