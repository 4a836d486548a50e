//! Edges (with their one-time enrolment token and long-lived credential) and grants.

use std::net::Ipv4Addr;

use grantwire_proto::EdgeConfig;
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

    pub fn config(&self) -> Result<EdgeConfig> {
        Ok(EdgeConfig {
            name: self.name.clone(),
            subnet: self.subnet()?,
            tunnel_address: self.tunnel_address()?,
        })
    }
}

const EDGE_COLUMNS: &str = "id, name, endpoint, subnet, tunnel_address, public_key";

pub struct NewEdge<'a> {
    pub name: &'a str,
    pub endpoint: &'a str,
    pub subnet: Ipv4Net,
    pub tunnel_address: Ipv4Addr,
    pub enrol_token_hash: &'a [u8],
}

pub async fn insert(conn: &mut SqliteConnection, edge: NewEdge<'_>, now: i64) -> Result<i64> {
    let res = sqlx::query(
        "INSERT INTO edges (name, endpoint, subnet, tunnel_address, enrol_token_hash, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(edge.name)
    .bind(edge.endpoint)
    .bind(edge.subnet.to_string())
    .bind(edge.tunnel_address.to_string())
    .bind(edge.enrol_token_hash)
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
/// Returns the edge, or `None` when no unused token has this hash.
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
         WHERE enrol_token_hash = ? RETURNING {EDGE_COLUMNS}"
    ))
    .bind(public_key)
    .bind(credential_hash)
    .bind(now)
    .bind(token_hash)
    .fetch_optional(conn)
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
}

impl GrantRow {
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
}

pub async fn insert_grant(conn: &mut SqliteConnection, g: NewGrant<'_>, now: i64) -> Result<i64> {
    let res = sqlx::query(
        "INSERT INTO grants (user_id, edge_id, lease_ttl_secs, ports, ends_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(g.user_id)
    .bind(g.edge_id)
    .bind(i64::try_from(g.lease_ttl_secs).unwrap_or(i64::MAX))
    .bind(serde_json::to_string(g.ports)?)
    .bind(g.ends_at)
    .bind(now)
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
    Ok(sqlx::query_as(
        "SELECT id, user_id, edge_id, lease_ttl_secs, ports, ends_at FROM grants
         WHERE user_id = ? AND edge_id = ? AND revoked_at IS NULL
           AND (ends_at IS NULL OR ends_at > ?)",
    )
    .bind(user_id)
    .bind(edge_id)
    .bind(now)
    .fetch_optional(conn)
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
