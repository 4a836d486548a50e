//! `grantwire status EDGE`: whether the last profile made here for EDGE works from where this
//! device is now. One `whoami` call; a lease that moved or ended is a refusal (exit 3) whose
//! message names the command that fixes it.
//!
//! For a lease that stands, it also says whether its tunnel is connected, from the last
//! handshake the edge reported: a tunnel that is up makes a new session at least every
//! REKEY_AFTER_TIME (120 s; the profile's keepalive keeps it sending), and a session older
//! than REJECT_AFTER_TIME (180 s) carries nothing, so no handshake for longer than that (and
//! the edge's report interval) means the tunnel is down on this device or cannot reach the
//! edge from here: over a path that drops everything, WireGuard retries for 90 s and then
//! waits for the next packet to try again. Reading the state needs no root and sends nothing
//! through the tunnel.

use std::net::IpAddr;
use std::path::Path;

use anyhow::anyhow;
use grantwire_client_core::time::{format_unix_time, unix_now};
use grantwire_client_core::{BrokerClient, LeaseStore, SessionStore, WhoAmI};
use grantwire_proto::Pin;

use crate::cli::StatusArgs;
use crate::{print_json, Refused};

/// How the stored lease stands as the broker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Live and pinned to the address the broker sees.
    Ok,
    /// Live, but pinned to an address that no longer covers this device's.
    PinMoved,
    /// The broker no longer lists it, or its expiry has passed.
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::PinMoved => "pin_moved",
            Self::Expired => "expired",
        }
    }
}

/// A session this old can carry nothing (WireGuard's REJECT_AFTER_TIME).
pub const REJECT_AFTER_SECS: i64 = 180;
/// How late an edge's report of a handshake may reach the broker (its default
/// `--report-secs`).
pub const REPORT_LAG_SECS: i64 = 30;

/// Whether the lease's tunnel is connected, as far as the edge's reports tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// A handshake recent enough that the session can carry data.
    Connected,
    /// None for longer than a session can live.
    Down,
    /// No handshake reported since the lease was made.
    Never,
}

impl Tunnel {
    pub fn of(last_handshake_at: Option<i64>, now: i64) -> Tunnel {
        match last_handshake_at {
            None => Tunnel::Never,
            Some(at) if now - at > REJECT_AFTER_SECS + REPORT_LAG_SECS => Tunnel::Down,
            Some(_) => Tunnel::Connected,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tunnel::Connected => "connected",
            Tunnel::Down => "down",
            Tunnel::Never => "never_connected",
        }
    }
}

/// The stored lease for one edge next to what the broker said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub edge: String,
    pub lease_id: String,
    /// The lease's pin, none when the broker no longer lists it.
    pub pin: Option<Pin>,
    pub source_ip: IpAddr,
    pub pinned_here: bool,
    /// From the broker, else from the profile file written for the lease; none if neither.
    pub expires_at: Option<i64>,
    pub state: State,
    /// The last handshake the edge reported for the lease, and what it says of the tunnel.
    pub last_handshake_at: Option<i64>,
    pub tunnel: Tunnel,
}

/// Compares the stored lease `lease_id` with `me`. `written_expiry` is the expiry recorded in
/// the profile file written for the lease, used only when the broker no longer lists it.
pub fn assess(
    edge: &str,
    lease_id: &str,
    me: &WhoAmI,
    now: i64,
    written_expiry: Option<i64>,
) -> Status {
    let listed = me.leases.iter().find(|l| l.id == lease_id);
    let state = match listed {
        None => State::Expired,
        Some(l) if l.expires_at <= now => State::Expired,
        Some(l) if !l.pinned_here => State::PinMoved,
        Some(_) => State::Ok,
    };
    Status {
        edge: edge.to_owned(),
        lease_id: lease_id.to_owned(),
        pin: listed.map(|l| l.pin),
        source_ip: me.source_ip,
        pinned_here: listed.is_some_and(|l| l.pinned_here),
        expires_at: listed.map(|l| l.expires_at).or(written_expiry),
        state,
        last_handshake_at: listed.and_then(|l| l.last_handshake_at),
        tunnel: Tunnel::of(listed.and_then(|l| l.last_handshake_at), now),
    }
}

