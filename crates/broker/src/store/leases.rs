//! Leases: the tunnel address each holds, and what an edge must enforce.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use grantwire_proto::{EdgeLease, LeaseInfo, Pin, PresharedKey, PublicKey};
use sqlx::SqliteConnection;

use crate::error::{Error, Result};

#[derive(Clone, sqlx::FromRow)]
pub struct LeaseRow {
    pub id: String,
    pub user_name: String,
    pub edge_name: String,
    pub public_key: String,
    pub preshared_key: Vec<u8>,
    pub tunnel_address: i64,
    pub pin: String,
    pub ports: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The preshared key stays out of logs.
impl std::fmt::Debug for LeaseRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseRow")
            .field("id", &self.id)
            .field("edge", &self.edge_name)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl LeaseRow {
    fn corrupt(&self, what: &str) -> Error {
        Error::Internal(format!("lease {}: stored {what} is corrupt", self.id))
    }

    pub fn address(&self) -> Result<Ipv4Addr> {
        u32::try_from(self.tunnel_address)
            .map(Ipv4Addr::from)
            .map_err(|_| self.corrupt("address"))
    }

    fn key(&self) -> Result<PublicKey> {
        self.public_key.parse().map_err(|_| self.corrupt("key"))
    }

    fn pin(&self) -> Result<Pin> {
        self.pin.parse().map_err(|_| self.corrupt("pin"))
    }

    pub fn to_edge_lease(&self) -> Result<EdgeLease> {
        let psk: [u8; 32] = self
            .preshared_key
            .as_slice()
            .try_into()
            .map_err(|_| self.corrupt("preshared key"))?;
        Ok(EdgeLease {
            id: self.id.clone(),
            public_key: self.key()?,
            preshared_key: PresharedKey::from_bytes(psk),
            tunnel_address: self.address()?,
            pin: self.pin()?,
            ports: serde_json::from_str(&self.ports)?,
            expires_at: self.expires_at,
        })
    }

    pub fn to_info(&self) -> Result<LeaseInfo> {
        Ok(LeaseInfo {
            id: self.id.clone(),
            user: self.user_name.clone(),
            edge: self.edge_name.clone(),
            tunnel_address: self.address()?,
            pin: self.pin()?,
            public_key: self.key()?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            ports: serde_json::from_str(&self.ports)?,
        })
    }
}

/// Releases the addresses of leases that have expired, so allocation can hand them out again.
pub async fn free_expired_slots(conn: &mut SqliteConnection, edge_id: i64, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE leases SET addr_slot = NULL
         WHERE edge_id = ? AND addr_slot IS NOT NULL AND expires_at <= ?",
    )
    .bind(edge_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Addresses (as u32) held by the edge's leases.
pub async fn used_slots(conn: &mut SqliteConnection, edge_id: i64) -> Result<HashSet<u32>> {
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT addr_slot FROM leases WHERE edge_id = ? AND addr_slot IS NOT NULL",
    )
    .bind(edge_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|a| u32::try_from(a).ok())
        .collect())
}

pub struct NewLease<'a> {
    pub id: &'a str,
    pub grant_id: i64,
    pub user_id: i64,
    pub edge_id: i64,
    pub public_key: &'a PublicKey,
    pub preshared_key: &'a PresharedKey,
    pub tunnel_address: Ipv4Addr,
    pub pin: Pin,
    pub ports: &'a [u16],
    pub expires_at: i64,
}

pub async fn insert(conn: &mut SqliteConnection, l: NewLease<'_>, now: i64) -> Result<()> {
    let addr = i64::from(u32::from(l.tunnel_address));
    sqlx::query(
        "INSERT INTO leases (id, grant_id, user_id, edge_id, public_key, preshared_key,
                             tunnel_address, addr_slot, pin, ports, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(l.id)
    .bind(l.grant_id)
    .bind(l.user_id)
    .bind(l.edge_id)
    .bind(l.public_key.to_base64())
    .bind(l.preshared_key.as_bytes().as_slice())
    .bind(addr)
    .bind(addr)
    .bind(l.pin.to_string())
    .bind(serde_json::to_string(l.ports)?)
    .bind(now)
    .bind(l.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes the live leases of a grant, freeing their addresses; returns their ids.
pub async fn revoke_for_grant(
    conn: &mut SqliteConnection,
    grant_id: i64,
    now: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "UPDATE leases SET revoked_at = ?1, addr_slot = NULL
         WHERE grant_id = ?2 AND revoked_at IS NULL AND expires_at > ?1 RETURNING id",
    )
    .bind(now)
    .bind(grant_id)
    .fetch_all(conn)
    .await?)
}

/// A live lease holding a given public key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyHolder {
    pub id: String,
    pub user_id: i64,
}

