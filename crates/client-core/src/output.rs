//! Profile output: the wg-quick file (mode 0600, it holds the private key), and the atomic
//! private-file writer the session store, the lease store and the QR images ([`crate::qr`]) use.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use grantwire_proto::EdgeName;

use crate::Error;

/// Writes a wg-quick profile to `path` with mode 0600; see [`write_private_file`].
pub fn write_profile(path: &Path, wg_quick: &str) -> Result<(), Error> {
    write_private_file(path, wg_quick.as_bytes())
}

/// `<config_dir>/profiles/<edge>.conf`. The edge name becomes a file name; an [`EdgeName`]
/// (the broker's rule for every edge) has no separator, no `.` and no other character a path
/// could read as syntax.
pub fn default_profile_path(config_dir: &Path, edge: &str) -> Result<PathBuf, Error> {
    let edge = parse_edge_name(edge)?;
    Ok(config_dir.join("profiles").join(format!("{edge}.conf")))
}

/// `edge` as an [`EdgeName`], or the client's usage error naming it.
pub(crate) fn parse_edge_name(edge: &str) -> Result<EdgeName, Error> {
    edge.parse().map_err(|_| Error::InvalidEdgeName {
        name: edge.to_owned(),
    })
}

/// Replaces `path` with `contents` atomically: a temporary file created 0600 in the same
/// directory, synced, then renamed over the target, so a reader sees the old or the new file
/// and never a partial one, and the secret is never readable by others, not even briefly.
/// Missing parent directories are created 0700.
///
/// A symbolic link at `path` is refused rather than replaced: the user may expect the write to
/// land where it points. (The rename itself never follows a link, so a link swapped in after
/// the check only gets replaced, and the secret still never lands elsewhere.)
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_private_dir(parent)?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(Error::io(
                "write",
                path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it is a symbolic link; refusing to follow it",
                ),
            ))
        }
        Ok(meta) if meta.is_dir() => {
            return Err(Error::io(
                "write",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "it is a directory"),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("inspect", path, e)),
    }

    let mut builder = tempfile::Builder::new();
    builder.prefix(".grantwire-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder
        .tempfile_in(parent)
        .map_err(|e| Error::io("create a temporary file in", parent, e))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("write", tmp.path().to_path_buf(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("write", path, e.error))?;
    sync_dir(parent);
    Ok(())
}

/// Creates `dir` and any missing parents with mode 0700. An existing directory keeps its mode:
/// it may be one the user chose and shares on purpose.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Makes the rename durable. Best effort: some filesystems refuse to sync a directory, and the
/// file's contents were already synced.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn profile_file_is_0600_in_a_new_0700_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/profiles/home.conf");
        write_profile(&path, "[Interface]\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "[Interface]\n");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Replacing an existing, looser file leaves a 0600 one and no temporary files.
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_profile(&path, "second").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_to_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("home.conf");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = write_profile(&link, "secret").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn default_path_takes_only_plain_edge_names() {
        let base = Path::new("/cfg");
        assert_eq!(
            default_profile_path(base, "home-1").unwrap(),
            Path::new("/cfg/profiles/home-1.conf")
        );
        // Names the broker never gives an edge are refused here too.
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a\\b",
            "é",
            "home-1.lan",
            "Home",
            "a_b",
        ] {
            assert!(default_profile_path(base, bad).is_err(), "{bad}");
        }
    }
}
