//! `grantwire watch EDGE`: keeps the last profile made here for EDGE working while this device
//! moves between networks. Every `--every` it asks the broker where it sees the device
//! (`whoami`) and renews the lease, rewriting its wg-quick file, once the pin no longer covers
//! that address or the lease nears its end. The keys, tunnel address and endpoint stay, so a
//! tunnel already up keeps working as soon as the edge admits the new pin.
//!
//! A broker that cannot be reached is retried with exponential backoff ([`Backoff`]); a session
//! or lease the broker refuses ends the watch with exit code 3 and the command that fixes it.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use grantwire_client_core::renewal::{decide_within, next_check, renew_before, Decision};
use grantwire_client_core::time::{format_unix_time, unix_now};
use grantwire_client_core::{
    default_profile_path, BrokerClient, Error, ErrorKind, LeaseStore, Profile, SessionStore,
};
use grantwire_proto::Pin;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::WatchArgs;

/// The first retry after a failure comes this soon: a laptop that just joined a network often
/// reaches the broker a moment later (DHCP, a route, Wi-Fi association).
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Retries slow to one a minute at most, unless `--every` asks for fewer checks still.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The delays between retries of a failing call: `first`, doubling up to `cap`; back to
/// `first` after a success. Pure, so the schedule is tested without waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        let cap = cap.max(first);
        Self {
            first,
            cap,
            next: first,
        }
    }

    /// The schedule `watch --every EVERY` uses: 1 s doubling to a minute, or to EVERY if longer.
    pub fn for_every(every: Duration) -> Self {
        Self::new(BACKOFF_FIRST, BACKOFF_CAP.max(every))
    }

    /// How long to wait before the next try; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        delay
    }

    /// Whether the last call failed (the next delay is no longer the first).
    pub fn is_failing(&self) -> bool {
        self.next != self.first
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// `--every`: a humantime duration of at least a second.
pub fn parse_every(s: &str) -> Result<Duration, String> {
    let every = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30s, 2m)"))?;
    if every < Duration::from_secs(1) {
        return Err("must be at least 1s: the broker is asked once per check".into());
    }
    Ok(every)
}

pub async fn watch(config_dir: &Path, args: WatchArgs) -> anyhow::Result<()> {
    // Installed before anything else, so a signal that comes early is not lost.
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let edge = args.edge.clone();
    let stopped = tokio::select! {
        result = watch_loop(config_dir, &args) => return result,
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    say(&format!("{edge}: stopped ({stopped})"));
    Ok(())
}

/// What the loop remembers between checks.
struct Watch<'a> {
    config_dir: &'a Path,
    edge: &'a str,
    every: Duration,
    backoff: Backoff,
    /// The lease's whole lifetime as last seen (at a renew, else at the first check).
    lifetime: Option<i64>,
    /// The edge's endpoint in the profile file, to warn when a renew changes it.
    endpoint: Option<String>,
}

/// Runs until a fatal error; only a signal (in [`watch`]) ends it otherwise.
async fn watch_loop(config_dir: &Path, args: &WatchArgs) -> anyhow::Result<()> {
    let edge = args.edge.as_str();
    let stored = load_stored(config_dir, edge)?;
    // Checked once up front so that a missing session fails at once, not after a retry.
    SessionStore::new(config_dir).load()?;
    let mut w = Watch {
        config_dir,
        edge,
        every: args.every,
        backoff: Backoff::for_every(args.every),
        lifetime: None,
        endpoint: stored.path.as_deref().and_then(written_endpoint),
    };
    say(&format!(
        "{edge}: watching lease {} (checking every {})",
        stored.lease_id,
        humantime::format_duration(args.every)
    ));
    loop {
        let sleep = match w.check().await {
            Ok(sleep) => {
                if w.backoff.is_failing() {
                    say(&format!("{edge}: the broker answers again"));
                }
                w.backoff.reset();
                sleep
            }
            Err(e) if transient(&e) => {
                let delay = w.backoff.next_delay();
                say(&format!(
                    "{edge}: {}; retrying in {}",
                    crate::message(&e),
                    humantime::format_duration(delay)
                ));
                delay
            }
            Err(e) => return Err(e),
        };
        tokio::time::sleep(sleep).await;
    }
}

