//! Operator actions: users, edges, grants and the lease list. Reached through the admin socket
//! (the CLI) or called in-process by tests.

use std::net::SocketAddr;

use grantwire_proto::pin::{DEFAULT_PIN_PREFIX_V4, DEFAULT_PIN_PREFIX_V6};
use grantwire_proto::{
    AuditQuery, AuditResponse, EdgeAddRequest, EdgeAddResponse, EdgeInfo, EdgeListResponse,
    EdgeRemoveRequest, EdgeRemoveResponse, GrantAddRequest, GrantInfo, GrantListResponse,
    GrantRevokeRequest, GrantRevokeResponse, LeaseListResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, UserAddRequest, UserAddResponse, DEFAULT_ENROL_TOKEN_SECS,
    DEFAULT_MAX_LEASES, PLEX_PORT,
};
use ipnet::Ipv4Net;

use crate::alloc;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::secrets::{self, Token};
use crate::store::{self, edges, leases, users, AuditEvent};
use crate::totp;

/// Lease lifetime of a grant made without `--lease-ttl`.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 8 * 3600;
/// The most `max_leases` a grant may have: a /16, the largest edge subnet, holds 65,533 clients.
pub const MAX_LEASES_LIMIT: u32 = 65_536;
/// The longest an enrolment token may be left usable: a token is meant to be used soon.
pub const MAX_ENROL_TOKEN_SECS: u64 = 30 * 86_400;

/// The edge subnet when none is given (DESIGN.md defaults).
pub fn default_subnet() -> Ipv4Net {
    Ipv4Net::new(std::net::Ipv4Addr::new(10, 77, 0, 0), 24).unwrap_or_default()
}

impl Broker {
    pub async fn user_add(&self, req: UserAddRequest) -> Result<UserAddResponse> {
        check_name(&req.name, "user")?;
        secrets::check_password_policy(&req.password)?;
        let phc = self.argon2().hash(req.password).await?;
        let secret = secrets::random_bytes::<{ totp::SECRET_LEN }>();
        let sealed = self.auth().seal_totp(&req.name, &secret)?;
        let now = self.now();
        let (name, admin) = (req.name.clone(), req.admin);
        self.db()
            .write(move |tx| {
                users::insert(tx, &name, &phc, &sealed, admin, now)?;
                admin_audit(tx, now, "user_added", format!("user={name}"))
            })
            .await?;
        tracing::info!(user = %req.name, admin = req.admin, "user added");
        Ok(UserAddResponse {
            otpauth_uri: totp::otpauth_uri(&req.name, &secret),
            totp_secret: totp::secret_to_base32(&secret),
            name: req.name,
            admin: req.admin,
        })
    }

    pub async fn edge_add(&self, req: EdgeAddRequest) -> Result<EdgeAddResponse> {
        check_name(&req.name, "edge")?;
        let endpoints: Vec<String> = std::iter::once(req.endpoint.clone())
            .chain(req.extra_endpoints.iter().cloned())
            .collect();
        check_endpoints(&endpoints)?;
        let stored = endpoints.join(",");
        let subnet = alloc::check_subnet(req.subnet.unwrap_or_else(default_subnet))
            .map_err(Error::BadRequest)?;
        let tunnel_address = alloc::edge_address(subnet);
        let expires_secs = req.expires_secs.unwrap_or(DEFAULT_ENROL_TOKEN_SECS);
        if expires_secs == 0 || expires_secs > MAX_ENROL_TOKEN_SECS {
            return Err(Error::BadRequest(
                "expires_secs must be positive and at most 30 days".into(),
            ));
        }
        let token = Token::generate();
        let hash = secrets::token_hash(token.as_str());
        // The clock `enrol` checks the expiry by.
        let now = self.auth().now();
        let enrol_expires_at = now.saturating_add_unsigned(expires_secs);
        let name = req.name.clone();
        self.db()
            .write(move |tx| {
                let new = edges::NewEdge {
                    name: &name,
                    endpoint: &stored,
                    subnet,
                    tunnel_address,
                    enrol_token_hash: &hash,
                    enrol_expires_at,
                };
                edges::insert(tx, new, now)?;
                let detail = format!("edge={name} token_expires_at={enrol_expires_at}");
                admin_audit(tx, now, "edge_added", detail)
            })
            .await?;
        tracing::info!(edge = %req.name, %subnet, "edge added");
        Ok(EdgeAddResponse {
            name: req.name,
            endpoint: req.endpoint,
            endpoints,
            subnet,
            tunnel_address,
            enrolment_token: token.into_string(),
            enrolment_expires_at: enrol_expires_at,
        })
    }

