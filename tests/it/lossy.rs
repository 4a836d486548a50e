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

use std::time::{Duration, Instant};

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

/// G3's worst case: 30 % of datagrams lost each way while the tunnel comes up (WireGuard
/// retries its handshake every 5 s until one gets through), then the line cut entirely for
/// longer than WireGuard retries (90 s) and than a session lives (180 s). `grantwire status`
/// says the tunnel is connected before the cut and down once no handshake could still be
/// carrying data (about 210 s after the last, from the edge's reports); the lease itself stays
/// `ok`, so the message says to look at the tunnel or the network, not to renew. When the line
/// comes back, the next page request brings the tunnel back by itself, on the same lease.
/// (Named to sort first: libtest starts a module's tests in name order, so this long one runs
/// beside both films instead of after them.)
#[test]
fn a_210_s_silence_on_a_cut_line_shows_in_status_as_a_down_tunnel_that_then_recovers() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("out", false);
    let edge = lab.enrol_edge();
    let line = Line {
        delay_ms: 20,
        loss_percent: 30.0,
        ..Line::default()
    };
    let (wg, link, took) = lab.tunnel_over(
        &edge,
        "alice",
        (RELAY_PORT, Family::V4),
        line,
        Duration::from_secs(60),
    );
    // The device tunnel_over signed in (its config dir is named after it).
    let phone = lab.device("alice-phone");
    let status = |what: &str| {
        let out = phone.status(&lab.client, "home", true);
        assert_eq!(out.code, Some(0), "{what}: the lease itself stands:\n{out}");
        out.json()
    };
    let lease = lab.broker.leases(&lab.home)[0]["id"].clone();
    let connected =
        grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(500), || {
            let v = status("before the cut");
            (v["tunnel"] == "connected").then_some(v)
        });
    let before = connected.expect("status should say the tunnel is connected once it loaded");
    assert_eq!(before["state"], "ok", "{before}");

    link.set_cut(true);
    let cut_at = Instant::now();
    let url = lab.plex_url(&edge);
    let mut down = None;
    while cut_at.elapsed() < Duration::from_secs(260) {
        // Something to send, as a viewer pressing play would: WireGuard handshakes only for it.
        assert!(
            !lab.page_loads(&lab.client, &url, Duration::from_secs(2)),
            "a page loaded through a cut line"
        );
        let v = status("during the cut");
        if v["tunnel"] == "down" {
            down = Some((v, cut_at.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_secs(8));
    }
    let (down, after) = down.expect("status never said the tunnel was down during a 260 s cut");
    // The last handshake was at most the first load's minute before the cut, so a session could
    // still carry data for 120 s of it: "down" any earlier would be wrong.
    assert!(
        after > Duration::from_secs(120),
        "status said down {after:?} into the cut, while a session could still be alive: {down}"
    );
    assert_eq!(down["state"], "ok", "the lease itself stands: {down}");
    let text = phone.status(&lab.client, "home", false);
    assert!(
        text.stderr.contains("its tunnel is down: no handshake for"),
        "{text}"
    );

    link.set_cut(false);
    let mended = Instant::now();
    let back = lab.wait_page(&lab.client, &url, Duration::from_secs(30));
    let counts = link.stop();
    eprintln!(
        "first page through 30 % loss after {took:?}; status said down {after:?} into the cut; \
         the page loaded {:?} after the line came back; relay {counts}",
        mended.elapsed()
    );
    back.unwrap_or_else(|last| panic!("the tunnel did not come back after the cut: {last:?}"));
    assert_eq!(
        lab.broker.leases(&lab.home)[0]["id"],
        lease,
        "the tunnel must come back on the same lease, with no renew"
    );
    for way in ["up_cut", "up_dropped", "down_dropped"] {
        assert!(
            counts[way].as_u64().is_some_and(|n| n > 0),
            "the relay's {way} is 0: {counts}"
        );
    }
    // The edge, with Plex's answers for alice queued, tries to handshake across the cut
    // itself and gives up after REKEY_ATTEMPT_TIME (boringtun logs both): expected here.
    lab.assert_no_unexpected_warnings(&[
        "boringtun::noise::timers: HANDSHAKE(",
        "boringtun::noise::timers: CONNECTION_EXPIRED(REKEY_ATTEMPT_TIME)",
    ]);
    drop(wg);
}
