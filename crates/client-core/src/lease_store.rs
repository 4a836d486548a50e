//! What the client remembers of the last profile it made per edge, so a later renew can rewrite
//! the same wg-quick file after the broker moved the pin: `<config-dir>/profiles/EDGE.json`,
//! mode 0600, because it holds the WireGuard private key.
//!
//! Like the session file, each carries a format `version` ([`LEASE_FORMAT`]): a file from before
//! versioning is read as format 1; one of an unknown format (a newer client's) or a damaged one
//! is an error naming `grantwire profile EDGE` as the way on, and is left untouched.

use std::io;
use std::path::{Path, PathBuf};

use grantwire_proto::{PrivateKey, Profile};
use serde::{Deserialize, Serialize};

use crate::output::{default_profile_path, write_private_file};
use crate::Error;

/// The stored-lease file format this client writes and reads.
pub const LEASE_FORMAT: u64 = 1;

#[derive(Serialize)]
struct OnDisk<'a> {
    version: u64,
    #[serde(flatten)]
    lease: &'a StoredLease,
}

/// The lease behind the last profile made for one edge. `Debug` redacts the private key.
/// Unknown fields are ignored, so a newer client's file still loads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredLease {
    pub lease_id: String,
    /// The key made on this device for the lease (base64 in the file). Never printed.
    pub private_key: PrivateKey,
    /// Where the wg-quick file was written, or none when it was only shown (QR, JSON).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The profile the broker sent for the lease. Read back through the same parsers as the
    /// broker's answer, so a wg-quick file rendered from it holds only well-formed fields,
    /// whoever edited this file. None in files written before it was kept.
    #[serde(default)]
    pub profile: Option<Profile>,
}

/// The per-edge lease files in one config directory.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    dir: PathBuf,
}

