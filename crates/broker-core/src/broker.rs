//! [`Broker`]: the state every handler shares (database, clock, session lifetime, the push
//! channel to edges), and the handles through which its operations are reached, one per
//! concern: `broker.accounts().add(..)`, `broker.leases().issue(..)`. Each handle's operations
//! live in `crate::service::<concern>`; the HTTP API, the web pages, the admin socket and the
//! tests all call them the same way, and handlers stay thin.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::error::Result;
use crate::presence::Presence;
use crate::proxy::TrustedProxies;
use crate::secrets::Argon2Gate;
use crate::service::sessions::AuthState;
use crate::service::{Access, Accounts, Audit, Edges, Grants, Invites, Leases, Sessions};
use crate::store::{self, Db};

/// Capacity of the change channel. A subscriber that falls this far behind is told it lagged
/// and simply re-reads its set, so nothing is lost by keeping it small.
const CHANGE_CHANNEL_CAPACITY: usize = 256;

/// Shared broker state. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    session_ttl: Duration,
    argon2: Argon2Gate,
    auth: AuthState,
    /// Carries the id of an edge whose lease set changed. Edge streams re-read their set from
    /// the database on every message for them: the database is the only source of truth.
    changes: broadcast::Sender<i64>,
    /// Set on shutdown, so long-lived edge streams end instead of holding the server open.
    shutdown: watch::Sender<bool>,
    /// Peers whose `X-Forwarded-For` names the client.
    trusted_proxies: TrustedProxies,
    /// Edges with an open sync stream.
    presence: Arc<Presence>,
}

impl Broker {
    /// `db` is what [`store::open`] returned.
    pub fn new(
        db: Db,
        session_ttl: Duration,
        argon2: Argon2Gate,
        auth: AuthState,
        trusted_proxies: TrustedProxies,
    ) -> Result<Self> {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                session_ttl,
                argon2,
                auth,
                changes,
                shutdown,
                trusted_proxies,
                presence: Arc::default(),
            }),
        })
    }

    /// Users, as the operator adds, lists, disables, resets and removes them.
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts { broker: self }
    }

    /// Login, sessions, logout, and the budgets that slow guessing down.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { broker: self }
    }

    /// Invited users and their first sign-in.
    pub fn invites(&self) -> Invites<'_> {
        Invites { broker: self }
    }

    /// Edges: added by the operator, enrolled, sent their lease sets, reporting back.
    pub fn edges(&self) -> Edges<'_> {
        Edges { broker: self }
    }

    /// Who may reach which edge, on what terms.
    pub fn grants(&self) -> Grants<'_> {
        Grants { broker: self }
    }

    /// Issuing, renewing, listing, revoking and expiring leases.
    pub fn leases(&self) -> Leases<'_> {
        Leases { broker: self }
    }

    /// What a signed-in user sees of their own access.
    pub fn access(&self) -> Access<'_> {
        Access { broker: self }
    }

    /// The audit log's query, and the rows the web pages add to it.
    pub fn audit(&self) -> Audit<'_> {
        Audit { broker: self }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Unix seconds by the broker's one clock (`crate::clock`).
    pub fn now(&self) -> i64 {
        self.inner.auth.now()
    }

    /// [`Broker::now`] in milliseconds, for the edges' clock (`LeaseSet::broker_time_ms`).
    pub fn now_ms(&self) -> i64 {
        self.inner.auth.now_ms()
    }

    pub fn session_ttl(&self) -> Duration {
        self.inner.session_ttl
    }

    pub fn argon2(&self) -> &Argon2Gate {
        &self.inner.argon2
    }

    pub fn auth(&self) -> &AuthState {
        &self.inner.auth
    }

    pub fn presence(&self) -> &Arc<Presence> {
        &self.inner.presence
    }

    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }

    /// Tells every connected stream of `edge_id` to send a fresh lease set. Called after the
    /// transaction that made the change has committed.
    pub fn notify_edge(&self, edge_id: i64) {
        // No receivers (no edge connected) is not an error: the edge gets the full set when it
        // connects.
        let _ = self.inner.changes.send(edge_id);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.inner.changes.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Row counts of the main tables, for tests that check a refusal changed nothing.
    pub async fn counts(&self) -> Result<store::Counts> {
        self.db().read(store::counts).await
    }

    /// The audit log, oldest first.
    pub async fn audit_log(&self) -> Result<Vec<store::AuditRow>> {
        self.db().read(store::audit_log).await
    }
}

/// Audit text for a source address.
pub fn ip_text(ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| ip.to_canonical().to_string())
}
