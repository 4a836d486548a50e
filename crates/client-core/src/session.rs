//! The login session kept on the device between `grantwire login` and `grantwire profile`:
//! `<config-dir>/session.json`, mode 0600 in a 0700 directory, because it holds a bearer token.
//!
//! The file carries a format `version` ([`SESSION_FORMAT`]). A file from before versioning (no
//! `version`) is read as format 1 and rewritten with the field; a file of an unknown format (a
//! newer client's) or one that is not a session at all is an error that asks the user to log in
//! again, and is left untouched, so a newer client installed alongside loses nothing.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::output::write_private_file;
use crate::time::unix_now;
use crate::tls::Fingerprint;
use crate::Error;

/// The session file format this client writes and reads. Raise it when a change would make an
/// older client misread the file (a field changing meaning, not one added: unknown fields are
/// ignored).
pub const SESSION_FORMAT: u64 = 1;

/// The session as written to disk: the format version first, then the session's fields.
#[derive(Serialize)]
struct OnDisk<'a> {
    version: u64,
    #[serde(flatten)]
    session: &'a Session,
}

/// A broker session: where the broker is, how it is trusted, and the bearer token it issued.
/// Unknown fields in a stored session are ignored, so a newer client's file still loads.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The broker's base URL, normalised (`https://host:port/`).
    pub broker_url: String,
    /// The pinned certificate fingerprint, or none when the broker has a CA-signed certificate.
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    pub user: String,
    /// Bearer token; a secret. Never logged, redacted in `Debug`.
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Session {
    /// Expired at `now` (Unix seconds). The expiry second itself counts as expired, so the
    /// client never sends a token the broker is about to refuse.
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("broker_url", &self.broker_url)
            .field("fingerprint", &self.fingerprint)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where the session lives: one file in the client's config directory.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

impl SessionStore {
    pub const FILE_NAME: &'static str = "session.json";

    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: config_dir.into(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE_NAME)
    }

    /// Saves atomically with mode 0600, creating the directory 0700.
    pub fn save(&self, session: &Session) -> Result<(), Error> {
        let on_disk = OnDisk {
            version: SESSION_FORMAT,
            session,
        };
        let mut json = serde_json::to_vec_pretty(&on_disk).map_err(|source| Error::Protocol {
            detail: "cannot encode the session".into(),
            source: Some(source),
        })?;
        json.push(b'\n');
        write_private_file(&self.path(), &json)
    }

    /// The stored session, if one exists and has not expired by this device's clock.
    pub fn load(&self) -> Result<Session, Error> {
        self.load_at(unix_now())
    }

    /// [`load`](Self::load) with the current time passed in (Unix seconds).
    pub fn load_at(&self, now: i64) -> Result<Session, Error> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotLoggedIn),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| Error::CorruptSession {
                path: path.clone(),
                source,
            })?;
        let versioned = match value.get("version") {
            None => false,
            Some(v) if v.as_u64() == Some(SESSION_FORMAT) => true,
            Some(v) => {
                return Err(Error::SessionFormat {
                    path,
                    found: v.to_string(),
                    supported: SESSION_FORMAT,
                })
            }
        };
        let session: Session = serde_json::from_value(value)
            .map_err(|source| Error::CorruptSession { path, source })?;
        if !versioned {
            // A file from before versioning: add the field now. Best effort, the session in
            // hand is good either way (a read-only config dir must not stop the client).
            let _ = self.save(&session);
        }
        if session.is_expired_at(now) {
            return Err(Error::SessionExpired {
                expires_at: session.expires_at,
            });
        }
        Ok(session)
    }

    /// Forgets the session. Removing one that does not exist is not an error.
    pub fn remove(&self) -> Result<(), Error> {
        match std::fs::remove_file(self.path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", self.path(), e)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn sample() -> Session {
        Session {
            broker_url: "https://broker.example:8443/".into(),
            fingerprint: Some(Fingerprint::of_der(b"cert")),
            user: "alice".into(),
            token: "s3cret-token".into(),
            expires_at: 2_000,
        }
    }

    #[test]
    fn round_trip_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path().join("grantwire"));
        store.save(&sample()).unwrap();
        assert_eq!(store.load_at(1_000).unwrap(), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.path()), 0o600);
            assert_eq!(mode(store.dir()), 0o700);
        }
        store.remove().unwrap();
        assert_eq!(
            store.load_at(1_000).unwrap_err().kind(),
            ErrorKind::NotLoggedIn
        );
    }

    #[test]
    fn missing_session_says_to_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let err = SessionStore::new(dir.path()).load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotLoggedIn);
        assert_eq!(err.to_string(), "not logged in: run `grantwire login`");
    }

    #[test]
    fn expired_session_asks_to_log_in_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        store.save(&sample()).unwrap();
        for now in [2_000, 3_000] {
            let err = store.load_at(now).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::SessionExpired);
            assert!(err.to_string().contains("grantwire login"), "{err}");
        }
        assert!(store.load_at(1_999).is_ok());
    }

    #[test]
    fn unknown_fields_are_tolerated_and_no_pin_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        std::fs::write(
            store.path(),
            r#"{"broker_url":"https://b/","user":"bob","token":"t","expires_at":99,"theme":"dark"}"#,
        )
        .unwrap();
        let s = store.load_at(1).unwrap();
        assert_eq!((s.user.as_str(), s.fingerprint), ("bob", None));
    }

    #[test]
    fn saved_file_names_its_format_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        store.save(&sample()).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["version"], SESSION_FORMAT);
        assert_eq!(json["user"], "alice");
    }

    #[test]
    fn older_file_without_version_loads_and_gains_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        let old = r#"{"broker_url":"https://b/","fingerprint":null,"user":"bob","token":"t","expires_at":99}"#;
        std::fs::write(store.path(), old).unwrap();
        let s = store.load_at(1).unwrap();
        assert_eq!(
            (s.user.as_str(), s.token.as_str(), s.expires_at),
            ("bob", "t", 99)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["version"], SESSION_FORMAT, "{json}");
        assert_eq!(store.load_at(1).unwrap(), s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn unknown_versions_ask_to_log_in_again_and_keep_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        for version in ["2", "999", "0", "\"1\"", "null", "1.5"] {
            let text = format!(
                r#"{{"version":{version},"broker_url":"https://b/","user":"bob","token":"t","expires_at":99,"new_thing":[1]}}"#
            );
            std::fs::write(store.path(), &text).unwrap();
            let err = store.load_at(1).unwrap_err();
            assert!(
                matches!(err, Error::SessionFormat { .. }),
                "{version}: {err:?}"
            );
            assert_eq!(err.kind(), ErrorKind::SessionExpired);
            let msg = err.to_string();
            assert!(msg.contains("grantwire login"), "{msg}");
            assert!(msg.contains(&format!("format version {version}")), "{msg}");
            assert!(msg.contains(&store.path().display().to_string()), "{msg}");
            assert_eq!(std::fs::read_to_string(store.path()).unwrap(), text);
        }
    }

    #[test]
    fn garbage_asks_to_log_in_again_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        let garbage: [&[u8]; 6] = [
            b"{not json",
            b"",
            b"\xff\xfe\x00garbage",
            b"[1, 2, 3]",
            br#"{"version":1,"user":"bob"}"#,
            br#"{"broker_url":7,"user":"bob","token":"t","expires_at":"soon"}"#,
        ];
        for bytes in garbage {
            std::fs::write(store.path(), bytes).unwrap();
            let err = store.load_at(1).unwrap_err();
            assert!(matches!(err, Error::CorruptSession { .. }), "{err:?}");
            assert_eq!(err.kind(), ErrorKind::SessionExpired);
            assert!(err.to_string().contains("grantwire login"), "{err}");
            assert_eq!(std::fs::read(store.path()).unwrap(), bytes);
        }
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", sample()).contains("s3cret"));
    }
}
