//! Users, their TOTP replay guard, their failed-login record, and login sessions.

use std::fmt;
use std::net::IpAddr;

use rusqlite::{params, Connection, Row};

use super::{conflict_on_unique, exec, one_row, optional_row, rows};
use crate::error::Result;
use crate::throttle::AccountState;

#[derive(Clone)]
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
pub fn insert(
    conn: &Connection,
    name: &str,
    password_hash: &str,
    totp_sealed: &[u8],
    admin: bool,
    now: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO users (name, password_hash, totp_secret, totp_sealed, admin, created_at)
         VALUES (?, ?, x'', ?, ?, ?)",
    )?
    .execute(params![name, password_hash, totp_sealed, admin, now])
    .map_err(|e| conflict_on_unique(e, "a user with this name already exists"))?;
    Ok(conn.last_insert_rowid())
}

/// Marks a user as invited until `expires_at`: no login is accepted until they enrol.
pub fn set_invited(conn: &Connection, id: i64, expires_at: i64) -> Result<()> {
    exec(
        conn,
        "UPDATE users SET invite_expires_at = ? WHERE id = ?",
        [expires_at, id],
    )?;
    Ok(())
}

/// The end of an enrolment: the user's own password and the confirmed TOTP secret (whose
/// code for `step` was just used, so it cannot be used again), and the invitation is over.
pub fn finish_invite(
    conn: &Connection,
    id: i64,
    password_hash: &str,
    totp_sealed: &[u8],
    step: u64,
) -> Result<()> {
    exec(
        conn,
        "UPDATE users SET password_hash = ?, totp_sealed = ?, totp_secret = x'',
             totp_last_step = ?, invite_expires_at = NULL, failed_streak = 0, locked_until = NULL
         WHERE id = ?",
        params![
            password_hash,
            totp_sealed,
            i64::try_from(step).unwrap_or(i64::MAX),
            id
        ],
    )?;
    Ok(())
}

const USER_COLUMNS: &str = "id, name, password_hash, COALESCE(totp_sealed, x'') AS totp_sealed, \
     admin, disabled_at, invite_expires_at";