impl Watch<'_> {
    /// One check, renewing when needed; returns how long to sleep before the next.
    async fn check(&mut self) -> anyhow::Result<Duration> {
        // Read each time: a `grantwire profile EDGE` made meanwhile is followed.
        let stored = load_stored(self.config_dir, self.edge)?;
        let session = SessionStore::new(self.config_dir).load()?;
        let client = BrokerClient::for_session(&session)?;
        let me = client.whoami(&session).await?;
        let now = unix_now();
        let listed = me.leases.iter().find(|l| l.id == stored.lease_id);
        if let (None, Some(l)) = (self.lifetime, listed) {
            self.lifetime = Some(l.expires_at - now).filter(|s| *s > 0);
        }
        let before = renew_before(self.lifetime);
        let why = match decide_within(listed, now, before) {
            Decision::Keep => {
                let expires_at = listed.map_or(now, |l| l.expires_at);
                return Ok(next_check(self.every, expires_at, before, now));
            }
            Decision::Renew(why) => why,
        };
        say(&format!(
            "{}: renewing lease {}: {why}",
            self.edge, stored.lease_id
        ));
        let old_pin = listed.map(|l| l.pin);
        let path = match &stored.path {
            Some(p) => p.clone(),
            None => default_profile_path(self.config_dir, self.edge)?,
        };
        let leases = LeaseStore::new(self.config_dir);
        let (profile, _) =
            crate::renew_stored(&leases, &client, &session, self.edge, stored, Some(&path)).await?;
        let now = unix_now();
        self.lifetime = Some(profile.expires_at - now).filter(|s| *s > 0);
        self.report(&profile, old_pin, &path);
        let before = renew_before(self.lifetime);
        Ok(next_check(self.every, profile.expires_at, before, now))
    }

    /// Says what a renewal changed; warns when the endpoint moved, which a running tunnel
    /// does not follow by itself.
    fn report(&mut self, profile: &Profile, old_pin: Option<Pin>, path: &Path) {
        let edge = self.edge;
        let until = format_unix_time(profile.expires_at);
        match old_pin {
            Some(old) if old != profile.pin => say(&format!(
                "{edge}: pin moved to {} (was {old}), lease until {until}",
                profile.pin
            )),
            _ => say(&format!(
                "{edge}: lease renewed until {until}, pinned to {}",
                profile.pin
            )),
        }
        if let Some(was) = self
            .endpoint
            .as_deref()
            .filter(|e| *e != profile.endpoint.as_str())
        {
            say(&format!(
                "{edge}: WARNING: the edge's endpoint is now {} (was {was}): run `grantwire up \
                 {edge}` again, or re-import {}, for the tunnel to follow it",
                profile.endpoint,
                path.display()
            ));
        }
        self.endpoint = Some(profile.endpoint.to_string());
    }
}

fn load_stored(
    config_dir: &Path,
    edge: &str,
) -> anyhow::Result<grantwire_client_core::StoredLease> {
    LeaseStore::new(config_dir)
        .load(edge)?
        .ok_or_else(|| anyhow!("no profile for {edge}: run `grantwire profile {edge}`"))
}

/// Failures that may pass by themselves: the broker unreachable (this device offline or
/// between networks) or failing for a moment, or another certificate than the pinned one in
/// the way (a hotel's or airport's captive portal answering for every address until the
/// person accepts its terms). The pin has already refused that connection, so nothing was
/// sent over it; the message says something may be intercepting, and the watch goes on.
/// Everything else needs a person.
fn transient(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<Error>() {
        Some(Error::PinMismatch { .. }) => true,
        Some(e) => matches!(e.kind(), ErrorKind::Network | ErrorKind::Server),
        None => false,
    }
}

/// The `Endpoint` line of the wg-quick file at `path`.
fn written_endpoint(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "Endpoint").then(|| v.trim().to_owned())
    })
}

/// One line on stderr for a person, stamped with the time: watch runs for hours.
fn say(line: &str) {
    eprintln!("{} {line}", format_unix_time(unix_now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::for_every(S(30));
        assert!(!b.is_failing());
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(b.is_failing());
        b.reset();
        assert!(!b.is_failing());
        assert_eq!(b.next_delay(), S(1));
    }

    #[test]
    fn backoff_cap_is_every_when_that_is_longer() {
        let mut b = Backoff::for_every(S(300));
        let last = (0..12).map(|_| b.next_delay()).last().unwrap();
        assert_eq!(last, S(300));
        // A cap below the first delay never shortens the first delay.
        let mut b = Backoff::new(S(5), S(1));
        assert_eq!((b.next_delay(), b.next_delay()), (S(5), S(5)));
    }

    #[test]
    fn every_is_at_least_a_second() {
        assert_eq!(parse_every("30s").unwrap(), S(30));
        assert_eq!(parse_every("2m").unwrap(), S(120));
        assert_eq!(parse_every("1s").unwrap(), S(1));
        for bad in ["0", "0s", "500ms", "x", "", "-1s"] {
            assert!(parse_every(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network_and_server_failures_are_retried_others_end_the_watch() {
        let server = anyhow::Error::from(Error::Server {
            status: 503,
            message: "m".into(),
        });
        assert!(transient(&server));
        let gone = anyhow::Error::from(Error::SessionExpired { expires_at: 0 });
        assert!(!transient(&gone));
        assert!(!transient(&anyhow!("no profile")));
        assert!(!transient(&crate::Refused("lease gone".into()).into()));
        // Trust errors other than the pinned connection's refusal need a person.
        let changed = Error::FingerprintChanged {
            broker: "https://b/".into(),
            known: grantwire_client_core::Fingerprint::of_der(b"a"),
            presented: grantwire_client_core::Fingerprint::of_der(b"b"),
        };
        assert!(!transient(&changed.into()));
    }

    #[test]
    fn endpoint_is_read_from_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home.conf");
        std::fs::write(&path, "[Peer]\nEndpoint = 192.0.2.1:51820\n").unwrap();
        assert_eq!(written_endpoint(&path).as_deref(), Some("192.0.2.1:51820"));
        assert_eq!(written_endpoint(&dir.path().join("none")), None);
    }
}
