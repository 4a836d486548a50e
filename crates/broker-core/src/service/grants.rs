//! Grants: which user may reach which edge, on which ports, pinned how widely, with how many
//! leases and for how long. Made, listed and revoked by the operator; revoking one ends its
//! leases in the same transaction and pushes the edge its new set.

use grantwire_proto::pin::{DEFAULT_PIN_PREFIX_V4, DEFAULT_PIN_PREFIX_V6};
use grantwire_proto::{
    GrantAddRequest, GrantInfo, GrantListResponse, GrantRevokeRequest, GrantRevokeResponse,
    DEFAULT_MAX_LEASES, PLEX_PORT,
};

use crate::error::{Error, Result};
use crate::lease_terms;
use crate::service::audit::admin_audit;
use crate::service::check_name;
use crate::service::Grants;
use crate::store::{edges, leases, users};

/// Lease lifetime of a grant made without `--lease-ttl`.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 8 * 3600;

/// The most `max_leases` a grant may have: a /16, the largest edge subnet, holds 65,533 clients.
pub const MAX_LEASES_LIMIT: u32 = 65_536;

impl Grants<'_> {
    pub async fn add(&self, req: GrantAddRequest) -> Result<GrantInfo> {
        let lease_ttl_secs = req.lease_ttl_secs.unwrap_or(DEFAULT_LEASE_TTL_SECS);
        if lease_ttl_secs == 0 || lease_ttl_secs > lease_terms::MAX_LEASE_TTL_SECS {
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
        let now = self.broker.now();
        lease_terms::check_grant_terms(&ports, pin_prefix4, pin_prefix6, req.ends_at, now)
            .map_err(Error::BadRequest)?;
        let (user, edge, ends_at) = (req.user.clone(), req.edge.clone(), req.ends_at);
        let granted = ports.clone();
        self.broker.db()
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
    pub async fn list(&self) -> Result<GrantListResponse> {
        let now = self.broker.now();
        let rows = self
            .broker
            .db()
            .read(move |c| edges::live_grants(c, now))
            .await?;
        let grants = rows.iter().map(|r| r.to_info()).collect::<Result<_>>()?;
        Ok(GrantListResponse { grants })
    }

    /// Revokes the grant and, in the same transaction, its live leases; then pushes the new
    /// lease set to the edge.
    pub async fn revoke(&self, req: GrantRevokeRequest) -> Result<GrantRevokeResponse> {
        let now = self.broker.now();
        let (user, edge) = (req.user.clone(), req.edge.clone());
        let (edge_id, revoked) = self
            .broker
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
        self.broker.notify_edge(edge_id);
        tracing::info!(user = %req.user, edge = %req.edge, leases = revoked.len(), "grant revoked");
        Ok(GrantRevokeResponse {
            user: req.user,
            edge: req.edge,
            revoked_leases: revoked.len() as u64,
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
