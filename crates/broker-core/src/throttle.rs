//! Slowing down guessing: the per-account failure policy (pure, with `now` passed in), per-IP
//! token buckets for the login and lease routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures in a row an account may have before each further attempt needs a wait.
pub const FREE_FAILURES: i64 = 5;
/// Longest wait between attempts (the exponential's cap).
pub const MAX_WAIT_SECS: i64 = 15 * 60;
/// Most failures counted for one account in any hour (NIST SP 800-63B 5.2.2).
pub const MAX_FAILURES_PER_HOUR: i64 = 100;

/// Seconds an account must wait after its `streak`-th failure in a row: none for the first
/// four, then 1 s, 2 s, 4 s, ... up to [`MAX_WAIT_SECS`].
pub fn wait_after(streak: i64) -> i64 {
    if streak < FREE_FAILURES {
        return 0;
    }
    let doublings = u32::try_from(streak - FREE_FAILURES)
        .unwrap_or(u32::MAX)
        .min(20);
    (1i64 << doublings).min(MAX_WAIT_SECS)
}

/// An account's failure record as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountState {
    pub locked_until: Option<i64>,
    pub failures_last_hour: i64,
}

/// Whether a login for this account is refused without looking at the password.
pub fn is_locked(state: AccountState, now: i64) -> bool {
    state.locked_until.is_some_and(|t| now < t) || state.failures_last_hour >= MAX_FAILURES_PER_HOUR
}

/// Per-source token buckets: `burst` requests at once, refilled at `per_sec`. IPv6 sources are
/// keyed by their /64, since one host usually holds the whole prefix.
#[derive(Debug)]
pub struct Buckets {
    burst: f64,
    per_sec: f64,
    state: Mutex<HashMap<IpAddr, (f64, i64)>>,
}

/// Sources remembered at most; past this, full buckets are forgotten (they hold no debt).
const MAX_TRACKED: usize = 100_000;

impl Buckets {
    pub fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_sec.max(1)),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` has a token at `now_ms` (without taking it), or how many seconds until it
    /// has one.
    pub fn check(&self, ip: IpAddr, now_ms: i64) -> Result<(), u64> {
        let map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some((tokens, at)) = map.get(&source_key(ip)) else {
            return Ok(());
        };
        let refilled = (*tokens + elapsed(*at, now_ms) * self.per_sec).min(self.burst);
        if refilled >= 1.0 {
            return Ok(());
        }
        let secs = ((1.0 - refilled) / self.per_sec).ceil();
        Err(if secs >= 1.0 { secs as u64 } else { 1 })
    }

    /// Takes a token for `ip` at `now_ms`, or says how many seconds until one is free.
    pub fn take(&self, ip: IpAddr, now_ms: i64) -> Result<(), u64> {
        let key = source_key(ip);
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            let (burst, rate) = (self.burst, self.per_sec);
            map.retain(|_, (tokens, at)| *tokens + elapsed(*at, now_ms) * rate < burst);
        }
        let (tokens, at) = map.entry(key).or_insert((self.burst, now_ms));
        let refilled = (*tokens + elapsed(*at, now_ms) * self.per_sec).min(self.burst);
        *at = now_ms;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            let secs = ((1.0 - refilled) / self.per_sec).ceil();
            Err(if secs >= 1.0 { secs as u64 } else { 1 })
        }
    }
}

fn elapsed(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms.saturating_sub(from_ms).max(0) as f64) / 1000.0
}

/// The address a source is counted by, in every per-source budget and cap: IPv4 as it is,
/// IPv6 by its /64 (one host usually holds the whole prefix), IPv4-mapped IPv6 as IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::from(seg)
        }
        v4 => v4,
    }
}

/// A token bucket's shape: `burst` requests at once, then `per_sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_sec: u32,
}

/// Per-IP budget of `POST /v1/login`: a person mistyping a few times never meets it; a guesser
/// gets one try a second from each address.
pub const LOGIN_RATE: RateLimit = RateLimit {
    burst: 10,
    per_sec: 1,
};
/// Per-IP budget of `POST /v1/leases`: a household renewing its devices at once fits.
pub const LEASE_RATE: RateLimit = RateLimit {
    burst: 30,
    per_sec: 10,
};

impl From<RateLimit> for Buckets {
    fn from(r: RateLimit) -> Self {
        Self::new(r.burst, r.per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_from_the_fifth_failure_and_are_capped() {
        let waits: Vec<i64> = (0..=16).map(wait_after).collect();
        assert_eq!(&waits[..5], &[0, 0, 0, 0, 0]);
        assert_eq!(&waits[5..11], &[1, 2, 4, 8, 16, 32]);
        assert_eq!(waits[15], MAX_WAIT_SECS);
        assert_eq!(wait_after(10_000), MAX_WAIT_SECS);
    }

    #[test]
    fn an_account_is_locked_while_waiting_or_over_the_hourly_cap() {
        let now = 1_000_000;
        let free = AccountState::default();
        assert!(!is_locked(free, now));
        let waiting = AccountState {
            locked_until: Some(now + 1),
            failures_last_hour: 5,
        };
        assert!(is_locked(waiting, now));
        assert!(!is_locked(waiting, now + 1));
        let capped = AccountState {
            locked_until: None,
            failures_last_hour: MAX_FAILURES_PER_HOUR,
        };
        assert!(is_locked(capped, now));
        let under = AccountState {
            failures_last_hour: MAX_FAILURES_PER_HOUR - 1,
            ..capped
        };
        assert!(!is_locked(under, now));
    }

    #[test]
    fn buckets_allow_a_burst_then_refill() {
        let b = Buckets::new(3, 1);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t = 5_000;
        for _ in 0..3 {
            assert!(b.take(ip, t).is_ok());
        }
        assert_eq!(b.take(ip, t), Err(1));
        assert!(b.take(other, t).is_ok(), "buckets are per source");
        assert_eq!(b.take(ip, t + 500), Err(1));
        assert!(b.take(ip, t + 1_600).is_ok());
        assert!(b.take(ip, t + 1_700).is_err());
    }

    #[test]
    fn checking_a_bucket_takes_nothing() {
        let b = Buckets::new(1, 1);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(b.check(ip, 0).is_ok());
        assert!(b.check(ip, 0).is_ok());
        assert!(b.take(ip, 0).is_ok());
        assert_eq!(b.check(ip, 0), Err(1));
        assert_eq!(b.check(ip, 500), Err(1));
        assert!(b.check(ip, 1_000).is_ok());
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        let b = Buckets::new(1, 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(b.take(a, 0).is_ok());
        assert!(b.take(same, 0).is_err());
        assert!(b.take(other, 0).is_ok());
    }
}