impl UserRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get("id")?,
            name: r.get("name")?,
            password_hash: r.get("password_hash")?,
            totp_sealed: r.get("totp_sealed")?,
            admin: r.get("admin")?,
            disabled_at: r.get("disabled_at")?,
            invite_expires_at: r.get("invite_expires_at")?,
        })
    }
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<UserRow>> {
    optional_row(
        conn,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"),
        [id],
        UserRow::from_row,
    )
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<UserRow>> {
    optional_row(
        conn,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?"),
        [name],
        UserRow::from_row,
    )
}

pub fn all(conn: &Connection) -> Result<Vec<UserListRow>> {
    rows(
        conn,
        "SELECT name, admin, disabled_at, created_at, locked_until, invite_expires_at
         FROM users ORDER BY name",
        [],
        |r| {
            Ok(UserListRow {
                name: r.get(0)?,
                admin: r.get(1)?,
                disabled_at: r.get(2)?,
                created_at: r.get(3)?,
                locked_until: r.get(4)?,
                invite_expires_at: r.get(5)?,
            })
        },
    )
}

#[derive(Debug, Clone)]
pub struct UserListRow {
    pub name: String,
    pub admin: bool,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub locked_until: Option<i64>,
    pub invite_expires_at: Option<i64>,
}

/// Rows still holding a plaintext TOTP secret: (id, name, secret).
pub fn plaintext_secrets(conn: &Connection) -> Result<Vec<(i64, String, Vec<u8>)>> {
    rows(
        conn,
        "SELECT id, name, totp_secret FROM users WHERE totp_sealed IS NULL OR length(totp_secret) > 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// One sealed secret (name, sealed), to check the key against at start.
pub fn any_sealed(conn: &Connection) -> Result<Option<(String, Vec<u8>)>> {
    optional_row(
        conn,
        "SELECT name, totp_sealed FROM users WHERE totp_sealed IS NOT NULL LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Stores a sealed secret and clears any plaintext one.
pub fn set_totp_sealed(conn: &Connection, id: i64, sealed: &[u8]) -> Result<()> {
    exec(
        conn,
        "UPDATE users SET totp_sealed = ?, totp_secret = x'', totp_last_step = NULL WHERE id = ?",
        params![sealed, id],
    )?;
    Ok(())
}

/// Keeps the replay guard when sealing an existing secret at start (unlike a TOTP reset).
pub fn seal_existing(conn: &Connection, id: i64, sealed: &[u8]) -> Result<()> {
    exec(
        conn,
        "UPDATE users SET totp_sealed = ?, totp_secret = x'' WHERE id = ?",
        params![sealed, id],
    )?;
    Ok(())
}

pub fn set_password_hash(conn: &Connection, id: i64, phc: &str) -> Result<()> {
    exec(
        conn,
        "UPDATE users SET password_hash = ?, failed_streak = 0, locked_until = NULL WHERE id = ?",
        params![phc, id],
    )?;
    Ok(())
}

/// Deletes the user; sessions, grants, leases and the rest that hang off the user go with it
/// (`ON DELETE CASCADE`). The audit log names users by name and keeps them.
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    exec(conn, "DELETE FROM users WHERE id = ?", [id])?;
    Ok(())
}

pub fn set_disabled(conn: &Connection, id: i64, at: Option<i64>) -> Result<()> {
    exec(
        conn,
        "UPDATE users SET disabled_at = ? WHERE id = ?",
        params![at, id],
    )?;
    Ok(())
}

/// Records `step` as the user's last accepted TOTP step if it is later than the one stored.
/// Returns false when the step (or a later one) was already used: the code is a replay.
pub fn claim_totp_step(conn: &Connection, user_id: i64, step: u64) -> Result<bool> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let changed = exec(
        conn,
        "UPDATE users SET totp_last_step = ?1
         WHERE id = ?2 AND (totp_last_step IS NULL OR totp_last_step < ?1)",
        [step, user_id],
    )?;
    Ok(changed == 1)
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
pub fn login_network(conn: &Connection, id: i64, source: IpAddr) -> Result<LoginNetwork> {
    let network = lock_network(source);
    let sources: Vec<String> = rows(
        conn,
        "SELECT source FROM login_sources WHERE user_id = ?",
        [id],
        |r| r.get(0),
    )?;
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
pub fn account_state(conn: &Connection, id: i64, now: i64) -> Result<AccountState> {
    let (locked_until, failures_last_hour) = one_row(
        conn,
        "SELECT locked_until,
                (SELECT COUNT(*) FROM login_failures WHERE user_id = ?1 AND at > ?2 AND known = 0)
         FROM users WHERE id = ?1",
        [id, now - 3600],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(AccountState {
        locked_until,
        failures_last_hour,
    })
}

/// The failure record of a login from `net` at `now`: its own for a known network, the
/// account-wide one for the others.
pub fn network_state(
    conn: &Connection,
    id: i64,
    net: &LoginNetwork,
    now: i64,
) -> Result<AccountState> {
    if !net.known {
        return account_state(conn, id, now);
    }
    let (locked_until, failures_last_hour) = one_row(
        conn,
        "SELECT (SELECT locked_until FROM login_network_locks WHERE user_id = ?1 AND network = ?2),
                (SELECT COUNT(*) FROM login_failures
                 WHERE user_id = ?1 AND network = ?2 AND at > ?3)",
        params![id, net.network, now - 3600],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(AccountState {
        locked_until,
        failures_last_hour,
    })
}

/// Counts a failure from a network the user never logged in from (see [`record_failure_from`]).
pub fn record_failure(conn: &Connection, id: i64, now: i64) -> Result<Option<String>> {
    let unknown = LoginNetwork {
        network: String::new(),
        known: false,
    };
    record_failure_from(conn, id, &unknown, now)
}

/// Counts a failed login from `net`: one more in its streak (the network's own when known, the
/// account-wide one otherwise), a wait once the streak is long enough, and a row for the
/// hourly cap (older rows are dropped). Returns why the account (or network) is now locked,
/// when this failure is the one that locked it.
pub fn record_failure_from(
    conn: &Connection,
    id: i64,
    net: &LoginNetwork,
    now: i64,
) -> Result<Option<String>> {
    use crate::throttle::{FREE_FAILURES, MAX_FAILURES_PER_HOUR};
    let streak: i64 = if net.known {
        one_row(
            conn,
            "INSERT INTO login_network_locks (user_id, network, failed_streak) VALUES (?1, ?2, 1)
             ON CONFLICT (user_id, network) DO UPDATE SET failed_streak = failed_streak + 1
             RETURNING failed_streak",
            params![id, net.network],
            |r| r.get(0),
        )?
    } else {
        one_row(
            conn,
            "UPDATE users SET failed_streak = failed_streak + 1 WHERE id = ? RETURNING failed_streak",
            [id],
            |r| r.get(0),
        )?
    };
    let wait = crate::throttle::wait_after(streak);
    if wait > 0 {
        let until = now.saturating_add(wait);
        if net.known {
            exec(
                conn,
                "UPDATE login_network_locks SET locked_until = ? WHERE user_id = ? AND network = ?",
                params![until, id, net.network],
            )?;
        } else {
            exec(
                conn,
                "UPDATE users SET locked_until = ? WHERE id = ?",
                [until, id],
            )?;
        }
    }
    exec(
        conn,
        "DELETE FROM login_failures WHERE user_id = ? AND at <= ?",
        [id, now - 3600],
    )?;
    exec(
        conn,
        "INSERT INTO login_failures (user_id, at, network, known) VALUES (?, ?, ?, ?)",
        params![id, now, net.network, net.known],
    )?;
    let in_hour: i64 = if net.known {
        one_row(
            conn,
            "SELECT COUNT(*) FROM login_failures WHERE user_id = ? AND network = ?",
            params![id, net.network],
            |r| r.get(0),
        )?
    } else {
        one_row(
            conn,
            "SELECT COUNT(*) FROM login_failures WHERE user_id = ? AND known = 0",
            [id],
            |r| r.get(0),
        )?
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
pub fn record_login_source(conn: &Connection, id: i64, source: &str, now: i64) -> Result<bool> {
    let (known, this): (i64, i64) = one_row(
        conn,
        "SELECT COUNT(*), COALESCE(SUM(source = ?2), 0) FROM login_sources WHERE user_id = ?1",
        params![id, source],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    exec(
        conn,
        "INSERT INTO login_sources (user_id, source, first_at, last_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (user_id, source) DO UPDATE SET last_at = excluded.last_at",
        params![id, source, now],
    )?;
    Ok(known > 0 && this == 0)
}

/// Every network any user has logged in from (rows that do not parse are skipped).
pub fn all_login_sources(conn: &Connection) -> Result<Vec<ipnet::IpNet>> {
    let sources: Vec<String> = rows(conn, "SELECT DISTINCT source FROM login_sources", [], |r| {
        r.get(0)
    })?;
    Ok(sources.iter().filter_map(|s| s.parse().ok()).collect())
}

/// A successful login from `net` ends that network's streak (the account-wide one for an
/// unknown network). A known network's success leaves the account-wide streak alone: the
/// stranger's failures elsewhere keep counting.
pub fn reset_failures(conn: &Connection, id: i64, net: &LoginNetwork) -> Result<()> {
    if net.known {
        exec(
            conn,
            "DELETE FROM login_network_locks WHERE user_id = ? AND network = ?",
            params![id, net.network],
        )?;
    } else {
        exec(
            conn,
            "UPDATE users SET failed_streak = 0, locked_until = NULL WHERE id = ?",
            [id],
        )?;
    }
    Ok(())
}

pub fn insert_session(
    conn: &Connection,
    user_id: i64,
    token_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<()> {
    exec(
        conn,
        "INSERT INTO sessions (user_id, token_hash, created_at, expires_at, last_used_at)
         VALUES (?, ?, ?, ?, ?)",
        params![user_id, token_hash, now, expires_at, now],
    )?;
    Ok(())
}

/// The user a live session token belongs to.
#[derive(Debug, Clone)]
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
pub fn mark_web_session(conn: &Connection, token_hash: &[u8]) -> Result<()> {
    exec(
        conn,
        "UPDATE sessions SET web = 1 WHERE token_hash = ?",
        [token_hash],
    )?;
    Ok(())
}

/// The session's user if the session is within its lifetime, used since `idle_since`, and the
/// user is not disabled.
pub fn session_user(
    conn: &Connection,
    token_hash: &[u8],
    now: i64,
    idle_since: i64,
) -> Result<Option<SessionUser>> {
    optional_row(
        conn,
        "SELECT u.id, u.name, u.admin, s.id, s.last_used_at, s.created_at, s.web
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ? AND s.expires_at > ? AND s.last_used_at > ?
           AND u.disabled_at IS NULL",
        params![token_hash, now, idle_since],
        |r| {
            Ok(SessionUser {
                user_id: r.get(0)?,
                name: r.get(1)?,
                admin: r.get(2)?,
                session_id: r.get(3)?,
                last_used_at: r.get(4)?,
                created_at: r.get(5)?,
                web: r.get(6)?,
            })
        },
    )
}

pub fn touch_session(conn: &Connection, session_id: i64, now: i64) -> Result<()> {
    exec(
        conn,
        "UPDATE sessions SET last_used_at = ?1 WHERE id = ?2 AND last_used_at < ?1",
        [now, session_id],
    )?;
    Ok(())
}

pub fn delete_session(conn: &Connection, session_id: i64) -> Result<()> {
    exec(conn, "DELETE FROM sessions WHERE id = ?", [session_id])?;
    Ok(())
}

/// Whether the session still exists: a lease asked for with a session that an admin ended
/// meanwhile (disable, reset, remove) is not written.
pub fn session_exists(conn: &Connection, session_id: i64) -> Result<bool> {
    one_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?)",
        [session_id],
        |r| r.get(0),
    )
}

/// Ends every session of a user; returns how many there were.
pub fn delete_sessions(conn: &Connection, user_id: i64) -> Result<u64> {
    let ended = exec(conn, "DELETE FROM sessions WHERE user_id = ?", [user_id])?;
    Ok(ended as u64)
}
