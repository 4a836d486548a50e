//! Alerts as stored: a trigger (migrations 0004, 0009) writes an `alerts` row with each
//! alerting audit row; the shell's delivery (`crate::alerts`) reads the due ones and records
//! each attempt here.

use rusqlite::{params, Connection};
use serde::Serialize;

use super::{exec, one_row, rows};
use crate::error::Result;

/// The JSON body of one alert: the audit row it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct AlertBody {
    /// Always `"grantwire"`, so a receiver shared with other tools can route it.
    pub source: &'static str,
    /// The alert's id; a receiver may see the same id twice if an answer was lost.
    pub id: i64,
    /// `account_locked`, `totp_reused`, `lease_key_off_pin` or `login_new_source`.
    pub kind: String,
    /// Unix seconds of the event.
    pub at: i64,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

/// A pending alert whose next attempt is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub id: i64,
    /// Attempts made so far.
    pub attempts: i64,
    /// Unix seconds of the event.
    pub at: i64,
}

/// Up to `limit` pending alerts due by `now`, oldest first.
pub fn due(conn: &Connection, now: i64, limit: i64) -> Result<Vec<Due>> {
    rows(
        conn,
        "SELECT a.id, a.attempts, u.at FROM alerts a JOIN audit u ON u.id = a.audit_id
         WHERE a.state = 'pending' AND a.next_at <= ? ORDER BY a.id LIMIT ?",
        [now, limit],
        |r| {
            Ok(Due {
                id: r.get(0)?,
                attempts: r.get(1)?,
                at: r.get(2)?,
            })
        },
    )
}

/// The JSON body of alert `id`.
pub fn body(conn: &Connection, id: i64) -> Result<AlertBody> {
    one_row(
        conn,
        "SELECT a.id, u.kind, u.at, u.actor, u.source_ip, u.detail
         FROM alerts a JOIN audit u ON u.id = a.audit_id WHERE a.id = ?",
        [id],
        |r| {
            Ok(AlertBody {
                source: "grantwire",
                id: r.get(0)?,
                kind: r.get(1)?,
                at: r.get(2)?,
                actor: r.get(3)?,
                source_ip: r.get(4)?,
                detail: r.get(5)?,
            })
        },
    )
}

/// Too old to be worth sending: never tried again.
pub fn expire(conn: &Connection, id: i64) -> Result<()> {
    exec(
        conn,
        "UPDATE alerts SET state = 'expired' WHERE id = ?",
        [id],
    )?;
    Ok(())
}

pub fn sent(conn: &Connection, id: i64, attempts: i64, now: i64) -> Result<()> {
    exec(
        conn,
        "UPDATE alerts SET state = 'sent', attempts = ?, sent_at = ?, last_error = NULL
         WHERE id = ?",
        [attempts, now, id],
    )?;
    Ok(())
}

/// Given up after `attempts`; `error` never holds the webhook's URL.
pub fn failed(conn: &Connection, id: i64, attempts: i64, error: &str) -> Result<()> {
    exec(
        conn,
        "UPDATE alerts SET state = 'failed', attempts = ?, last_error = ? WHERE id = ?",
        params![attempts, error, id],
    )?;
    Ok(())
}

/// Tried again at `next_at`.
pub fn retry(conn: &Connection, id: i64, attempts: i64, next_at: i64, error: &str) -> Result<()> {
    exec(
        conn,
        "UPDATE alerts SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
        params![attempts, next_at, error, id],
    )?;
    Ok(())
}

/// An alert row as stored, for tests and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub source_ip: Option<String>,
}

/// Every alert, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<AlertRow>> {
    rows(
        conn,
        "SELECT a.id, u.kind, a.state, a.attempts, u.source_ip
             FROM alerts a JOIN audit u ON u.id = a.audit_id ORDER BY a.id",
        [],
        |r| {
            Ok(AlertRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                state: r.get(2)?,
                attempts: r.get(3)?,
                source_ip: r.get(4)?,
            })
        },
    )
}

/// An alert with its delivery state, as the admin pages show it.
#[derive(Debug, Clone)]
pub struct AlertStatus {
    pub id: i64,
    pub kind: String,
    /// Unix seconds of the event.
    pub at: i64,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    /// `pending`, `sent`, `failed` or `expired`.
    pub state: String,
    pub attempts: i64,
    pub sent_at: Option<i64>,
    /// The last delivery error: a status or a connection failure, never the webhook's URL.
    pub last_error: Option<String>,
}

/// The newest `limit` alerts, newest first.
pub fn recent(conn: &Connection, limit: u32) -> Result<Vec<AlertStatus>> {
    rows(
        conn,
        "SELECT a.id, u.kind, u.at, u.actor, u.source_ip, a.state, a.attempts, a.sent_at,
                    a.last_error
             FROM alerts a JOIN audit u ON u.id = a.audit_id ORDER BY a.id DESC LIMIT ?",
        [i64::from(limit)],
        |r| {
            Ok(AlertStatus {
                id: r.get(0)?,
                kind: r.get(1)?,
                at: r.get(2)?,
                actor: r.get(3)?,
                source_ip: r.get(4)?,
                state: r.get(5)?,
                attempts: r.get(6)?,
                sent_at: r.get(7)?,
                last_error: r.get(8)?,
            })
        },
    )
}