impl Status {
    /// What the edge's reports say of the tunnel, and what to do when it is not connected.
    fn tunnel_message(&self, now: i64) -> String {
        let edge = &self.edge;
        let bring_up = format!("bring it up (`grantwire up {edge}` or your WireGuard app)");
        match (self.tunnel, self.last_handshake_at) {
            (Tunnel::Connected, Some(at)) => format!(
                "its tunnel is connected (last handshake {} s ago)",
                (now - at).max(0)
            ),
            (Tunnel::Down, Some(at)) => format!(
                "its tunnel is down: no handshake for {} s, longer than a WireGuard session \
                 lives ({REJECT_AFTER_SECS} s). Either the tunnel is not up on this device \
                 ({bring_up}) or the network between here and the edge is dropping it; \
                 WireGuard tries again with the next thing you open",
                now - at
            ),
            _ => format!("its tunnel has not connected yet: {bring_up}"),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "edge": self.edge,
            "lease_id": self.lease_id,
            "pin": self.pin,
            "source_ip": self.source_ip,
            "pinned_here": self.pinned_here,
            "expires_at": self.expires_at,
            "state": self.state.as_str(),
            "last_handshake_at": self.last_handshake_at,
            "tunnel": self.tunnel.as_str(),
        })
    }

    /// What a person reads: a fact and, unless all is well, the command that fixes it.
    pub fn message(&self, now: i64) -> String {
        let edge = &self.edge;
        match (self.state, self.pin) {
            (State::Ok, Some(pin)) => format!(
                "your lease for {edge} is pinned to {pin}, where the broker sees you ({}), \
                 until {}; {}",
                self.source_ip,
                self.expires_at.map_or_else(String::new, format_unix_time),
                self.tunnel_message(now)
            ),
            (State::PinMoved, Some(pin)) => format!(
                "your lease for {edge} is pinned to {pin} but the broker now sees you at {}: \
                 run `grantwire renew {edge}` (or keep `grantwire watch {edge}` running)",
                self.source_ip
            ),
            _ => {
                let when = match self.expires_at {
                    Some(at) if at <= now => format!("expired at {}", format_unix_time(at)),
                    _ => "has ended (it expired, was revoked or was replaced)".to_owned(),
                };
                // The broker renews live leases only: an ended one needs a new profile.
                format!(
                    "your lease {} for {edge} {when}: run `grantwire profile {edge}` for a new \
                     profile (an ended lease cannot be renewed)",
                    self.lease_id
                )
            }
        }
    }
}

pub async fn status(config_dir: &Path, args: StatusArgs) -> anyhow::Result<()> {
    let edge = &args.edge;
    let Some(stored) = LeaseStore::new(config_dir).load(edge)? else {
        return Err(anyhow!(
            "no profile for {edge}: run `grantwire profile {edge}`"
        ));
    };
    let session = SessionStore::new(config_dir).load()?;
    let me = BrokerClient::for_session(&session)?
        .whoami(&session)
        .await?;
    let written = stored
        .path
        .as_deref()
        .and_then(|p| written_expiry(p, &stored.lease_id));
    // The lease's times are on the broker's clock: compared with it, a device whose clock is
    // off still reads them right.
    let now = me.now.unwrap_or_else(unix_now);
    let status = assess(edge, &stored.lease_id, &me, now, written);
    if args.json {
        print_json(&status.to_json())?;
    }
    let message = status.message(now);
    match status.state {
        State::Ok => {
            if !args.json {
                eprintln!("{message}");
            }
            Ok(())
        }
        State::PinMoved | State::Expired => Err(Refused(message).into()),
    }
}

/// The expiry written in the comment of the profile file at `path`, if the file is the one for
/// `lease_id` (a profile written by `grantwire profile` or `renew`, see `Profile::to_wg_quick`).
pub fn written_expiry(path: &Path, lease_id: &str) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    expiry_in(&text, lease_id)
}

