//! A film through the tunnel, as a friend watches one: the stand-in Plex sends a deterministic
//! stream and the stand-in player (`harness/player.py`) reads it and checks it.
//!
//! - 400 MB taken as fast as it comes arrives whole, with the SHA-256 the stand-in computed on
//!   its side (scenario A2's bulk transfer, checked end to end).

use grantwire_e2e::harness::plex::play;
use grantwire_e2e::{require_env, Lab};

const FILM_BYTES: u64 = 400_000_000;

#[test]
fn a_400_mb_film_crosses_the_tunnel_intact() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("fm", false);
    let edge = lab.enrol_edge();
    let (wg, _) = lab.tunnel_up(&edge, "alice");

    let played = play(
        &lab.client,
        lab.dir.path(),
        &edge.tunnel_ip,
        FILM_BYTES,
        7,
        0,
    );
    let sent = lab.plex.film_sha256(&lab.home, FILM_BYTES, 7);
    assert_eq!(
        (played.bytes, played.expected),
        (FILM_BYTES, FILM_BYTES),
        "the film arrived short: {played:?}"
    );
    assert_eq!(
        played.sha256, sent,
        "the film that crossed the tunnel differs from the one the stand-in sent: {played:?}"
    );
    eprintln!(
        "{FILM_BYTES} bytes in {:.1} s ({:.0} Mbit/s), SHA-256 equal, longest wait {:.2} s",
        played.seconds,
        FILM_BYTES as f64 * 8.0 / played.seconds / 1e6,
        played.longest_wait
    );
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
