//! SQLite storage through rusqlite, the broker's one database driver. Every store function is
//! synchronous and takes a `&Connection`; the async code reaches the database through [`Db`]:
//! [`Db::read`] runs a closure on one of a few read-only connections on a blocking thread, and
//! [`Db::write`] runs it on the batch writer's connection (`crate::writer`) inside a savepoint
//! of that batch's transaction, so a change and its audit row are written together or not at
//! all. Times are unix seconds.

pub mod alerts;
pub mod audit;
pub mod edges;
pub mod invites;
pub mod leases;
mod migrations;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::writer::BatchWriter;

/// How long a connection waits for SQLite's lock before failing. The batch writer is the only
/// writer in the process; this covers a backup or an operator's `sqlite3` holding the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Most reads at once. More would only queue on the two cores such a host has; a read waits
/// for a free connection at most [`READ_WAIT`].
const READERS: usize = 8;

/// Longest wait for a read connection. A request that cannot get one this soon is answered
/// 429: the broker is overloaded, and queueing longer only makes every answer late.
const READ_WAIT: Duration = Duration::from_secs(10);

/// The database: the batch writer and a few read-only connections. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: BatchWriter,
    /// Idle read connections; a read that finds none opens one (at most [`READERS`] exist,
    /// counted by `permits`).
    readers: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// Opens (creating if needed) the database, applies the migrations and starts the writer.
pub async fn open(path: &Path) -> Result<Db> {
    let path = path.to_owned();
    let writer_path = path.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        create_private_file(&writer_path)?;
        let mut conn = connect(&writer_path)?;
        // A property of the file, kept by every later connection: readers never block the
        // writer and the writer never blocks readers.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrations::apply(&mut conn)
    })
    .await??;
    let writer = BatchWriter::start(&path)?;
    Ok(Db {
        inner: Arc::new(Inner {
            path,
            writer,
            readers: Mutex::new(Vec::new()),
            permits: Semaphore::new(READERS),
        }),
    })
}

impl Db {
    /// Runs `work` on a read-only connection on a blocking thread. Several statements in one
    /// closure see one snapshot only inside an explicit transaction (`unchecked_transaction`).
    pub async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit = match tokio::time::timeout(READ_WAIT, self.inner.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Error::Internal("the database is closed".into())),
            Err(_) => {
                tracing::info!("overloaded: a request waited too long for a database connection");
                return Err(Error::RateLimited { retry_after: 1 });
            }
        };
        let idle = self.idle_reader();
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = match idle {
                Some(conn) => conn,
                None => connect_reader(&inner.path)?,
            };
            let result = work(&conn);
            // A closure that left a transaction open (an early `?` after
            // `unchecked_transaction` drops it, which rolls back) must not pass it on.
            if conn.is_autocommit() {
                inner
                    .readers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
            result
        })
        .await?
    }

    /// Runs `work` in the batch writer's next transaction (see `crate::writer`) and returns its
    /// result once that transaction has committed. An error from `work` rolls back what it
    /// wrote and nothing else.
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.run(work).await
    }

    /// Writes what is queued and closes the writer's connection; later writes are refused.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn idle_reader(&self) -> Option<Connection> {
        self.inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
    }
}

/// A connection with the settings every connection of the broker has.
pub fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        // FULL: a write lost in a power cut could bring back a revoked grant or a used token.
        // secure_delete: deleted and overwritten content (a TOTP secret replaced by its sealed
        // form, a session, an erased preshared key) is zeroed on disk rather than left in free
        // pages.
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )?;
    // Issuance prepares about eight statements per lease; keep them all.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A connection that refuses to write: a read that writes by mistake fails instead of writing
/// outside the writer's transactions.
fn connect_reader(path: &Path) -> Result<Connection> {
    let conn = connect(path)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// The database holds password hashes and TOTP secrets: make it owner-only before SQLite
/// creates it with the umask's mode.
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Maps a unique-constraint violation to a 409 with `what` as the message.
pub fn conflict_on_unique(e: rusqlite::Error, what: &str) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Error::Conflict(what.into())
        }
        _ => Error::Sqlite(e),
    }
}

