//! Dropping root once the edge's privileged setup is done.
//!
//! Installing the guard, creating the TUN device and binding the sockets need root (or
//! CAP_NET_ADMIN). After that the edge does one privileged thing, running `nft` on its own
//! table: to rewrite the pin sets on every lease set, and to remove the table at a clean stop.
//! So with `--user NAME`, an edge started as root becomes NAME
//! once the guard, the TUN device, the UDP socket and the metrics listener are in place, keeping
//! CAP_NET_ADMIN and nothing else. What needs no capability afterwards: reading and writing the
//! TUN device and the sockets (open descriptors), outbound HTTPS to the broker, and the lease
//! cache (the state directory is handed to NAME just before the drop).
//!
//! How, in [`drop_to`]: the capability sets through the `caps` crate and uid/gid through `nix`,
//! so this crate keeps its `unsafe_code = "deny"`:
//! 1. `PR_SET_KEEPCAPS`, so setuid keeps the permitted set instead of clearing it;
//! 2. setgroups (the user's groups), setgid, setuid; glibc applies these to every thread;
//! 3. capset: permitted = effective = inheritable = {CAP_NET_ADMIN}, and the ambient set the same;
//! 4. keep-caps off, then everything is read back (this thread's ids, groups and sets, and every
//!    thread's `/proc/self/task/TID/status`), and any difference is an error: the caller stops
//!    rather than run on with more than was planned.
//!
//! Inheritable and ambient hold CAP_NET_ADMIN because `nft` is another program: a non-root
//! process's capabilities do not survive execve unless they are ambient. `nft` is the only
//! program the edge runs.
//!
//! Capabilities are per thread. Only the thread that calls [`drop_to`] keeps CAP_NET_ADMIN:
//! `main::run`'s, which `block_on` polls on the main thread. Tokio's workers (and any blocking
//! pool thread, made by a worker) become the user too and hold no capability at all. So right
//! after the drop that thread spawns the guard's thread (`guard::GuardThread`), which inherits
//! the kept set and runs every later `nft`; [`verify_this_thread`] checks it did.
//!
//! `no_new_privs` is per thread as well and passes to threads made later, so [`prepare`] sets it
//! before the runtime starts any thread: no thread can then gain privileges through execve
//! (setuid bits, file capabilities). That makes the bounding set moot, and it is left alone (it
//! cannot be lowered without CAP_SETPCAP, which a systemd unit's bounding set rightly lacks).
//! no_new_privs does not stop setuid(2) to a less privileged user.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::PathBuf;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};

/// What the edge keeps after the drop: CAP_NET_ADMIN, for `nft` on table `inet grantwire` (the
/// pin sets, and the removal at a clean stop). Nothing else it does after setup needs a
/// capability (see the module doc).
pub const KEPT: &[Capability] = &[Capability::CAP_NET_ADMIN];

/// A local user to run as, with the groups it belongs to (its primary group included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Where users are looked up, so the decision is tested without the host's passwd file.
pub trait Accounts {
    fn by_name(&self, name: &str) -> Result<Option<Account>, PrivError>;
}

/// The host's users and groups (NSS: getpwnam_r, getgrouplist).
#[derive(Debug, Default)]
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn by_name(&self, name: &str) -> Result<Option<Account>, PrivError> {
        let Ok(cname) = CString::new(name) else {
            return Ok(None);
        };
        let lookup = |source| PrivError::Lookup {
            name: name.to_owned(),
            source,
        };
        let Some(user) = nix::unistd::User::from_name(name).map_err(lookup)? else {
            return Ok(None);
        };
        let groups = nix::unistd::getgrouplist(&cname, user.gid).map_err(lookup)?;
        Ok(Some(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.into_iter().map(Gid::as_raw).collect(),
        }))
    }
}

