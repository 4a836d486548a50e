//! Edges (with their one-time enrolment token and long-lived credential) and grants.

use std::net::{IpAddr, Ipv4Addr};

use grantwire_proto::{EdgeConfig, GrantInfo, Pin};
use ipnet::Ipv4Net;
use sqlx::SqliteConnection;

use super::conflict_on_unique;
use crate::error::{Error, Result};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EdgeRow {
    pub id: i64,
    pub name: String,
    pub endpoint: String,
    pub subnet: String,
    pub tunnel_address: String,
    pub public_key: Option<String>,
}

impl EdgeRow {
    pub fn subnet(&self) -> Result<Ipv4Net> {
        self.subnet
            .parse()
            .map_err(|_| Error::Internal(format!("edge {}: stored subnet is corrupt", self.name)))
    }

    pub fn tunnel_address(&self) -> Result<Ipv4Addr> {
        self.tunnel_address
            .parse()
            .map_err(|_| Error::Internal(format!("edge {}: stored address is corrupt", self.name)))
    }

    /// The endpoints clients may dial (`HOST:PORT`): one hostname, or up to one IPv4 and one
    /// IPv6 literal. Stored comma-separated in the one column.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoint.split(',').map(str::to_owned).collect()
    }

    /// The endpoint for a client pinned at `source`: a literal of its address family, or a
    /// hostname (which may resolve to either). None: the edge cannot be reached from there.
    pub fn endpoint_for(&self, source: IpAddr) -> Option<String> {
        self.endpoints()
            .into_iter()
            .find(|e| crate::alloc::endpoint_serves(e, source))
    }

    pub fn config(&self) -> Result<EdgeConfig> {
        Ok(EdgeConfig {
            name: self.name.clone(),
            subnet: self.subnet()?,
            tunnel_address: self.tunnel_address()?,
        })
    }
}

const EDGE_COLUMNS: &str = "id, name, endpoint, subnet, tunnel_address, public_key";

impl EdgeRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get("id")?,
            name: r.get("name")?,
            endpoint: r.get("endpoint")?,
            subnet: r.get("subnet")?,
            tunnel_address: r.get("tunnel_address")?,
            public_key: r.get("public_key")?,
        })
    }
}

pub struct NewEdge<'a> {
    pub name: &'a str,
    pub endpoint: &'a str,
    pub subnet: Ipv4Net,
    pub tunnel_address: Ipv4Addr,
    pub enrol_token_hash: &'a [u8],
    /// Unix seconds after which the token is refused.
    pub enrol_expires_at: i64,
}

pub async fn insert(conn: &mut SqliteConnection, edge: NewEdge<'_>, now: i64) -> Result<i64> {
    let res = sqlx::query(
        "INSERT INTO edges (name, endpoint, subnet, tunnel_address, enrol_token_hash,
                            enrol_expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(edge.name)
    .bind(edge.endpoint)
    .bind(edge.subnet.to_string())
    .bind(edge.tunnel_address.to_string())
    .bind(edge.enrol_token_hash)
    .bind(edge.enrol_expires_at)
    .bind(now)
    .execute(conn)
    .await
    .map_err(|e| conflict_on_unique(e, "an edge with this name already exists"))?;
    Ok(res.last_insert_rowid())
}

pub async fn by_name(conn: &mut SqliteConnection, name: &str) -> Result<Option<EdgeRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {EDGE_COLUMNS} FROM edges WHERE name = ?"))
            .bind(name)
            .fetch_optional(conn)
            .await?,
    )
}

/// [`by_name`], on the batch writer's connection.
pub fn by_name_blocking(conn: &rusqlite::Connection, name: &str) -> Result<Option<EdgeRow>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(&format!("SELECT {EDGE_COLUMNS} FROM edges WHERE name = ?"))?
        .query_row([name], EdgeRow::from_row)
        .optional()?)
}

