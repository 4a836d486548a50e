//! Edges (with their one-time enrolment token and long-lived credential) and grants.

use std::net::{IpAddr, Ipv4Addr};

use grantwire_proto::{EdgeConfig, GrantInfo, Pin};
use ipnet::Ipv4Net;
use rusqlite::{params, Connection, Row};

use super::{conflict_on_unique, exec, optional_row, rows};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
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
            .find(|e| crate::lease_terms::endpoint_serves(e, source))
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
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
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

pub fn insert(conn: &Connection, edge: NewEdge<'_>, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO edges (name, endpoint, subnet, tunnel_address, enrol_token_hash,
                            enrol_expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        edge.name,
        edge.endpoint,
        edge.subnet.to_string(),
        edge.tunnel_address.to_string(),
        edge.enrol_token_hash,
        edge.enrol_expires_at,
        now
    ])
    .map_err(|e| conflict_on_unique(e, "an edge with this name already exists"))?;
    Ok(conn.last_insert_rowid())
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<EdgeRow>> {
    optional_row(
        conn,
        &format!("SELECT {EDGE_COLUMNS} FROM edges WHERE name = ?"),
        [name],
        EdgeRow::from_row,
    )
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<EdgeRow>> {
    optional_row(
        conn,
        &format!("SELECT {EDGE_COLUMNS} FROM edges WHERE id = ?"),
        [id],
        EdgeRow::from_row,
    )
}

pub fn by_credential(conn: &Connection, hash: &[u8]) -> Result<Option<EdgeRow>> {
    optional_row(
        conn,
        &format!("SELECT {EDGE_COLUMNS} FROM edges WHERE credential_hash = ?"),
        [hash],
        EdgeRow::from_row,
    )
}

/// Uses up an enrolment token: in one statement, so two racing enrolments cannot both win.
/// Returns the edge, or `None` when no unused, unexpired token has this hash.
pub fn consume_enrolment(
    conn: &Connection,
    token_hash: &[u8],
    public_key: &str,
    credential_hash: &[u8],
    now: i64,
) -> Result<Option<EdgeRow>> {
    optional_row(
        conn,
        &format!(
            "UPDATE edges SET enrol_token_hash = NULL, public_key = ?1, credential_hash = ?2,
                    enrolled_at = ?3
             WHERE enrol_token_hash = ?4 AND enrol_expires_at > ?3 RETURNING {EDGE_COLUMNS}"
        ),
        params![public_key, credential_hash, now, token_hash],
        EdgeRow::from_row,
    )
}

/// The name of the edge whose unused token has this hash but has expired (or has no expiry,
/// from before expiries), for the audit log of a refused enrolment.
pub fn expired_enrolment(conn: &Connection, token_hash: &[u8], now: i64) -> Result<Option<String>> {
    optional_row(
        conn,
        "SELECT name FROM edges
         WHERE enrol_token_hash = ? AND (enrol_expires_at IS NULL OR enrol_expires_at <= ?)",
        params![token_hash, now],
        |r| r.get(0),
    )
}

pub fn mark_seen(conn: &Connection, edge_id: i64, now: i64) -> Result<()> {
    exec(
        conn,
        "UPDATE edges SET last_seen_at = ? WHERE id = ?",
        [now, edge_id],
    )?;
    Ok(())
}

/// An edge as listed for the admin.
#[derive(Debug, Clone)]
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

pub fn list(conn: &Connection) -> Result<Vec<EdgeListRow>> {
    rows(
        conn,
        "SELECT id, name, endpoint, subnet, tunnel_address,
                (credential_hash IS NOT NULL) AS enrolled, last_seen_at,
                CASE WHEN enrol_token_hash IS NOT NULL THEN enrol_expires_at END
                    AS enrol_expires_at
         FROM edges ORDER BY name",
        [],
        |r| {
            Ok(EdgeListRow {
                id: r.get(0)?,
                name: r.get(1)?,
                endpoint: r.get(2)?,
                subnet: r.get(3)?,
                tunnel_address: r.get(4)?,
                enrolled: r.get(5)?,
                last_seen_at: r.get(6)?,
                enrol_expires_at: r.get(7)?,
            })
        },
    )
}

/// Deletes the edge; its grants and leases go with it (ON DELETE CASCADE), and so does its
/// credential.
pub fn delete(conn: &Connection, edge_id: i64) -> Result<()> {
    exec(conn, "DELETE FROM edges WHERE id = ?", [edge_id])?;
    Ok(())
}

/// Live leases of the edge (ids), before it is removed.
pub fn live_lease_ids(conn: &Connection, edge_id: i64, now: i64) -> Result<Vec<String>> {
    rows(
        conn,
        "SELECT id FROM leases WHERE edge_id = ? AND revoked_at IS NULL AND expires_at > ?
         ORDER BY id",
        [edge_id, now],
        |r| r.get(0),
    )
}

#[derive(Debug, Clone)]
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

pub fn insert_grant(conn: &Connection, g: NewGrant<'_>, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO grants (user_id, edge_id, lease_ttl_secs, ports, ends_at, created_at,
                             pin_prefix4, pin_prefix6, max_leases)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        g.user_id,
        g.edge_id,
        i64::try_from(g.lease_ttl_secs).unwrap_or(i64::MAX),
        serde_json::to_string(g.ports)?,
        g.ends_at,
        now,
        g.pin_prefix4,
        g.pin_prefix6,
        g.max_leases
    ])
    .map_err(|e| conflict_on_unique(e, "this user already holds a grant on this edge"))?;
    Ok(conn.last_insert_rowid())
}

