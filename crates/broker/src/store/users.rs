//! Users, their TOTP replay guard, their failed-login record, and login sessions.

use std::fmt;
use std::net::IpAddr;

use sqlx::SqliteConnection;

use super::conflict_on_unique;
use crate::error::Result;
use crate::throttle::AccountState;

#[derive(Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    /// Sealed under the secrets key (see `secrets::SealKey`); empty only for a row the start-up
    /// pass has not sealed yet.
    pub totp_sealed: Vec<u8>,
    pub admin: bool,
    pub disabled_at: Option<i64>,
    /// Set while the user is invited and has not enrolled: the invitation's end.
    pub invite_expires_at: Option<i64>,
}

/// Hash and secret stay out of logs.
impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("disabled_at", &self.disabled_at)
            .field("invite_expires_at", &self.invite_expires_at)
            .finish_non_exhaustive()
    }
}

/// Inserts a user whose TOTP secret is already sealed; the plaintext column gets an empty blob.
pub async fn insert(
    conn: &mut SqliteConnection,
    name: &str,
    password_hash: &str,
    totp_sealed: &[u8],
    admin: bool,
    now: i64,
) -> Result<i64> {
    let res = sqlx::query(
        "INSERT INTO users (name, password_hash, totp_secret, totp_sealed, admin, created_at)
         VALUES (?, ?, x'', ?, ?, ?)",
    )
    .bind(name)
    .bind(password_hash)
    .bind(totp_sealed)
    .bind(admin)
    .bind(now)
    .execute(conn)
    .await
    .map_err(|e| conflict_on_unique(e, "a user with this name already exists"))?;
    Ok(res.last_insert_rowid())
}

