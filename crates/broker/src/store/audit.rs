//! Reading the audit log for operators (`grantwire-broker audit`). Rows are written by
//! [`super::audit`] in the transaction of the change they record.

use grantwire_proto::AuditEntry;
use sqlx::SqliteConnection;

use crate::error::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    id: i64,
    at: i64,
    kind: String,
    actor: Option<String>,
    source_ip: Option<String>,
    detail: Option<String>,
}

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
pub async fn query(conn: &mut SqliteConnection, filter: Filter<'_>) -> Result<Vec<AuditEntry>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT * FROM (
           SELECT id, at, kind, actor, source_ip, detail FROM audit
           WHERE at >= ?1
             AND (?2 IS NULL OR actor = ?2
                  OR (' ' || COALESCE(detail, '') || ' ') LIKE '% user=' || ?2 || ' %')
             AND (?3 IS NULL OR kind = ?3)
           ORDER BY id DESC LIMIT ?4)
         ORDER BY id",
    )
    .bind(filter.since.unwrap_or(i64::MIN))
    .bind(filter.user)
    .bind(filter.kind)
    // SQLite reads a negative LIMIT as none.
    .bind(filter.limit.map_or(-1, i64::from))
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: r.at,
            kind: r.kind,
            actor: r.actor,
            source_ip: r.source_ip,
            detail: r.detail,
        })
        .collect())
}
