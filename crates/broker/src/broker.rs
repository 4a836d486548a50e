//! [`Broker`]: the state every handler shares (database, session lifetime, the push channel to
//! edges) and the operations behind both the HTTP API and the admin socket. Handlers stay thin;
//! tests and the admin socket call these methods directly.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{broadcast, watch};

use crate::error::Result;
use crate::presence::Presence;
use crate::proxy::TrustedProxies;
use crate::secrets::Argon2Gate;
use crate::service::auth::AuthState;
use crate::store;
use crate::writer::BatchWriter;

/// Capacity of the change channel. A subscriber that falls this far behind is told it lagged
/// and simply re-reads its set, so nothing is lost by keeping it small.
const CHANGE_CHANNEL_CAPACITY: usize = 256;

/// Shared broker state. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    db: SqlitePool,
    session_ttl: Duration,
    argon2: Argon2Gate,
    auth: AuthState,
    /// Carries the id of an edge whose lease set changed. Edge streams re-read their set from
    /// the database on every message for them: the database is the only source of truth.
    changes: broadcast::Sender<i64>,
    /// Set on shutdown, so long-lived edge streams end instead of holding the server open.
    shutdown: watch::Sender<bool>,
    /// Peers whose `X-Forwarded-For` names the client.
    trusted_proxies: TrustedProxies,
    /// Edges with an open sync stream.
    presence: Arc<Presence>,
    /// Whose turn it is to write. See [`Broker::write_tx`].
    write_turn: Arc<tokio::sync::Mutex<()>>,
    /// Writes lease issuance in batches, on its own connection.
    writer: BatchWriter,
    /// A plain connection of its own for reading lease sets (see [`Broker::lease_set`]).
    set_reader: Arc<std::sync::Mutex<rusqlite::Connection>>,
}

/// A write transaction holding the broker's write turn until it commits or is dropped (which
/// rolls it back). Derefs to the connection, so store functions take `&mut tx`.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl Broker {
    /// `db` is the pool [`store::open`] returned for the file at `db_path`.
    pub fn new(
        db: SqlitePool,
        db_path: &Path,
        session_ttl: Duration,
        argon2: Argon2Gate,
        auth: AuthState,
        trusted_proxies: TrustedProxies,
    ) -> Result<Self> {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (shutdown, _) = watch::channel(false);
        let write_turn = Arc::default();
        let writer = BatchWriter::start(db_path, Arc::clone(&write_turn))?;
        let set_reader = Arc::new(std::sync::Mutex::new(store::open_direct(db_path)?));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                session_ttl,
                argon2,
                auth,
                changes,
                shutdown,
                trusted_proxies,
                presence: Arc::default(),
                write_turn,
                writer,
                set_reader,
            }),
        })
    }

    pub fn db(&self) -> &SqlitePool {
        &self.inner.db
    }

    pub fn session_ttl(&self) -> Duration {
        self.inner.session_ttl
    }

    pub(crate) fn argon2(&self) -> &Argon2Gate {
        &self.inner.argon2
    }

    pub(crate) fn auth(&self) -> &AuthState {
        &self.inner.auth
    }

    pub(crate) fn presence(&self) -> &Arc<Presence> {
        &self.inner.presence
    }

    pub(crate) fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }

    /// Every write transaction starts here. IMMEDIATE takes SQLite's write lock at BEGIN: a
    /// deferred transaction that reads first holds a WAL snapshot, and if another writer
    /// commits before it upgrades to a writer, SQLite fails it with SQLITE_BUSY_SNAPSHOT at
    /// once (the busy timeout does not apply), so e.g. a revoke would fail under lease traffic.
    ///
    /// Writers also take turns in-process first (a fair FIFO lock): SQLite's own busy handler
    /// makes a waiting writer sleep 1, 2, 5 ... up to 100 ms between tries, so eight pool
    /// connections racing for the lock turned a 4 ms lease into a p99 of most of a second.
    pub(crate) async fn write_tx(&self) -> Result<WriteTx> {
        let turn = self.write_turn().await;
        let tx = self.db().begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// The batch writer, for writes that are many and small (lease issuance).
    pub(crate) fn writer(&self) -> &BatchWriter {
        &self.inner.writer
    }

    /// The lease-set reader's connection (used on a blocking thread).
    pub(crate) fn set_reader(&self) -> Arc<std::sync::Mutex<rusqlite::Connection>> {
        Arc::clone(&self.inner.set_reader)
    }

    /// The write turn alone, for a single-statement write outside [`Broker::write_tx`].
    pub(crate) async fn write_turn(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.inner.write_turn).lock_owned().await
    }

    /// Tells every connected stream of `edge_id` to send a fresh lease set. Called after the
    /// transaction that made the change has committed.
    pub(crate) fn notify_edge(&self, edge_id: i64) {
        // No receivers (no edge connected) is not an error: the edge gets the full set when it
        // connects.
        let _ = self.inner.changes.send(edge_id);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Row counts of the main tables, for tests that check a refusal changed nothing.
    pub async fn counts(&self) -> Result<store::Counts> {
        let mut conn = self.db().acquire().await?;
        store::counts(&mut conn).await
    }

    /// The audit log, oldest first.
    pub async fn audit_log(&self) -> Result<Vec<store::AuditRow>> {
        let mut conn = self.db().acquire().await?;
        store::audit_log(&mut conn).await
    }
}

/// Audit text for a source address.
pub(crate) fn ip_text(ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| ip.to_canonical().to_string())
}
