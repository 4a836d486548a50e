//! What edges tell the broker (per-lease traffic, a lease key used off its pin, their sync
//! stream opening and closing), and the audit rows for leases that end by expiry.

use std::net::IpAddr;
use std::time::Duration;

use grantwire_proto::{EdgeEventKind, EdgeReport, MAX_REPORT_ITEMS};

use crate::broker::{ip_text, Broker};
use crate::error::{Error, Result};
use rusqlite::Connection;

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
        let now = self.now();
        let (edge_id, edge_name) = (edge.id, edge.name.clone());
        self.db()
            .write(move |tx| record_report(tx, edge_id, &edge_name, &report, source, now))
            .await
    }

    /// Audits the opening of an edge's sync stream and marks the edge seen.
    pub async fn edge_connected(&self, edge: &EdgeRow, source: IpAddr) -> Result<()> {
        self.edge_seen(edge.id, &edge.name, "edge_connected", Some(source))
            .await
    }

    /// Audits the end of an edge's sync stream (the edge went away, or was removed).
    pub async fn edge_disconnected(&self, edge_id: i64, name: &str) -> Result<()> {
        self.edge_seen(edge_id, name, "edge_disconnected", None)
            .await
    }

    async fn edge_seen(
        &self,
        edge_id: i64,
        name: &str,
        kind: &'static str,
        source: Option<IpAddr>,
    ) -> Result<()> {
        let now = self.now();
        let name = name.to_owned();
        self.db()
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

    /// Writes a `lease_expired` row for every lease that ended by expiry since the last sweep
    /// and frees their addresses; returns how many. Edges enforce expiry by their own clocks,
    /// so this records what happened rather than making it happen.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let now = self.now();
            // A read first, so an idle broker does not queue a write every sweep.
            if !self
                .db()
                .read(move |c| leases::any_expired_unaudited(c, now))
                .await?
            {
                return Ok(total);
            }
            let expired = self.db().write(move |tx| audit_expired(tx, now)).await?;
            total += expired;
            if expired < usize::try_from(EXPIRY_BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }
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