/// Rows of `sql` with `params`, each mapped by `map`.
pub fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The one row of `sql`, or `None`.
pub fn optional_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params, map)
        .optional()?)
}

/// The one row of `sql`; no row is an error.
pub fn one_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    Ok(conn.prepare_cached(sql)?.query_row(params, map)?)
}

/// Runs a statement; returns how many rows it changed.
pub fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// One append-only audit row.
pub struct AuditEvent<'a> {
    pub kind: &'a str,
    pub actor: Option<&'a str>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

pub fn audit(conn: &Connection, now: i64, event: AuditEvent<'_>) -> Result<()> {
    exec(
        conn,
        "INSERT INTO audit (at, kind, actor, source_ip, detail) VALUES (?, ?, ?, ?, ?)",
        rusqlite::params![now, event.kind, event.actor, event.source_ip, event.detail],
    )?;
    Ok(())
}

/// An audit row as read back (for tests and operators).
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

pub fn audit_log(conn: &Connection) -> Result<Vec<AuditRow>> {
    rows(
        conn,
        "SELECT at, kind, actor, source_ip, detail FROM audit ORDER BY id",
        [],
        |r| {
            Ok(AuditRow {
                at: r.get(0)?,
                kind: r.get(1)?,
                actor: r.get(2)?,
                source_ip: r.get(3)?,
                detail: r.get(4)?,
            })
        },
    )
}

/// Row counts of the tables a refused request must not touch; tests compare them before and
/// after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub users: i64,
    pub sessions: i64,
    pub edges: i64,
    pub grants: i64,
    pub leases: i64,
}

pub fn counts(conn: &Connection) -> Result<Counts> {
    one_row(
        conn,
        "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM sessions),
                (SELECT COUNT(*) FROM edges), (SELECT COUNT(*) FROM grants),
                (SELECT COUNT(*) FROM leases)",
        [],
        |r| {
            Ok(Counts {
                users: r.get(0)?,
                sessions: r.get(1)?,
                edges: r.get(2)?,
                grants: r.get(3)?,
                leases: r.get(4)?,
            })
        },
    )
}

#[cfg(test)]
pub mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A connection to a new database in `dir` with the whole schema, for store unit tests.
    pub fn migrated(dir: &Path) -> Connection {
        let path = dir.join("t.db");
        create_private_file(&path).unwrap();
        let mut conn = connect(&path).unwrap();
        migrations::apply(&mut conn).unwrap();
        conn
    }

    #[tokio::test]
    async fn a_read_that_writes_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("t.db")).await.unwrap();
        let wrote = db
            .read(|c| Ok(c.execute("DELETE FROM users", [])?))
            .await
            .unwrap_err();
        assert!(wrote.to_string().contains("readonly"), "{wrote}");
        let users = db
            .write(|tx| {
                users::insert(tx, "alice", "x", b"s", false, 0)?;
                Ok(())
            })
            .await;
        users.unwrap();
        let again = db.read(|c| Ok(c.execute("DELETE FROM users", [])?)).await;
        assert!(again.is_err());
        assert_eq!(db.read(counts).await.unwrap().users, 1);
        db.close().await;
    }

    /// Every read connection busy past the wait: 429, not a queue without end.
    #[tokio::test(start_paused = true)]
    async fn a_read_that_waits_too_long_for_a_connection_is_overload() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("t.db")).await.unwrap();
        let held: Vec<_> = (0..READERS)
            .map(|_| db.inner.permits.try_acquire().unwrap())
            .collect();
        let refused = db.read(counts).await.unwrap_err();
        assert!(
            matches!(refused, Error::RateLimited { retry_after: 1 }),
            "{refused:?}"
        );
        drop(held);
        assert_eq!(db.read(counts).await.unwrap().users, 0);
        db.close().await;
    }
}
