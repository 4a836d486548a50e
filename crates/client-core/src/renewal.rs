//! When a lease must be renewed: the decision `grantwire up` makes once and `grantwire watch`
//! makes at every check, kept here so a mobile app that follows the phone between networks
//! decides the same way. Pure: the lease as the broker's `whoami` lists it and the time come in.

use std::time::Duration;

use crate::time::format_unix_time;
use crate::WhoamiLease;

/// Renew when the lease has less than this left (seconds): a tunnel brought up now should
/// not stop working within minutes.
pub const RENEW_BEFORE_SECS: i64 = 10 * 60;
/// Renew no later than with this much left of the lease (seconds): one more check must still
/// fit, and the broker keeps whole seconds, so a lease with less left may be gone by then.
pub const RENEW_BEFORE_MIN_SECS: i64 = 2;

/// Whether a lease must be renewed before it is used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Renew(String),
}

/// `lease` is the stored lease as the broker's `whoami` lists it (none when it does not).
pub fn decide(lease: Option<&WhoamiLease>, now: i64) -> Decision {
    decide_within(lease, now, RENEW_BEFORE_SECS)
}

/// [`decide`], renewing once less than `renew_before` seconds are left: a watcher passes less
/// than [`RENEW_BEFORE_SECS`] for a lease whose whole lifetime is short ([`renew_before`]).
pub fn decide_within(lease: Option<&WhoamiLease>, now: i64, renew_before: i64) -> Decision {
    let Some(lease) = lease else {
        return Decision::Renew("the broker lists no live lease for it".into());
    };
    if lease.expires_at <= now {
        return Decision::Renew("the lease has expired".into());
    }
    if lease.expires_at - now < renew_before {
        return Decision::Renew(format!(
            "the lease ends soon ({})",
            format_unix_time(lease.expires_at)
        ));
    }
    if !lease.pinned_here {
        return Decision::Renew(format!(
            "its pin {} does not cover the address the broker sees now",
            lease.pin
        ));
    }
    Decision::Keep
}

/// Seconds before expiry at which to renew a lease that lasts `lifetime` seconds from a renew:
/// [`RENEW_BEFORE_SECS`], or a third of a shorter lease (at least [`RENEW_BEFORE_MIN_SECS`]),
/// so that a short lease is not renewed at every check.
pub fn renew_before(lifetime: Option<i64>) -> i64 {
    match lifetime {
        Some(secs) => (secs / 3).clamp(RENEW_BEFORE_MIN_SECS, RENEW_BEFORE_SECS),
        None => RENEW_BEFORE_SECS,
    }
}

/// How long to sleep before the next check: `every`, or less when the lease reaches its
/// renewal time sooner; at least a second.
pub fn next_check(every: Duration, expires_at: i64, renew_before: i64, now: i64) -> Duration {
    // `decide_within` renews once fewer than `renew_before` seconds are left.
    let renew_at = expires_at - renew_before + 1;
    let until = u64::try_from(renew_at - now).unwrap_or(0).max(1);
    every.min(Duration::from_secs(until))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn lease(expires_at: i64, pinned_here: bool) -> WhoamiLease {
        WhoamiLease {
            id: "l-1".parse().unwrap(),
            edge: "home".parse().unwrap(),
            pin: "198.51.100.7/32".parse().unwrap(),
            pinned_here,
            expires_at,
            last_handshake_at: None,
        }
    }

    #[test]
    fn renews_when_gone_expired_near_expiry_or_pinned_elsewhere() {
        let now = 1_700_000_000;
        assert_eq!(decide(Some(&lease(now + 3600, true)), now), Decision::Keep);
        assert_eq!(
            decide(Some(&lease(now + RENEW_BEFORE_SECS, true)), now),
            Decision::Keep
        );
        let renews = |d: Decision| matches!(d, Decision::Renew(_));
        assert!(renews(decide(None, now)));
        assert!(renews(decide(Some(&lease(now - 1, true)), now)));
        assert!(renews(decide(Some(&lease(now, true)), now)));
        assert!(renews(decide(
            Some(&lease(now + RENEW_BEFORE_SECS - 1, true)),
            now
        )));
        let Decision::Renew(why) = decide(Some(&lease(now + 3600, false)), now) else {
            panic!("a lease pinned elsewhere is renewed")
        };
        assert!(why.contains("198.51.100.7/32"), "{why}");
    }

    #[test]
    fn a_shorter_threshold_keeps_what_the_default_renews() {
        let now = 1_700_000_000;
        let soon = lease(now + 60, true);
        assert!(matches!(decide(Some(&soon), now), Decision::Renew(_)));
        assert_eq!(decide_within(Some(&soon), now, 20), Decision::Keep);
        assert!(matches!(
            decide_within(Some(&soon), now, 61),
            Decision::Renew(_)
        ));
        // Expiry and a moved pin renew whatever the threshold.
        assert!(matches!(
            decide_within(Some(&lease(now, true)), now, 0),
            Decision::Renew(_)
        ));
        assert!(matches!(
            decide_within(Some(&lease(now + 3600, false)), now, 0),
            Decision::Renew(_)
        ));
    }

    #[test]
    fn renews_a_third_before_the_end_of_a_short_lease_ten_minutes_of_a_long_one() {
        assert_eq!(renew_before(None), RENEW_BEFORE_SECS);
        assert_eq!(renew_before(Some(8 * 3600)), RENEW_BEFORE_SECS);
        assert_eq!(renew_before(Some(30 * 60)), RENEW_BEFORE_SECS);
        assert_eq!(renew_before(Some(15 * 60)), 5 * 60);
        assert_eq!(renew_before(Some(9)), 3);
        assert_eq!(renew_before(Some(3)), RENEW_BEFORE_MIN_SECS);
    }

    #[test]
    fn next_check_wakes_for_the_renewal_time() {
        let now = 1_700_000_000;
        // Far from renewal: every.
        assert_eq!(next_check(S(30), now + 3600, 600, now), S(30));
        // Renewal due in 5 s (fewer than 600 s left from now + 3001 on): sooner than every.
        assert_eq!(next_check(S(30), now + 604, 600, now), S(5));
        // And then it is due: decide_within renews at that second.
        let at = now + 5;
        let due = WhoamiLease {
            pin: "192.0.2.2/32".parse().unwrap(),
            ..lease(now + 604, true)
        };
        assert!(matches!(
            decide_within(Some(&due), at, 600),
            Decision::Renew(_)
        ));
        assert_eq!(decide_within(Some(&due), at - 1, 600), Decision::Keep);
        // Overdue: a second, never zero.
        assert_eq!(next_check(S(30), now + 10, 600, now), S(1));
    }
}
