//! The time leases are judged by.
//!
//! A lease ends at the broker's `expires_at`. Judging that by this host's wall clock would let
//! the host's clock decide access: set an hour back (a dead RTC battery, a bad NTP answer, an
//! operator's mistake) it keeps every lease an hour past its end; set an hour forward it ends
//! them all at once. So the edge reads the broker's clock instead: every lease set from the
//! broker carries the broker's time as it was sent (`LeaseSet::broker_time_ms`), and
//! [`LeaseClock`] carries that forward on this host's monotonic clock, which no one steps. Only
//! before the first set from the broker (an edge restarted while the broker is away, enforcing
//! its cached leases) does the edge fall back to its wall clock; that is the one case with
//! nothing better to go on.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grantwire_proto::LeaseSet;

/// The broker's time, as last heard and carried forward; the wall clock until then.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseClock {
    /// The broker's time and the monotonic instant it was heard at.
    anchor: Option<(SystemTime, Instant)>,
}

impl LeaseClock {
    /// Now by the broker's clock, or by the wall clock if no set has told it yet.
    pub fn now(&self) -> SystemTime {
        self.now_at(Instant::now())
    }

    fn now_at(&self, instant: Instant) -> SystemTime {
        match self.anchor {
            Some((broker, heard)) => broker + instant.saturating_duration_since(heard),
            None => SystemTime::now(),
        }
    }

    /// Takes the broker's time from `set`, heard now. A set without it (one loaded from the
    /// cache, or one the edge made itself) leaves the clock as it was.
    pub fn follow(&mut self, set: &LeaseSet) {
        if let Some(ms) = set.broker_time_ms {
            let since_epoch = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            self.anchor = Some((UNIX_EPOCH + since_epoch, Instant::now()));
        }
    }

    /// Whether the clock follows the broker (false: the wall clock).
    pub fn follows_broker(&self) -> bool {
        self.anchor.is_some()
    }

    /// The monotonic instant at which this clock reads `deadline` (now, if it already does).
    pub fn instant_of(&self, deadline: SystemTime) -> tokio::time::Instant {
        let now = Instant::now();
        let wait = deadline
            .duration_since(self.now_at(now))
            .unwrap_or(Duration::ZERO);
        tokio::time::Instant::from_std(now + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantwire_proto::EdgeConfig;

    fn set(broker_time_ms: Option<i64>) -> LeaseSet {
        LeaseSet {
            config: EdgeConfig {
                name: "home".into(),
                subnet: "10.77.0.0/24".parse().unwrap(),
                tunnel_address: "10.77.0.1".parse().unwrap(),
            },
            leases: Vec::new(),
            generated_at: 0,
            broker_time_ms,
        }
    }

    #[test]
    fn a_set_from_the_broker_sets_the_time_and_the_monotonic_clock_carries_it() {
        let mut clock = LeaseClock::default();
        assert!(!clock.follows_broker());
        // An hour off the wall clock either way: the broker's word wins.
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let ms = hour_ago.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        clock.follow(&set(Some(ms)));
        assert!(clock.follows_broker());
        let (broker, heard) = clock.anchor.unwrap();
        assert_eq!(
            broker.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
            ms
        );
        let later = heard + Duration::from_secs(5);
        assert_eq!(clock.now_at(later), broker + Duration::from_secs(5));
        let read = clock.now();
        assert!(
            read >= broker && read < broker + Duration::from_secs(60),
            "{read:?}"
        );
    }

    #[test]
    fn a_set_without_the_brokers_time_changes_nothing() {
        let mut clock = LeaseClock::default();
        clock.follow(&set(None));
        assert!(!clock.follows_broker());
        let before = SystemTime::now();
        let read = clock.now();
        assert!(read >= before && read <= SystemTime::now());

        clock.follow(&set(Some(1_000)));
        clock.follow(&set(None));
        let (broker, _) = clock.anchor.unwrap();
        assert_eq!(broker, UNIX_EPOCH + Duration::from_secs(1));
    }

    #[test]
    fn a_deadline_is_a_monotonic_instant_by_the_brokers_time() {
        let mut clock = LeaseClock::default();
        let ms = 1_000_000_000_000;
        clock.follow(&set(Some(ms)));
        let in_ten = UNIX_EPOCH + Duration::from_millis(ms as u64 + 10_000);
        let wait = clock.instant_of(in_ten) - tokio::time::Instant::now();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        let past = UNIX_EPOCH + Duration::from_millis(ms as u64 - 1);
        assert!(clock.instant_of(past) <= tokio::time::Instant::now());
    }
}