pub async fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<Option<EdgeRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {EDGE_COLUMNS} FROM edges WHERE id = ?"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn by_credential(conn: &mut SqliteConnection, hash: &[u8]) -> Result<Option<EdgeRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {EDGE_COLUMNS} FROM edges WHERE credential_hash = ?"
    ))
    .bind(hash)
    .fetch_optional(conn)
    .await?)
}

/// Uses up an enrolment token: in one statement, so two racing enrolments cannot both win.
/// Returns the edge, or `None` when no unused, unexpired token has this hash.
pub async fn consume_enrolment(
    conn: &mut SqliteConnection,
    token_hash: &[u8],
    public_key: &str,
    credential_hash: &[u8],
    now: i64,
) -> Result<Option<EdgeRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE edges SET enrol_token_hash = NULL, public_key = ?, credential_hash = ?,
                enrolled_at = ?
         WHERE enrol_token_hash = ? AND enrol_expires_at > ? RETURNING {EDGE_COLUMNS}"
    ))
    .bind(public_key)
    .bind(credential_hash)
    .bind(now)
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

/// The name of the edge whose unused token has this hash but has expired (or has no expiry,
/// from before expiries), for the audit log of a refused enrolment.
pub async fn expired_enrolment(
    conn: &mut SqliteConnection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM edges
         WHERE enrol_token_hash = ? AND (enrol_expires_at IS NULL OR enrol_expires_at <= ?)",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

pub async fn mark_seen(conn: &mut SqliteConnection, edge_id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE edges SET last_seen_at = ? WHERE id = ?")
        .bind(now)
        .bind(edge_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// An edge as listed for the admin.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EdgeListRow {
    pub id: i64,
    pub name: String,
    pub endpoint: String,
    pub subnet: String,
    pub tunnel_address: String,
    pub enrolled: bool,
    pub last_seen_at: Option<i64>,
    /// While the token is unused, when it stops working.
    pub enrol_expires_at: Option<i64>,
}

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<EdgeListRow>> {
    Ok(sqlx::query_as(
        "SELECT id, name, endpoint, subnet, tunnel_address,
                (credential_hash IS NOT NULL) AS enrolled, last_seen_at,
                CASE WHEN enrol_token_hash IS NOT NULL THEN enrol_expires_at END
                    AS enrol_expires_at
         FROM edges ORDER BY name",
    )
    .fetch_all(conn)
    .await?)
}

/// Deletes the edge; its grants and leases go with it (ON DELETE CASCADE), and so does its
/// credential.
pub async fn delete(conn: &mut SqliteConnection, edge_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM edges WHERE id = ?")
        .bind(edge_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Live leases of the edge (ids), before it is removed.
pub async fn live_lease_ids(
    conn: &mut SqliteConnection,
    edge_id: i64,
    now: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM leases WHERE edge_id = ? AND revoked_at IS NULL AND expires_at > ?
         ORDER BY id",
    )
    .bind(edge_id)
    .bind(now)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: i64,
    pub user_id: i64,
    pub edge_id: i64,
    pub lease_ttl_secs: i64,
    pub ports: String,
    pub ends_at: Option<i64>,
    pub pin_prefix4: i64,
    pub pin_prefix6: i64,
    pub max_leases: i64,
}

impl GrantRow {
    /// The pin of a lease requested from `source`, masked to this grant's prefix.
    pub fn pin_for(&self, source: IpAddr) -> Result<Pin> {
        let len = |v: i64| u8::try_from(v).unwrap_or(u8::MAX);
        Pin::for_source(source, len(self.pin_prefix4), len(self.pin_prefix6))
            .map_err(|e| Error::Internal(format!("grant {}: stored pin prefix: {e}", self.id)))
    }

    pub fn ports(&self) -> Result<Vec<u16>> {
        Ok(serde_json::from_str(&self.ports)?)
    }

    pub fn lease_ttl(&self) -> u64 {
        u64::try_from(self.lease_ttl_secs).unwrap_or(0)
    }
}

pub struct NewGrant<'a> {
    pub user_id: i64,
    pub edge_id: i64,
    pub lease_ttl_secs: u64,
    pub ports: &'a [u16],
    pub ends_at: Option<i64>,
    pub pin_prefix4: u8,
    pub pin_prefix6: u8,
    pub max_leases: u32,
}

pub async fn insert_grant(conn: &mut SqliteConnection, g: NewGrant<'_>, now: i64) -> Result<i64> {
    let res = sqlx::query(
        "INSERT INTO grants (user_id, edge_id, lease_ttl_secs, ports, ends_at, created_at,
                             pin_prefix4, pin_prefix6, max_leases)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(g.user_id)
    .bind(g.edge_id)
    .bind(i64::try_from(g.lease_ttl_secs).unwrap_or(i64::MAX))
    .bind(serde_json::to_string(g.ports)?)
    .bind(g.ends_at)
    .bind(now)
    .bind(g.pin_prefix4)
    .bind(g.pin_prefix6)
    .bind(g.max_leases)
    .execute(conn)
    .await
    .map_err(|e| conflict_on_unique(e, "this user already holds a grant on this edge"))?;
    Ok(res.last_insert_rowid())
}

/// The user's grant on the edge if it is neither revoked nor past its end.
pub async fn live_grant(
    conn: &mut SqliteConnection,
    user_id: i64,
    edge_id: i64,
    now: i64,
) -> Result<Option<GrantRow>> {
    Ok(sqlx::query_as(LIVE_GRANT)
        .bind(user_id)
        .bind(edge_id)
        .bind(now)
        .fetch_optional(conn)
        .await?)
}

/// [`live_grant`], on the batch writer's connection.
pub fn live_grant_blocking(
    conn: &rusqlite::Connection,
    user_id: i64,
    edge_id: i64,
    now: i64,
) -> Result<Option<GrantRow>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(LIVE_GRANT)?
        .query_row([user_id, edge_id, now], |r| {
            Ok(GrantRow {
                id: r.get("id")?,
                user_id: r.get("user_id")?,
                edge_id: r.get("edge_id")?,
                lease_ttl_secs: r.get("lease_ttl_secs")?,
                ports: r.get("ports")?,
                ends_at: r.get("ends_at")?,
                pin_prefix4: r.get("pin_prefix4")?,
                pin_prefix6: r.get("pin_prefix6")?,
                max_leases: r.get("max_leases")?,
            })
        })
        .optional()?)
}

