//! The edge's state directory: its WireGuard private key, the broker credential and the edge
//! config from enrolment. Written once, reused on every later start.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{chown, lchown, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use grantwire_proto::{EdgeConfig, LeaseSet, PrivateKey};
use rand::RngCore;
use zeroize::Zeroize;

const KEY_FILE: &str = "private.key";
const CREDENTIAL_FILE: &str = "credential";
const CONFIG_FILE: &str = "config.json";
const LEASES_FILE: &str = "leases.json";
/// Written and removed at once by [`StateDir::check_writable`].
const PROBE_FILE: &str = "write-check";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not hold a WireGuard key")]
    BadKey {
        path: PathBuf,
        #[source]
        source: grantwire_proto::KeyError,
    },
    #[error("{path} is not a valid lease set")]
    BadLeases {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} has {links} hard links; refusing to hand it to another user")]
    HardLink { path: PathBuf, links: u64 },
    #[error("{path} is not a valid edge config")]
    BadConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The edge config stored at enrolment, if any, read without creating the directory or
/// changing its mode: `doctor` only looks, and may run as another user than the edge.
pub fn read_config(dir: &Path) -> Result<Option<EdgeConfig>, StateError> {
    let path = dir.join(CONFIG_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => parse_config(dir, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io { path, source }),
    }
}

fn parse_config(dir: &Path, text: &str) -> Result<EdgeConfig, StateError> {
    serde_json::from_str(text).map_err(|source| StateError::BadConfig {
        path: dir.join(CONFIG_FILE),
        source,
    })
}

/// The broker's bearer credential for this edge. Redacted in `Debug`, never logged.
#[derive(Clone)]
pub struct Credential(String);

