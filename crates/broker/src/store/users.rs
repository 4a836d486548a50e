//! Users, their TOTP replay guard, and login sessions.

use std::fmt;

use sqlx::SqliteConnection;

use super::conflict_on_unique;
use crate::error::Result;

#[derive(Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub totp_secret: Vec<u8>,
    pub admin: bool,
}

/// Hash and secret stay out of logs.
impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

pub async fn insert(
    conn: &mut SqliteConnection,
    name: &str,
    password_hash: &str,
    totp_secret: &[u8],
    admin: bool,
    now: i64,
) -> Result<i64> {
    let res = sqlx::query(
        "INSERT INTO users (name, password_hash, totp_secret, admin, created_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(password_hash)
    .bind(totp_secret)
    .bind(admin)
    .bind(now)
    .execute(conn)
    .await
    .map_err(|e| conflict_on_unique(e, "a user with this name already exists"))?;
    Ok(res.last_insert_rowid())
}

pub async fn by_name(conn: &mut SqliteConnection, name: &str) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(
        "SELECT id, name, password_hash, totp_secret, admin FROM users WHERE name = ?",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?)
}

/// Records `step` as the user's last accepted TOTP step if it is later than the one stored.
/// Returns false when the step (or a later one) was already used: the code is a replay.
pub async fn claim_totp_step(conn: &mut SqliteConnection, user_id: i64, step: u64) -> Result<bool> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let res = sqlx::query(
        "UPDATE users SET totp_last_step = ?1
         WHERE id = ?2 AND (totp_last_step IS NULL OR totp_last_step < ?1)",
    )
    .bind(step)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

pub async fn insert_session(
    conn: &mut SqliteConnection,
    user_id: i64,
    token_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(user_id)
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user a live session token belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionUser {
    pub user_id: i64,
    pub name: String,
    pub admin: bool,
}

pub async fn session_user(
    conn: &mut SqliteConnection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<SessionUser>> {
    Ok(sqlx::query_as(
        "SELECT u.id AS user_id, u.name, u.admin FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ? AND s.expires_at > ?",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}
