//! Issuing leases to users, enrolling edges, and building an edge's lease set.

use std::net::{IpAddr, SocketAddrV4};
use std::time::Duration;

use grantwire_proto::{
    LeaseListResponse, LeaseRequest, LeaseResponse, LeaseRevokeRequest, LeaseRevokeResponse, Pin,
    PlexUrl, PresharedKey, Profile, PublicKey, DEFAULT_KEEPALIVE_SECS, PLEX_PORT,
};
use ipnet::{IpNet, Ipv4Net};
use rusqlite::Connection;

use crate::broker::ip_text;
use crate::error::{Error, Result};
use crate::service::audit::admin_audit;
use crate::service::endpoint;
use crate::service::Leases;
use crate::store::users::{self, SessionUser};
use crate::store::{self, edges, leases, AuditEvent};
use crate::{lease_terms, secrets};

/// How often the broker looks for leases that expired, to write their `lease_expired` rows.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Expired leases written per transaction, so a backlog never holds the write lock for long.
const EXPIRY_BATCH: i64 = 500;

impl Leases<'_> {
    /// Issues a lease on `req.edge` to the session's user, pinned to `source` (the TCP peer of
    /// the request, never a header). Written by the batch writer (`crate::writer`), in one
    /// commit with whatever other leases are being asked for at the same moment.
    pub async fn issue(
        &self,
        user: &SessionUser,
        req: LeaseRequest,
        source: IpAddr,
    ) -> Result<LeaseResponse> {
        // A name among the edge's endpoints is looked up first, outside the transaction, and
        // only for a user who holds a grant on the edge (the transaction checks again).
        let (edge_name, user_id, now) = (req.edge.clone(), user.user_id, self.broker.now());
        let stored = self
            .broker
            .db()
            .read(move |c| {
                let Some(edge) = edges::by_name(c, &edge_name)? else {
                    return Ok(None);
                };
                if edges::live_grant(c, user_id, edge.id, now)?.is_none() {
                    return Ok(None);
                }
                Ok(edge.endpoint_for(source))
            })
            .await?;
        let resolved = match stored {
            Some(e) => endpoint::resolve(&e, source).await,
            None => None,
        };
        let issue = Issue {
            session_id: user.session_id,
            resolved,
            user_id: user.user_id,
            user_name: user.name.clone(),
            req,
            source,
            now: self.broker.now(),
            seal: std::sync::Arc::clone(&self.broker.auth().seal),
        };
        // In a task of its own: if the client hangs up once the job is queued, the lease may
        // still be committed, and then its edge must still be told and the lease logged.
        let (broker, user_name) = (self.broker.clone(), user.name.clone());
        let profile = tokio::spawn(async move {
            let issued = match broker.db().write(move |conn| issue.write(conn)).await? {
                Written::Issued(issued) => issued,
                Written::Capped { max_leases } => {
                    return Err(Error::LeaseCap(format!(
                        "your grant on this edge allows {max_leases} live leases at once; \
                         revoke one (or let it expire) first"
                    )))
                }
            };
            broker.notify_edge(issued.edge_id);
            let profile = issued.profile;
            tracing::info!(lease = %profile.lease_id, user = %user_name, edge = %profile.edge, pin = %profile.pin, "lease issued");
            Ok::<_, Error>(profile)
        })
        .await??;
        Ok(LeaseResponse { profile })
    }

    /// Revokes the caller's own live lease `id` and pushes the edge its new set.
    ///
    /// Unlike renewal, another user's live lease is refused as such (403) rather than passed
    /// off as unknown, so the user hears "not yours" for an id copied from someone else's
    /// screen. That tells an authenticated user only that an id they already hold exists;
    /// ids are 64 random bits, so none can be found by guessing.
    pub async fn revoke_own(
        &self,
        user: &SessionUser,
        id: &str,
        source: IpAddr,
    ) -> Result<LeaseRevokeResponse> {
        let now = self.broker.now();
        let (id, user_id, name) = (id.to_owned(), user.user_id, user.name.clone());
        let (lease, owner, edge) = self
            .broker.db()
            .write(move |tx| {
                let lease = leases::live_by_id(tx, &id, now)?
                    .ok_or_else(|| Error::NotFound("no live lease with this id".into()))?;
                if lease.user_id != user_id {
                    tracing::info!(lease = %lease.id, user = %name, "revocation of another user's lease refused");
                    return Err(Error::Forbidden(
                        "this lease belongs to another user".into(),
                    ));
                }
                let (owner, edge) = leases::owner_names(tx, &lease.id)?;
                leases::revoke(tx, &lease.id, now)?;
                let event = AuditEvent {
                    kind: "lease_revoked",
                    actor: Some(&name),
                    source_ip: ip_text(Some(source)),
                    detail: Some(format!("lease={} user={owner} edge={edge}", lease.id)),
                };
                store::audit(tx, now, event)?;
                Ok((lease, owner, edge))
            })
            .await?;
        self.broker.notify_edge(lease.edge_id);
        tracing::info!(lease = %lease.id, user = %owner, %edge, "lease revoked by its user");
        Ok(LeaseRevokeResponse {
            id: lease.id,
            user: owner,
            edge,
        })
    }

    /// Moves the pin of the caller's live lease `id` to `source` and extends it, keeping its
    /// key, address and preshared key; the edge gets the new set at once, so the old address
    /// stops working. Another user's lease looks like an unknown one.
    pub async fn renew(
        &self,
        user: &SessionUser,
        id: &str,
        source: IpAddr,
    ) -> Result<LeaseResponse> {
        let now = self.broker.now();
        let (id, user_id, name) = (id.to_owned(), user.user_id, user.name.clone());
        let lookup = id.clone();
        let stored = self
            .broker
            .db()
            .read(move |c| {
                let Some(lease) =
                    leases::live_by_id(c, &lookup, now)?.filter(|l| l.user_id == user_id)
                else {
                    return Ok(None);
                };
                Ok(edges::by_id(c, lease.edge_id)?.and_then(|e| e.endpoint_for(source)))
            })
            .await?;
        let resolved = match stored {
            Some(e) => endpoint::resolve(&e, source).await,
            None => None,
        };
        let (lease, edge, endpoint, pin, expires_at) = self
            .broker
            .db()
            .write(move |tx| {
                let lease = leases::live_by_id(tx, &id, now)?
                    .filter(|l| l.user_id == user_id)
                    .ok_or_else(|| Error::NotFound("no such lease".into()))?;
                let grant = edges::live_grant(tx, user_id, lease.edge_id, now)?
                    .filter(|g| g.id == lease.grant_id)
                    .ok_or_else(|| Error::Forbidden("the grant of this lease is gone".into()))?;
                let edge = edges::by_id(tx, lease.edge_id)?
                    .ok_or_else(|| Error::Internal(format!("edge {} vanished", lease.edge_id)))?;
                // Refused before any write: a lease on an edge without a key is no use.
                edge_key(&edge)?;
                let pin = grant.pin_for(source)?;
                let endpoint = endpoint::for_client(&edge, source, resolved.as_ref())?;
                let expires_at = lease_terms::lease_expiry(now, grant.lease_ttl(), grant.ends_at);
                leases::repin(tx, &lease.id, pin, expires_at)?;
                let event = AuditEvent {
                    kind: "lease_renewed",
                    actor: Some(&name),
                    source_ip: ip_text(Some(source)),
                    detail: Some(format!(
                        "lease={} old_pin={} new_pin={pin} expires_at={expires_at}",
                        lease.id, lease.pin
                    )),
                };
                store::audit(tx, now, event)?;
                Ok((lease, edge, endpoint, pin, expires_at))
            })
            .await?;
        self.broker.notify_edge(edge.id);
        tracing::info!(lease = %lease.id, user = %user.name, old_pin = %lease.pin, %pin, "lease renewed");
        let profile = profile(
            edge,
            endpoint,
            lease.id.clone(),
            lease.address()?,
            lease.preshared_key(&self.broker.auth().seal)?,
            pin,
            expires_at,
        )?;
        Ok(LeaseResponse { profile })
    }

    pub async fn list(&self) -> Result<LeaseListResponse> {
        let now = self.broker.now();
        let rows = self
            .broker
            .db()
            .read(move |c| leases::live_all(c, now))
            .await?;
        let leases = rows.iter().map(|r| r.to_info()).collect::<Result<_>>()?;
        Ok(LeaseListResponse { leases })
    }

    /// Revokes one live lease and pushes the edge its new set.
    pub async fn revoke(&self, req: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        let now = self.broker.now();
        let (lease, user, edge) = self
            .broker
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
        self.broker.notify_edge(lease.edge_id);
        tracing::info!(lease = %lease.id, %user, %edge, "lease revoked");
        Ok(LeaseRevokeResponse {
            id: lease.id,
            user,
            edge,
        })
    }

    /// Writes a `lease_expired` row for every lease that ended by expiry since the last sweep
    /// and frees their addresses; returns how many. Edges enforce expiry by their own clocks,
    /// so this records what happened rather than making it happen.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let now = self.broker.now();
            // A read first, so an idle broker does not queue a write every sweep.
            if !self
                .broker
                .db()
                .read(move |c| leases::any_expired_unaudited(c, now))
                .await?
            {
                return Ok(total);
            }
            let expired = self
                .broker
                .db()
                .write(move |tx| audit_expired(tx, now))
                .await?;
            total += expired;
            if expired < usize::try_from(EXPIRY_BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }
}

