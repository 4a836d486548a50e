//! Online backup: `VACUUM INTO` a temporary file next to the target, fsync it, check it with
//! `PRAGMA integrity_check`, then link it into place. The copy is a consistent snapshot (one
//! read transaction) taken while the broker keeps serving.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use grantwire_proto::{BackupRequest, BackupResponse};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::secrets;

impl Broker {
    pub async fn backup(&self, req: BackupRequest) -> Result<BackupResponse> {
        let target = PathBuf::from(&req.path);
        if !target.is_absolute() {
            return Err(Error::BadRequest("backup path must be absolute".into()));
        }
        if target.symlink_metadata().is_ok() {
            return Err(Error::Conflict(format!("{} already exists", req.path)));
        }
        let tmp = temp_path(&target)?;
        let res = self.write_checked_copy(&tmp, &target).await;
        // Whatever happened, the temporary file does not stay (after success it is a second
        // link to the copy).
        let _ = std::fs::remove_file(&tmp);
        let bytes = res?;
        tracing::info!(path = %req.path, bytes, "database backed up");
        Ok(BackupResponse {
            path: req.path,
            bytes,
        })
    }

    async fn write_checked_copy(&self, tmp: &Path, target: &Path) -> Result<u64> {
        // Made owner-only before any data goes in: the copy holds password hashes and sealed
        // TOTP secrets. VACUUM INTO accepts an empty existing file.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        let tmp_text = tmp
            .to_str()
            .ok_or_else(|| Error::BadRequest("backup path must be UTF-8".into()))?;
        let (into, db) = (tmp_text.to_owned(), self.db().path().to_owned());
        // On a connection of its own: VACUUM INTO only reads the source (one read
        // transaction, which in WAL mode does not hold up the writer), and the read pool's
        // connections refuse any statement that is not a plain read.
        tokio::task::spawn_blocking(move || -> Result<()> {
            crate::store::connect(&db)?.execute("VACUUM INTO ?", [into])?;
            Ok(())
        })
        .await??;
        let file = std::fs::File::open(tmp)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        let checked = tmp.to_owned();
        tokio::task::spawn_blocking(move || integrity_check(&checked)).await??;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))?;
        // A hard link never replaces an existing file, unlike rename: a FILE created since the
        // check above is still not overwritten.
        std::fs::hard_link(tmp, target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Conflict(format!("{} already exists", target.display()))
            } else {
                Error::Io(e)
            }
        })?;
        if let Some(dir) = target.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(bytes)
    }
}

fn temp_path(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::BadRequest("backup path must name a file".into()))?;
    let suffix: String = secrets::random_bytes::<6>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(target.with_file_name(format!(".{name}.tmp-{suffix}")))
}

fn integrity_check(path: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let result: Vec<String> =
        crate::store::rows(&conn, "PRAGMA integrity_check", [], |r| r.get(0))?;
    drop(conn);
    if result != ["ok"] {
        return Err(Error::Internal(format!(
            "backup copy failed its integrity check: {}",
            result.join("; ")
        )));
    }
    Ok(())
}
