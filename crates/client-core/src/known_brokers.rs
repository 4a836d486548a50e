//! The brokers this device trusts by fingerprint, like SSH's `known_hosts`:
//! `<config-dir>/known_brokers.json`, mode 0600, one entry per normalised broker URL.
//!
//! An entry is written when the person accepts a broker's fingerprint at login (or passes it
//! with `--fingerprint`), and from then on that broker is reached only with that certificate:
//! a different one is refused, naming both fingerprints ([`Error::FingerprintChanged`]).
//!
//! The file carries a format `version` ([`KNOWN_BROKERS_FORMAT`]); one from before versioning
//! is read as format 1. A file of an unknown format (a newer client's) or a damaged one trusts
//! nothing: every check fails closed ([`Error::KnownBrokersUnreadable`]) and the file is never
//! rewritten, so a newer client's entries survive a run of this one.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::output::write_private_file;
use crate::tls::Fingerprint;
use crate::Error;

/// The known-brokers file format this client writes and reads.
pub const KNOWN_BROKERS_FORMAT: u64 = 1;

/// The file's contents. Unknown fields are ignored, so a file of the same format with more in
/// it still loads.
#[derive(Debug, Serialize, Deserialize)]
struct File {
    #[serde(default = "format")]
    version: u64,
    #[serde(default)]
    brokers: BTreeMap<String, Fingerprint>,
}

/// The known-brokers file of one config directory.
#[derive(Debug, Clone)]
pub struct KnownBrokers {
    dir: PathBuf,
}

fn format() -> u64 {
    KNOWN_BROKERS_FORMAT
}

impl Default for File {
    fn default() -> Self {
        Self {
            version: KNOWN_BROKERS_FORMAT,
            brokers: BTreeMap::new(),
        }
    }
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
        let unreadable = |detail: String| Error::KnownBrokersUnreadable {
            path: path.clone(),
            detail,
        };
        let file: File = serde_json::from_slice(&bytes)
            .map_err(|e| unreadable(format!("is unreadable ({e})")))?;
        if file.version != KNOWN_BROKERS_FORMAT {
            return Err(unreadable(format!(
                "was written by another version of grantwire (format version {}; this one \
                 reads format {KNOWN_BROKERS_FORMAT})",
                file.version
            )));
        }
        Ok(file)
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
    fn saved_file_names_its_format_and_an_unversioned_one_loads() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownBrokers::new(dir.path());
        let a = Fingerprint::of_der(b"a");
        known.trust(URL, a).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(known.path()).unwrap()).unwrap();
        assert_eq!(json["version"], KNOWN_BROKERS_FORMAT, "{json}");

        json.as_object_mut().unwrap().remove("version");
        std::fs::write(known.path(), json.to_string()).unwrap();
        assert_eq!(known.get(URL).unwrap(), Some(a));
        known.check(URL, a).unwrap();
    }

    #[test]
    fn damaged_or_newer_files_trust_nothing_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownBrokers::new(dir.path());
        let a = Fingerprint::of_der(b"a");
        let entry = format!(r#""brokers":{{"{URL}":"{a}"}}"#);
        let cases = [
            ("{oops".to_owned(), "is unreadable"),
            (format!(r#"{{"version":2,{entry}}}"#), "format version 2"),
            (format!(r#"{{"version":0,{entry}}}"#), "format version 0"),
            (format!(r#"{{"version":"1",{entry}}}"#), "is unreadable"),
            (
                r#"{"version":1,"brokers":{"x":"not a fingerprint"}}"#.to_owned(),
                "is unreadable",
            ),
        ];
        for (contents, says) in cases {
            std::fs::write(known.path(), &contents).unwrap();
            for err in [
                known.get(URL).unwrap_err(),
                known.check(URL, a).unwrap_err(),
                known.trust(URL, a).unwrap_err(),
            ] {
                assert_eq!(err.kind(), ErrorKind::Trust, "{contents}: {err:?}");
                let msg = err.to_string();
                assert!(msg.contains("known_brokers.json"), "{msg}");
                assert!(msg.contains(says), "{contents}: {msg}");
            }
            assert_eq!(std::fs::read_to_string(known.path()).unwrap(), contents);
        }
    }
}
