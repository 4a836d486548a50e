//! What the broker deletes by itself: sessions past their end or idle timeout (a dead session's
//! token hash is no use to anyone, and every login adds a row), and audit rows with their alerts
//! once they are older than the retention (`serve --retention`, default a year), so the database
//! does not grow without bound. Run once at start and then hourly, by the broker's own clock.

use std::time::Duration;

use crate::broker::Broker;
use crate::error::Result;
use crate::store;

/// How long audit rows and alerts are kept unless `serve --retention` says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(365 * 86_400);
/// How often the retention runs after the first pass at start.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Rows one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub audit: u64,
    pub alerts: u64,
}

impl Broker {
    /// Deletes sessions that have ended (past their lifetime or idle timeout), and audit rows
    /// and alerts older than `retention`, as of the broker's clock; one transaction.
    pub async fn apply_retention(&self, retention: Duration) -> Result<Pruned> {
        let now = self.now();
        let idle = i64::try_from(self.auth().session_idle.as_secs()).unwrap_or(i64::MAX);
        let keep = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(keep);
        let (sessions, alerts, audit) = self
            .db()
            .write(move |tx| {
                // The same bounds `session` checks, so only sessions no token can use any more go.
                let sessions = store::exec(
                    tx,
                    "DELETE FROM sessions WHERE expires_at <= ? OR last_used_at <= ?",
                    [now, now.saturating_sub(idle)],
                )?;
                // Alerts first: each references its audit row.
                let alerts = store::exec(
                    tx,
                    "DELETE FROM alerts WHERE audit_id IN (SELECT id FROM audit WHERE at < ?)",
                    [cutoff],
                )?;
                let audit = store::exec(tx, "DELETE FROM audit WHERE at < ?", [cutoff])?;
                Ok((sessions as u64, alerts as u64, audit as u64))
            })
            .await?;
        let pruned = Pruned {
            sessions,
            audit,
            alerts,
        };
        if pruned != Pruned::default() {
            tracing::info!(sessions, audit, alerts, "retention: old rows deleted");
        }
        Ok(pruned)
    }
}

/// Applies the retention every [`INTERVAL`] until shutdown (the pass at start is the caller's).
pub async fn run(broker: Broker, retention: Duration) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        // `wait_for` looks at the current value first: a shutdown begun before this task first
        // ran has already happened, and `changed` would wait an hour for the next one.
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = broker.apply_retention(retention).await {
            tracing::error!(error = %e, "applying the retention failed");
        }
    }
}
