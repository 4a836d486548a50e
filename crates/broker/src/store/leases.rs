//! Leases: the tunnel address each holds, and what an edge must enforce.

use std::net::Ipv4Addr;

use grantwire_proto::{
    EdgeLease, LeaseInfo, LeaseUsage, LeaseUsageInfo, Pin, PresharedKey, PublicKey,
};
use rusqlite::OptionalExtension;
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
    pub last_handshake_at: Option<i64>,
    pub rx_bytes: Option<i64>,
    pub tx_bytes: Option<i64>,
    pub reported_at: Option<i64>,
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
        // Checked (not low-order) when the lease was issued.
        PublicKey::from_stored_base64(&self.public_key).map_err(|_| self.corrupt("key"))
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
            usage: self.reported_at.map(|reported_at| LeaseUsageInfo {
                last_handshake_at: self.last_handshake_at,
                rx_bytes: self
                    .rx_bytes
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
                tx_bytes: self
                    .tx_bytes
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
                reported_at,
            }),
        })
    }
}

// Issuance runs on the batch writer's own connection (`crate::writer`), so the statements only
// it uses take a `rusqlite::Connection`.

/// Releases the addresses of leases that have expired, so allocation can hand them out again.
pub fn free_expired_slots(conn: &rusqlite::Connection, edge_id: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        // `revoked_at IS NULL` adds nothing (a revoked lease's slot is already free) but lets
        // SQLite use the partial index `leases_edge_live` instead of scanning the edge's leases.
        "UPDATE leases SET addr_slot = NULL
         WHERE edge_id = ? AND revoked_at IS NULL AND addr_slot IS NOT NULL AND expires_at <= ?",
    )?
    .execute([edge_id, now])?;
    Ok(())
}

/// A free address (as u32) in `range` for a new lease of the edge: the one after the highest
/// in use, or, once that would pass the top of the range, the lowest free one; `None` when the
/// range is full. Next-fit keeps the common case to one index lookup however many leases the
/// edge holds; lowest-fit would walk them all for every lease.
pub fn free_slot(
    conn: &rusqlite::Connection,
    edge_id: i64,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>> {
    let (first, last) = (i64::from(*range.start()), i64::from(*range.end()));
    let highest: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(addr_slot) FROM leases WHERE edge_id = ? AND addr_slot IS NOT NULL",
        )?
        .query_row([edge_id], |r| r.get(0))?;
    let next = highest.map_or(first, |h| (h + 1).max(first));
    if next <= last {
        return Ok(u32::try_from(next).ok());
    }
    // The top is taken: the lowest hole. Either the first address itself, or the one after a
    // used address whose successor is free (walked in index order, stopping at the first).
    let first_used: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM leases WHERE edge_id = ? AND addr_slot = ?)")?
        .query_row([edge_id, first], |r| r.get(0))?;
    if !first_used {
        return Ok(u32::try_from(first).ok());
    }
    let hole: Option<i64> = conn
        .prepare_cached(
            "SELECT a.addr_slot + 1 FROM leases a
             WHERE a.edge_id = ?1 AND a.addr_slot >= ?2 AND a.addr_slot < ?3
               AND NOT EXISTS (SELECT 1 FROM leases b
                               WHERE b.edge_id = ?1 AND b.addr_slot = a.addr_slot + 1)
             ORDER BY a.addr_slot LIMIT 1",
        )?
        .query_row([edge_id, first, last], |r| r.get(0))
        .optional()?;
    Ok(hole.and_then(|h| u32::try_from(h).ok()))
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

