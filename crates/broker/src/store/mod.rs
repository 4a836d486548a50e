//! SQLite storage through sqlx. Every function takes a `&mut SqliteConnection`, which is a plain
//! pool connection or a transaction alike, so a change and its audit row can share one
//! transaction. Times are unix seconds.

pub mod audit;
pub mod edges;
pub mod enrolments;
pub mod leases;
pub mod users;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqliteConnection;

use crate::error::{Error, Result};

/// How long a writer waits for SQLite's lock before failing. Lease allocation serialises on
/// it (`BEGIN IMMEDIATE`), so it bounds the wait of a burst of concurrent lease requests.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for a pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) the database and applies the migrations.
pub async fn open(path: &Path) -> Result<SqlitePool> {
    create_private_file(path)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a write lost in a power cut could bring back a revoked grant or a used token.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Deleted and overwritten content (a TOTP secret replaced by its sealed form, a
        // session) is zeroed on disk rather than left in free pages.
        .pragma("secure_delete", "ON")
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        // A request that cannot get a connection this soon is answered 429 (see `Error`):
        // the broker is overloaded, and queueing longer only makes every answer late.
        .acquire_timeout(POOL_WAIT)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// A plain rusqlite connection to the database [`open`] made, for the batch writer
/// (`crate::writer`), with the same per-connection settings as the pool's.
pub fn open_direct(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode is a property of the file (set to WAL by `open`); these are per connection.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )?;
    // Issuance prepares about eight statements per lease; keep them all.
    conn.set_prepared_statement_cache_capacity(64);
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

/// Current unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Maps a unique-constraint violation to a 409 with `what` as the message.
pub(crate) fn conflict_on_unique(e: sqlx::Error, what: &str) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(what.into()),
        _ => Error::Db(e),
    }
}

/// One append-only audit row.
pub struct AuditEvent<'a> {
    pub kind: &'a str,
    pub actor: Option<&'a str>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

const INSERT_AUDIT: &str =
    "INSERT INTO audit (at, kind, actor, source_ip, detail) VALUES (?, ?, ?, ?, ?)";

pub async fn audit(conn: &mut SqliteConnection, now: i64, event: AuditEvent<'_>) -> Result<()> {
    sqlx::query(INSERT_AUDIT)
        .bind(now)
        .bind(event.kind)
        .bind(event.actor)
        .bind(event.source_ip)
        .bind(event.detail)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`audit`], on the batch writer's connection.
pub fn audit_blocking(conn: &rusqlite::Connection, now: i64, event: AuditEvent<'_>) -> Result<()> {
    conn.prepare_cached(INSERT_AUDIT)?
        .execute(rusqlite::params![
            now,
            event.kind,
            event.actor,
            event.source_ip,
            event.detail
        ])?;
    Ok(())
}

/// An audit row as read back (for tests and operators).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub at: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

pub async fn audit_log(conn: &mut SqliteConnection) -> Result<Vec<AuditRow>> {
    Ok(
        sqlx::query_as("SELECT at, kind, actor, source_ip, detail FROM audit ORDER BY id")
            .fetch_all(conn)
            .await?,
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

pub async fn counts(conn: &mut SqliteConnection) -> Result<Counts> {
    let (users, sessions, edges, grants, leases): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM sessions),
                (SELECT COUNT(*) FROM edges), (SELECT COUNT(*) FROM grants),
                (SELECT COUNT(*) FROM leases)",
    )
    .fetch_one(conn)
    .await?;
    Ok(Counts {
        users,
        sessions,
        edges,
        grants,
        leases,
    })
}