/// What the edge does about its privileges, decided before anything is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Started as root with `--user`: set up as root, then become this account.
    Drop(Account),
    /// Started as root without `--user`: works (tests and scripts/up.sh rely on it), and warns.
    StayRoot,
    /// Not root: nothing to drop (no user named, or already the one named).
    Unprivileged,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("--user {0}: no such user on this host")]
    UnknownUser(String),
    #[error("--user {0} is root (uid 0); name an unprivileged user, such as grantwire-edge")]
    RootUser(String),
    #[error(
        "--user {name}: this process runs as uid {uid}, not as root, so it cannot become \
         {name}; start it as root, or as {name} without --user"
    )]
    NotRoot { name: String, uid: u32 },
    #[error("looking up user {name}")]
    Lookup {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("{what} failed")]
    Os {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{what} failed")]
    Caps {
        what: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("reading {path}")]
    Proc {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the drop to {user} did not take: {}", problems.join("; "))]
    NotDropped { user: String, problems: Vec<String> },
}

impl PrivError {
    /// A mistake in how the edge was started (exit 2), found before anything is set up.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::UnknownUser(_) | Self::RootUser(_) | Self::NotRoot { .. }
        )
    }
}

/// Decides the plan for this process and sets `no_new_privs`. Call it before the async runtime
/// starts its threads (see the module doc).
pub fn prepare(requested: Option<&str>) -> Result<Plan, PrivError> {
    let ids = nix::unistd::getresuid().map_err(os("getresuid"))?;
    let ids = [ids.real, ids.effective, ids.saved].map(Uid::as_raw);
    let plan = plan(ids, requested, &SystemAccounts)?;
    nix::sys::prctl::set_no_new_privs().map_err(os("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    Ok(plan)
}

/// The plan for a process with real, effective and saved uids `ids` asked to run as `requested`.
pub fn plan(
    ids: [u32; 3],
    requested: Option<&str>,
    accounts: &impl Accounts,
) -> Result<Plan, PrivError> {
    let root = ids[1] == 0;
    let Some(name) = requested else {
        return Ok(if root {
            Plan::StayRoot
        } else {
            Plan::Unprivileged
        });
    };
    let account = accounts
        .by_name(name)?
        .ok_or_else(|| PrivError::UnknownUser(name.to_owned()))?;
    if account.uid == 0 {
        return Err(PrivError::RootUser(name.to_owned()));
    }
    if root {
        Ok(Plan::Drop(account))
    } else if ids.iter().all(|&id| id == account.uid) {
        Ok(Plan::Unprivileged)
    } else {
        Err(PrivError::NotRoot {
            name: name.to_owned(),
            uid: ids[1],
        })
    }
}

/// The kept capabilities as a set.
pub fn kept() -> CapsHashSet {
    KEPT.iter().copied().collect()
}

/// Becomes `account`, keeping only [`KEPT`], and checks that it took. Only the calling thread
/// keeps the capability: the thread that will run `nft` must be made by it afterwards (see the
/// module doc). An error means the process may still hold more than planned: the caller must
/// stop.
pub fn drop_to(account: &Account) -> Result<(), PrivError> {
    caps::securebits::set_keepcaps(true).map_err(caps_err("prctl(PR_SET_KEEPCAPS, 1)"))?;
    let groups: Vec<Gid> = account.groups.iter().copied().map(Gid::from_raw).collect();
    nix::unistd::setgroups(&groups).map_err(os("setgroups"))?;
    nix::unistd::setgid(Gid::from_raw(account.gid)).map_err(os("setgid"))?;
    nix::unistd::setuid(Uid::from_raw(account.uid)).map_err(os("setuid"))?;
    let kept = kept();
    // Each capset must leave effective inside permitted (capset(2)): effective first, in case
    // setuid left it full (SECBIT_NO_SETUID_FIXUP), then permitted; ambient last, as it must fit
    // in both permitted and inheritable.
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        caps::set(None, set, &kept).map_err(caps_err("capset"))?;
    }
    caps::securebits::set_keepcaps(false).map_err(caps_err("prctl(PR_SET_KEEPCAPS, 0)"))?;
    verify(account)
}

/// Checks that the calling thread, made after [`drop_to`] by the thread that called it, holds
/// what that thread holds: `account`'s ids and exactly [`KEPT`] in every set, ambient included,
/// so that an `nft` it runs gets CAP_NET_ADMIN.
pub fn verify_this_thread(account: &Account) -> Result<(), PrivError> {
    let path = PathBuf::from("/proc/thread-self/status");
    let text = std::fs::read_to_string(&path).map_err(|source| PrivError::Proc {
        path: path.clone(),
        source,
    })?;
    let problems = match ThreadCreds::parse(&text) {
        Some(creds) => creds.problems(&Want::of(account), true),
        None => vec![format!("cannot parse {}", path.display())],
    };
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PrivError::NotDropped {
            user: account.name.clone(),
            problems,
        })
    }
}