const LIVE_GRANT: &str =
    "SELECT id, user_id, edge_id, lease_ttl_secs, ports, ends_at, pin_prefix4, pin_prefix6,
            max_leases
     FROM grants
     WHERE user_id = ? AND edge_id = ? AND revoked_at IS NULL AND (ends_at IS NULL OR ends_at > ?)";

/// A live grant with its user's and edge's names, for the admin list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantListRow {
    pub user_name: String,
    pub edge_name: String,
    pub lease_ttl_secs: i64,
    pub ports: String,
    pub ends_at: Option<i64>,
    pub pin_prefix4: i64,
    pub pin_prefix6: i64,
    pub max_leases: i64,
}

impl GrantListRow {
    pub fn to_info(&self) -> Result<GrantInfo> {
        Ok(GrantInfo {
            user: self.user_name.clone(),
            edge: self.edge_name.clone(),
            lease_ttl_secs: u64::try_from(self.lease_ttl_secs).unwrap_or(0),
            ports: serde_json::from_str(&self.ports)?,
            expires_at: self.ends_at,
            pin_prefix4: u8::try_from(self.pin_prefix4).unwrap_or(0),
            pin_prefix6: u8::try_from(self.pin_prefix6).unwrap_or(0),
            max_leases: u32::try_from(self.max_leases).unwrap_or(0),
        })
    }
}

