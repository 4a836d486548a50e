//! Edges: the operator adds one (an enrolment token), the edge enrols with it (a long-lived
//! credential), holds a sync stream over which it gets its lease set, and reports what it sees
//! (per-lease traffic, a lease key used off its pin, its stream opening and closing).

use std::net::{IpAddr, SocketAddr};

use grantwire_proto::{
    EdgeAddRequest, EdgeAddResponse, EdgeEventKind, EdgeInfo, EdgeListResponse, EdgeRemoveRequest,
    EdgeRemoveResponse, EdgeReport, EnrolRequest, EnrolResponse, LeaseSet,
    DEFAULT_ENROL_TOKEN_SECS, MAX_REPORT_ITEMS,
};
use ipnet::Ipv4Net;
use rusqlite::Connection;

use crate::broker::ip_text;
use crate::error::{Error, Result};
use crate::lease_terms;
use crate::secrets::{self, Token};
use crate::service::audit::admin_audit;
use crate::service::check_name;
use crate::service::Edges;
use crate::store::edges::{self, EdgeRow};
use crate::store::{self, leases, AuditEvent};

/// The longest an enrolment token may be left usable: a token is meant to be used soon.
pub const MAX_ENROL_TOKEN_SECS: u64 = 30 * 86_400;

/// The edge subnet when none is given (DESIGN.md defaults).
pub fn default_subnet() -> Ipv4Net {
    Ipv4Net::new(std::net::Ipv4Addr::new(10, 77, 0, 0), 24).unwrap_or_default()
}