/// Reads back what [`drop_to`] set, for this thread and every other one.
fn verify(account: &Account) -> Result<(), PrivError> {
    let want = Want::of(account);
    let mut problems = Vec::new();
    let uids = nix::unistd::getresuid().map_err(os("getresuid"))?;
    let gids = nix::unistd::getresgid().map_err(os("getresgid"))?;
    if [uids.real, uids.effective, uids.saved] != [Uid::from_raw(want.uid); 3] {
        problems.push(format!("uids are {uids:?}"));
    }
    if [gids.real, gids.effective, gids.saved] != [Gid::from_raw(want.gid); 3] {
        problems.push(format!("gids are {gids:?}"));
    }
    let groups: BTreeSet<u32> = nix::unistd::getgroups()
        .map_err(os("getgroups"))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    if groups != want.groups {
        problems.push(format!("groups are {groups:?}"));
    }
    let kept = kept();
    for set in [
        CapSet::Permitted,
        CapSet::Effective,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        let have = caps::read(None, set).map_err(caps_err("capget"))?;
        if have != kept {
            problems.push(format!("{set:?} set is {have:?}"));
        }
    }
    // The kernel's own answer to "can this process become root again?".
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        problems.push("setuid(0) succeeded".to_owned());
    }
    problems.extend(check_threads(&want)?);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PrivError::NotDropped {
            user: account.name.clone(),
            problems,
        })
    }
}

/// Every thread's credentials as the kernel shows them: setuid reaches other threads only through
/// glibc, and capabilities not at all, so each is checked.
fn check_threads(want: &Want) -> Result<Vec<String>, PrivError> {
    let me = nix::unistd::gettid().as_raw().to_string();
    let dir = PathBuf::from("/proc/self/task");
    let entries = std::fs::read_dir(&dir).map_err(|source| PrivError::Proc {
        path: dir.clone(),
        source,
    })?;
    let mut problems = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PrivError::Proc {
            path: dir.clone(),
            source,
        })?;
        let tid = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path().join("status");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // A blocking-pool thread that ended meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(PrivError::Proc { path, source }),
        };
        let found = match ThreadCreds::parse(&text) {
            Some(creds) => creds.problems(want, tid == me),
            None => vec![format!("cannot parse {}", path.display())],
        };
        problems.extend(found.into_iter().map(|p| format!("thread {tid}: {p}")));
    }
    Ok(problems)
}

/// What every thread should show after the drop.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    uid: u32,
    gid: u32,
    groups: BTreeSet<u32>,
    /// Bit mask of [`KEPT`], as `/proc` shows capability sets.
    kept: u64,
}

impl Want {
    fn of(account: &Account) -> Self {
        Self {
            uid: account.uid,
            gid: account.gid,
            groups: account.groups.iter().copied().collect(),
            kept: KEPT.iter().fold(0, |mask, c| mask | c.bitmask()),
        }
    }
}

/// The lines of `/proc/PID/task/TID/status` that say what a thread may do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadCreds {
    /// Real, effective, saved and filesystem ids.
    uids: Vec<u32>,
    gids: Vec<u32>,
    groups: BTreeSet<u32>,
    inheritable: u64,
    permitted: u64,
    effective: u64,
    ambient: u64,
    no_new_privs: bool,
}

