//! A film over a bad line (scenario G3's loss and delay): 2 % of datagrams lost each way and an
//! 80 ms round trip, made by a relay in the client's namespace (`harness/wan.rs`).
//!
//! What such a line can carry is TCP's limit, not the tunnel's: one connection through it,
//! taken as fast as it comes, reached 12.4 Mbit/s here (`GW_LOSSY_BYTES=20000000
//! GW_LOSSY_RATE=0 cargo test -p grantwire-e2e --test it lossy:: -- --nocapture`), so a
//! 20 Mbit/s film cannot play through it with or without a tunnel. The film here is a 4 Mbit/s
//! one (720p): it must play without ever waiting 3 s for data, and arrive whole, the handshake
//! having survived the loss (WireGuard retries every REKEY_TIMEOUT). `GW_LOSSY_BYTES` and
//! `GW_LOSSY_RATE` (bits a second, 0 for unpaced) change the film, to measure the line.

use std::time::Duration;

use grantwire_e2e::harness::plex::play;
use grantwire_e2e::harness::wan::Line;
use grantwire_e2e::{require_env, Family, Lab};

/// Loss makes the first handshake and page slower: allow for retries.
const FIRST_LOAD: Duration = Duration::from_secs(30);
const RATE_BPS: u64 = 4_000_000;
const SECONDS: u64 = 60;
const STALL: f64 = 3.0;
const RELAY_PORT: u16 = 51999;

#[test]
fn a_4_mbit_film_plays_through_2_percent_loss_and_an_80_ms_round_trip() {
    lossy(Family::V4);
}

#[test]
fn a_4_mbit_film_plays_through_2_percent_loss_and_an_80_ms_round_trip_over_ipv6() {
    lossy(Family::V6);
}

fn lossy(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("ls", false);
    let edge = lab.enrol_edge_for(family);
    let line = Line {
        delay_ms: 40,
        loss_percent: 2.0,
        ..Line::default()
    };
    let (wg, link, took) = lab.tunnel_over(&edge, "alice", (RELAY_PORT, family), line, FIRST_LOAD);

    let bytes = std::env::var("GW_LOSSY_BYTES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(RATE_BPS / 8 * SECONDS);
    let rate = std::env::var("GW_LOSSY_RATE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(RATE_BPS);
    let played = play(
        &lab.client,
        lab.dir.path(),
        &edge.tunnel_ip,
        bytes,
        13,
        rate,
    );
    let counts = link.stop();
    eprintln!(
        "{family:?}: first page after {took:?}; {bytes} bytes at {rate} bit/s in {:.1} s ({:.2} Mbit/s); longest wait {:.2} s, {} waits over 1 s; relay {counts}",
        played.seconds,
        bytes as f64 * 8.0 / played.seconds / 1e6,
        played.longest_wait,
        played.waits_over_1s,
    );
    assert_eq!(played.bytes, bytes, "the film arrived short: {played:?}");
    assert_eq!(
        played.sha256,
        lab.plex.film_sha256(&lab.home, bytes, 13),
        "the film that crossed the tunnel differs from the one sent"
    );
    let dropped =
        counts["up_dropped"].as_u64().unwrap_or(0) + counts["down_dropped"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "the relay dropped nothing: {counts}");
    assert!(
        played.longest_wait < STALL,
        "the player waited {:.2} s for data over the bad line ({played:?})",
        played.longest_wait
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