    pub async fn edge_list(&self) -> Result<EdgeListResponse> {
        let rows = self.db().read(edges::list).await?;
        let edges = rows
            .into_iter()
            .map(|r| {
                let bad = || Error::Internal(format!("edge {}: stored subnet is corrupt", r.name));
                Ok(EdgeInfo {
                    endpoints: r.endpoint.split(',').map(str::to_owned).collect(),
                    subnet: r.subnet.parse().map_err(|_| bad())?,
                    tunnel_address: r.tunnel_address.parse().map_err(|_| bad())?,
                    enrolled: r.enrolled,
                    connected: self.presence().is_connected(r.id),
                    last_seen: r.last_seen_at,
                    enrolment_expires_at: r.enrol_expires_at,
                    name: r.name,
                })
            })
            .collect::<Result<_>>()?;
        Ok(EdgeListResponse { edges })
    }

    /// Removes the edge with its grants and leases (each revocation audited) and its
    /// credential; an open sync stream of it ends.
    pub async fn edge_remove(&self, req: EdgeRemoveRequest) -> Result<EdgeRemoveResponse> {
        check_name(&req.name, "edge")?;
        let now = self.now();
        let name = req.name.clone();
        let (edge, revoked) = self
            .db()
            .write(move |tx| {
                let edge = edges::by_name(tx, &name)?
                    .ok_or_else(|| Error::NotFound(format!("no edge named {name:?}")))?;
                let revoked = edges::live_lease_ids(tx, edge.id, now)?;
                for id in &revoked {
                    admin_audit(tx, now, "lease_revoked", format!("lease={id}"))?;
                }
                edges::delete(tx, edge.id)?;
                let detail = format!("edge={name} revoked_leases={}", revoked.len());
                admin_audit(tx, now, "edge_removed", detail)?;
                Ok((edge, revoked))
            })
            .await?;
        self.notify_edge(edge.id);
        tracing::info!(edge = %req.name, leases = revoked.len(), "edge removed");
        Ok(EdgeRemoveResponse {
            name: req.name,
            revoked_leases: revoked.len() as u64,
        })
    }

    pub async fn grant_add(&self, req: GrantAddRequest) -> Result<GrantInfo> {
        let lease_ttl_secs = req.lease_ttl_secs.unwrap_or(DEFAULT_LEASE_TTL_SECS);
        if lease_ttl_secs == 0 || lease_ttl_secs > alloc::MAX_LEASE_TTL_SECS {
            return Err(Error::BadRequest(
                "lease_ttl_secs must be positive and at most 366 days".into(),
            ));
        }
        let mut ports = req.ports.unwrap_or_else(|| vec![PLEX_PORT]);
        ports.sort_unstable();
        ports.dedup();
        let pin_prefix4 = req.pin_prefix4.unwrap_or(DEFAULT_PIN_PREFIX_V4);
        let pin_prefix6 = req.pin_prefix6.unwrap_or(DEFAULT_PIN_PREFIX_V6);
        let max_leases = req.max_leases.unwrap_or(DEFAULT_MAX_LEASES);
        if max_leases == 0 || max_leases > MAX_LEASES_LIMIT {
            return Err(Error::BadRequest(format!(
                "max_leases must be 1 to {MAX_LEASES_LIMIT} (revoke the grant to allow none)"
            )));
        }
        let now = self.now();
        alloc::check_grant_terms(&ports, pin_prefix4, pin_prefix6, req.ends_at, now)
            .map_err(Error::BadRequest)?;
        let (user, edge, ends_at) = (req.user.clone(), req.edge.clone(), req.ends_at);
        let granted = ports.clone();
        self.db()
            .write(move |tx| {
                let (user_id, edge_id) = user_and_edge(tx, &user, &edge)?;
                let grant = edges::NewGrant {
                    user_id,
                    edge_id,
                    lease_ttl_secs,
                    ports: &granted,
                    ends_at,
                    pin_prefix4,
                    pin_prefix6,
                    max_leases,
                };
                edges::insert_grant(tx, grant, now)?;
                let detail = format!(
                    "user={user} edge={edge} ttl={lease_ttl_secs} ports={granted:?} until={} pin_prefix4={pin_prefix4} pin_prefix6={pin_prefix6} max_leases={max_leases}",
                    ends_at.map_or_else(|| "none".into(), |e| e.to_string()),
                );
                admin_audit(tx, now, "grant_added", detail)
            })
            .await?;
        tracing::info!(user = %req.user, edge = %req.edge, "grant added");
        Ok(GrantInfo {
            user: req.user,
            edge: req.edge,
            lease_ttl_secs,
            ports,
            expires_at: req.ends_at,
            pin_prefix4,
            pin_prefix6,
            max_leases,
        })
    }

