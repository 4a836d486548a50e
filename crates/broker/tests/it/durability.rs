//! What a power cut may take: nothing the broker said was done. Every connection of the running
//! broker, the pooled readers and the batch writer alike, runs the database in WAL mode with
//! `synchronous = FULL` (a commit is on disk before the answer; NORMAL could lose the last ones,
//! bringing back a revoked grant or a spent code), foreign keys on and `secure_delete` on. Read
//! back from the broker's own connections, not from a fresh one, which would report its own
//! defaults (issue 16, durability).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use rusqlite::Connection;

/// (journal_mode, synchronous, foreign_keys, secure_delete) of `c`.
fn settings(c: &Connection) -> grantwire_broker::error::Result<(String, i64, i64, i64)> {
    let int = |pragma: &str| c.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, i64>(0));
    Ok((
        c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
        int("synchronous")?,
        int("foreign_keys")?,
        int("secure_delete")?,
    ))
}

/// `synchronous` reads 2 for FULL.
const WANTED: (&str, i64, i64, i64) = ("wal", 2, 1, 1);

#[tokio::test]
async fn every_connection_of_the_running_broker_is_wal_with_full_sync() {
    let h = Harness::start().await;
    let db = h.broker.admin().db().clone();
    // Reads at once, so several pooled readers answer, not one reused.
    let reads = futures_util::future::join_all((0..6).map(|_| {
        let db = db.clone();
        async move {
            db.read(|c| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                settings(c)
            })
            .await
            .unwrap()
        }
    }))
    .await;
    for got in reads {
        assert_eq!(
            (got.0.as_str(), got.1, got.2, got.3),
            WANTED,
            "a reader connection"
        );
    }
    let got = db.write(settings).await.unwrap();
    assert_eq!(
        (got.0.as_str(), got.1, got.2, got.3),
        WANTED,
        "the writer connection"
    );
    h.shutdown().await;
}
