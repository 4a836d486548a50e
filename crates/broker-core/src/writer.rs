//! The batch writer: one thread with its own SQLite connection that runs queued write jobs, each
//! in a savepoint of one transaction, and commits them together with one fsync.
//!
//! Why it exists: issuing a lease is about eight statements that must see the addresses the
//! previous lease took, so leases are written one after another. Through an async driver
//! (sqlx, which the broker used before) every statement is a round trip between the async task
//! and the connection's own worker thread, and every lease was its own commit: issuance stopped
//! at ~650 a second whatever the concurrency (README, Performance). Here the statements run on
//! the thread that owns the connection, and a burst of requests shares one commit.
//!
//! What a caller can rely on:
//! - A job that returns an error (or panics) is rolled back to its own savepoint: it changes
//!   nothing, and the other jobs of the batch are not affected.
//! - Nobody is answered before the commit that holds their change. If the commit fails, every
//!   job of that batch gets an error, and none of their changes exist.
//! - It is the only writer in the process: every change the broker makes is a job here
//!   (`crate::store::Db::write`), so writes never wait on SQLite's busy handler.
//! - The queue is bounded: a job that finds it full is refused at once with 429.
//! - On shutdown, [`BatchWriter::close`] writes what is queued and then ends the thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Jobs waiting for the thread; past this, requests are refused with 429 rather than queued.
const QUEUE: usize = 4096;

/// Most jobs in one transaction, so a long burst still commits (and answers) in steps.
const MAX_BATCH: usize = 256;

/// What the thread runs. Given the connection, the job does its work and returns whether it
/// succeeded (so the thread keeps or rolls back its savepoint) and how to answer once the batch
/// is over. Given `None`, the batch failed before the job's turn: it does nothing and answers
/// with the batch's error.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Answer) + Send>;

/// Called with `Ok` once the batch has committed, or with the reason it did not.
type Answer = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// Handle to the writer thread. The thread ends on [`BatchWriter::close`], or once every handle
/// is dropped.
#[derive(Clone)]
pub struct BatchWriter {
    jobs: mpsc::Sender<Job>,
    thread: Arc<Thread>,
}

struct Thread {
    /// Set by `close`: the thread ends once the queue is empty.
    stopping: AtomicBool,
    handle: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl BatchWriter {
    /// Opens a connection to the database at `path` (already created and migrated by
    /// [`crate::store::open`]) and starts the thread.
    pub fn start(path: &Path) -> Result<Self> {
        let conn = crate::store::connect(path)?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        let thread = Arc::new(Thread {
            stopping: AtomicBool::new(false),
            handle: std::sync::Mutex::new(None),
        });
        let state = Arc::clone(&thread);
        let handle = std::thread::Builder::new()
            .name("grantwire-writer".into())
            .spawn(move || run(conn, queue, &state.stopping))?;
        *thread.handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(Self { jobs, thread })
    }

    /// Writes what is queued, then ends the thread and closes its connection; later jobs are
    /// refused. For a clean shutdown: the last connection to close checkpoints the WAL.
    pub async fn close(&self) {
        self.thread.stopping.store(true, Ordering::SeqCst);
        // Wakes the thread if it is waiting for work; a job nobody waits for does nothing.
        let (wake, _) = job(|_: &Connection| Ok(()));
        let _ = self.jobs.send(wake).await;
        let handle = self
            .thread
            .handle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            if let Ok(Err(_)) = tokio::task::spawn_blocking(move || handle.join()).await {
                tracing::error!("the batch writer thread panicked");
            }
        }
    }

    /// Runs `work` in the next batch and returns its result once that batch has committed.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (job, answer) = job(work);
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::RateLimited { retry_after: 1 },
            mpsc::error::TrySendError::Closed(_) => {
                Error::Internal("the writer has stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| Error::Internal("the writer stopped before answering".into()))?
    }
}

/// Wraps `work` as a [`Job`] whose result arrives on the returned channel once its batch ends.
fn job<T, F>(work: F) -> (Job, oneshot::Receiver<Result<T>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        // A caller that has gone (its request dropped before the job's turn) gets nothing
        // written in its name.
        let result = match conn {
            Some(conn) if !reply.is_closed() => Some(
                catch_unwind(AssertUnwindSafe(|| work(conn)))
                    .unwrap_or_else(|_| Err(Error::Internal("a write job panicked".into()))),
            ),
            _ => None,
        };
        let ok = matches!(result, Some(Ok(_)));
        let answer: Answer = Box::new(move |batch| {
            let result = match (result, batch) {
                (Some(result), Ok(())) => result,
                // A job that had failed keeps its own error; one that had succeeded lost its
                // change with the batch.
                (Some(result), Err(why)) => result.and_then(|_| Err(Error::Internal(why))),
                (None, Err(why)) => Err(Error::Internal(why)),
                (None, Ok(())) => Err(Error::Internal("the request went away".into())),
            };
            let _ = reply.send(result);
        });
        (ok, answer)
    });
    (job, answer)
}

