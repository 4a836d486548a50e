//! Reading the audit log for operators (`grantwire-broker audit`). Rows are written by
//! [`super::audit`] in the transaction of the change they record.

use grantwire_proto::AuditEntry;
use rusqlite::{params, Connection};

use super::rows;
use crate::error::Result;

/// What [`query`] selects; every filter is optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub since: Option<i64>,
    pub user: Option<&'a str>,
    pub kind: Option<&'a str>,
    /// Only the newest this many matching entries.
    pub limit: Option<u32>,
}

/// Entries at or after `since`, oldest first; with `user`, only those whose actor is the user
/// or whose detail names it as `user=NAME` (names are `[a-z0-9-]`, so no LIKE wildcard can
/// hide in one); with `kind`, only that kind; with `limit`, the newest that many.
pub fn query(conn: &Connection, filter: Filter<'_>) -> Result<Vec<AuditEntry>> {
    rows(
        conn,
        "SELECT * FROM (
           SELECT id, at, kind, actor, source_ip, detail FROM audit
           WHERE at >= ?1
             AND (?2 IS NULL OR actor = ?2
                  OR (' ' || COALESCE(detail, '') || ' ') LIKE '% user=' || ?2 || ' %')
             AND (?3 IS NULL OR kind = ?3)
           ORDER BY id DESC LIMIT ?4)
         ORDER BY id",
        params![
            filter.since.unwrap_or(i64::MIN),
            filter.user,
            filter.kind,
            // SQLite reads a negative LIMIT as none.
            filter.limit.map_or(-1, i64::from),
        ],
        |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                actor: r.get(3)?,
                source_ip: r.get(4)?,
                detail: r.get(5)?,
            })
        },
    )
}