impl LeaseStore {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: config_dir.into(),
        }
    }

    /// `<config-dir>/profiles/EDGE.json`; the edge name must be a plain file name, as for
    /// [`default_profile_path`].
    pub fn path(&self, edge: &str) -> Result<PathBuf, Error> {
        Ok(default_profile_path(&self.dir, edge)?.with_extension("json"))
    }

    /// Saves atomically with mode 0600, creating the directory 0700.
    pub fn save(&self, edge: &str, lease: &StoredLease) -> Result<(), Error> {
        let path = self.path(edge)?;
        let on_disk = OnDisk {
            version: LEASE_FORMAT,
            lease,
        };
        let mut json = serde_json::to_vec_pretty(&on_disk).map_err(|source| Error::Protocol {
            detail: "cannot encode the stored lease".into(),
            source: Some(source),
        })?;
        json.push(b'\n');
        write_private_file(&path, &json)
    }

    /// The stored lease for `edge`, or none when no profile was made for it here.
    pub fn load(&self, edge: &str) -> Result<Option<StoredLease>, Error> {
        let path = self.path(edge)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let unreadable = |detail: String| Error::StoredLeaseUnreadable {
            edge: edge.to_owned(),
            path: path.clone(),
            detail,
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| unreadable(format!("is unreadable ({e})")))?;
        match value.get("version") {
            None => {}
            Some(v) if v.as_u64() == Some(LEASE_FORMAT) => {}
            Some(v) => {
                return Err(unreadable(format!(
                    "was written by another version of grantwire (format version {v}; this one \
                     reads format {LEASE_FORMAT})"
                )))
            }
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| unreadable(format!("is unreadable ({e})")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<config-dir>/profiles/EDGE.pending`: the key of a lease request whose answer has not
    /// arrived yet (see [`PendingKey`]).
    pub fn pending_path(&self, edge: &str) -> Result<PathBuf, Error> {
        Ok(default_profile_path(&self.dir, edge)?.with_extension("pending"))
    }

    /// Records `key` as the one about to be sent for a lease on `edge` by `user` at `broker`,
    /// before it is sent (atomically, mode 0600).
    pub fn save_pending(&self, edge: &str, pending: &PendingKey) -> Result<(), Error> {
        let mut json = serde_json::to_vec_pretty(pending).map_err(|source| Error::Protocol {
            detail: "cannot encode the pending key".into(),
            source: Some(source),
        })?;
        json.push(b'\n');
        write_private_file(&self.pending_path(edge)?, &json)
    }

    /// The key of an unanswered lease request on `edge` by `user` at `broker`, if one is kept.
    /// A file for another user or broker, or one that does not read, is no such key (and is
    /// replaced by the next request's).
    pub fn pending(
        &self,
        edge: &str,
        broker: &str,
        user: &str,
    ) -> Result<Option<PrivateKey>, Error> {
        let path = self.pending_path(edge)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        Ok(serde_json::from_slice::<PendingKey>(&bytes)
            .ok()
            .filter(|p| p.broker == broker && p.user == user)
            .map(|p| p.private_key))
    }

    /// Forgets the pending key of `edge`: its request was answered.
    pub fn clear_pending(&self, edge: &str) -> Result<(), Error> {
        let path = self.pending_path(edge)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
            _ => Ok(()),
        }
    }
}

/// The key of a lease request kept until the broker's answer arrives, so that `grantwire
/// profile` asked again after a lost answer (the connection broke, the broker restarted) sends
/// the same key: the broker then replaces the lease it may have made instead of adding a
/// second one beside it, and a retry is idempotent. `Debug` redacts the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingKey {
    /// The broker's base URL and the user of the session that asked.
    pub broker: String,
    pub user: String,
    pub private_key: PrivateKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn sample() -> StoredLease {
        StoredLease {
            lease_id: "l-0123456789abcdef".into(),
            private_key: PrivateKey::from_random_bytes([7; 32]),
            path: Some(PathBuf::from("/tmp/gw/home.conf")),
            profile: None,
        }
    }

    #[test]
    fn a_pending_key_is_kept_private_for_its_broker_and_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path().join("grantwire"));
        let (broker, user) = ("https://broker.test:8443/", "alice");
        assert!(store.pending("home", broker, user).unwrap().is_none());
        let key = PrivateKey::from_random_bytes([5; 32]);
        let pending = PendingKey {
            broker: broker.into(),
            user: user.into(),
            private_key: key.clone(),
        };
        store.save_pending("home", &pending).unwrap();
        let path = store.pending_path("home").unwrap();
        assert_eq!(path, dir.path().join("grantwire/profiles/home.pending"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let back = store.pending("home", broker, user).unwrap().unwrap();
        assert_eq!(back.as_bytes(), key.as_bytes());
        assert!(store.pending("home", broker, "bob").unwrap().is_none());
        assert!(store
            .pending("home", "https://other.test:8443/", user)
            .unwrap()
            .is_none());
        assert!(store.pending("cabin", broker, user).unwrap().is_none());
        assert!(!format!("{pending:?}").contains(&key.to_base64()));
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(store.pending("home", broker, user).unwrap().is_none());
        store.clear_pending("home").unwrap();
        assert!(!path.exists());
        store.clear_pending("home").unwrap();
    }

    #[test]
    fn round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path().join("grantwire"));
        assert!(store.load("home").unwrap().is_none());
        store.save("home", &sample()).unwrap();
        let path = store.path("home").unwrap();
        assert_eq!(path, dir.path().join("grantwire/profiles/home.json"));
        let back = store.load("home").unwrap().unwrap();
        assert_eq!(back.lease_id, sample().lease_id);
        assert_eq!(back.private_key.as_bytes(), sample().private_key.as_bytes());
        assert_eq!(back.path, sample().path);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["private_key"], sample().private_key.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn no_path_is_null_and_debug_hides_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path());
        let lease = StoredLease {
            path: None,
            ..sample()
        };
        store.save("home", &lease).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path("home").unwrap()).unwrap()).unwrap();
        assert!(json["path"].is_null());
        assert!(!format!("{lease:?}").contains(&lease.private_key.to_base64()));
    }

    fn sample_profile() -> Profile {
        serde_json::from_value(serde_json::json!({
            "lease_id": "l-0123456789abcdef",
            "edge": "home",
            "address": "10.77.0.2",
            "edge_public_key": PrivateKey::from_random_bytes([1; 32]).public_key().to_base64(),
            "endpoint": "192.0.2.1:51820",
            "allowed_ips": ["10.77.0.1/32"],
            "preshared_key": grantwire_proto::PresharedKey::from_bytes([2; 32]).to_base64(),
            "persistent_keepalive": 25,
            "plex_url": "http://10.77.0.1:32400/web",
            "pin": "198.51.100.7/32",
            "expires_at": 1_700_000_000,
        }))
        .unwrap()
    }

    #[test]
    fn the_kept_profile_is_parsed_again_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path());
        let lease = StoredLease {
            profile: Some(sample_profile()),
            ..sample()
        };
        store.save("home", &lease).unwrap();
        let back = store.load("home").unwrap().unwrap();
        assert_eq!(back.profile, lease.profile);

        // A file edited to smuggle a line into the wg-quick text does not load.
        let path = store.path("home").unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json["profile"]["endpoint"] = "192.0.2.1:51820\nPostUp = touch /tmp/pwned".into();
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        let err = store.load("home").unwrap_err();
        assert!(
            matches!(err, Error::StoredLeaseUnreadable { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn bad_edge_names_and_corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path());
        assert_eq!(store.load("../x").unwrap_err().kind(), ErrorKind::Usage);
        std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
        std::fs::write(store.path("home").unwrap(), "{not json").unwrap();
        assert!(store.load("home").is_err());
    }

    #[test]
    fn saved_file_names_its_format_and_older_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path());
        store.save("home", &sample()).unwrap();
        let path = store.path("home").unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["version"], LEASE_FORMAT);
        json.as_object_mut().unwrap().remove("version");
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        let back = store.load("home").unwrap().unwrap();
        assert_eq!(back.lease_id, sample().lease_id);
        assert_eq!(back.private_key.as_bytes(), sample().private_key.as_bytes());
    }

    #[test]
    fn other_formats_and_garbage_name_the_way_on_and_keep_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path());
        store.save("home", &sample()).unwrap();
        let path = store.path("home").unwrap();
        let mut newer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        newer["version"] = 2.into();
        let newer = serde_json::to_vec(&newer).unwrap();
        let cases: [(&[u8], &str); 4] = [
            (&newer, "format version 2"),
            (b"{not json", "unreadable"),
            (b"\x00\xff", "unreadable"),
            (br#"{"version":1,"lease_id":"l-1"}"#, "unreadable"),
        ];
        for (bytes, says) in cases {
            std::fs::write(&path, bytes).unwrap();
            let err = store.load("home").unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, Error::StoredLeaseUnreadable { .. }),
                "{err:?}"
            );
            assert!(msg.contains(says), "{msg}");
            assert!(msg.contains("grantwire profile home"), "{msg}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }
}