impl Edges<'_> {
    pub async fn add(&self, req: EdgeAddRequest) -> Result<EdgeAddResponse> {
        check_name(&req.name, "edge")?;
        let endpoints: Vec<String> = std::iter::once(req.endpoint.clone())
            .chain(req.extra_endpoints.iter().cloned())
            .collect();
        check_endpoints(&endpoints)?;
        let stored = endpoints.join(",");
        let subnet = lease_terms::check_subnet(req.subnet.unwrap_or_else(default_subnet))
            .map_err(Error::BadRequest)?;
        let tunnel_address = lease_terms::edge_address(subnet);
        let expires_secs = req.expires_secs.unwrap_or(DEFAULT_ENROL_TOKEN_SECS);
        if expires_secs == 0 || expires_secs > MAX_ENROL_TOKEN_SECS {
            return Err(Error::BadRequest(
                "expires_secs must be positive and at most 30 days".into(),
            ));
        }
        let token = Token::generate();
        let hash = secrets::token_hash(token.as_str());
        // The clock `enrol` checks the expiry by.
        let now = self.broker.now();
        let enrol_expires_at = now.saturating_add_unsigned(expires_secs);
        let name = req.name.clone();
        self.broker
            .db()
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

    pub async fn list(&self) -> Result<EdgeListResponse> {
        let rows = self.broker.db().read(edges::list).await?;
        let edges = rows
            .into_iter()
            .map(|r| {
                let bad = || Error::Internal(format!("edge {}: stored subnet is corrupt", r.name));
                Ok(EdgeInfo {
                    endpoints: r.endpoint.split(',').map(str::to_owned).collect(),
                    subnet: r.subnet.parse().map_err(|_| bad())?,
                    tunnel_address: r.tunnel_address.parse().map_err(|_| bad())?,
                    enrolled: r.enrolled,
                    connected: self.broker.presence().is_connected(r.id),
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
    pub async fn remove(&self, req: EdgeRemoveRequest) -> Result<EdgeRemoveResponse> {
        check_name(&req.name, "edge")?;
        let now = self.broker.now();
        let name = req.name.clone();
        let (edge, revoked) = self
            .broker
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
        self.broker.notify_edge(edge.id);
        tracing::info!(edge = %req.name, leases = revoked.len(), "edge removed");
        Ok(EdgeRemoveResponse {
            name: req.name,
            revoked_leases: revoked.len() as u64,
        })
    }

    /// Trades a one-time enrolment token for a long-lived edge credential.
    pub async fn enrol(&self, req: EnrolRequest, source: IpAddr) -> Result<EnrolResponse> {
        // The broker's clock, which `edge_add` set the token's expiry by.
        let now = self.broker.now();
        let credential = Token::generate();
        let cred_hash = secrets::token_hash(credential.as_str());
        let token_hash = secrets::token_hash(&req.token);
        let key = req.public_key.to_base64();
        let answer = self
            .broker
            .db()
            .write(move |tx| {
                let Some(edge) = edges::consume_enrolment(tx, &token_hash, &key, &cred_hash, now)?
                else {
                    // An expired token gets the answer a wrong one gets, so a stranger holding
                    // an old token learns nothing from it; the operator learns from the audit
                    // log which edge needs a new one.
                    let expired = edges::expired_enrolment(tx, &token_hash, now)?;
                    if let Some(name) = &expired {
                        let event = AuditEvent {
                            kind: "edge_enrol_expired",
                            actor: Some(name),
                            source_ip: ip_text(Some(source)),
                            detail: None,
                        };
                        store::audit(tx, now, event)?;
                    }
                    return Ok(Err(expired));
                };
                let event = AuditEvent {
                    kind: "edge_enrolled",
                    actor: Some(&edge.name),
                    source_ip: ip_text(Some(source)),
                    detail: Some(format!("public_key={key}")),
                };
                store::audit(tx, now, event)?;
                Ok(Ok(edge))
            })
            .await?;
        let edge = match answer {
            Ok(edge) => edge,
            Err(Some(name)) => {
                tracing::info!(edge = %name, %source, "enrolment refused: token expired");
                return Err(Error::Unauthorized);
            }
            Err(None) => {
                tracing::info!(%source, "enrolment refused");
                return Err(Error::Unauthorized);
            }
        };
        tracing::info!(edge = %edge.name, %source, "edge enrolled");
        Ok(EnrolResponse {
            credential: credential.into_string(),
            config: edge.config()?,
        })
    }

    /// The enrolled edge a bearer credential belongs to.
    pub async fn by_credential(&self, credential: &str) -> Result<edges::EdgeRow> {
        let hash = secrets::token_hash(credential);
        self.broker
            .db()
            .read(move |c| edges::by_credential(c, &hash))
            .await?
            .ok_or(Error::Unauthorized)
    }

    /// The complete set of an edge's live leases, as pushed to it.
    pub async fn lease_set(&self, edge_id: i64) -> Result<LeaseSet> {
        let now = self.broker.now();
        let seal = std::sync::Arc::clone(&self.broker.auth().seal);
        // Thousands of rows for a busy edge, read and opened on the blocking thread that owns
        // the connection; a revocation waits for this before the edge hears of it. One read
        // transaction, so the edge and its leases are one snapshot.
        let (edge, leases) = self
            .broker
            .db()
            .read(move |c| {
                let tx = c.unchecked_transaction()?;
                // Gone: removed by an admin while its stream was open.
                let edge = edges::by_id(&tx, edge_id)?
                    .ok_or_else(|| Error::NotFound(format!("edge {edge_id} was removed")))?;
                let leases = leases::live_for_edge(&tx, edge_id, now)?
                    .iter()
                    .map(|r| r.to_edge_lease(&seal))
                    .collect::<Result<Vec<_>>>()?;
                Ok((edge, leases))
            })
            .await?;
        Ok(LeaseSet {
            config: edge.config()?,
            leases,
            generated_at: now,
            // Read after the set was: the edge hears it moments later, never earlier.
            broker_time_ms: Some(self.broker.now_ms()),
        })
    }

    /// Records an edge's report: the figures of its own leases, and one audit row (which raises
    /// an alert) per event about one of its leases. Entries about leases the edge does not hold
    /// are ignored; an over-long list is refused whole.
    pub async fn report(&self, edge: &EdgeRow, report: EdgeReport, source: IpAddr) -> Result<()> {
        if report.leases.len() > MAX_REPORT_ITEMS || report.events.len() > MAX_REPORT_ITEMS {
            return Err(Error::BadRequest(format!(
                "a report carries at most {MAX_REPORT_ITEMS} leases and {MAX_REPORT_ITEMS} events"
            )));
        }
        let now = self.broker.now();
        let (edge_id, edge_name) = (edge.id, edge.name.clone());
        self.broker
            .db()
            .write(move |tx| record_report(tx, edge_id, &edge_name, &report, source, now))
            .await
    }

    /// Audits the opening of an edge's sync stream and marks the edge seen.
    pub async fn connected(&self, edge: &EdgeRow, source: IpAddr) -> Result<()> {
        self.seen(edge.id, &edge.name, "edge_connected", Some(source))
            .await
    }

    /// Audits the end of an edge's sync stream (the edge went away, or was removed).
    pub async fn disconnected(&self, edge_id: i64, name: &str) -> Result<()> {
        self.seen(edge_id, name, "edge_disconnected", None).await
    }

    async fn seen(
        &self,
        edge_id: i64,
        name: &str,
        kind: &'static str,
        source: Option<IpAddr>,
    ) -> Result<()> {
        let now = self.broker.now();
        let name = name.to_owned();
        self.broker
            .db()
            .write(move |tx| {
                store::edges::mark_seen(tx, edge_id, now)?;
                let event = AuditEvent {
                    kind,
                    actor: Some(&name),
                    source_ip: ip_text(source),
                    detail: None,
                };
                store::audit(tx, now, event)
            })
            .await
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

/// An edge's report, in the writer's transaction.
fn record_report(
    tx: &Connection,
    edge_id: i64,
    edge_name: &str,
    report: &EdgeReport,
    source: IpAddr,
    now: i64,
) -> Result<()> {
    for usage in &report.leases {
        leases::record_usage(tx, edge_id, usage, now)?;
    }
    for event in &report.events {
        let Some(lease) = leases::for_event(tx, edge_id, &event.lease_id)? else {
            continue;
        };
        let kind = match event.kind {
            EdgeEventKind::KeyUsedOffPin => "lease_key_off_pin",
        };
        let audit = AuditEvent {
            kind,
            actor: Some(&lease.user_name),
            source_ip: ip_text(Some(event.source_ip)),
            detail: Some(format!(
                "lease={} user={} edge={} pin={} datagrams={} first_at={} reported_from={}",
                event.lease_id,
                lease.user_name,
                edge_name,
                lease.pin,
                event.count,
                event.first_at,
                source.to_canonical(),
            )),
        };
        store::audit(tx, now, audit)?;
        tracing::info!(edge = %edge_name, lease = %event.lease_id, source = %event.source_ip, kind, "edge event");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_the_default_subnet() {
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