/// Grants neither revoked nor past their end, by user and edge name.
pub async fn live_grants(conn: &mut SqliteConnection, now: i64) -> Result<Vec<GrantListRow>> {
    Ok(sqlx::query_as(
        "SELECT u.name AS user_name, e.name AS edge_name, g.lease_ttl_secs, g.ports, g.ends_at,
                g.pin_prefix4, g.pin_prefix6, g.max_leases
         FROM grants g JOIN users u ON u.id = g.user_id JOIN edges e ON e.id = g.edge_id
         WHERE g.revoked_at IS NULL AND (g.ends_at IS NULL OR g.ends_at > ?)
         ORDER BY u.name, e.name",
    )
    .bind(now)
    .fetch_all(conn)
    .await?)
}

/// One user's live grants, by edge name: what the user may ask leases for.
pub async fn live_grants_for_user(
    conn: &mut SqliteConnection,
    user_id: i64,
    now: i64,
) -> Result<Vec<GrantListRow>> {
    Ok(sqlx::query_as(
        "SELECT u.name AS user_name, e.name AS edge_name, g.lease_ttl_secs, g.ports, g.ends_at,
                g.pin_prefix4, g.pin_prefix6, g.max_leases
         FROM grants g JOIN users u ON u.id = g.user_id JOIN edges e ON e.id = g.edge_id
         WHERE g.user_id = ? AND g.revoked_at IS NULL AND (g.ends_at IS NULL OR g.ends_at > ?)
         ORDER BY e.name",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(conn)
    .await?)
}

/// Marks the unrevoked grant revoked (even if past its end) and returns its id.
pub async fn revoke_grant(
    conn: &mut SqliteConnection,
    user_id: i64,
    edge_id: i64,
    now: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "UPDATE grants SET revoked_at = ? WHERE user_id = ? AND edge_id = ? AND revoked_at IS NULL
         RETURNING id",
    )
    .bind(now)
    .bind(user_id)
    .bind(edge_id)
    .fetch_optional(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::users;

    async fn edge(conn: &mut SqliteConnection, name: &str) -> i64 {
        let new = NewEdge {
            name,
            endpoint: "192.0.2.1:51820",
            subnet: "10.77.0.0/24".parse().unwrap(),
            tunnel_address: Ipv4Addr::new(10, 77, 0, 1),
            enrol_token_hash: name.as_bytes(),
            enrol_expires_at: i64::MAX,
        };
        insert(conn, new, 0).await.unwrap()
    }

    async fn grant(conn: &mut SqliteConnection, user_id: i64, edge_id: i64, ends_at: Option<i64>) {
        let g = NewGrant {
            user_id,
            edge_id,
            lease_ttl_secs: 3600,
            ports: &[32400],
            ends_at,
            pin_prefix4: 32,
            pin_prefix6: 64,
            max_leases: 5,
        };
        insert_grant(conn, g, 0).await.unwrap();
    }

    #[tokio::test]
    async fn a_users_live_grants_leave_out_others_revoked_and_ended_ones() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("t.db")).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let alice = users::insert(&mut conn, "alice", "x", b"s", false, 0)
            .await
            .unwrap();
        let bob = users::insert(&mut conn, "bob", "x", b"s", false, 0)
            .await
            .unwrap();
        let (home, cabin, office, lake) = (
            edge(&mut conn, "home").await,
            edge(&mut conn, "cabin").await,
            edge(&mut conn, "office").await,
            edge(&mut conn, "lake").await,
        );
        let now = 1_000;
        grant(&mut conn, alice, home, None).await;
        grant(&mut conn, alice, cabin, Some(now + 60)).await;
        grant(&mut conn, alice, office, Some(now)).await;
        grant(&mut conn, alice, lake, None).await;
        revoke_grant(&mut conn, alice, lake, now).await.unwrap();
        grant(&mut conn, bob, office, None).await;

        let names = |rows: Vec<GrantListRow>| -> Vec<String> {
            rows.into_iter().map(|r| r.edge_name).collect()
        };
        let mine = live_grants_for_user(&mut conn, alice, now).await.unwrap();
        assert!(mine.iter().all(|r| r.user_name == "alice"));
        assert_eq!(names(mine), ["cabin", "home"]);
        let theirs = live_grants_for_user(&mut conn, bob, now).await.unwrap();
        assert_eq!(names(theirs), ["office"]);
    }
}