/// One lease request, as the batch writer runs it.
struct Issue {
    session_id: i64,
    /// What a name among the edge's endpoints stood for, looked up before the transaction.
    resolved: Option<endpoint::Resolved>,
    user_id: i64,
    user_name: String,
    req: LeaseRequest,
    source: IpAddr,
    now: i64,
    /// Seals the new lease's preshared key before it is written.
    seal: std::sync::Arc<secrets::SealKey>,
}

/// What a lease request wrote: the lease, or only the audit row of its refusal at the cap.
enum Written {
    Issued(Box<Issued>),
    Capped { max_leases: i64 },
}

/// A lease written, and the edge to tell once it is committed.
struct Issued {
    profile: Profile,
    edge_id: i64,
}

impl Issue {
    /// The lease's rows and audit row, or at the grant's cap only the audit row of the
    /// refusal (kept, unlike an error's writes). The writer runs this in a savepoint: an error
    /// leaves the database as it was, and concurrent requests take turns, so each sees the
    /// addresses (and keys) the previous one took.
    fn write(self, conn: &rusqlite::Connection) -> Result<Written> {
        let Self {
            session_id,
            resolved,
            user_id,
            user_name,
            req,
            source,
            now,
            seal,
        } = self;
        // The session was checked before the job queued; an admin may have ended it since
        // (disable, reset, remove end the user's sessions and leases in one transaction).
        if !users::session_exists(conn, session_id)? {
            return Err(Error::Unauthorized);
        }
        let edge = edges::by_name(conn, &req.edge)?
            .ok_or_else(|| Error::NotFound(format!("no edge named {:?}", req.edge)))?;
        let grant = edges::live_grant(conn, user_id, edge.id, now)?
            .ok_or_else(|| Error::Forbidden("you hold no grant on this edge".into()))?;
        // Refused before any write: a lease on an edge without a key is no use.
        edge_key(&edge)?;
        let pin = grant.pin_for(source)?;
        let endpoint = endpoint::for_client(&edge, source, resolved.as_ref())?;
        let subnet = edge.subnet()?;
        let preshared_key = PresharedKey::from_bytes(secrets::random_bytes::<32>());
        let lease_id = format!("l-{}", hex(&secrets::random_bytes::<8>()));

        // The edge keeps one peer per public key, so two live leases sharing a key would leave
        // one of them silently dead (or pinned to the wrong address). Another user's key is
        // refused; the same user asking again with its key is a renewal and replaces the old
        // lease.
        let key = req.public_key.to_base64();
        let holders = leases::live_with_key(conn, edge.id, &key, now)?;
        if holders.iter().any(|h| h.user_id != user_id) {
            return Err(Error::Conflict("public key already in use".into()));
        }
        // Counted here, in the writer's transaction, so concurrent requests take turns at the
        // cap and cannot pass it together. A request with the key of one of the grant's live
        // leases replaces that lease, so it does not count against the cap.
        let replaced = holders.iter().filter(|h| h.grant_id == grant.id).count();
        let live = leases::live_count_for_grant(conn, grant.id, now)?;
        if live - i64::try_from(replaced).unwrap_or(i64::MAX) >= grant.max_leases {
            let event = AuditEvent {
                kind: "lease_cap_reached",
                actor: Some(&user_name),
                source_ip: ip_text(Some(source)),
                detail: Some(format!(
                    "edge={} live={live} max_leases={}",
                    edge.name, grant.max_leases
                )),
            };
            store::audit(conn, now, event)?;
            tracing::info!(user = %user_name, edge = %edge.name, live, max = grant.max_leases, "lease refused at the grant's cap");
            return Ok(Written::Capped {
                max_leases: grant.max_leases,
            });
        }
        for old in &holders {
            leases::revoke(conn, &old.id, now)?;
            let event = AuditEvent {
                kind: "lease_revoked",
                actor: Some(&user_name),
                source_ip: ip_text(Some(source)),
                detail: Some(format!("lease={} replaced_by={lease_id}", old.id)),
            };
            store::audit(conn, now, event)?;
        }

        leases::free_expired_slots(conn, edge.id, now)?;
        let address = leases::free_slot(conn, edge.id, lease_terms::client_range(subnet))?
            .map(std::net::Ipv4Addr::from)
            .ok_or_else(|| Error::Conflict("the edge's subnet is full".into()))?;
        let expires_at = lease_terms::lease_expiry(now, grant.lease_ttl(), grant.ends_at);
        let ports = grant.ports()?;
        let new = leases::NewLease {
            id: &lease_id,
            grant_id: grant.id,
            user_id,
            edge_id: edge.id,
            public_key: &req.public_key,
            preshared_key: &preshared_key,
            tunnel_address: address,
            pin,
            ports: &ports,
            expires_at,
        };
        leases::insert(conn, new, &seal, now)?;
        let event = AuditEvent {
            kind: "lease_issued",
            actor: Some(&user_name),
            source_ip: ip_text(Some(source)),
            detail: Some(format!(
                "lease={lease_id} edge={} address={address} pin={pin} expires_at={expires_at}",
                edge.name
            )),
        };
        store::audit(conn, now, event)?;
        let edge_id = edge.id;
        let profile = profile(
            edge,
            endpoint,
            lease_id,
            address,
            preshared_key,
            pin,
            expires_at,
        )?;
        Ok(Written::Issued(Box::new(Issued { profile, edge_id })))
    }
}

