//! The brokers this device trusts by fingerprint, like SSH's `known_hosts`:
//! `<config-dir>/known_brokers.json`, mode 0600, one entry per normalised broker URL.
//!
//! An entry is written when the person accepts a broker's fingerprint at login (or passes it
//! with `--fingerprint`), and from then on that broker is reached only with that certificate:
//! a different one is refused, naming both fingerprints ([`Error::FingerprintChanged`]).

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::output::write_private_file;
use crate::tls::Fingerprint;
use crate::Error;

/// The file's contents. Unknown fields are ignored, so a newer client's file still loads.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    brokers: BTreeMap<String, Fingerprint>,
}

/// The known-brokers file of one config directory.
#[derive(Debug, Clone)]
pub struct KnownBrokers {
    dir: PathBuf,
}

impl KnownBrokers {
    pub const FILE_NAME: &'static str = "known_brokers.json";

    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: config_dir.into(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE_NAME)
    }

    /// The fingerprint trusted for `broker_url` (normalised, as [`crate::parse_broker_url`]
    /// gives it), if any.
    pub fn get(&self, broker_url: &str) -> Result<Option<Fingerprint>, Error> {
        Ok(self.load()?.brokers.get(broker_url).copied())
    }

    /// Trusts `fingerprint` for `broker_url` from now on, replacing any earlier one. Returns
    /// the one it replaced, if it differed.
    pub fn trust(
        &self,
        broker_url: &str,
        fingerprint: Fingerprint,
    ) -> Result<Option<Fingerprint>, Error> {
        let mut file = self.load()?;
        let old = file.brokers.insert(broker_url.to_owned(), fingerprint);
        if old != Some(fingerprint) {
            let mut json = serde_json::to_vec_pretty(&file).map_err(|source| Error::Protocol {
                detail: "cannot encode the known brokers".into(),
                source: Some(source),
            })?;
            json.push(b'\n');
            write_private_file(&self.path(), &json)?;
        }
        Ok(old.filter(|o| *o != fingerprint))
    }

    /// Refuses `presented` for `broker_url` if another fingerprint is trusted for it.
    pub fn check(&self, broker_url: &str, presented: Fingerprint) -> Result<(), Error> {
        match self.get(broker_url)? {
            Some(known) if known != presented => Err(Error::FingerprintChanged {
                broker: broker_url.to_owned(),
                known,
                presented,
            }),
            _ => Ok(()),
        }
    }

    fn load(&self) -> Result<File, Error> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(File::default()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| Error::Protocol {
            detail: format!(
                "{} is unreadable: {source}; fix or remove it, then log in again",
                path.display()
            ),
            source: Some(source),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const URL: &str = "https://broker.example:8443/";

    #[test]
    fn trust_is_remembered_privately_and_a_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownBrokers::new(dir.path().join("cfg"));
        let (a, b) = (Fingerprint::of_der(b"a"), Fingerprint::of_der(b"b"));
        assert_eq!(known.get(URL).unwrap(), None);
        known.check(URL, a).unwrap();

        assert_eq!(known.trust(URL, a).unwrap(), None);
        assert_eq!(known.get(URL).unwrap(), Some(a));
        assert_eq!(known.get("https://other.example/").unwrap(), None);
        known.check(URL, a).unwrap();
        let err = known.check(URL, b).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Trust);
        let msg = err.to_string();
        assert!(
            msg.contains(&a.to_string()) && msg.contains(&b.to_string()),
            "{msg}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(known.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Trusting anew (an explicit --fingerprint) replaces the old entry and says so.
        assert_eq!(known.trust(URL, b).unwrap(), Some(a));
        assert_eq!(known.trust(URL, b).unwrap(), None);
        assert_eq!(known.get(URL).unwrap(), Some(b));
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownBrokers::new(dir.path());
        std::fs::write(known.path(), "{oops").unwrap();
        let err = known.get(URL).unwrap_err();
        assert!(err.to_string().contains("known_brokers.json"), "{err}");
    }
}