/// The thread: takes whatever is queued (at least one job, at most [`MAX_BATCH`]) and writes it
/// as one transaction, until every [`BatchWriter`] is gone.
fn run(conn: Connection, mut queue: mpsc::Receiver<Job>, stopping: &AtomicBool) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        write_batch(&conn, batch.drain(..));
        if stopping.load(Ordering::SeqCst) && queue.is_empty() {
            break;
        }
    }
}

/// One transaction: each job in its savepoint, then one commit; then every job is answered.
fn write_batch(conn: &Connection, jobs: impl Iterator<Item = Job>) {
    if !conn.is_autocommit() {
        // Only a ROLLBACK that itself failed leaves this; every later BEGIN would fail on it.
        tracing::error!("batch writer found a transaction left open; rolling it back");
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "batch writer could not begin a transaction");
        return abandon(conn, Vec::new(), jobs, &e);
    }
    let mut jobs = jobs;
    let mut answers: Vec<Answer> = Vec::new();
    while let Some(job) = jobs.next() {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            return abandon(conn, answers, std::iter::once(job).chain(jobs), &e);
        }
        let (ok, answer) = job(Some(conn));
        answers.push(answer);
        let ended = if ok {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = ended {
            // The savepoint stack is no longer known: give up the whole batch.
            return abandon(conn, answers, jobs, &e);
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(|e| {
        tracing::error!(error = %e, "batch writer could not commit");
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        format!("database: {e}")
    });
    for answer in answers {
        answer(committed.clone());
    }
}

/// Rolls the batch back and answers every job, run or not, with the database's error.
fn abandon(
    conn: &Connection,
    answers: Vec<Answer>,
    unrun: impl Iterator<Item = Job>,
    e: &rusqlite::Error,
) {
    tracing::error!(error = %e, "batch writer gave up a batch");
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let why = format!("database: {e}");
    for answer in answers {
        answer(Err(why.clone()));
    }
    for job in unrun {
        job(None).1(Err(why.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with one table whose rows must name an existing parent, checked at commit
    /// (a deferred foreign key): the one way a batch's commit fails that a test can arrange.
    fn database(dir: &Path) -> Connection {
        let conn = Connection::open(dir.join("w.db")).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             INSERT INTO parent VALUES (1);
             CREATE TABLE t (v TEXT NOT NULL UNIQUE,
                             parent INTEGER NOT NULL REFERENCES parent(id)
                                 DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        conn
    }

    fn insert(v: &'static str, parent: i64) -> impl FnOnce(&Connection) -> Result<&'static str> {
        move |conn| {
            conn.execute(
                "INSERT INTO t (v, parent) VALUES (?, ?)",
                rusqlite::params![v, parent],
            )?;
            Ok(v)
        }
    }

    fn rows(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    fn answered<T>(mut rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        rx.try_recv()
            .expect("every job is answered when its batch ends")
    }

    #[test]
    fn a_failing_job_changes_nothing_and_leaves_the_rest_of_its_batch_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path());
        let (a, a_rx) = job(insert("a", 1));
        // Writes a row, then fails: its row must go with it.
        let (b, b_rx) = job(|conn: &Connection| -> Result<()> {
            insert("b", 1)(conn)?;
            Err(Error::Conflict("no".into()))
        });
        // A duplicate of "a": the database refuses it.
        let (c, c_rx) = job(insert("a", 1));
        let (d, d_rx) = job(|_: &Connection| -> Result<()> { panic!("a bug in a job") });
        let (e, e_rx) = job(insert("e", 1));
        write_batch(&conn, vec![a, b, c, d, e].into_iter());

        assert_eq!(answered(a_rx).unwrap(), "a");
        assert!(matches!(answered(b_rx), Err(Error::Conflict(_))));
        assert!(matches!(answered(c_rx), Err(Error::Sqlite(_))));
        assert!(matches!(answered(d_rx), Err(Error::Internal(_))));
        assert_eq!(answered(e_rx).unwrap(), "e");
        assert_eq!(rows(&conn), ["a", "e"]);
        assert!(conn.is_autocommit(), "the batch's transaction is over");
    }

    #[test]
    fn a_failed_commit_fails_every_job_of_the_batch_and_keeps_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path());
        let (a, a_rx) = job(insert("a", 1));
        // No parent 2: the deferred foreign key fails the COMMIT, not the statement.
        let (b, b_rx) = job(insert("b", 2));
        let (c, c_rx) = job(|_: &Connection| -> Result<()> { Err(Error::Forbidden("own".into())) });
        write_batch(&conn, vec![a, b, c].into_iter());

        assert!(matches!(answered(a_rx), Err(Error::Internal(_))));
        assert!(matches!(answered(b_rx), Err(Error::Internal(_))));
        // A job that had already failed keeps its own reason.
        assert!(matches!(answered(c_rx), Err(Error::Forbidden(_))));
        assert!(rows(&conn).is_empty());
        assert!(
            conn.is_autocommit(),
            "the failed transaction was rolled back"
        );

        // The connection is still usable for the next batch.
        let (a, a_rx) = job(insert("a", 1));
        write_batch(&conn, vec![a].into_iter());
        assert_eq!(answered(a_rx).unwrap(), "a");
        assert_eq!(rows(&conn), ["a"]);
    }

    #[test]
    fn a_batch_that_cannot_begin_answers_every_job_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path());
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        // Another connection holds SQLite's write lock.
        let other = Connection::open(dir.path().join("w.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (a, a_rx) = job(insert("a", 1));
        let (b, b_rx) = job(insert("b", 1));
        write_batch(&conn, vec![a, b].into_iter());
        for rx in [a_rx, b_rx] {
            match answered(rx) {
                Err(Error::Internal(why)) => assert!(why.contains("locked"), "{why}"),
                other => panic!("expected the database's reason, got {other:?}"),
            }
        }
        other.execute_batch("ROLLBACK").unwrap();
        assert!(rows(&conn).is_empty());
        assert!(conn.is_autocommit());
    }

    #[test]
    fn a_job_whose_caller_has_gone_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path());
        let (a, a_rx) = job(insert("a", 1));
        let (gone, gone_rx) = job(insert("gone", 1));
        drop(gone_rx);
        write_batch(&conn, vec![a, gone].into_iter());
        assert_eq!(answered(a_rx).unwrap(), "a");
        assert_eq!(rows(&conn), ["a"]);
    }

    /// A job that holds the writer thread until the returned sender is dropped (or sent to),
    /// so a test can queue jobs behind it.
    fn blocker() -> (
        Job,
        oneshot::Receiver<Result<()>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (j, rx) = job(move |_: &Connection| -> Result<()> {
            let _ = wait.recv();
            Ok(())
        });
        (j, rx, release)
    }

    #[tokio::test]
    async fn jobs_queued_while_the_thread_is_busy_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        drop(database(dir.path()));
        let writer = BatchWriter::start(&dir.path().join("w.db")).unwrap();
        // While the thread is busy with a batch, requests queue, and the thread then writes
        // them in one transaction. The blocking job is taken alone (nothing else is queued);
        // the four queue behind it.
        let (first, first_rx, release) = blocker();
        writer.jobs.try_send(first).ok().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // Each job looks from a second connection: in one uncommitted transaction none of the
        // rows is visible there yet; had each job committed alone, the later ones would see
        // the earlier rows.
        let path = dir.path().join("w.db");
        let answers: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|v| {
                let path = path.clone();
                let (j, rx) = job(move |conn: &Connection| -> Result<i64> {
                    insert(v, 1)(conn)?;
                    let other = Connection::open(&path)?;
                    Ok(other.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?)
                });
                writer.jobs.try_send(j).ok().unwrap();
                rx
            })
            .collect();
        drop(release);
        first_rx.await.unwrap().unwrap();
        for rx in answers {
            assert_eq!(
                rx.await.unwrap().unwrap(),
                0,
                "committed before the batch ended"
            );
        }
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        assert_eq!(rows(&conn), ["a", "b", "c", "d"]);
    }

    #[tokio::test]
    async fn close_writes_what_was_queued_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        drop(database(dir.path()));
        let writer = BatchWriter::start(&dir.path().join("w.db")).unwrap();
        assert_eq!(writer.run(insert("a", 1)).await.unwrap(), "a");
        writer.close().await;
        let refused = writer.run(insert("b", 1)).await;
        assert!(matches!(refused, Err(Error::Internal(_))), "{refused:?}");
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        assert_eq!(rows(&conn), ["a"]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_with_429_at_once_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(database(dir.path()));
        let writer = BatchWriter::start(&dir.path().join("w.db")).unwrap();
        let (first, first_rx, release) = blocker();
        writer.jobs.try_send(first).ok().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // Queue until the queue is full (the thread is held by the first job), then ask once
        // more through the public door.
        let mut queued = Vec::new();
        loop {
            let (j, rx) = job(|_: &Connection| -> Result<()> { Ok(()) });
            match writer.jobs.try_send(j) {
                Ok(()) => queued.push(rx),
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(e) => panic!("the writer stopped: {e}"),
            }
            assert!(queued.len() <= QUEUE + MAX_BATCH, "the queue never filled");
        }
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            writer.run(insert("x", 1)),
        )
        .await
        .expect("a full queue refuses at once, it does not wait");
        assert!(
            matches!(refused, Err(Error::RateLimited { retry_after: 1 })),
            "{refused:?}"
        );
        drop(release);
        first_rx.await.unwrap().unwrap();
        for rx in queued {
            rx.await.unwrap().unwrap();
        }
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        assert!(rows(&conn).is_empty(), "the refused job never ran");
    }
}
