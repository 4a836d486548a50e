//! Leases: the tunnel address each holds, and what an edge must enforce.

use std::net::Ipv4Addr;

use grantwire_proto::{
    EdgeLease, LeaseInfo, LeaseUsage, LeaseUsageInfo, Pin, PresharedKey, PublicKey,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::{exec, one_row, optional_row, rows};
use crate::error::{Error, Result};
use crate::secrets::SealKey;

#[derive(Clone)]
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

    /// The lease as its edge enforces it, with the preshared key opened with `seal`.
    pub fn to_edge_lease(&self, seal: &SealKey) -> Result<EdgeLease> {
        Ok(EdgeLease {
            id: self.id.clone(),
            public_key: self.key()?,
            preshared_key: open_psk(seal, &self.id, &self.preshared_key)?,
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

/// Releases the addresses of leases that have expired, so allocation can hand them out again.
pub fn free_expired_slots(conn: &Connection, edge_id: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        // `revoked_at IS NULL` adds nothing (a revoked lease's slot is already free) but lets
        // SQLite use the partial index `leases_edge_live` instead of scanning the edge's leases.
        // The preshared key goes with the address: an ended lease's key is never needed again.
        "UPDATE leases SET addr_slot = NULL, preshared_key = x''
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
    conn: &Connection,
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

/// Writes a new lease, its preshared key sealed with `seal` (see [`seal_psk`]).
pub fn insert(conn: &Connection, l: NewLease<'_>, seal: &SealKey, now: i64) -> Result<()> {
    let addr = i64::from(u32::from(l.tunnel_address));
    let sealed_psk = seal_psk(seal, l.id, l.preshared_key)?;
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
        sealed_psk,
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
pub fn revoke_for_grant(conn: &Connection, grant_id: i64, now: i64) -> Result<Vec<String>> {
    rows(
        conn,
        "UPDATE leases SET revoked_at = ?1, addr_slot = NULL, preshared_key = x''
         WHERE grant_id = ?2 AND revoked_at IS NULL AND expires_at > ?1 RETURNING id",
        [now, grant_id],
        |r| r.get(0),
    )
}

/// Revokes every live lease of a user (all edges), freeing their addresses; returns the ids
/// with the edge each was on, so the caller can audit them and tell those edges.
pub fn revoke_for_user(conn: &Connection, user_id: i64, now: i64) -> Result<Vec<(String, i64)>> {
    rows(
        conn,
        "UPDATE leases SET revoked_at = ?1, addr_slot = NULL, preshared_key = x''
         WHERE user_id = ?2 AND revoked_at IS NULL AND expires_at > ?1 RETURNING id, edge_id",
        [now, user_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
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
    conn: &Connection,
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
pub fn live_count_for_grant(conn: &Connection, grant_id: i64, now: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM leases INDEXED BY leases_grant_live
             WHERE grant_id = ? AND revoked_at IS NULL AND expires_at > ?",
        )?
        .query_row([grant_id, now], |r| r.get(0))?)
}

/// Every statement that ends a lease also erases its preshared key (`x''`), in the same write.
const REVOKE: &str =
    "UPDATE leases SET revoked_at = ?, addr_slot = NULL, preshared_key = x'' WHERE id = ?";

/// Revokes one lease, freeing its address.
pub fn revoke(conn: &Connection, id: &str, now: i64) -> Result<()> {
    exec(conn, REVOKE, params![now, id])?;
    Ok(())
}

const LIVE_SELECT: &str = "SELECT l.id, u.name AS user_name, e.name AS edge_name, l.public_key,
        l.preshared_key, l.tunnel_address, l.pin, l.ports, l.created_at, l.expires_at,
        l.last_handshake_at, l.rx_bytes, l.tx_bytes, l.reported_at
    FROM leases l JOIN users u ON u.id = l.user_id JOIN edges e ON e.id = l.edge_id
    WHERE l.revoked_at IS NULL AND l.expires_at > ?";

/// Live (unrevoked, unexpired) leases of one edge, by address, with only the columns a lease
/// set needs (no names, no usage). A disabled user's lease is never in it, whatever left it
/// unrevoked: disabling revokes them, and this is the backstop. The set of a busy edge is
/// thousands of rows; read on the thread that owns the connection, they cost no hand-off each.
pub fn live_for_edge(conn: &Connection, edge_id: i64, now: i64) -> Result<Vec<LeaseRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, public_key, preshared_key, tunnel_address, pin, ports, created_at, expires_at
         FROM leases
         WHERE revoked_at IS NULL AND expires_at > ? AND edge_id = ?
           AND user_id NOT IN (SELECT id FROM users WHERE disabled_at IS NOT NULL)
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

impl LeaseRow {
    /// A row of [`LIVE_SELECT`].
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            user_name: r.get(1)?,
            edge_name: r.get(2)?,
            public_key: r.get(3)?,
            preshared_key: r.get(4)?,
            tunnel_address: r.get(5)?,
            pin: r.get(6)?,
            ports: r.get(7)?,
            created_at: r.get(8)?,
            expires_at: r.get(9)?,
            last_handshake_at: r.get(10)?,
            rx_bytes: r.get(11)?,
            tx_bytes: r.get(12)?,
            reported_at: r.get(13)?,
        })
    }
}

/// Every live lease, by edge and address.
pub fn live_all(conn: &Connection, now: i64) -> Result<Vec<LeaseRow>> {
    rows(
        conn,
        &format!("{LIVE_SELECT} ORDER BY e.name, l.tunnel_address"),
        [now],
        LeaseRow::from_row,
    )
}

/// Live leases of one user, by edge and address.
pub fn live_for_user(conn: &Connection, user_id: i64, now: i64) -> Result<Vec<LeaseRow>> {
    rows(
        conn,
        &format!("{LIVE_SELECT} AND l.user_id = ? ORDER BY e.name, l.tunnel_address"),
        [now, user_id],
        LeaseRow::from_row,
    )
}

/// A live lease with the ids it belongs to, for renewal and revocation.
#[derive(Clone)]
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

    pub fn preshared_key(&self, seal: &SealKey) -> Result<PresharedKey> {
        open_psk(seal, &self.id, &self.preshared_key)
    }
}

/// The lease `id` if it is live (neither revoked nor expired).
pub fn live_by_id(conn: &Connection, id: &str, now: i64) -> Result<Option<OwnedLease>> {
    optional_row(
        conn,
        "SELECT id, grant_id, user_id, edge_id, preshared_key, tunnel_address, pin FROM leases
         WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
        params![id, now],
        |r| {
            Ok(OwnedLease {
                id: r.get(0)?,
                grant_id: r.get(1)?,
                user_id: r.get(2)?,
                edge_id: r.get(3)?,
                preshared_key: r.get(4)?,
                tunnel_address: r.get(5)?,
                pin: r.get(6)?,
            })
        },
    )
}

/// Moves a live lease's pin and sets its expiry (the key, address and PSK stay).
pub fn repin(conn: &Connection, id: &str, pin: Pin, expires_at: i64) -> Result<()> {
    exec(
        conn,
        "UPDATE leases SET pin = ?, expires_at = ? WHERE id = ?",
        params![pin.to_string(), expires_at, id],
    )?;
    Ok(())
}

/// The user and edge names of a lease.
pub fn owner_names(conn: &Connection, id: &str) -> Result<(String, String)> {
    one_row(
        conn,
        "SELECT u.name, e.name FROM leases l JOIN users u ON u.id = l.user_id
         JOIN edges e ON e.id = l.edge_id WHERE l.id = ?",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Records an edge's figures for one of its own live leases; false if `edge_id` holds no such
/// lease (revoked meanwhile, or another edge's), which changes nothing.
pub fn record_usage(conn: &Connection, edge_id: i64, usage: &LeaseUsage, now: i64) -> Result<bool> {
    let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    let done = exec(
        conn,
        // boringtun forgets the handshake time once a peer has been idle for a few minutes;
        // the last one known is still the last handshake.
        "UPDATE leases SET last_handshake_at = COALESCE(?, last_handshake_at), rx_bytes = ?,
                           tx_bytes = ?, reported_at = ?
         WHERE id = ? AND edge_id = ? AND revoked_at IS NULL",
        params![
            usage.last_handshake_at,
            bytes(usage.rx_bytes),
            bytes(usage.tx_bytes),
            now,
            usage.lease_id,
            edge_id
        ],
    )?;
    Ok(done == 1)
}

/// A lease of this edge, live or not, with its owner and pin: what an edge event about it
/// needs for the audit log.
#[derive(Debug, Clone)]
pub struct EventLease {
    pub user_name: String,
    pub pin: String,
}

pub fn for_event(conn: &Connection, edge_id: i64, id: &str) -> Result<Option<EventLease>> {
    optional_row(
        conn,
        "SELECT u.name AS user_name, l.pin FROM leases l JOIN users u ON u.id = l.user_id
         WHERE l.id = ? AND l.edge_id = ?",
        params![id, edge_id],
        |r| {
            Ok(EventLease {
                user_name: r.get(0)?,
                pin: r.get(1)?,
            })
        },
    )
}

/// A lease that ended by expiry and is not yet in the audit log.
#[derive(Debug, Clone)]
pub struct Expired {
    pub id: String,
    pub edge_id: i64,
    pub user_name: String,
    pub edge_name: String,
    pub expires_at: i64,
}

/// Whether a lease expired by `now` still lacks its audit row.
pub fn any_expired_unaudited(conn: &Connection, now: i64) -> Result<bool> {
    one_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM leases
                        WHERE revoked_at IS NULL AND expiry_audited = 0 AND expires_at <= ?)",
        [now],
        |r| r.get(0),
    )
}

/// Marks up to `limit` leases that expired by `now` as audited, freeing their addresses, and
/// returns them for their `lease_expired` rows (written in the same transaction).
pub fn take_expired(conn: &Connection, now: i64, limit: i64) -> Result<Vec<Expired>> {
    let expired: Vec<Expired> = rows(
        conn,
        "SELECT l.id, l.edge_id, u.name AS user_name, e.name AS edge_name, l.expires_at
         FROM leases l JOIN users u ON u.id = l.user_id JOIN edges e ON e.id = l.edge_id
         WHERE l.revoked_at IS NULL AND l.expiry_audited = 0 AND l.expires_at <= ?
         ORDER BY l.expires_at LIMIT ?",
        [now, limit],
        |r| {
            Ok(Expired {
                id: r.get(0)?,
                edge_id: r.get(1)?,
                user_name: r.get(2)?,
                edge_name: r.get(3)?,
                expires_at: r.get(4)?,
            })
        },
    )?;
    for row in &expired {
        exec(
            conn,
            "UPDATE leases SET expiry_audited = 1, addr_slot = NULL, preshared_key = x''
             WHERE id = ?",
            [&row.id],
        )?;
    }
    Ok(expired)
}

/// Associated data of a sealed preshared key: the lease id, so a sealed key copied to another
/// lease's row does not open, under a label of its own, so it cannot pass for a TOTP secret
/// (whose associated data is a user name, which could look like a lease id).
fn psk_aad(lease_id: &str) -> Vec<u8> {
    [b"grantwire lease psk\0".as_slice(), lease_id.as_bytes()].concat()
}

/// A lease's preshared key as stored: sealed with the broker's secrets key, so a copy of
/// `broker.db` alone does not give away the keys of live leases.
pub fn seal_psk(seal: &SealKey, lease_id: &str, psk: &PresharedKey) -> Result<Vec<u8>> {
    seal.seal(&psk_aad(lease_id), psk.as_bytes())
}

/// Opens a stored preshared key. An ended lease's (erased, empty) or a plaintext one is an
/// error like any that fails to open: only live, sealed keys are ever read.
pub fn open_psk(seal: &SealKey, lease_id: &str, stored: &[u8]) -> Result<PresharedKey> {
    let corrupt = || Error::Internal(format!("lease {lease_id}: stored preshared key is corrupt"));
    let mut plain = seal.open(&psk_aad(lease_id), stored).ok_or_else(corrupt)?;
    let psk = <[u8; 32]>::try_from(plain.as_slice()).map(PresharedKey::from_bytes);
    // The heap copy is cleared; `PresharedKey` zeroises its own on drop.
    plain.fill(0);
    std::hint::black_box(&plain);
    psk.map_err(|_| corrupt())
}

/// Length of a preshared key stored before keys were sealed.
const PLAINTEXT_PSK_LEN: i64 = 32;

/// One sealed preshared key (lease id, sealed), to check the secrets key against at start.
pub fn any_sealed_psk(conn: &Connection) -> Result<Option<(String, Vec<u8>)>> {
    optional_row(
        conn,
        "SELECT id, preshared_key FROM leases WHERE length(preshared_key) > ? LIMIT 1",
        [PLAINTEXT_PSK_LEN],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Seals every preshared key still stored in plaintext (written before keys were sealed) and
/// erases those of leases that have ended; returns (sealed, erased).
pub fn seal_plaintext_psks(conn: &Connection, seal: &SealKey, now: i64) -> Result<(usize, usize)> {
    let plaintext: Vec<(String, Vec<u8>, bool)> = rows(
        conn,
        "SELECT id, preshared_key, revoked_at IS NULL AND expires_at > ? FROM leases
         WHERE length(preshared_key) = ?",
        [now, PLAINTEXT_PSK_LEN],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (mut sealed, mut erased) = (0, 0);
    for (id, stored, live) in plaintext {
        let value = if live {
            let psk = <[u8; 32]>::try_from(stored.as_slice())
                .map(PresharedKey::from_bytes)
                .map_err(|_| Error::Internal(format!("lease {id}: stored preshared key")))?;
            sealed += 1;
            seal_psk(seal, &id, &psk)?
        } else {
            erased += 1;
            Vec::new()
        };
        exec(
            conn,
            "UPDATE leases SET preshared_key = ? WHERE id = ?",
            params![value, id],
        )?;
    }
    Ok((sealed, erased))
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::lease_terms;

    /// An edge with subnet `cidr` and leases holding `held` (offsets from the network address);
    /// returns the connection, the edge id and the subnet.
    fn edge_holding(
        dir: &std::path::Path,
        cidr: &str,
        held: &[u32],
    ) -> (Connection, i64, ipnet::Ipv4Net) {
        let conn = crate::store::tests::migrated(dir);
        let subnet: ipnet::Ipv4Net = cidr.parse().unwrap();
        let user = crate::store::users::insert(&conn, "u", "x", b"s", false, 0).unwrap();
        let edge = crate::store::edges::NewEdge {
            name: "e",
            endpoint: "192.0.2.1:51820",
            subnet,
            tunnel_address: lease_terms::edge_address(subnet),
            enrol_token_hash: b"t",
            enrol_expires_at: i64::MAX,
        };
        let edge = crate::store::edges::insert(&conn, edge, 0).unwrap();
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
        let grant = crate::store::edges::insert_grant(&conn, grant, 0).unwrap();
        let seal = SealKey::create(&dir.join("secrets.key")).unwrap();
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
            insert(&conn, new, &seal, 0).unwrap();
        }
        (conn, edge, subnet)
    }

    #[test]
    fn next_fit_then_the_lowest_hole_once_the_top_is_taken() {
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
            let (conn, edge, subnet) = edge_holding(dir.path(), cidr, held);
            let got = free_slot(&conn, edge, lease_terms::client_range(subnet))
                .unwrap()
                .map(|a| a - u32::from(subnet.network()));
            assert_eq!(got, expected, "{cidr} holding {held:?}");
            // Past the top, the hole found is the one the pure allocator calls lowest.
            let used: std::collections::HashSet<u32> = held
                .iter()
                .map(|o| u32::from(subnet.network()) + o)
                .collect();
            let top = *lease_terms::client_range(subnet).end();
            if used.contains(&top) || expected.is_none() {
                let lowest = lease_terms::lowest_free(subnet, &used)
                    .map(|a| u32::from(a) - u32::from(subnet.network()));
                assert_eq!(got, lowest, "{cidr} holding {held:?}");
            }
        }
    }

    fn stored(conn: &Connection, id: &str) -> Vec<u8> {
        conn.query_row("SELECT preshared_key FROM leases WHERE id = ?", [id], |r| {
            r.get(0)
        })
        .unwrap()
    }

    #[test]
    fn every_statement_that_ends_a_lease_erases_its_sealed_key() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, edge, _) = edge_holding(dir.path(), "10.77.0.0/24", &[2, 3, 4, 5, 6, 7]);
        let seal = SealKey::load(&dir.path().join("secrets.key"))
            .unwrap()
            .unwrap();
        // Sealed, bound to its own lease: it opens there and nowhere else.
        let l4 = stored(&conn, "l4");
        assert_eq!(l4.len(), 12 + 32 + 16);
        assert_eq!(open_psk(&seal, "l4", &l4).unwrap().as_bytes(), &[1; 32]);
        assert!(open_psk(&seal, "l3", &l4).is_err());

        revoke(&conn, "l0", 100).unwrap();
        // Expired: its address freed by the next issue on the edge.
        conn.execute(
            "UPDATE leases SET expires_at = 50 WHERE id IN ('l1', 'l2')",
            [],
        )
        .unwrap();
        free_expired_slots(&conn, edge, 100).unwrap();
        assert!(stored(&conn, "l0").is_empty());
        assert!(stored(&conn, "l1").is_empty());
        assert!(stored(&conn, "l2").is_empty());
        assert_eq!(stored(&conn, "l3").len(), 60, "a live lease keeps its key");

        // Expired and audited before any issue frees its address; and revoked by grant.
        conn.execute("UPDATE leases SET expires_at = 50 WHERE id = 'l3'", [])
            .unwrap();
        let taken = take_expired(&conn, 100, 10).unwrap();
        assert!(taken.iter().any(|e| e.id == "l3"));
        assert!(stored(&conn, "l3").is_empty());
        assert_eq!(stored(&conn, "l4").len(), 60);
        let grant: i64 = conn
            .query_row("SELECT grant_id FROM leases WHERE id = 'l4'", [], |r| {
                r.get(0)
            })
            .unwrap();
        // Revoked with everything of its user's (a disable, reset or remove): l5 is moved to
        // a user of its own so that this leaves l4 to the grant's revocation below.
        conn.execute_batch(
            "INSERT INTO users (name, password_hash, totp_secret, created_at)
                 VALUES ('zed', 'x', x'00', 0);
             UPDATE leases SET user_id = last_insert_rowid() WHERE id = 'l5';",
        )
        .unwrap();
        let zed: i64 = conn
            .query_row("SELECT id FROM users WHERE name = 'zed'", [], |r| r.get(0))
            .unwrap();
        let revoked = revoke_for_user(&conn, zed, 100).unwrap();
        assert_eq!(revoked, vec![("l5".to_owned(), edge)]);
        assert!(stored(&conn, "l5").is_empty());
        assert_eq!(stored(&conn, "l4").len(), 60);

        let revoked = revoke_for_grant(&conn, grant, 100).unwrap();
        assert_eq!(revoked, vec!["l4".to_owned()]);
        assert!(stored(&conn, "l4").is_empty());
    }

    #[test]
    fn plaintext_keys_are_sealed_if_live_and_erased_if_ended() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _, _) = edge_holding(dir.path(), "10.77.0.0/24", &[2, 3, 4]);
        let seal = SealKey::load(&dir.path().join("secrets.key"))
            .unwrap()
            .unwrap();
        conn.execute(
            "UPDATE leases SET preshared_key = ?",
            [[7u8; 32].as_slice()],
        )
        .unwrap();
        conn.execute("UPDATE leases SET revoked_at = 1 WHERE id = 'l1'", [])
            .unwrap();
        conn.execute("UPDATE leases SET expires_at = 50 WHERE id = 'l2'", [])
            .unwrap();
        assert!(any_sealed_psk(&conn).unwrap().is_none());
        let done = seal_plaintext_psks(&conn, &seal, 100).unwrap();
        assert_eq!(done, (1, 2));
        assert_eq!(
            open_psk(&seal, "l0", &stored(&conn, "l0"))
                .unwrap()
                .as_bytes(),
            &[7; 32]
        );
        assert!(stored(&conn, "l1").is_empty());
        assert!(stored(&conn, "l2").is_empty());
        assert_eq!(any_sealed_psk(&conn).unwrap().unwrap().0, "l0");
        // Run again, it finds nothing left to do.
        assert_eq!(seal_plaintext_psks(&conn, &seal, 100).unwrap(), (0, 0));
    }
}
