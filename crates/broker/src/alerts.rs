//! Alerts: audit events a human should hear about, POSTed as JSON to `--alert-webhook`.
//!
//! A trigger in the database (migration 0004) writes an `alerts` row in the same transaction as
//! each alerting audit row: account locked, TOTP code reused, a lease key used off its pin, a
//! login from a new address. [`run`] delivers pending rows in the background, so a request never
//! waits for the webhook; a failed delivery is retried with exponential backoff, and the row
//! survives a restart. Without a webhook the rows stay pending (an admin can read them with the
//! audit log), and any older than [`MAX_AGE_SECS`] when a webhook is set are marked expired
//! rather than sent late.

use std::net::IpAddr;
use std::time::Duration;

use crate::broker::Broker;
use crate::error::Result;
use crate::store::alerts::{self, AlertBody, AlertRow, AlertStatus};
use crate::store::Db;

/// How often pending alerts are looked for.
const POLL: Duration = Duration::from_millis(500);
/// One delivery attempt's limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts before an alert is given up as failed (nine retries over about 14 minutes).
pub const MAX_ATTEMPTS: i64 = 10;
/// Pending alerts whose event is older than this are not sent (a day-old "login from a new address" helps
/// nobody, and a webhook set long after the fact should not be flooded).
pub const MAX_AGE_SECS: i64 = 24 * 3600;
/// Alerts taken per poll.
const BATCH: i64 = 32;

/// A webhook URL: `https://` anywhere, or `http://` to a loopback address only (alerts name
/// users and their addresses, which should not cross a network in clear text).
#[derive(Clone)]
pub struct Webhook {
    url: reqwest::Url,
}

impl Webhook {
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let url: reqwest::Url = text
            .parse()
            .map_err(|e| format!("alert webhook is not a URL: {e}"))?;
        let host = url.host_str().unwrap_or("");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback =
            host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" if url.host().is_some() => Ok(Self { url }),
            "http" if loopback => Ok(Self { url }),
            "http" => {
                Err("alert webhook must be https:// (http:// only to a loopback address)".into())
            }
            _ => Err("alert webhook must be an https:// URL".into()),
        }
    }

    /// Scheme, host and port only: the path of a webhook URL is often its secret.
    pub fn redacted(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port() {
            Some(port) => format!("{}://{host}:{port}/...", self.url.scheme()),
            None => format!("{}://{host}/...", self.url.scheme()),
        }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Webhook").field(&self.redacted()).finish()
    }
}

/// Seconds to wait after the `attempts`-th failure: 2, 4, 8, ... capped at five minutes.
pub fn backoff_secs(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.clamp(1, 20)).unwrap_or(20);
    (1i64 << doublings).min(300)
}

/// Delivers pending alerts until the broker shuts down. A delivery cut short by the shutdown
/// leaves its alert pending, so it goes out after the restart (a receiver may see it twice).
pub async fn run(broker: Broker, webhook: Webhook) {
    let client = grantwire_pinned_tls::http_client(None);
    let mut shutdown = broker.shutdown_signal();
    tracing::info!(webhook = %webhook.redacted(), "alert delivery started");
    loop {
        tokio::select! {
            result = deliver_due(&broker, &client, &webhook) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "alert delivery pass failed");
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn deliver_due(broker: &Broker, client: &reqwest::Client, webhook: &Webhook) -> Result<()> {
    let db = broker.db();
    let now = broker.now();
    // Reads first: a write is queued only when there is something to change.
    let due = db.read(move |c| alerts::due(c, now, BATCH)).await?;
    for alerts::Due { id, attempts, at } in due {
        if at < now - MAX_AGE_SECS {
            db.write(move |tx| alerts::expire(tx, id)).await?;
            continue;
        }
        let body = db.read(move |c| alerts::body(c, id)).await?;
        let result = post(client, webhook, &body).await;
        let kind = body.kind;
        record_attempt(broker, id, attempts + 1, result, &kind, webhook).await?;
    }
    Ok(())
}

async fn post(
    client: &reqwest::Client,
    webhook: &Webhook,
    body: &AlertBody,
) -> std::result::Result<(), String> {
    let response = client
        .post(webhook.url.clone())
        .json(body)
        .timeout(ATTEMPT_TIMEOUT)
        .send()
        .await
        // Without the URL: reqwest's message would print it, secret path and all.
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

async fn record_attempt(
    broker: &Broker,
    id: i64,
    attempts: i64,
    result: std::result::Result<(), String>,
    kind: &str,
    webhook: &Webhook,
) -> Result<()> {
    let (db, now) = (broker.db(), broker.now());
    match result {
        Ok(()) => {
            db.write(move |tx| alerts::sent(tx, id, attempts, now))
                .await?;
            tracing::info!(alert = id, kind, "alert sent");
        }
        Err(error) if attempts >= MAX_ATTEMPTS => {
            let stored = error.clone();
            db.write(move |tx| alerts::failed(tx, id, attempts, &stored))
                .await?;
            tracing::warn!(alert = id, kind, attempts, webhook = %webhook.redacted(), %error, "alert could not be delivered; giving up");
        }
        Err(error) => {
            let retry_in = backoff_secs(attempts);
            let stored = error.clone();
            db.write(move |tx| alerts::retry(tx, id, attempts, now + retry_in, &stored))
                .await?;
            tracing::info!(alert = id, kind, attempts, retry_in, %error, "alert delivery failed; will retry");
        }
    }
    Ok(())
}

/// Every alert, oldest first.
pub async fn list(db: &Db) -> Result<Vec<AlertRow>> {
    db.read(alerts::list).await
}

/// The newest `limit` alerts, newest first.
pub async fn recent(db: &Db, limit: u32) -> Result<Vec<AlertStatus>> {
    db.read(move |c| alerts::recent(c, limit)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        for ok in [
            "https://hooks.example.net/abc",
            "http://127.0.0.1:9000/hook",
            "http://[::1]:9000/hook",
            "http://localhost:8080/x",
        ] {
            assert!(Webhook::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.net/abc",
            "http://192.0.2.1/hook",
            "ftp://127.0.0.1/x",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(Webhook::parse(bad).is_err(), "{bad}");
        }
        let w = Webhook::parse("https://hooks.example.net:8443/T000/B000/secret").unwrap();
        assert_eq!(w.redacted(), "https://hooks.example.net:8443/...");
        assert!(!format!("{w:?}").contains("secret"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<i64> = (1..=10).map(backoff_secs).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }
}
