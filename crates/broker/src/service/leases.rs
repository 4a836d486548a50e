//! Issuing leases to users, enrolling edges, and building an edge's lease set.

use std::net::IpAddr;

use grantwire_proto::{
    EnrolRequest, EnrolResponse, LeaseRequest, LeaseResponse, LeaseSet, PresharedKey, Profile,
    DEFAULT_KEEPALIVE_SECS, PLEX_PORT,
};
use ipnet::{IpNet, Ipv4Net};

use crate::alloc;
use crate::broker::{ip_text, Broker};
use crate::error::{Error, Result};
use crate::secrets::{self, Token};
use crate::store::{self, edges, leases, users::SessionUser, AuditEvent};

impl Broker {
    /// Issues a lease on `req.edge` to the session's user, pinned to `source` (the TCP peer of
    /// the request, never a header).
    pub async fn issue_lease(
        &self,
        user: &SessionUser,
        req: LeaseRequest,
        source: IpAddr,
    ) -> Result<LeaseResponse> {
        let now = store::now();
        let pin = alloc::pin_for(source)
            .map_err(|e| Error::Internal(format!("pin for {source}: {e}")))?;
        let preshared_key = PresharedKey::from_bytes(secrets::random_bytes::<32>());
        let lease_id = format!("l-{}", hex(&secrets::random_bytes::<8>()));

        // The write lock is taken up front, so concurrent requests queue here and each sees the
        // addresses (and keys) the previous one took.
        let mut tx = self.write_tx().await?;
        let edge = edges::by_name(&mut tx, &req.edge)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no edge named {:?}", req.edge)))?;
        let grant = edges::live_grant(&mut tx, user.user_id, edge.id, now)
            .await?
            .ok_or_else(|| Error::Forbidden("you hold no grant on this edge".into()))?;
        let edge_key = edge
            .public_key
            .as_deref()
            .ok_or_else(|| Error::Conflict("edge has not enrolled yet".into()))?
            .parse()
            .map_err(|_| Error::Internal(format!("edge {}: stored key is corrupt", edge.name)))?;
        if !alloc::endpoint_serves(&edge.endpoint, source) {
            return Err(Error::Conflict(
                "edge has no endpoint of the client's address family".into(),
            ));
        }
        let subnet = edge.subnet()?;
        let edge_addr = edge.tunnel_address()?;

        // The edge keeps one peer per public key, so two live leases sharing a key would leave
        // one of them silently dead (or pinned to the wrong address). Another user's key is
        // refused; the same user asking again with its key is a renewal and replaces the old
        // lease.
        let key = req.public_key.to_base64();
        let holders = leases::live_with_key(&mut tx, edge.id, &key, now).await?;
        if holders.iter().any(|h| h.user_id != user.user_id) {
            return Err(Error::Conflict("public key already in use".into()));
        }
        for old in &holders {
            leases::revoke(&mut tx, &old.id, now).await?;
            let event = AuditEvent {
                kind: "lease_revoked",
                actor: Some(&user.name),
                source_ip: ip_text(Some(source)),
                detail: Some(format!("lease={} replaced_by={lease_id}", old.id)),
            };
            store::audit(&mut tx, now, event).await?;
        }

        leases::free_expired_slots(&mut tx, edge.id, now).await?;
        let used = leases::used_slots(&mut tx, edge.id).await?;
        let address = alloc::lowest_free(subnet, &used)
            .ok_or_else(|| Error::Conflict("the edge's subnet is full".into()))?;
        let expires_at = alloc::lease_expiry(now, grant.lease_ttl(), grant.ends_at);
        let ports = grant.ports()?;
        let new = leases::NewLease {
            id: &lease_id,
            grant_id: grant.id,
            user_id: user.user_id,
            edge_id: edge.id,
            public_key: &req.public_key,
            preshared_key: &preshared_key,
            tunnel_address: address,
            pin,
            ports: &ports,
            expires_at,
        };
        leases::insert(&mut tx, new, now).await?;
        let event = AuditEvent {
            kind: "lease_issued",
            actor: Some(&user.name),
            source_ip: ip_text(Some(source)),
            detail: Some(format!(
                "lease={lease_id} edge={} address={address} pin={pin} expires_at={expires_at}",
                edge.name
            )),
        };
        store::audit(&mut tx, now, event).await?;
        tx.commit().await?;
        self.notify_edge(edge.id);
        tracing::info!(lease = %lease_id, user = %user.name, edge = %edge.name, %pin, "lease issued");

        let profile = Profile {
            lease_id,
            edge: edge.name,
            address,
            edge_public_key: edge_key,
            endpoint: edge.endpoint,
            allowed_ips: vec![IpNet::V4(Ipv4Net::from(edge_addr))],
            preshared_key,
            persistent_keepalive: DEFAULT_KEEPALIVE_SECS,
            plex_url: format!("http://{edge_addr}:{PLEX_PORT}/web"),
            pin,
            expires_at,
        };
        Ok(LeaseResponse { profile })
    }

    /// Trades a one-time enrolment token for a long-lived edge credential.
    pub async fn enrol(&self, req: EnrolRequest, source: IpAddr) -> Result<EnrolResponse> {
        let now = store::now();
        let credential = Token::generate();
        let cred_hash = secrets::token_hash(credential.as_str());
        let token_hash = secrets::token_hash(&req.token);
        let key = req.public_key.to_base64();
        let mut tx = self.write_tx().await?;
        let consumed =
            edges::consume_enrolment(&mut tx, &token_hash, &key, &cred_hash, now).await?;
        let Some(edge) = consumed else {
            tracing::info!(%source, "enrolment refused");
            return Err(Error::Unauthorized);
        };
        let event = AuditEvent {
            kind: "edge_enrolled",
            actor: Some(&edge.name),
            source_ip: ip_text(Some(source)),
            detail: Some(format!("public_key={key}")),
        };
        store::audit(&mut tx, now, event).await?;
        tx.commit().await?;
        tracing::info!(edge = %edge.name, %source, "edge enrolled");
        Ok(EnrolResponse {
            credential: credential.into_string(),
            config: edge.config()?,
        })
    }

    /// The enrolled edge a bearer credential belongs to.
    pub async fn edge_by_credential(&self, credential: &str) -> Result<edges::EdgeRow> {
        let mut conn = self.db().acquire().await?;
        edges::by_credential(&mut conn, &secrets::token_hash(credential))
            .await?
            .ok_or(Error::Unauthorized)
    }

    /// The complete set of an edge's live leases, as pushed to it.
    pub async fn lease_set(&self, edge_id: i64) -> Result<LeaseSet> {
        let now = store::now();
        let mut conn = self.db().acquire().await?;
        let edge = edges::by_id(&mut conn, edge_id)
            .await?
            .ok_or_else(|| Error::Internal(format!("edge {edge_id} vanished")))?;
        let rows = leases::live_for_edge(&mut conn, edge_id, now).await?;
        let leases = rows
            .iter()
            .map(|r| r.to_edge_lease())
            .collect::<Result<_>>()?;
        Ok(LeaseSet {
            config: edge.config()?,
            leases,
            generated_at: now,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