fn edge_key(edge: &edges::EdgeRow) -> Result<PublicKey> {
    let stored = edge
        .public_key
        .as_deref()
        .ok_or_else(|| Error::Conflict("edge has not enrolled yet".into()))?;
    // Checked (not low-order) when the edge enrolled.
    PublicKey::from_stored_base64(stored)
        .map_err(|_| Error::Internal(format!("edge {}: stored key is corrupt", edge.name)))
}

/// The profile of a lease on `edge`; `endpoint` is the edge's endpoint of the pin's family.
fn profile(
    edge: edges::EdgeRow,
    endpoint: String,
    lease_id: String,
    address: std::net::Ipv4Addr,
    preshared_key: PresharedKey,
    pin: Pin,
    expires_at: i64,
) -> Result<Profile> {
    let edge_addr = edge.tunnel_address()?;
    let edge_public_key = edge_key(&edge)?;
    Ok(Profile {
        lease_id: wire_field(&lease_id)?,
        edge: wire_field(&edge.name)?,
        address,
        edge_public_key,
        endpoint: wire_field(&endpoint)?,
        allowed_ips: vec![IpNet::V4(Ipv4Net::from(edge_addr))],
        preshared_key,
        persistent_keepalive: DEFAULT_KEEPALIVE_SECS,
        plex_url: PlexUrl::new(SocketAddrV4::new(edge_addr, PLEX_PORT)),
        pin,
        expires_at,
    })
}

/// A stored name, id or endpoint as the wire type clients parse it into. Each was checked by
/// the same rule when it was made, so a failure is a damaged row, not a user's mistake.
pub(crate) fn wire_field<T>(stored: &str) -> Result<T>
where
    T: std::str::FromStr<Err = grantwire_proto::FieldError>,
{
    stored
        .parse()
        .map_err(|e| Error::Internal(format!("stored value out of shape: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Marks up to [`EXPIRY_BATCH`] expired leases audited, with a `lease_expired` row each;
/// returns how many.
fn audit_expired(tx: &Connection, now: i64) -> Result<usize> {
    let expired = leases::take_expired(tx, now, EXPIRY_BATCH)?;
    for lease in &expired {
        let event = AuditEvent {
            kind: "lease_expired",
            actor: Some(&lease.user_name),
            source_ip: None,
            detail: Some(format!(
                "lease={} user={} edge={} expires_at={}",
                lease.id, lease.user_name, lease.edge_name, lease.expires_at
            )),
        };
        store::audit(tx, now, event)?;
    }
    Ok(expired.len())
}
