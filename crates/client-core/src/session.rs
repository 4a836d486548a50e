//! The login session kept on the device between `grantwire login` and `grantwire profile`:
//! `<config-dir>/session.json`, mode 0600 in a 0700 directory, because it holds a bearer token.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::output::write_private_file;
use crate::time::unix_now;
use crate::tls::Fingerprint;
use crate::Error;

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
        let mut json = serde_json::to_vec_pretty(session).map_err(|source| Error::Protocol {
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
        let session: Session = serde_json::from_slice(&bytes)
            .map_err(|source| Error::CorruptSession { path, source })?;
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
    fn corrupt_session_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        std::fs::write(store.path(), "{not json").unwrap();
        let err = store.load_at(1).unwrap_err();
        assert!(matches!(err, Error::CorruptSession { .. }), "{err:?}");
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", sample()).contains("s3cret"));
    }
}
