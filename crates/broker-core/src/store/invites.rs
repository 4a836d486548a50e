//! Set-ups under way: an invited user whose temporary password was accepted and who was
//! shown a new TOTP secret, until a code for it is confirmed. The token that continues it is
//! kept only as its hash, like a session's.

use rusqlite::{params, Connection};

use super::{exec, optional_row};
use crate::error::Result;

pub struct InviteRow {
    pub id: i64,
    pub user_id: i64,
    /// The pending secret, sealed like `users.totp_sealed` (the user's name as associated data).
    pub totp_sealed: Vec<u8>,
    pub expires_at: i64,
}

/// Starts a set-up for `user_id`, replacing any earlier one (its token stops working).
pub fn replace(
    conn: &Connection,
    user_id: i64,
    token_hash: &[u8],
    totp_sealed: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<()> {
    exec(
        conn,
        "INSERT INTO enrolments (user_id, token_hash, totp_sealed, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(user_id) DO UPDATE SET token_hash = excluded.token_hash,
             totp_sealed = excluded.totp_sealed, created_at = excluded.created_at,
             expires_at = excluded.expires_at",
        params![user_id, token_hash, totp_sealed, now, expires_at],
    )?;
    Ok(())
}

/// The live set-up whose token hashes to `token_hash`.
pub fn by_token(conn: &Connection, token_hash: &[u8], now: i64) -> Result<Option<InviteRow>> {
    optional_row(
        conn,
        "SELECT id, user_id, totp_sealed, expires_at FROM enrolments
         WHERE token_hash = ? AND expires_at > ?",
        params![token_hash, now],
        |r| {
            Ok(InviteRow {
                id: r.get(0)?,
                user_id: r.get(1)?,
                totp_sealed: r.get(2)?,
                expires_at: r.get(3)?,
            })
        },
    )
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    exec(conn, "DELETE FROM enrolments WHERE id = ?", [id])?;
    Ok(())
}