impl Credential {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// A state directory, created 0700 on first use.
#[derive(Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        // Also on an existing directory: the key inside must not be readable by others.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Gives the directory and everything in it to `uid:gid`, modes unchanged (0700, 0600), so
    /// an edge that drops root can still write its lease cache. Entries are changed with
    /// lchown, never through a symlink; a file with other hard links is refused, since the
    /// user could have linked it to a file of root's (the directory is the user's after the
    /// first drop).
    pub fn hand_over(&self, uid: u32, gid: u32) -> Result<(), StateError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.is_file() && meta.nlink() > 1 {
                return Err(StateError::HardLink {
                    path,
                    links: meta.nlink(),
                });
            }
            lchown(&path, Some(uid), Some(gid)).map_err(io(&path))?;
        }
        chown(&self.dir, Some(uid), Some(gid)).map_err(io(&self.dir))
    }

    /// Writes and removes a file, as the lease cache will: after a privilege drop this is the
    /// proof that the new user can still keep it.
    pub fn check_writable(&self) -> Result<(), StateError> {
        self.write_secret(PROBE_FILE, "")?;
        let path = self.dir.join(PROBE_FILE);
        fs::remove_file(&path).map_err(|source| StateError::Io { path, source })
    }

    /// The edge's key, made from OS randomness (and clamped) on first start.
    pub fn private_key(&self) -> Result<PrivateKey, StateError> {
        let path = self.dir.join(KEY_FILE);
        match self.read(KEY_FILE)? {
            Some(text) => text
                .parse()
                .map_err(|source| StateError::BadKey { path, source }),
            None => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let key = PrivateKey::from_random_bytes(bytes);
                bytes.zeroize();
                self.write_secret(KEY_FILE, &key.to_base64())?;
                Ok(key)
            }
        }
    }

    /// The credential and config stored at enrolment, if the edge has enrolled.
    pub fn enrolment(&self) -> Result<Option<(Credential, EdgeConfig)>, StateError> {
        let (Some(credential), Some(config)) =
            (self.read(CREDENTIAL_FILE)?, self.read(CONFIG_FILE)?)
        else {
            return Ok(None);
        };
        let config = parse_config(&self.dir, &config)?;
        Ok(Some((
            Credential::new(credential.trim().to_owned()),
            config,
        )))
    }

    /// Stores the config first and the credential last, so a crash in between leaves an edge
    /// that is simply not enrolled (its token is spent, but nothing half-written is trusted).
    pub fn store_enrolment(
        &self,
        credential: &Credential,
        config: &EdgeConfig,
    ) -> Result<(), StateError> {
        let json =
            serde_json::to_string_pretty(config).map_err(|source| StateError::BadConfig {
                path: self.dir.join(CONFIG_FILE),
                source,
            })?;
        self.write_secret(CONFIG_FILE, &json)?;
        self.write_secret(CREDENTIAL_FILE, credential.expose())
    }

    /// Keeps the last lease set the broker sent, so that an edge restarted while the broker is
    /// away admits the leases it had and nothing else. It holds preshared keys: 0600, and
    /// written whole, so a crash leaves the previous set or this one.
    pub fn store_lease_set(&self, set: &LeaseSet) -> Result<(), StateError> {
        let json = serde_json::to_string(set).map_err(|source| StateError::BadLeases {
            path: self.dir.join(LEASES_FILE),
            source,
        })?;
        self.write_secret(LEASES_FILE, &json)
    }

    /// The cached lease set for the edge `config`, without the leases that have expired by
    /// `now` (unix seconds). None when there is none, or when it was written for another
    /// config (the edge was enrolled again): nothing from it is trusted then.
    pub fn cached_lease_set(
        &self,
        config: &EdgeConfig,
        now: i64,
    ) -> Result<Option<LeaseSet>, StateError> {
        let Some(text) = self.read(LEASES_FILE)? else {
            return Ok(None);
        };
        let mut set: LeaseSet =
            serde_json::from_str(&text).map_err(|source| StateError::BadLeases {
                path: self.dir.join(LEASES_FILE),
                source,
            })?;
        if set.config != *config {
            return Ok(None);
        }
        // The broker's time it was sent at is long past: the edge must not take it as now.
        set.broker_time_ms = None;
        set.leases.retain(|l| l.expires_at > now);
        Ok(Some(set))
    }

    fn read(&self, name: &str) -> Result<Option<String>, StateError> {
        let path = self.dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Writes through a 0600 temporary file and a rename, so a reader never sees half a key.
    fn write_secret(&self, name: &str, contents: &str) -> Result<(), StateError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(contents.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn config() -> EdgeConfig {
        EdgeConfig {
            name: "home".into(),
            subnet: "10.77.0.0/24".parse().unwrap(),
            tunnel_address: "10.77.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn key_is_made_once_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let state = StateDir::open(&dir).unwrap();
        let key = state.private_key().unwrap();
        assert_eq!(key.as_bytes()[0] & 7, 0, "clamped");
        let again = StateDir::open(&dir).unwrap().private_key().unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    }

    #[test]
    fn enrolment_round_trips_and_is_absent_before() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert!(state.enrolment().unwrap().is_none());
        assert_eq!(read_config(tmp.path()).unwrap(), None);
        state
            .store_enrolment(&Credential::new("secret-cred".into()), &config())
            .unwrap();
        let (cred, cfg) = state.enrolment().unwrap().unwrap();
        assert_eq!(cred.expose(), "secret-cred");
        assert_eq!(cfg, config());
        assert!(!format!("{cred:?}").contains("secret"));
        assert_eq!(read_config(tmp.path()).unwrap(), Some(config()));
        let mode = fs::metadata(tmp.path().join(CREDENTIAL_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    pub(crate) fn lease(id: &str, key: u8, expires_at: i64) -> grantwire_proto::EdgeLease {
        grantwire_proto::EdgeLease {
            id: id.into(),
            public_key: PrivateKey::from_random_bytes([key; 32]).public_key(),
            preshared_key: grantwire_proto::PresharedKey::from_bytes([key; 32]),
            tunnel_address: "10.77.0.2".parse().unwrap(),
            pin: "192.0.2.2/32".parse().unwrap(),
            ports: vec![32400],
            expires_at,
        }
    }

    #[test]
    fn the_lease_cache_is_private_and_loads_without_expired_leases() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert!(state.cached_lease_set(&config(), 100).unwrap().is_none());
        let set = LeaseSet {
            config: config(),
            leases: vec![lease("l-old", 1, 100), lease("l-live", 2, 101)],
            generated_at: 50,
            broker_time_ms: None,
        };
        state.store_lease_set(&set).unwrap();
        let mode = fs::metadata(tmp.path().join(LEASES_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let loaded = state.cached_lease_set(&config(), 100).unwrap().unwrap();
        let ids: Vec<_> = loaded.leases.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(
            ids,
            ["l-live"],
            "a lease whose expiry has come is not loaded"
        );
        assert_eq!(loaded.leases[0], set.leases[1]);
        let loaded = state.cached_lease_set(&config(), 101).unwrap().unwrap();
        assert!(loaded.leases.is_empty());
    }

    #[test]
    fn a_lease_cache_for_another_config_or_corrupt_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let mut other = config();
        other.subnet = "10.78.0.0/24".parse().unwrap();
        let set = LeaseSet {
            config: other,
            leases: vec![lease("l-live", 2, i64::MAX)],
            generated_at: 50,
            broker_time_ms: None,
        };
        state.store_lease_set(&set).unwrap();
        assert!(state.cached_lease_set(&config(), 0).unwrap().is_none());

        fs::write(tmp.path().join(LEASES_FILE), "{ not json").unwrap();
        let err = state.cached_lease_set(&config(), 0).unwrap_err();
        assert!(matches!(err, StateError::BadLeases { .. }), "{err:?}");
    }

    #[test]
    fn hand_over_keeps_modes_refuses_hard_links_and_probes_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        state.private_key().unwrap();
        state
            .store_enrolment(&Credential::new("c".into()), &config())
            .unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tmp.path().join("link")).unwrap();
        // To whoever runs the test: the same owner, so this needs no privilege.
        let me = fs::metadata(tmp.path()).unwrap();
        state.hand_over(me.uid(), me.gid()).unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(tmp.path()), 0o700);
        assert_eq!(mode(&tmp.path().join(KEY_FILE)), 0o600);
        state.check_writable().unwrap();
        assert!(!tmp.path().join(PROBE_FILE).exists());

        fs::hard_link(tmp.path().join(KEY_FILE), tmp.path().join("other")).unwrap();
        let err = state.hand_over(me.uid(), me.gid()).unwrap_err();
        assert!(
            matches!(err, StateError::HardLink { links: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn read_config_leaves_a_missing_directory_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("never-made");
        assert_eq!(read_config(&dir).unwrap(), None);
        assert!(!dir.exists());
    }
}