impl ThreadCreds {
    fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let ids = |name: &str| -> Option<Vec<u32>> {
            field(name)?
                .split_whitespace()
                .map(|n| n.parse().ok())
                .collect()
        };
        let mask = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
        Some(Self {
            uids: ids("Uid")?,
            gids: ids("Gid")?,
            groups: ids("Groups")?.into_iter().collect(),
            inheritable: mask("CapInh")?,
            permitted: mask("CapPrm")?,
            effective: mask("CapEff")?,
            ambient: mask("CapAmb")?,
            no_new_privs: field("NoNewPrivs")? == "1",
        })
    }

    /// Differences from `want`. The dropping thread holds exactly the kept set in each set;
    /// any other thread at most that.
    fn problems(&self, want: &Want, dropping_thread: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.uids.len() != 4 || self.uids.iter().any(|&u| u != want.uid) {
            out.push(format!("uids {:?}", self.uids));
        }
        if self.gids.len() != 4 || self.gids.iter().any(|&g| g != want.gid) {
            out.push(format!("gids {:?}", self.gids));
        }
        if self.groups != want.groups {
            out.push(format!("groups {:?}", self.groups));
        }
        for (name, set) in [
            ("CapInh", self.inheritable),
            ("CapPrm", self.permitted),
            ("CapEff", self.effective),
            ("CapAmb", self.ambient),
        ] {
            let wrong = if dropping_thread {
                set != want.kept
            } else {
                set & !want.kept != 0
            };
            if wrong {
                out.push(format!("{name} {set:016x}"));
            }
        }
        if !self.no_new_privs {
            out.push("no_new_privs is not set".to_owned());
        }
        out
    }
}

fn os(what: &'static str) -> impl FnOnce(nix::Error) -> PrivError {
    move |source| PrivError::Os { what, source }
}