    /// Live grants (neither revoked nor ended), by user and edge.
    pub async fn grant_list(&self) -> Result<GrantListResponse> {
        let now = self.now();
        let rows = self.db().read(move |c| edges::live_grants(c, now)).await?;
        let grants = rows.iter().map(|r| r.to_info()).collect::<Result<_>>()?;
        Ok(GrantListResponse { grants })
    }

    /// Revokes the grant and, in the same transaction, its live leases; then pushes the new
    /// lease set to the edge.
    pub async fn grant_revoke(&self, req: GrantRevokeRequest) -> Result<GrantRevokeResponse> {
        let now = self.now();
        let (user, edge) = (req.user.clone(), req.edge.clone());
        let (edge_id, revoked) = self
            .db()
            .write(move |tx| {
                let (user_id, edge_id) = user_and_edge(tx, &user, &edge)?;
                let grant_id =
                    edges::revoke_grant(tx, user_id, edge_id, now)?.ok_or_else(|| {
                        Error::NotFound("this user holds no grant on this edge".into())
                    })?;
                let revoked = leases::revoke_for_grant(tx, grant_id, now)?;
                admin_audit(tx, now, "grant_revoked", format!("user={user} edge={edge}"))?;
                for id in &revoked {
                    admin_audit(tx, now, "lease_revoked", format!("lease={id}"))?;
                }
                Ok((edge_id, revoked))
            })
            .await?;
        self.notify_edge(edge_id);
        tracing::info!(user = %req.user, edge = %req.edge, leases = revoked.len(), "grant revoked");
        Ok(GrantRevokeResponse {
            user: req.user,
            edge: req.edge,
            revoked_leases: revoked.len() as u64,
        })
    }

    pub async fn lease_list(&self) -> Result<LeaseListResponse> {
        let now = self.now();
        let rows = self.db().read(move |c| leases::live_all(c, now)).await?;
        let leases = rows.iter().map(|r| r.to_info()).collect::<Result<_>>()?;
        Ok(LeaseListResponse { leases })
    }
}

impl Broker {
    /// The audit log, filtered for an operator.
    pub async fn audit_query(&self, q: AuditQuery) -> Result<AuditResponse> {
        if let Some(user) = &q.user {
            check_name(user, "user")?;
        }
        if let Some(kind) = &q.kind {
            check_kind(kind)?;
        }
        let entries = self
            .db()
            .read(move |c| {
                let filter = store::audit::Filter {
                    since: q.since,
                    user: q.user.as_deref(),
                    kind: q.kind.as_deref(),
                    limit: q.limit,
                };
                store::audit::query(c, filter)
            })
            .await?;
        Ok(AuditResponse { entries })
    }

    /// Revokes one live lease and pushes the edge its new set.
    pub async fn lease_revoke(&self, req: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        let now = self.now();
        let (lease, user, edge) = self
            .db()
            .write(move |tx| {
                let lease = leases::live_by_id(tx, &req.id, now)?
                    .ok_or_else(|| Error::NotFound(format!("no live lease {:?}", req.id)))?;
                let (user, edge) = leases::owner_names(tx, &lease.id)?;
                leases::revoke(tx, &lease.id, now)?;
                let detail = format!("lease={} user={user} edge={edge}", lease.id);
                admin_audit(tx, now, "lease_revoked", detail)?;
                Ok((lease, user, edge))
            })
            .await?;
        self.notify_edge(lease.edge_id);
        tracing::info!(lease = %lease.id, %user, %edge, "lease revoked");
        Ok(LeaseRevokeResponse {
            id: lease.id,
            user,
            edge,
        })
    }
}