/// The edge's live leases with this public key (base64).
pub async fn live_with_key(
    conn: &mut SqliteConnection,
    edge_id: i64,
    public_key: &str,
    now: i64,
) -> Result<Vec<KeyHolder>> {
    Ok(sqlx::query_as(
        "SELECT id, user_id FROM leases
         WHERE edge_id = ? AND public_key = ? AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(edge_id)
    .bind(public_key)
    .bind(now)
    .fetch_all(conn)
    .await?)
}

/// Revokes one lease, freeing its address.
pub async fn revoke(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE leases SET revoked_at = ?, addr_slot = NULL WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

const LIVE_SELECT: &str = "SELECT l.id, u.name AS user_name, e.name AS edge_name, l.public_key,
        l.preshared_key, l.tunnel_address, l.pin, l.ports, l.created_at, l.expires_at
    FROM leases l JOIN users u ON u.id = l.user_id JOIN edges e ON e.id = l.edge_id
    WHERE l.revoked_at IS NULL AND l.expires_at > ?";

/// Live (unrevoked, unexpired) leases of one edge, by address.
pub async fn live_for_edge(
    conn: &mut SqliteConnection,
    edge_id: i64,
    now: i64,
) -> Result<Vec<LeaseRow>> {
    Ok(sqlx::query_as(&format!(
        "{LIVE_SELECT} AND l.edge_id = ? ORDER BY l.tunnel_address"
    ))
    .bind(now)
    .bind(edge_id)
    .fetch_all(conn)
    .await?)
}

/// Every live lease, by edge and address.
pub async fn live_all(conn: &mut SqliteConnection, now: i64) -> Result<Vec<LeaseRow>> {
    Ok(
        sqlx::query_as(&format!("{LIVE_SELECT} ORDER BY e.name, l.tunnel_address"))
            .bind(now)
            .fetch_all(conn)
            .await?,
    )
}

/// Live leases of one user, by edge and address.
pub async fn live_for_user(
    conn: &mut SqliteConnection,
    user_id: i64,
    now: i64,
) -> Result<Vec<LeaseRow>> {
    Ok(sqlx::query_as(&format!(
        "{LIVE_SELECT} AND l.user_id = ? ORDER BY e.name, l.tunnel_address"
    ))
    .bind(now)
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// A live lease with the ids it belongs to, for renewal and revocation.
#[derive(Clone, sqlx::FromRow)]
pub struct OwnedLease {
    pub id: String,
    pub grant_id: i64,
    pub user_id: i64,
    pub edge_id: i64,
    pub preshared_key: Vec<u8>,
    pub tunnel_address: i64,
    pub pin: String,
}

/// The preshared key stays out of logs.
impl std::fmt::Debug for OwnedLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedLease")
            .field("id", &self.id)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl OwnedLease {
    pub fn address(&self) -> Result<Ipv4Addr> {
        u32::try_from(self.tunnel_address)
            .map(Ipv4Addr::from)
            .map_err(|_| Error::Internal(format!("lease {}: stored address is corrupt", self.id)))
    }

    pub fn preshared_key(&self) -> Result<PresharedKey> {
        let psk: [u8; 32] = self.preshared_key.as_slice().try_into().map_err(|_| {
            Error::Internal(format!(
                "lease {}: stored preshared key is corrupt",
                self.id
            ))
        })?;
        Ok(PresharedKey::from_bytes(psk))
    }
}

/// The lease `id` if it is live (neither revoked nor expired).
pub async fn live_by_id(
    conn: &mut SqliteConnection,
    id: &str,
    now: i64,
) -> Result<Option<OwnedLease>> {
    Ok(sqlx::query_as(
        "SELECT id, grant_id, user_id, edge_id, preshared_key, tunnel_address, pin FROM leases
         WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

/// Moves a live lease's pin and sets its expiry (the key, address and PSK stay).
pub async fn repin(conn: &mut SqliteConnection, id: &str, pin: Pin, expires_at: i64) -> Result<()> {
    sqlx::query("UPDATE leases SET pin = ?, expires_at = ? WHERE id = ?")
        .bind(pin.to_string())
        .bind(expires_at)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user and edge names of a lease.
pub async fn owner_names(conn: &mut SqliteConnection, id: &str) -> Result<(String, String)> {
    Ok(sqlx::query_as(
        "SELECT u.name, e.name FROM leases l JOIN users u ON u.id = l.user_id
         JOIN edges e ON e.id = l.edge_id WHERE l.id = ?",
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}