fn caps_err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivError {
    move |source| PrivError::Caps { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeAccounts(HashMap<&'static str, Account>);

    impl Accounts for FakeAccounts {
        fn by_name(&self, name: &str) -> Result<Option<Account>, PrivError> {
            Ok(self.0.get(name).cloned())
        }
    }

    fn account(name: &str, uid: u32, gid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid,
            groups: vec![gid],
        }
    }

    fn accounts() -> FakeAccounts {
        FakeAccounts(HashMap::from([
            ("root", account("root", 0, 0)),
            ("grantwire-edge", account("grantwire-edge", 990, 990)),
            ("nobody", account("nobody", 65534, 65534)),
        ]))
    }

    #[test]
    fn root_with_a_user_drops_to_it() {
        let got = plan([0, 0, 0], Some("grantwire-edge"), &accounts()).unwrap();
        assert_eq!(got, Plan::Drop(account("grantwire-edge", 990, 990)));
        // Effective root is what counts (a setuid-root start): the drop sets all three ids.
        let got = plan([1000, 0, 0], Some("nobody"), &accounts()).unwrap();
        assert_eq!(got, Plan::Drop(account("nobody", 65534, 65534)));
    }

    #[test]
    fn without_a_user_root_stays_and_others_are_left_alone() {
        assert_eq!(plan([0, 0, 0], None, &accounts()).unwrap(), Plan::StayRoot);
        assert_eq!(
            plan([990, 990, 990], None, &accounts()).unwrap(),
            Plan::Unprivileged
        );
    }

    #[test]
    fn unknown_root_and_unreachable_users_are_usage_errors() {
        let err = plan([0, 0, 0], Some("nosuchuser"), &accounts()).unwrap_err();
        assert!(matches!(&err, PrivError::UnknownUser(n) if n == "nosuchuser"));
        assert!(err.is_usage());
        let err = plan([0, 0, 0], Some("root"), &accounts()).unwrap_err();
        assert!(matches!(err, PrivError::RootUser(_)) && err.is_usage());
        // Not root and asked to become someone else: refused, never ignored.
        let err = plan([990, 990, 990], Some("nobody"), &accounts()).unwrap_err();
        assert!(matches!(err, PrivError::NotRoot { uid: 990, .. }) && err.is_usage());
        // Already that user: nothing to do. Half that user (saved uid differs): refused.
        assert_eq!(
            plan([990, 990, 990], Some("grantwire-edge"), &accounts()).unwrap(),
            Plan::Unprivileged
        );
        let err = plan([990, 990, 1000], Some("grantwire-edge"), &accounts()).unwrap_err();
        assert!(err.is_usage());
    }

    #[test]
    fn the_system_lookup_finds_root_with_its_groups_and_not_a_made_up_name() {
        let root = SystemAccounts.by_name("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0), "{root:?}");
        assert_eq!(SystemAccounts.by_name("no-such-user-gw").unwrap(), None);
        assert_eq!(SystemAccounts.by_name("bad\0name").unwrap(), None);
    }

    #[test]
    fn only_cap_net_admin_is_kept() {
        assert_eq!(KEPT, &[Capability::CAP_NET_ADMIN]);
        assert_eq!(Capability::CAP_NET_ADMIN.bitmask(), 0x1000);
    }

    const DROPPED: &str = "Name:\tgrantwire-edge\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nFDSize:\t64\n\
        Groups:\t65534 \nNoNewPrivs:\t1\nCapInh:\t0000000000001000\nCapPrm:\t0000000000001000\n\
        CapEff:\t0000000000001000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000001000\n";

    fn want() -> Want {
        Want {
            uid: 65534,
            gid: 65534,
            groups: BTreeSet::from([65534]),
            kept: 0x1000,
        }
    }

    #[test]
    fn a_dropped_thread_passes() {
        let creds = ThreadCreds::parse(DROPPED).unwrap();
        assert_eq!(creds.uids, [65534; 4]);
        assert_eq!(creds.permitted, 0x1000);
        assert!(creds.problems(&want(), true).is_empty());
        // A worker with no capability at all is fine; the dropping thread must hold the kept set.
        let worker = DROPPED.replace("0000000000001000", "0000000000000000");
        let creds = ThreadCreds::parse(&worker).unwrap();
        assert!(creds.problems(&want(), false).is_empty());
        assert_eq!(creds.problems(&want(), true).len(), 4);
    }

    #[test]
    fn every_leftover_privilege_is_a_problem() {
        let cases = [
            (
                "Uid:\t65534\t65534\t65534\t65534",
                "Uid:\t65534\t65534\t0\t65534",
                "uids",
            ),
            (
                "Uid:\t65534\t65534\t65534\t65534",
                "Uid:\t0\t0\t0\t0",
                "uids",
            ),
            (
                "Gid:\t65534\t65534\t65534\t65534",
                "Gid:\t65534\t0\t65534\t65534",
                "gids",
            ),
            ("Groups:\t65534 ", "Groups:\t0 65534 ", "groups"),
            (
                "CapPrm:\t0000000000001000",
                "CapPrm:\t0000000000003000",
                "CapPrm",
            ),
            (
                "CapEff:\t0000000000001000",
                "CapEff:\t000001ffffffffff",
                "CapEff",
            ),
            (
                "CapAmb:\t0000000000001000",
                "CapAmb:\t0000000000001001",
                "CapAmb",
            ),
            (
                "CapInh:\t0000000000001000",
                "CapInh:\t0000000000001080",
                "CapInh",
            ),
            ("NoNewPrivs:\t1", "NoNewPrivs:\t0", "no_new_privs"),
        ];
        for (from, to, what) in cases {
            let text = DROPPED.replace(from, to);
            assert_ne!(text, DROPPED, "{from} not in the sample");
            let creds = ThreadCreds::parse(&text).unwrap();
            for dropping in [true, false] {
                let found = creds.problems(&want(), dropping);
                assert!(
                    found.len() == 1 && found[0].contains(what),
                    "{to} (dropping thread: {dropping}): {found:?}"
                );
            }
        }
    }

    #[test]
    fn a_status_without_the_fields_does_not_parse() {
        assert!(ThreadCreds::parse("Name:\tx\n").is_none());
        let no_amb = DROPPED.replace("CapAmb:\t0000000000001000\n", "");
        assert!(ThreadCreds::parse(&no_amb).is_none());
    }
}
