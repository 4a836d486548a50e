//! `grantwire up EDGE` and `grantwire down EDGE` (Linux): the last profile made here for EDGE,
//! renewed first when it would not work from here or soon, as `<wg-dir>/gw-EDGE.conf`
//! (mode 0600), brought up and down by Debian's `wg-quick`.

use std::io::{self, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context as _};
use grantwire_client_core::renewal::{decide, Decision};
use grantwire_client_core::time::{format_unix_time, unix_now};
use grantwire_client_core::{BrokerClient, LeaseStore, SessionStore};
use grantwire_proto::{EdgeName, FieldError};

use crate::cli::{DownArgs, UpArgs};
use crate::UsageError;

/// `gw-EDGE`, the interface and (with `.conf`) file name; a usage error when EDGE is no edge
/// name or makes a name longer than Linux allows.
pub fn interface_name(edge: &str) -> Result<String, UsageError> {
    let name: EdgeName = edge.parse().map_err(|e: FieldError| {
        UsageError(format!("{e}: it cannot name a WireGuard interface"))
    })?;
    name.tunnel_name().map_err(|e| {
        UsageError(format!(
            "edge name {edge:?} is too long for `up`: {e}; use `grantwire profile {edge} --out \
             FILE` and `wg-quick up` with a shorter file name"
        ))
    })
}

pub async fn up(config_dir: &Path, args: UpArgs) -> anyhow::Result<()> {
    let edge = &args.edge;
    let ifname = interface_name(edge)?;
    let wg_quick = find_wg_quick()?;
    // Checked before the broker is asked anything, so a refusal changes nothing anywhere.
    root_only_dir(&args.wg_dir, false)?;
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
    // Without renewing, the profile is the one kept (parsed) when the lease was made; the
    // wg-quick file written then is never read back: anyone who can write it is not root.
    let kept = match (decide(listed, unix_now()), &stored.profile) {
        (Decision::Keep, Some(p)) if p.lease_id == stored.lease_id => Some(p.clone()),
        (Decision::Renew(why), _) => {
            eprintln!("renewing the lease for {edge}: {why}");
            None
        }
        (Decision::Keep, _) => None,
    };
    let text = match kept {
        Some(profile) => profile.to_wg_quick(&stored.private_key),
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
    let path = root_only_dir(&args.wg_dir, true)?.join(format!("{ifname}.conf"));
    write_root_file(&path, text.as_bytes())?;
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
    // wg-quick runs the file's PreDown/PostDown lines as root too.
    let path = root_only_dir(&args.wg_dir, false)?.join(format!("{ifname}.conf"));
    check_root_only_file(&path)?;
    let wg_quick = find_wg_quick()?;
    run_wg_quick(&wg_quick, "down", &path)?;
    eprintln!("{ifname} is down");
    Ok(())
}

/// `dir` resolved to its real path, once it and every directory above it is owned by root and
/// writable by no one else, so nobody but root can put a file there or swap one in. With
/// `create`, missing directories are made (0700); without, the part that exists is checked.
/// Above `dir`, a root-owned sticky directory such as `/tmp` is accepted: there only an
/// entry's owner may rename or remove it.
fn root_only_dir(dir: &Path, create: bool) -> anyhow::Result<PathBuf> {
    let dir =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    if create {
        make_missing_dirs(&dir)?;
    }
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    let real = std::fs::canonicalize(existing)
        .with_context(|| format!("cannot resolve {}", existing.display()))?;
    let target_exists = existing == dir.as_path();
    for (i, d) in real.ancestors().enumerate() {
        let meta =
            std::fs::metadata(d).with_context(|| format!("cannot inspect {}", d.display()))?;
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        let problem = if meta.uid() != 0 {
            Some(format!("is owned by uid {}, not root", meta.uid()))
        } else if mode & 0o022 != 0 && ((i == 0 && target_exists) || !sticky) {
            Some(format!(
                "is writable by its group or others (mode {:o})",
                mode & 0o7777
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(anyhow!(
                "refusing to give wg-quick a file in {}: {} {problem}, so someone other than \
                 root could change what wg-quick runs as root; use a directory only root can \
                 write (the default is /etc/wireguard)",
                real.display(),
                d.display()
            ));
        }
    }
    // Without `create`, the missing part is appended unchecked; nothing is written there
    // before a call with `create`, which checks the real path of all of it.
    let missing = dir.strip_prefix(existing).unwrap_or(Path::new(""));
    Ok(real.join(missing))
}

/// Creates the missing directories of `dir` one level at a time, each 0700.
fn make_missing_dirs(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_missing_dirs(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

/// Writes `path` (in a directory [`root_only_dir`] checked) as a new 0600 file, then renames
/// it into place: the temporary name is created exclusively, so nothing planted there (a
/// link, a file someone else holds open) is written through, and the rename replaces any link
/// at `path` instead of following it.
fn write_root_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    check_root_only_file(path)
}

/// A regular file owned by root that no one else can write.
fn check_root_only_file(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if !meta.file_type().is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(anyhow!(
            "refusing to give {} to wg-quick: it must be a regular file owned by root and \
             writable by root only",
            path.display()
        ));
    }
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
}
