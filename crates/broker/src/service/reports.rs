//! What edges tell the broker (per-lease traffic, a lease key used off its pin, their sync
//! stream opening and closing), and the audit rows for leases that end by expiry.

use std::net::IpAddr;
use std::time::Duration;

use grantwire_proto::{EdgeEventKind, EdgeReport, MAX_REPORT_ITEMS};

use crate::broker::{ip_text, Broker};
use crate::error::{Error, Result};
use crate::store::{self, edges::EdgeRow, leases, AuditEvent};

/// How often the broker looks for leases that expired, to write their `lease_expired` rows.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// Expired leases written per transaction, so a backlog never holds the write lock for long.
const EXPIRY_BATCH: i64 = 500;

impl Broker {
    /// Records an edge's report: the figures of its own leases, and one audit row (which raises
    /// an alert) per event about one of its leases. Entries about leases the edge does not hold
    /// are ignored; an over-long list is refused whole.
    pub async fn edge_report(
        &self,
        edge: &EdgeRow,
        report: EdgeReport,
        source: IpAddr,
    ) -> Result<()> {
        if report.leases.len() > MAX_REPORT_ITEMS || report.events.len() > MAX_REPORT_ITEMS {
            return Err(Error::BadRequest(format!(
                "a report carries at most {MAX_REPORT_ITEMS} leases and {MAX_REPORT_ITEMS} events"
            )));
        }
        let now = store::now();
        let mut tx = self.write_tx().await?;
        for usage in &report.leases {
            leases::record_usage(&mut tx, edge.id, usage, now).await?;
        }
        for event in &report.events {
            let Some(lease) = leases::for_event(&mut tx, edge.id, &event.lease_id).await? else {
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
                    edge.name,
                    lease.pin,
                    event.count,
                    event.first_at,
                    source.to_canonical(),
                )),
            };
            store::audit(&mut tx, now, audit).await?;
            tracing::info!(edge = %edge.name, lease = %event.lease_id, source = %event.source_ip, kind, "edge event");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audits the opening of an edge's sync stream and marks the edge seen.
    pub(crate) async fn edge_connected(&self, edge: &EdgeRow, source: IpAddr) -> Result<()> {
        let now = store::now();
        let mut tx = self.write_tx().await?;
        store::edges::mark_seen(&mut tx, edge.id, now).await?;
        let event = AuditEvent {
            kind: "edge_connected",
            actor: Some(&edge.name),
            source_ip: ip_text(Some(source)),
            detail: None,
        };
        store::audit(&mut tx, now, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audits the end of an edge's sync stream (the edge went away, or was removed).
    pub(crate) async fn edge_disconnected(&self, edge_id: i64, name: &str) -> Result<()> {
        let now = store::now();
        let mut tx = self.write_tx().await?;
        store::edges::mark_seen(&mut tx, edge_id, now).await?;
        let event = AuditEvent {
            kind: "edge_disconnected",
            actor: Some(name),
            source_ip: None,
            detail: None,
        };
        store::audit(&mut tx, now, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a `lease_expired` row for every lease that ended by expiry since the last sweep
    /// and frees their addresses; returns how many. Edges enforce expiry by their own clocks,
    /// so this records what happened rather than making it happen.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let now = store::now();
            // A read first, so an idle broker does not take the write lock every sweep.
            let mut conn = self.db().acquire().await?;
            if !leases::any_expired_unaudited(&mut conn, now).await? {
                return Ok(total);
            }
            drop(conn);
            let mut tx = self.write_tx().await?;
            let expired = leases::take_expired(&mut tx, now, EXPIRY_BATCH).await?;
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
                store::audit(&mut tx, now, event).await?;
            }
            tx.commit().await?;
            total += expired.len();
            if expired.len() < usize::try_from(EXPIRY_BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }
}