pub fn insert(conn: &rusqlite::Connection, l: NewLease<'_>, now: i64) -> Result<()> {
    let addr = i64::from(u32::from(l.tunnel_address));
    conn.prepare_cached(
        "INSERT INTO leases (id, grant_id, user_id, edge_id, public_key, preshared_key,
                             tunnel_address, addr_slot, pin, ports, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(rusqlite::params![
        l.id,
        l.grant_id,
        l.user_id,
        l.edge_id,
        l.public_key.to_base64(),
        l.preshared_key.as_bytes().as_slice(),
        addr,
        addr,
        l.pin.to_string(),
        serde_json::to_string(l.ports)?,
        now,
        l.expires_at,
    ])?;
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
#[derive(Debug, Clone)]
pub struct KeyHolder {
    pub id: String,
    pub user_id: i64,
    pub grant_id: i64,
}

/// The edge's live leases with this public key (base64).
pub fn live_with_key(
    conn: &rusqlite::Connection,
    edge_id: i64,
    public_key: &str,
    now: i64,
) -> Result<Vec<KeyHolder>> {
    let mut stmt = conn.prepare_cached(
        // Without table statistics SQLite would pick the (edge, expiry) index and walk every
        // live lease of the edge; the key index finds the one or none directly.
        "SELECT id, user_id, grant_id FROM leases INDEXED BY leases_edge_key
         WHERE edge_id = ? AND public_key = ? AND revoked_at IS NULL AND expires_at > ?",
    )?;
    let rows = stmt.query_map(rusqlite::params![edge_id, public_key, now], |r| {
        Ok(KeyHolder {
            id: r.get(0)?,
            user_id: r.get(1)?,
            grant_id: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Live leases (unrevoked, unexpired) held under the grant, on the batch writer's connection.
pub fn live_count_for_grant(conn: &rusqlite::Connection, grant_id: i64, now: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM leases INDEXED BY leases_grant_live
             WHERE grant_id = ? AND revoked_at IS NULL AND expires_at > ?",
        )?
        .query_row([grant_id, now], |r| r.get(0))?)
}

const REVOKE: &str = "UPDATE leases SET revoked_at = ?, addr_slot = NULL WHERE id = ?";

/// Revokes one lease, freeing its address.
pub async fn revoke(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query(REVOKE).bind(now).bind(id).execute(conn).await?;
    Ok(())
}

/// [`revoke`], on the batch writer's connection.
pub fn revoke_blocking(conn: &rusqlite::Connection, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(REVOKE)?
        .execute(rusqlite::params![now, id])?;
    Ok(())
}

const LIVE_SELECT: &str = "SELECT l.id, u.name AS user_name, e.name AS edge_name, l.public_key,
        l.preshared_key, l.tunnel_address, l.pin, l.ports, l.created_at, l.expires_at,
        l.last_handshake_at, l.rx_bytes, l.tx_bytes, l.reported_at
    FROM leases l JOIN users u ON u.id = l.user_id JOIN edges e ON e.id = l.edge_id
    WHERE l.revoked_at IS NULL AND l.expires_at > ?";

/// Live (unrevoked, unexpired) leases of one edge, by address, with only the columns a lease
/// set needs (no names, no usage). On a plain rusqlite connection (see `Broker::lease_set`):
/// the set of a busy edge is thousands of rows, and through sqlx each row is a message from
/// the connection's worker thread, which made reading 10,000 most of a revocation's time.
pub fn live_for_edge_blocking(
    conn: &rusqlite::Connection,
    edge_id: i64,
    now: i64,
) -> Result<Vec<LeaseRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, public_key, preshared_key, tunnel_address, pin, ports, created_at, expires_at
         FROM leases
         WHERE revoked_at IS NULL AND expires_at > ? AND edge_id = ?
         ORDER BY tunnel_address",
    )?;
    let rows = stmt.query_map(rusqlite::params![now, edge_id], |r| {
        Ok(LeaseRow {
            id: r.get(0)?,
            user_name: String::new(),
            edge_name: String::new(),
            public_key: r.get(1)?,
            preshared_key: r.get(2)?,
            tunnel_address: r.get(3)?,
            pin: r.get(4)?,
            ports: r.get(5)?,
            created_at: r.get(6)?,
            expires_at: r.get(7)?,
            last_handshake_at: None,
            rx_bytes: None,
            tx_bytes: None,
            reported_at: None,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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

/// Records an edge's figures for one of its own live leases; false if `edge_id` holds no such
/// lease (revoked meanwhile, or another edge's), which changes nothing.
pub async fn record_usage(
    conn: &mut SqliteConnection,
    edge_id: i64,
    usage: &LeaseUsage,
    now: i64,
) -> Result<bool> {
    let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    let done = sqlx::query(
        // boringtun forgets the handshake time once a peer has been idle for a few minutes;
        // the last one known is still the last handshake.
        "UPDATE leases SET last_handshake_at = COALESCE(?, last_handshake_at), rx_bytes = ?,
                           tx_bytes = ?, reported_at = ?
         WHERE id = ? AND edge_id = ? AND revoked_at IS NULL",
    )
    .bind(usage.last_handshake_at)
    .bind(bytes(usage.rx_bytes))
    .bind(bytes(usage.tx_bytes))
    .bind(now)
    .bind(&usage.lease_id)
    .bind(edge_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A lease of this edge, live or not, with its owner and pin: what an edge event about it
/// needs for the audit log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventLease {
    pub user_name: String,
    pub pin: String,
}

pub async fn for_event(
    conn: &mut SqliteConnection,
    edge_id: i64,
    id: &str,
) -> Result<Option<EventLease>> {
    Ok(sqlx::query_as(
        "SELECT u.name AS user_name, l.pin FROM leases l JOIN users u ON u.id = l.user_id
         WHERE l.id = ? AND l.edge_id = ?",
    )
    .bind(id)
    .bind(edge_id)
    .fetch_optional(conn)
    .await?)
}

/// A lease that ended by expiry and is not yet in the audit log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Expired {
    pub id: String,
    pub edge_id: i64,
    pub user_name: String,
    pub edge_name: String,
    pub expires_at: i64,
}

/// Whether a lease expired by `now` still lacks its audit row.
pub async fn any_expired_unaudited(conn: &mut SqliteConnection, now: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM leases
                        WHERE revoked_at IS NULL AND expiry_audited = 0 AND expires_at <= ?)",
    )
    .bind(now)
    .fetch_one(conn)
    .await?)
}

/// Marks up to `limit` leases that expired by `now` as audited, freeing their addresses, and
/// returns them for their `lease_expired` rows (written in the same transaction).
pub async fn take_expired(
    conn: &mut SqliteConnection,
    now: i64,
    limit: i64,
) -> Result<Vec<Expired>> {
    let rows: Vec<Expired> = sqlx::query_as(
        "SELECT l.id, l.edge_id, u.name AS user_name, e.name AS edge_name, l.expires_at
         FROM leases l JOIN users u ON u.id = l.user_id JOIN edges e ON e.id = l.edge_id
         WHERE l.revoked_at IS NULL AND l.expiry_audited = 0 AND l.expires_at <= ?
         ORDER BY l.expires_at LIMIT ?",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        sqlx::query("UPDATE leases SET expiry_audited = 1, addr_slot = NULL WHERE id = ?")
            .bind(&row.id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc;

    /// An edge with subnet `cidr` and leases holding `held` (offsets from the network address);
    /// returns the connection, the edge id and the subnet.
    async fn edge_holding(
        dir: &std::path::Path,
        cidr: &str,
        held: &[u32],
    ) -> (rusqlite::Connection, i64, ipnet::Ipv4Net) {
        let pool = crate::store::open(&dir.join("t.db")).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let subnet: ipnet::Ipv4Net = cidr.parse().unwrap();
        let user = crate::store::users::insert(&mut conn, "u", "x", b"s", false, 0)
            .await
            .unwrap();
        let edge = crate::store::edges::NewEdge {
            name: "e",
            endpoint: "192.0.2.1:51820",
            subnet,
            tunnel_address: alloc::edge_address(subnet),
            enrol_token_hash: b"t",
            enrol_expires_at: i64::MAX,
        };
        let edge = crate::store::edges::insert(&mut conn, edge, 0)
            .await
            .unwrap();
        let grant = crate::store::edges::NewGrant {
            user_id: user,
            edge_id: edge,
            lease_ttl_secs: 60,
            ports: &[32400],
            ends_at: None,
            pin_prefix4: 32,
            pin_prefix6: 64,
            max_leases: 5,
        };
        let grant = crate::store::edges::insert_grant(&mut conn, grant, 0)
            .await
            .unwrap();
        let conn = crate::store::open_direct(&dir.join("t.db")).unwrap();
        for (i, offset) in held.iter().enumerate() {
            let key = PublicKey::from_bytes([i as u8 + 9; 32]).unwrap();
            let psk = PresharedKey::from_bytes([1; 32]);
            let new = NewLease {
                id: &format!("l{i}"),
                grant_id: grant,
                user_id: user,
                edge_id: edge,
                public_key: &key,
                preshared_key: &psk,
                tunnel_address: Ipv4Addr::from(u32::from(subnet.network()) + offset),
                pin: "192.0.2.9/32".parse().unwrap(),
                ports: &[32400],
                expires_at: i64::MAX,
            };
            insert(&conn, new, 0).unwrap();
        }
        (conn, edge, subnet)
    }

    #[tokio::test]
    async fn next_fit_then_the_lowest_hole_once_the_top_is_taken() {
        // (subnet, held offsets, expected offset): .1 is the edge, the broadcast is never given.
        let cases: [(&str, &[u32], Option<u32>); 7] = [
            ("10.77.0.0/29", &[], Some(2)),
            ("10.77.0.0/29", &[2, 3], Some(4)),
            ("10.77.0.0/29", &[3, 5], Some(6)),
            ("10.77.0.0/29", &[3, 6], Some(2)),
            ("10.77.0.0/29", &[2, 3, 6], Some(4)),
            ("10.77.0.0/29", &[2, 3, 4, 5, 6], None),
            ("10.77.0.0/24", &[2, 3, 4, 254], Some(5)),
        ];
        for (cidr, held, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (conn, edge, subnet) = edge_holding(dir.path(), cidr, held).await;
            let got = free_slot(&conn, edge, alloc::client_range(subnet))
                .unwrap()
                .map(|a| a - u32::from(subnet.network()));
            assert_eq!(got, expected, "{cidr} holding {held:?}");
            // Past the top, the hole found is the one the pure allocator calls lowest.
            let used: std::collections::HashSet<u32> = held
                .iter()
                .map(|o| u32::from(subnet.network()) + o)
                .collect();
            let top = *alloc::client_range(subnet).end();
            if used.contains(&top) || expected.is_none() {
                let lowest = alloc::lowest_free(subnet, &used)
                    .map(|a| u32::from(a) - u32::from(subnet.network()));
                assert_eq!(got, lowest, "{cidr} holding {held:?}");
            }
        }
    }
}
