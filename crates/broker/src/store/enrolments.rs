//! Enrolments under way: an invited user whose temporary password was accepted and who was
//! shown a new TOTP secret, until a code for it is confirmed. The token that continues it is
//! kept only as its hash, like a session's.

use sqlx::SqliteConnection;

use crate::error::Result;

#[derive(sqlx::FromRow)]
pub struct EnrolmentRow {
    pub id: i64,
    pub user_id: i64,
    /// The pending secret, sealed like `users.totp_sealed` (the user's name as associated data).
    pub totp_sealed: Vec<u8>,
    pub expires_at: i64,
}

/// Starts an enrolment for `user_id`, replacing any earlier one (its token stops working).
pub async fn replace(
    conn: &mut SqliteConnection,
    user_id: i64,
    token_hash: &[u8],
    totp_sealed: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO enrolments (user_id, token_hash, totp_sealed, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(user_id) DO UPDATE SET token_hash = excluded.token_hash,
             totp_sealed = excluded.totp_sealed, created_at = excluded.created_at,
             expires_at = excluded.expires_at",
    )
    .bind(user_id)
    .bind(token_hash)
    .bind(totp_sealed)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The live enrolment whose token hashes to `token_hash`.
pub async fn by_token(
    conn: &mut SqliteConnection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<EnrolmentRow>> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, totp_sealed, expires_at FROM enrolments
         WHERE token_hash = ? AND expires_at > ?",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

pub async fn delete(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM enrolments WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
