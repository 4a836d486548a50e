//! A long film at a film's bit rate (scenario A3): 20 Mbit/s for 200 s, past WireGuard's
//! REKEY_AFTER_TIME (120 s, when the client makes a new session) and REJECT_AFTER_TIME (180 s,
//! when the old one may no longer carry data). The stand-in player reads at the film's rate
//! with a small receive buffer and records its longest wait for data: it never waits 3 s, the
//! film arrives whole with the stand-in's checksum, and the client did handshake again during
//! it, so the rekey happened under the stream rather than before or after it.

use grantwire_e2e::harness::plex::play;
use grantwire_e2e::{require_env, Family, Lab};

const RATE_BPS: u64 = 20_000_000;
const SECONDS: u64 = 200;
/// A player that waits this long for data has visibly stalled.
const STALL: f64 = 3.0;

#[test]
fn a_20_mbit_film_plays_for_200_s_across_rekeys_without_a_3_s_wait() {
    long_film(Family::V4);
}

/// The IPv6 twin runs beside the IPv4 one (tests of a module run side by side), so the pair
/// costs CI one film's time.
#[test]
fn a_20_mbit_film_plays_for_200_s_across_rekeys_without_a_3_s_wait_over_ipv6() {
    long_film(Family::V6);
}

fn long_film(family: Family) {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("st", false);
    let edge = lab.enrol_edge_for(family);
    let (wg, _) = lab.tunnel(&edge, "alice", family);
    let first_handshake = wg.dev.latest_handshake();

    let bytes = RATE_BPS / 8 * SECONDS;
    let played = play(
        &lab.client,
        lab.dir.path(),
        &edge.tunnel_ip,
        bytes,
        11,
        RATE_BPS,
    );
    let last_handshake = wg.dev.latest_handshake();
    eprintln!(
        "{family:?}: {bytes} bytes at 20 Mbit/s in {:.1} s; longest wait {:.2} s, {} waits over 1 s; \
         handshakes at +0 s and +{} s",
        played.seconds,
        played.longest_wait,
        played.waits_over_1s,
        last_handshake.saturating_sub(first_handshake)
    );
    assert_eq!(played.bytes, bytes, "the film arrived short: {played:?}");
    assert_eq!(
        played.sha256,
        lab.plex.film_sha256(&lab.home, bytes, 11),
        "the film that crossed the tunnel differs from the one sent"
    );
    assert!(
        played.seconds >= (SECONDS - 5) as f64,
        "the player did not pace the film: {played:?}"
    );
    assert!(
        played.longest_wait < STALL,
        "the player waited {:.2} s for data: the stream stalled ({played:?})",
        played.longest_wait
    );
    assert!(
        last_handshake >= first_handshake + 110,
        "the client should have made a new session under the stream (REKEY_AFTER_TIME 120 s); \
         handshakes at {first_handshake} and {last_handshake}"
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