fn user_and_edge(conn: &rusqlite::Connection, user: &str, edge: &str) -> Result<(i64, i64)> {
    check_name(user, "user")?;
    check_name(edge, "edge")?;
    let u = users::by_name(conn, user)?
        .ok_or_else(|| Error::NotFound(format!("no user named {user:?}")))?;
    let e = edges::by_name(conn, edge)?
        .ok_or_else(|| Error::NotFound(format!("no edge named {edge:?}")))?;
    Ok((u.id, e.id))
}

pub fn admin_audit(
    conn: &rusqlite::Connection,
    now: i64,
    kind: &str,
    detail: String,
) -> Result<()> {
    let event = AuditEvent {
        kind,
        actor: Some("admin"),
        source_ip: None,
        detail: Some(detail),
    };
    store::audit(conn, now, event)
}

/// `what` is "edge" for a [`grantwire_proto::EdgeName`], anything else ("user") for a
/// [`grantwire_proto::UserName`]: names appear in URIs, file names and audit lines unescaped,
/// and clients parse them by the same types, so what is accepted here can be sent to them.
pub fn check_name(name: &str, what: &str) -> Result<()> {
    let parsed = match what {
        "edge" => name.parse::<grantwire_proto::EdgeName>().map(drop),
        _ => name.parse::<grantwire_proto::UserName>().map(drop),
    };
    parsed.map_err(|e| Error::BadRequest(format!("{what} name must be {}", e.rule())))
}

/// Audit kinds are `[a-z_]`, at most 40 characters; anything else matches no row anyway.
pub fn check_kind(kind: &str) -> Result<()> {
    let ok =
        (1..=40).contains(&kind.len()) && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "an audit kind is 1-40 characters of a-z and '_'".into(),
        ))
    }
}

/// `HOST:PORT`, with HOST a name or an address (IPv6 in brackets) and a non-zero port.
pub fn check_endpoint(endpoint: &str) -> Result<()> {
    // The rule clients parse a profile's endpoint by (`grantwire_proto::Endpoint`).
    match endpoint.parse::<grantwire_proto::Endpoint>() {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::BadRequest("endpoint must be HOST:PORT".into())),
    }
}

/// An edge's endpoints: each `HOST:PORT`, and either one hostname alone or at most one IPv4
/// and one IPv6 literal (a profile gets the one of its pin's family).
pub fn check_endpoints(endpoints: &[String]) -> Result<()> {
    let mut v4 = 0;
    let mut v6 = 0;
    let mut names = 0;
    for e in endpoints {
        let endpoint: grantwire_proto::Endpoint = e
            .parse()
            .map_err(|_| Error::BadRequest("endpoint must be HOST:PORT".into()))?;
        match endpoint.socket_addr() {
            Some(SocketAddr::V4(_)) => v4 += 1,
            Some(SocketAddr::V6(_)) => v6 += 1,
            None => names += 1,
        }
    }
    let ok = match names {
        0 => v4 + v6 >= 1 && v4 <= 1 && v6 <= 1,
        1 => v4 + v6 == 0,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "endpoints: one hostname, or at most one IPv4 and one IPv6 address".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_endpoints() {
        assert!(check_name("home-1", "edge").is_ok());
        for bad in ["", "Home", "a b", "x".repeat(33).as_str(), "é"] {
            assert!(check_name(bad, "edge").is_err(), "{bad}");
        }
        for ok in [
            "192.0.2.1:51820",
            "[2001:db8::1]:51820",
            "plex.example.net:51820",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "192.0.2.1",
            "host:",
            ":51820",
            "host:0",
            "host:99999",
            "a b:1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(default_subnet().to_string(), "10.77.0.0/24");
        let eps = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for ok in [
            &["192.0.2.1:51820"][..],
            &["192.0.2.1:51820", "[2001:db8::1]:51820"],
            &["[2001:db8::1]:51820", "192.0.2.1:51820"],
            &["plex.example.net:51820"],
        ] {
            assert!(check_endpoints(&eps(ok)).is_ok(), "{ok:?}");
        }
        for bad in [
            &[][..],
            &["192.0.2.1:51820", "192.0.2.2:51820"],
            &["[2001:db8::1]:51820", "[2001:db8::2]:51820"],
            &["plex.example.net:51820", "192.0.2.1:51820"],
            &["a.example:1", "b.example:1"],
            &["192.0.2.1:51820", "192.0.2.1"],
        ] {
            assert!(check_endpoints(&eps(bad)).is_err(), "{bad:?}");
        }
    }
}