/// Marks a user as invited until `expires_at`: no login is accepted until they enrol.
pub async fn set_invited(conn: &mut SqliteConnection, id: i64, expires_at: i64) -> Result<()> {
    sqlx::query("UPDATE users SET invite_expires_at = ? WHERE id = ?")
        .bind(expires_at)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The end of an enrolment: the user's own password and the confirmed TOTP secret (whose
/// code for `step` was just used, so it cannot be used again), and the invitation is over.
pub async fn finish_enrolment(
    conn: &mut SqliteConnection,
    id: i64,
    password_hash: &str,
    totp_sealed: &[u8],
    step: u64,
) -> Result<()> {
    sqlx::query(
        "UPDATE users SET password_hash = ?, totp_sealed = ?, totp_secret = x'',
             totp_last_step = ?, invite_expires_at = NULL, failed_streak = 0, locked_until = NULL
         WHERE id = ?",
    )
    .bind(password_hash)
    .bind(totp_sealed)
    .bind(i64::try_from(step).unwrap_or(i64::MAX))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

const USER_COLUMNS: &str = "id, name, password_hash, COALESCE(totp_sealed, x'') AS totp_sealed, \
     admin, disabled_at, invite_expires_at";

pub async fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<Option<UserRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn by_name(conn: &mut SqliteConnection, name: &str) -> Result<Option<UserRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?"))
            .bind(name)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn all(conn: &mut SqliteConnection) -> Result<Vec<UserListRow>> {
    Ok(sqlx::query_as(
        "SELECT name, admin, disabled_at, created_at, locked_until, invite_expires_at
         FROM users ORDER BY name",
    )
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserListRow {
    pub name: String,
    pub admin: bool,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub locked_until: Option<i64>,
    pub invite_expires_at: Option<i64>,
}

/// Rows still holding a plaintext TOTP secret: (id, name, secret).
pub async fn plaintext_secrets(conn: &mut SqliteConnection) -> Result<Vec<(i64, String, Vec<u8>)>> {
    Ok(sqlx::query_as(
        "SELECT id, name, totp_secret FROM users WHERE totp_sealed IS NULL OR length(totp_secret) > 0",
    )
    .fetch_all(conn)
    .await?)
}

/// One sealed secret (name, sealed), to check the key against at start.
pub async fn any_sealed(conn: &mut SqliteConnection) -> Result<Option<(String, Vec<u8>)>> {
    Ok(
        sqlx::query_as("SELECT name, totp_sealed FROM users WHERE totp_sealed IS NOT NULL LIMIT 1")
            .fetch_optional(conn)
            .await?,
    )
}

/// Stores a sealed secret and clears any plaintext one.
pub async fn set_totp_sealed(conn: &mut SqliteConnection, id: i64, sealed: &[u8]) -> Result<()> {
    sqlx::query(
        "UPDATE users SET totp_sealed = ?, totp_secret = x'', totp_last_step = NULL WHERE id = ?",
    )
    .bind(sealed)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps the replay guard when sealing an existing secret at start (unlike a TOTP reset).
pub async fn seal_existing(conn: &mut SqliteConnection, id: i64, sealed: &[u8]) -> Result<()> {
    sqlx::query("UPDATE users SET totp_sealed = ?, totp_secret = x'' WHERE id = ?")
        .bind(sealed)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_password_hash(conn: &mut SqliteConnection, id: i64, phc: &str) -> Result<()> {
    sqlx::query(
        "UPDATE users SET password_hash = ?, failed_streak = 0, locked_until = NULL WHERE id = ?",
    )
    .bind(phc)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the user; sessions, grants, leases and the rest that hang off the user go with it
/// (`ON DELETE CASCADE`). The audit log names users by name and keeps them.
pub async fn delete(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_disabled(conn: &mut SqliteConnection, id: i64, at: Option<i64>) -> Result<()> {
    sqlx::query("UPDATE users SET disabled_at = ? WHERE id = ?")
        .bind(at)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
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

/// The network a login attempt is throttled by: its source's IPv4 /24 or IPv6 /64, and whether
/// the user has logged in from it before. Failures from a known network lock only that network;
/// failures from unknown ones share one account-wide lock and hourly cap, so a stranger can
/// keep a user out of new networks at most, never out of the ones they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginNetwork {
    pub network: String,
    pub known: bool,
}

/// Prefix lengths a login network is counted by: a household's or office's IPv4 addresses
/// usually share their /24 (a DHCP lease that changes keeps it), and one IPv6 host holds its
/// whole /64.
const LOCK_PREFIX_V4: u8 = 24;
const LOCK_PREFIX_V6: u8 = 64;

/// The throttling network of `source`.
pub fn lock_network(source: IpAddr) -> ipnet::IpNet {
    let ip = source.to_canonical();
    let prefix = if ip.is_ipv4() {
        LOCK_PREFIX_V4
    } else {
        LOCK_PREFIX_V6
    };
    ipnet::IpNet::new(ip, prefix)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| ipnet::IpNet::from(ip))
}

/// Classifies `source` for user `id`: known when any address the user logged in from lies in
/// the same network.
pub async fn login_network(
    conn: &mut SqliteConnection,
    id: i64,
    source: IpAddr,
) -> Result<LoginNetwork> {
    let network = lock_network(source);
    let sources: Vec<String> =
        sqlx::query_scalar("SELECT source FROM login_sources WHERE user_id = ?")
            .bind(id)
            .fetch_all(conn)
            .await?;
    let known = sources
        .iter()
        .filter_map(|s| s.parse::<ipnet::IpNet>().ok())
        .any(|used| network.contains(&used.network()));
    Ok(LoginNetwork {
        network: network.to_string(),
        known,
    })
}

/// The account's failure record at `now` for networks the user never logged in from (also
/// what enrolment, which has no known networks yet, is throttled by).
pub async fn account_state(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<AccountState> {
    let (locked_until, failures_last_hour): (Option<i64>, i64) = sqlx::query_as(
        "SELECT locked_until,
                (SELECT COUNT(*) FROM login_failures WHERE user_id = ?1 AND at > ?2 AND known = 0)
         FROM users WHERE id = ?1",
    )
    .bind(id)
    .bind(now - 3600)
    .fetch_one(conn)
    .await?;
    Ok(AccountState {
        locked_until,
        failures_last_hour,
    })
}

/// The failure record of a login from `net` at `now`: its own for a known network, the
/// account-wide one for the others.
pub async fn network_state(
    conn: &mut SqliteConnection,
    id: i64,
    net: &LoginNetwork,
    now: i64,
) -> Result<AccountState> {
    if !net.known {
        return account_state(conn, id, now).await;
    }
    let (locked_until, failures_last_hour): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT locked_until FROM login_network_locks WHERE user_id = ?1 AND network = ?2),
                (SELECT COUNT(*) FROM login_failures
                 WHERE user_id = ?1 AND network = ?2 AND at > ?3)",
    )
    .bind(id)
    .bind(&net.network)
    .bind(now - 3600)
    .fetch_one(conn)
    .await?;
    Ok(AccountState {
        locked_until,
        failures_last_hour,
    })
}

/// Counts a failure from a network the user never logged in from (see [`record_failure_from`]).
pub async fn record_failure(
    conn: &mut SqliteConnection,
    id: i64,
    now: i64,
) -> Result<Option<String>> {
    let unknown = LoginNetwork {
        network: String::new(),
        known: false,
    };
    record_failure_from(conn, id, &unknown, now).await
}

/// Counts a failed login from `net`: one more in its streak (the network's own when known, the
/// account-wide one otherwise), a wait once the streak is long enough, and a row for the
/// hourly cap (older rows are dropped). Returns why the account (or network) is now locked,
/// when this failure is the one that locked it.
pub async fn record_failure_from(
    conn: &mut SqliteConnection,
    id: i64,
    net: &LoginNetwork,
    now: i64,
) -> Result<Option<String>> {
    use crate::throttle::{FREE_FAILURES, MAX_FAILURES_PER_HOUR};
    let streak: i64 = if net.known {
        sqlx::query_scalar(
            "INSERT INTO login_network_locks (user_id, network, failed_streak) VALUES (?1, ?2, 1)
             ON CONFLICT (user_id, network) DO UPDATE SET failed_streak = failed_streak + 1
             RETURNING failed_streak",
        )
        .bind(id)
        .bind(&net.network)
        .fetch_one(&mut *conn)
        .await?
    } else {
        sqlx::query_scalar(
            "UPDATE users SET failed_streak = failed_streak + 1 WHERE id = ? RETURNING failed_streak",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?
    };
    let wait = crate::throttle::wait_after(streak);
    if wait > 0 {
        let until = now.saturating_add(wait);
        if net.known {
            sqlx::query(
                "UPDATE login_network_locks SET locked_until = ? WHERE user_id = ? AND network = ?",
            )
            .bind(until)
            .bind(id)
            .bind(&net.network)
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query("UPDATE users SET locked_until = ? WHERE id = ?")
                .bind(until)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
    }
    sqlx::query("DELETE FROM login_failures WHERE user_id = ? AND at <= ?")
        .bind(id)
        .bind(now - 3600)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO login_failures (user_id, at, network, known) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(now)
        .bind(&net.network)
        .bind(net.known)
        .execute(&mut *conn)
        .await?;
    let in_hour: i64 = if net.known {
        sqlx::query_scalar("SELECT COUNT(*) FROM login_failures WHERE user_id = ? AND network = ?")
            .bind(id)
            .bind(&net.network)
            .fetch_one(conn)
            .await?
    } else {
        sqlx::query_scalar("SELECT COUNT(*) FROM login_failures WHERE user_id = ? AND known = 0")
            .bind(id)
            .fetch_one(conn)
            .await?
    };
    let scope = if net.known {
        format!(" network={}", net.network)
    } else {
        String::new()
    };
    Ok(if in_hour == MAX_FAILURES_PER_HOUR {
        Some(format!("failures_last_hour={in_hour}{scope}"))
    } else if streak == FREE_FAILURES {
        Some(format!("failures_in_a_row={streak} wait={wait}s{scope}"))
    } else {
        None
    })
}

/// Remembers that the user logged in from `source` (an address masked to /32 or /64). True
/// when the source is new for a user who had logged in from somewhere else before.
pub async fn record_login_source(
    conn: &mut SqliteConnection,
    id: i64,
    source: &str,
    now: i64,
) -> Result<bool> {
    let (known, this): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(source = ?2), 0) FROM login_sources WHERE user_id = ?1",
    )
    .bind(id)
    .bind(source)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO login_sources (user_id, source, first_at, last_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (user_id, source) DO UPDATE SET last_at = excluded.last_at",
    )
    .bind(id)
    .bind(source)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(known > 0 && this == 0)
}

/// Every network any user has logged in from (rows that do not parse are skipped).
pub async fn all_login_sources(conn: &mut SqliteConnection) -> Result<Vec<ipnet::IpNet>> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT DISTINCT source FROM login_sources")
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().filter_map(|s| s.parse().ok()).collect())
}

/// A successful login from `net` ends that network's streak (the account-wide one for an
/// unknown network). A known network's success leaves the account-wide streak alone: the
/// stranger's failures elsewhere keep counting.
pub async fn reset_failures(
    conn: &mut SqliteConnection,
    id: i64,
    net: &LoginNetwork,
) -> Result<()> {
    if net.known {
        sqlx::query("DELETE FROM login_network_locks WHERE user_id = ? AND network = ?")
            .bind(id)
            .bind(&net.network)
            .execute(conn)
            .await?;
    } else {
        sqlx::query("UPDATE users SET failed_streak = 0, locked_until = NULL WHERE id = ?")
            .bind(id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub async fn insert_session(
    conn: &mut SqliteConnection,
    user_id: i64,
    token_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (user_id, token_hash, created_at, expires_at, last_used_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(user_id)
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)
    .bind(now)
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
    pub session_id: i64,
    pub last_used_at: i64,
    /// When the session was made by signing in (unix seconds): admin pages ask for a recent
    /// sign-in before a change.
    pub created_at: i64,
    /// Made by signing in on the web pages, not through the API: only such a session opens
    /// the admin pages.
    pub web: bool,
}

/// Marks the session of `token_hash` as made on the web pages.
pub async fn mark_web_session(conn: &mut SqliteConnection, token_hash: &[u8]) -> Result<()> {
    sqlx::query("UPDATE sessions SET web = 1 WHERE token_hash = ?")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// The session's user if the session is within its lifetime, used since `idle_since`, and the
/// user is not disabled.
pub async fn session_user(
    conn: &mut SqliteConnection,
    token_hash: &[u8],
    now: i64,
    idle_since: i64,
) -> Result<Option<SessionUser>> {
    Ok(sqlx::query_as(
        "SELECT u.id AS user_id, u.name, u.admin, s.id AS session_id, s.last_used_at,
                s.created_at, s.web
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ? AND s.expires_at > ? AND s.last_used_at > ?
           AND u.disabled_at IS NULL",
    )
    .bind(token_hash)
    .bind(now)
    .bind(idle_since)
    .fetch_optional(conn)
    .await?)
}

pub async fn touch_session(conn: &mut SqliteConnection, session_id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE sessions SET last_used_at = ? WHERE id = ? AND last_used_at < ?")
        .bind(now)
        .bind(session_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_session(conn: &mut SqliteConnection, session_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id = ?")
        .bind(session_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether the session still exists, on the batch writer's connection: a lease asked for
/// with a session that an admin ended meanwhile (disable, reset, remove) is not written.
pub fn session_exists_blocking(conn: &rusqlite::Connection, session_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?)")?
        .query_row([session_id], |r| r.get(0))?)
}

/// Ends every session of a user; returns how many there were.
pub async fn delete_sessions(conn: &mut SqliteConnection, user_id: i64) -> Result<u64> {
    let res = sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(res.rows_affected())
}
