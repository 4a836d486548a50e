//! `grantwire up EDGE` and `grantwire down EDGE` (Linux): the last profile made here for EDGE,
//! renewed first when it would not work from here or soon, as `<wg-dir>/gw-EDGE.conf`
//! (mode 0600), brought up and down by Debian's `wg-quick`.

use std::io;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context as _};
use grantwire_client_core::time::{format_unix_time, unix_now};
use grantwire_client_core::{BrokerClient, LeaseStore, SessionStore, WhoamiLease};

use crate::cli::{DownArgs, UpArgs};
use crate::UsageError;

/// Renew when the lease has less than this left (seconds): a tunnel brought up now should
/// not stop working within minutes.
pub const RENEW_BEFORE_SECS: i64 = 10 * 60;

/// Linux's limit on an interface name (IFNAMSIZ - 1), which wg-quick takes from the file name.
const IFNAME_MAX: usize = 15;
const PREFIX: &str = "gw-";

/// `gw-EDGE`, the interface and (with `.conf`) file name; a usage error when EDGE is no plain
/// name or makes a name longer than Linux allows.
pub fn interface_name(edge: &str) -> Result<String, UsageError> {
    let plain = !edge.is_empty()
        && !edge.starts_with('.')
        && edge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plain {
        return Err(UsageError(format!(
            "edge name {edge:?} cannot name a WireGuard interface: use letters, digits, \
             '.', '_' and '-' only (no '/', no leading '.')"
        )));
    }
    let name = format!("{PREFIX}{edge}");
    if name.len() > IFNAME_MAX {
        return Err(UsageError(format!(
            "edge name {edge:?} is too long for `up`: the interface {name:?} would have {} \
             characters and Linux allows {IFNAME_MAX}, so EDGE may have at most {}; use \
             `grantwire profile {edge} --out FILE` and `wg-quick up` with a shorter file name",
            name.len(),
            IFNAME_MAX - PREFIX.len()
        )));
    }
    Ok(name)
}

/// Whether `up` must renew the lease before using it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Renew(String),
}

/// `lease` is the stored lease as the broker's `whoami` lists it (none when it does not).
pub fn decide(lease: Option<&WhoamiLease>, now: i64) -> Decision {
    decide_within(lease, now, RENEW_BEFORE_SECS)
}

/// [`decide`], renewing once less than `renew_before` seconds are left: `watch` passes less
/// than [`RENEW_BEFORE_SECS`] for a lease whose whole lifetime is short.
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

pub async fn up(config_dir: &Path, args: UpArgs) -> anyhow::Result<()> {
    let edge = &args.edge;
    let ifname = interface_name(edge)?;
    let wg_quick = find_wg_quick()?;
    let leases = LeaseStore::new(config_dir);
    let Some(stored) = leases.load(edge)? else {
        return Err(anyhow!(
            "no profile for {edge}: run `grantwire profile {edge}`"
        ));
    };
    let session = SessionStore::new(config_dir).load()?;
    let client = BrokerClient::for_session(&session)?;
    let me = client.whoami(&session).await?;
    let listed = me.leases.iter().find(|l| l.id == stored.lease_id);
    // Without renewing, the text is the profile file written last time; none there: renew.
    let kept = match (decide(listed, unix_now()), &stored.path) {
        (Decision::Keep, Some(path)) => std::fs::read_to_string(path)
            .ok()
            .filter(|text| text.contains(&stored.lease_id)),
        (Decision::Renew(why), _) => {
            eprintln!("renewing the lease for {edge}: {why}");
            None
        }
        (Decision::Keep, None) => None,
    };
    let text = match kept {
        Some(text) => text,
        None => {
            let path = stored.path.clone();
            let (profile, text) =
                crate::renew_stored(&leases, &client, &session, edge, stored, path.as_deref())
                    .await?;
            eprintln!(
                "renewed: works only from {} until {}",
                profile.pin,
                format_unix_time(profile.expires_at)
            );
            text
        }
    };
    let path = args.wg_dir.join(format!("{ifname}.conf"));
    grantwire_client_core::write_profile(&path, &text)?;
    eprintln!("wrote {} (mode 0600)", path.display());
    run_wg_quick(&wg_quick, "up", &path)?;
    eprintln!("{ifname} is up");
    Ok(())
}

pub fn down(args: &DownArgs) -> anyhow::Result<()> {
    let edge = &args.edge;
    let ifname = interface_name(edge)?;
    let path = args.wg_dir.join(format!("{ifname}.conf"));
    if !path.is_file() {
        return Err(anyhow!(
            "no {}: nothing to take down (`grantwire up {edge}` writes it)",
            path.display()
        ));
    }
    let wg_quick = find_wg_quick()?;
    run_wg_quick(&wg_quick, "down", &path)?;
    eprintln!("{ifname} is down");
    Ok(())
}

/// `wg-quick` on PATH, or an error naming the package that has it.
fn find_wg_quick() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("wg-quick"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            anyhow!(
                "wg-quick is not installed (not found on PATH): install the wireguard-tools \
                 package (Debian/Ubuntu: `sudo apt install wireguard-tools`)"
            )
        })
}

/// Runs `wg-quick VERB PATH`; its output goes to stderr, keeping stdout for scripts.
fn run_wg_quick(wg_quick: &Path, verb: &str, path: &Path) -> anyhow::Result<()> {
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot pass stderr to wg-quick")?;
    let status = Command::new(wg_quick)
        .arg(verb)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .with_context(|| format!("cannot run {}", wg_quick.display()))?;
    if !status.success() {
        return Err(anyhow!(
            "`wg-quick {verb} {}` failed ({status})",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_plain_and_fit_linux() {
        assert_eq!(interface_name("home").unwrap(), "gw-home");
        assert_eq!(interface_name("abcdefghijkl").unwrap(), "gw-abcdefghijkl");
        let long = interface_name("abcdefghijklm").unwrap_err().0;
        assert!(long.contains("15") && long.contains("at most 12"), "{long}");
        for bad in ["", "../x", "a/b", ".hidden", "a b", "é", "a:b", "..", "x\n"] {
            assert!(interface_name(bad).is_err(), "{bad:?}");
        }
    }

    fn lease(expires_at: i64, pinned_here: bool) -> WhoamiLease {
        WhoamiLease {
            id: "l-1".into(),
            edge: "home".into(),
            pin: "198.51.100.7/32".parse().unwrap(),
            pinned_here,
            expires_at,
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
}