fn expiry_in(text: &str, lease_id: &str) -> Option<i64> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let ours = first
        .strip_prefix("# grantwire lease ")?
        .split_whitespace()
        .next()
        == Some(lease_id);
    if !ours {
        return None;
    }
    lines.take_while(|l| l.starts_with('#')).find_map(|l| {
        l.split_once(" until unix time ")?
            .1
            .strip_suffix('.')?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantwire_client_core::WhoamiLease;

    const NOW: i64 = 1_700_000_000;

    fn me(leases: Vec<WhoamiLease>) -> WhoAmI {
        WhoAmI {
            user: "alice".into(),
            source_ip: "192.0.2.3".parse().unwrap(),
            leases,
            now: Some(NOW),
        }
    }

    fn listed(id: &str, expires_at: i64, pinned_here: bool) -> WhoamiLease {
        WhoamiLease {
            id: id.parse().unwrap(),
            edge: "home".parse().unwrap(),
            pin: "192.0.2.2/32".parse().unwrap(),
            pinned_here,
            expires_at,
            last_handshake_at: None,
        }
    }

    #[test]
    fn live_and_pinned_here_is_ok() {
        let s = assess(
            "home",
            "l-1",
            &me(vec![listed("l-1", NOW + 60, true)]),
            NOW,
            None,
        );
        assert_eq!(s.state, State::Ok);
        assert_eq!(s.expires_at, Some(NOW + 60));
        assert!(s.pinned_here);
        assert_eq!(s.to_json()["state"], "ok");
        assert_eq!(s.to_json()["pin"], "192.0.2.2/32");
    }

    #[test]
    fn the_tunnel_is_connected_until_a_session_could_no_longer_live() {
        let with_handshake = |at: Option<i64>| {
            let lease = WhoamiLease {
                last_handshake_at: at,
                ..listed("l-1", NOW + 600, true)
            };
            assess("home", "l-1", &me(vec![lease]), NOW, None)
        };
        let limit = REJECT_AFTER_SECS + REPORT_LAG_SECS;
        let fresh = with_handshake(Some(NOW - 40));
        assert_eq!(fresh.tunnel, Tunnel::Connected);
        assert_eq!(fresh.to_json()["tunnel"], "connected");
        assert_eq!(fresh.to_json()["last_handshake_at"], NOW - 40);
        assert!(
            fresh
                .message(NOW)
                .ends_with("its tunnel is connected (last handshake 40 s ago)"),
            "{}",
            fresh.message(NOW)
        );
        assert_eq!(with_handshake(Some(NOW - limit)).tunnel, Tunnel::Connected);
        let down = with_handshake(Some(NOW - limit - 1));
        assert_eq!(down.tunnel, Tunnel::Down);
        assert_eq!(down.to_json()["tunnel"], "down");
        let msg = down.message(NOW);
        assert!(
            msg.contains(&format!("no handshake for {} s", limit + 1)),
            "{msg}"
        );
        assert!(msg.contains("`grantwire up home`"), "{msg}");
        let never = with_handshake(None);
        assert_eq!(never.tunnel, Tunnel::Never);
        assert_eq!(never.to_json()["tunnel"], "never_connected");
        assert!(never.to_json()["last_handshake_at"].is_null());
        assert!(never.message(NOW).contains("has not connected yet"));
        // The lease's own state is what the exit code follows: a down tunnel is still `ok`.
        assert_eq!(down.state, State::Ok);
    }

    #[test]
    fn pinned_elsewhere_names_old_pin_new_address_and_the_fix() {
        let s = assess(
            "home",
            "l-1",
            &me(vec![listed("l-1", NOW + 60, false)]),
            NOW,
            None,
        );
        assert_eq!(s.state, State::PinMoved);
        assert_eq!(
            s.message(NOW),
            "your lease for home is pinned to 192.0.2.2/32 but the broker now sees you at \
             192.0.2.3: run `grantwire renew home` (or keep `grantwire watch home` running)"
        );
        assert_eq!(s.to_json()["state"], "pin_moved");
        assert_eq!(s.to_json()["source_ip"], "192.0.2.3");
    }

    #[test]
    fn unlisted_or_past_expiry_is_expired_and_says_when() {
        // Another lease of the user's does not count.
        let s = assess(
            "home",
            "l-1",
            &me(vec![listed("l-2", NOW + 60, true)]),
            NOW,
            Some(NOW - 5),
        );
        assert_eq!(s.state, State::Expired);
        assert_eq!(s.pin, None);
        let msg = s.message(NOW);
        assert!(
            msg.contains(&format!("expired at {}", format_unix_time(NOW - 5))),
            "{msg}"
        );
        assert!(msg.contains("`grantwire profile home`"), "{msg}");
        assert!(!msg.contains("grantwire renew"), "{msg}");
        assert_eq!(s.to_json()["expires_at"], NOW - 5);
        assert!(s.to_json()["pin"].is_null());

        let s = assess("home", "l-1", &me(vec![]), NOW, None);
        assert!(s.message(NOW).contains("has ended"), "{}", s.message(NOW));
        let s = assess(
            "home",
            "l-1",
            &me(vec![listed("l-1", NOW, true)]),
            NOW,
            None,
        );
        assert_eq!(s.state, State::Expired);
    }

    #[test]
    fn expiry_is_read_only_from_the_leases_own_file() {
        let text = "# grantwire lease l-1 for edge home\n# Plex: http://10.77.0.1:32400/web\n\
                    # Works only from 192.0.2.2/32 until unix time 1700000000.\n[Interface]\n";
        assert_eq!(expiry_in(text, "l-1"), Some(1_700_000_000));
        assert_eq!(expiry_in(text, "l-2"), None);
        assert_eq!(expiry_in("[Interface]\n", "l-1"), None);
    }
}
