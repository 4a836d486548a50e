//! The schema: `crates/broker/migrations/*.sql`, applied in order by rusqlite_migration, which
//! records how many have run in SQLite's `user_version`.
//!
//! Databases written before the broker moved to rusqlite recorded their migrations in sqlx's
//! `_sqlx_migrations` table instead. Such a database is adopted once: its recorded versions
//! must be a prefix of [`FILES`] with the same SHA-384 checksums (what sqlx stored), and then
//! `user_version` is set to their count so only the later migrations run. Anything else (a
//! failed or unknown migration, a changed file) stops the broker: a schema it does not know is
//! not one to write to.

use rusqlite::{Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};

use crate::error::{Error, Result};

/// (sqlx version, SQL), in order. The version is the file's number; 7 was never released.
const FILES: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_accounts.sql")),
    (3, include_str!("../../migrations/0003_pins_admin.sql")),
    (4, include_str!("../../migrations/0004_reports_alerts.sql")),
    (5, include_str!("../../migrations/0005_invites.sql")),
    (6, include_str!("../../migrations/0006_web_sessions.sql")),
    (8, include_str!("../../migrations/0008_network_lockout.sql")),
    (9, include_str!("../../migrations/0009_bounds.sql")),
    (10, include_str!("../../migrations/0010_tls_renewal.sql")),
];

/// Brings the database at `conn` to the latest schema.
pub fn apply(conn: &mut Connection) -> Result<()> {
    adopt_sqlx_history(conn)?;
    let migrations = Migrations::new(FILES.iter().map(|(_, sql)| M::up(sql)).collect());
    migrations
        .to_latest(conn)
        .map_err(|e| Error::Internal(format!("database migration: {e}")))
}

fn adopt_sqlx_history(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_sqlx_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if version != 0 || !has_sqlx_table {
        return Ok(());
    }
    let applied: Vec<(i64, bool, Vec<u8>)> = {
        let mut stmt = conn
            .prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let count = known_prefix(&applied)?;
    conn.pragma_update(None, "user_version", i64::try_from(count).unwrap_or(0))?;
    tracing::info!(
        migrations = count,
        "adopted a database whose schema sqlx had recorded"
    );
    Ok(())
}

/// The number of [`FILES`] that `applied` (sqlx's rows: version, success, checksum) records,
/// or why they are not a prefix of them.
fn known_prefix(applied: &[(i64, bool, Vec<u8>)]) -> Result<usize> {
    let refuse = |why: String| {
        Error::Internal(format!(
            "the database's recorded schema is not one this broker knows: {why}"
        ))
    };
    if applied.len() > FILES.len() {
        return Err(refuse(format!(
            "{} migrations recorded, this broker has {}",
            applied.len(),
            FILES.len()
        )));
    }
    for ((version, success, checksum), (want, sql)) in applied.iter().zip(FILES) {
        if version != want {
            return Err(refuse(format!("migration {version} where {want} belongs")));
        }
        if !success {
            return Err(refuse(format!("migration {version} did not finish")));
        }
        let digest = ring::digest::digest(&ring::digest::SHA384, sql.as_bytes());
        if digest.as_ref() != checksum.as_slice() {
            return Err(refuse(format!(
                "migration {version} differs from this broker's"
            )));
        }
    }
    Ok(applied.len())
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn recorded(n: usize) -> Vec<(i64, bool, Vec<u8>)> {
        FILES[..n]
            .iter()
            .map(|(v, sql)| {
                let d = ring::digest::digest(&ring::digest::SHA384, sql.as_bytes());
                (*v, true, d.as_ref().to_vec())
            })
            .collect()
    }

    #[test]
    fn the_migrations_are_valid() {
        let migrations = Migrations::new(FILES.iter().map(|(_, sql)| M::up(sql)).collect());
        migrations.validate().unwrap();
    }

    #[test]
    fn a_prefix_of_sqlx_history_is_adopted_as_its_length() {
        for n in 0..=FILES.len() {
            assert_eq!(known_prefix(&recorded(n)).unwrap(), n);
        }
    }

    #[test]
    fn a_history_this_broker_does_not_know_is_refused() {
        let mut failed = recorded(3);
        failed[2].1 = false;
        let mut changed = recorded(3);
        changed[1].2[0] ^= 1;
        let mut gap = recorded(7);
        gap.remove(5);
        let mut longer = recorded(FILES.len());
        longer.push((10, true, vec![0; 48]));
        for (history, says) in [
            (failed, "did not finish"),
            (changed, "differs"),
            (gap, "where 6 belongs"),
            (longer, "migrations recorded"),
        ] {
            let e = known_prefix(&history).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_fresh_database_gets_every_migration_and_a_second_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("m.db")).unwrap();
        apply(&mut conn).unwrap();
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, FILES.len());
        apply(&mut conn).unwrap();
        let again: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(again, FILES.len());
    }
}
