//! Reports to the broker (`POST /v1/edge/report`): each lease's last handshake and bytes, so
//! `grantwire-broker lease list` can show them, and off-pin use of a lease's keys, which the
//! broker audits and alerts on.
//!
//! The data plane publishes a usage snapshot every interval and hands over events as they
//! happen; this task sends only what changed since the broker last accepted it. Events wait
//! (up to [`MAX_QUEUED_EVENTS`]) while the broker is away; figures are simply sent again.

use std::collections::HashMap;
use std::time::Duration;

use grantwire_proto::{EdgeEvent, EdgeReport, LeaseUsage};
use reqwest::{Client, Url};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::broker::{error_chain, post_json};
use crate::state::Credential;

/// Events kept while the broker is unreachable; older ones are dropped past this.
pub const MAX_QUEUED_EVENTS: usize = 1024;
/// After an event, wait this long for more before sending, so a burst goes in one report.
const EVENT_GATHER: Duration = Duration::from_millis(200);
/// Entries of each list per report: well under the broker's 256, and, at about 150 bytes
/// each, well under its 64 KiB body limit.
const CHUNK: usize = 100;

pub struct Reporter {
    pub client: Client,
    pub broker: Url,
    pub credential: Credential,
    pub usage: watch::Receiver<Vec<LeaseUsage>>,
    pub events: mpsc::Receiver<EdgeEvent>,
}

impl Reporter {
    /// Runs for as long as the edge runs.
    pub async fn run(mut self) {
        let mut sent: HashMap<String, LeaseUsage> = HashMap::new();
        let mut queued: Vec<EdgeEvent> = Vec::new();
        loop {
            tokio::select! {
                changed = self.usage.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                event = self.events.recv() => match event {
                    Some(event) => {
                        queued.push(event);
                        tokio::time::sleep(EVENT_GATHER).await;
                    }
                    None => return,
                },
            }
            while let Ok(event) = self.events.try_recv() {
                queued.push(event);
            }
            if queued.len() > MAX_QUEUED_EVENTS {
                let excess = queued.len() - MAX_QUEUED_EVENTS;
                queued.drain(..excess);
            }
            let usage = self.usage.borrow_and_update().clone();
            self.send(&mut sent, &mut queued, usage).await;
        }
    }

    async fn send(
        &self,
        sent: &mut HashMap<String, LeaseUsage>,
        queued: &mut Vec<EdgeEvent>,
        usage: Vec<LeaseUsage>,
    ) {
        // Forget leases the edge no longer holds, so the map stays the size of the table.
        let live: std::collections::HashSet<&str> =
            usage.iter().map(|u| u.lease_id.as_str()).collect();
        sent.retain(|id, _| live.contains(id.as_str()));
        let mut changed: Vec<LeaseUsage> = usage
            .into_iter()
            .filter(|u| sent.get(&u.lease_id) != Some(u))
            .collect();
        while !changed.is_empty() || !queued.is_empty() {
            let leases: Vec<LeaseUsage> = changed.drain(..changed.len().min(CHUNK)).collect();
            let events: Vec<EdgeEvent> = queued[..queued.len().min(CHUNK)].to_vec();
            let report = EdgeReport {
                leases: leases.clone(),
                events,
            };
            let path = "v1/edge/report";
            match post_json(&self.client, &self.broker, path, &self.credential, &report).await {
                Ok(()) => {
                    debug!(
                        leases = leases.len(),
                        events = report.events.len(),
                        "report sent"
                    );
                    queued.drain(..report.events.len());
                    for u in leases {
                        sent.insert(u.lease_id.clone(), u);
                    }
                }
                Err(e) if e.is_rejected() => {
                    // Sending the same report again would be refused again, and would hold up
                    // every later one: drop it.
                    info!(error = %error_chain(&e), "report refused by the broker; dropped");
                    queued.drain(..report.events.len());
                }
                Err(e) => {
                    // The sync task says when the broker is away; this is the same outage.
                    info!(error = %error_chain(&e), events = queued.len(), "report not sent; will retry");
                    return;
                }
            }
        }
    }
}