/// The user's grant on the edge if it is neither revoked nor past its end.
pub fn live_grant(
    conn: &Connection,
    user_id: i64,
    edge_id: i64,
    now: i64,
) -> Result<Option<GrantRow>> {
    optional_row(conn, LIVE_GRANT, [user_id, edge_id, now], |r| {
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
}

const LIVE_GRANT: &str =
    "SELECT id, user_id, edge_id, lease_ttl_secs, ports, ends_at, pin_prefix4, pin_prefix6,
            max_leases
     FROM grants
     WHERE user_id = ? AND edge_id = ? AND revoked_at IS NULL AND (ends_at IS NULL OR ends_at > ?)";

/// A live grant with its user's and edge's names, for the admin list.
#[derive(Debug, Clone)]
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
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            user_name: r.get(0)?,
            edge_name: r.get(1)?,
            lease_ttl_secs: r.get(2)?,
            ports: r.get(3)?,
            ends_at: r.get(4)?,
            pin_prefix4: r.get(5)?,
            pin_prefix6: r.get(6)?,
            max_leases: r.get(7)?,
        })
    }

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
pub fn live_grants(conn: &Connection, now: i64) -> Result<Vec<GrantListRow>> {
    rows(
        conn,
        "SELECT u.name AS user_name, e.name AS edge_name, g.lease_ttl_secs, g.ports, g.ends_at,
                g.pin_prefix4, g.pin_prefix6, g.max_leases
         FROM grants g JOIN users u ON u.id = g.user_id JOIN edges e ON e.id = g.edge_id
         WHERE g.revoked_at IS NULL AND (g.ends_at IS NULL OR g.ends_at > ?)
         ORDER BY u.name, e.name",
        [now],
        GrantListRow::from_row,
    )
}

/// One user's live grants, by edge name: what the user may ask leases for.
pub fn live_grants_for_user(
    conn: &Connection,
    user_id: i64,
    now: i64,
) -> Result<Vec<GrantListRow>> {
    rows(
        conn,
        "SELECT u.name AS user_name, e.name AS edge_name, g.lease_ttl_secs, g.ports, g.ends_at,
                g.pin_prefix4, g.pin_prefix6, g.max_leases
         FROM grants g JOIN users u ON u.id = g.user_id JOIN edges e ON e.id = g.edge_id
         WHERE g.user_id = ? AND g.revoked_at IS NULL AND (g.ends_at IS NULL OR g.ends_at > ?)
         ORDER BY e.name",
        [user_id, now],
        GrantListRow::from_row,
    )
}

/// Marks the unrevoked grant revoked (even if past its end) and returns its id.
pub fn revoke_grant(
    conn: &Connection,
    user_id: i64,
    edge_id: i64,
    now: i64,
) -> Result<Option<i64>> {
    optional_row(
        conn,
        "UPDATE grants SET revoked_at = ? WHERE user_id = ? AND edge_id = ? AND revoked_at IS NULL
         RETURNING id",
        [now, user_id, edge_id],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::users;

    fn edge(conn: &Connection, name: &str) -> i64 {
        let new = NewEdge {
            name,
            endpoint: "192.0.2.1:51820",
            subnet: "10.77.0.0/24".parse().unwrap(),
            tunnel_address: Ipv4Addr::new(10, 77, 0, 1),
            enrol_token_hash: name.as_bytes(),
            enrol_expires_at: i64::MAX,
        };
        insert(conn, new, 0).unwrap()
    }

    fn grant(conn: &Connection, user_id: i64, edge_id: i64, ends_at: Option<i64>) {
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
        insert_grant(conn, g, 0).unwrap();
    }

    #[test]
    fn a_users_live_grants_leave_out_others_revoked_and_ended_ones() {
        let dir = tempfile::tempdir().unwrap();
        let conn = &crate::store::tests::migrated(dir.path());
        let alice = users::insert(conn, "alice", "x", b"s", false, 0).unwrap();
        let bob = users::insert(conn, "bob", "x", b"s", false, 0).unwrap();
        let (home, cabin, office, lake) = (
            edge(conn, "home"),
            edge(conn, "cabin"),
            edge(conn, "office"),
            edge(conn, "lake"),
        );
        let now = 1_000;
        grant(conn, alice, home, None);
        grant(conn, alice, cabin, Some(now + 60));
        grant(conn, alice, office, Some(now));
        grant(conn, alice, lake, None);
        revoke_grant(conn, alice, lake, now).unwrap();
        grant(conn, bob, office, None);

        let names = |rows: Vec<GrantListRow>| -> Vec<String> {
            rows.into_iter().map(|r| r.edge_name).collect()
        };
        let mine = live_grants_for_user(conn, alice, now).unwrap();
        assert!(mine.iter().all(|r| r.user_name == "alice"));
        assert_eq!(names(mine), ["cabin", "home"]);
        let theirs = live_grants_for_user(conn, bob, now).unwrap();
        assert_eq!(names(theirs), ["office"]);
    }
}
