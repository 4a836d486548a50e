//! What a signed-in user sees of their own access: the address the broker sees them at, their
//! live leases (each with whether it is pinned there), and the edges they hold grants on. The
//! web pages render this and decide nothing themselves.

use std::net::IpAddr;

use grantwire_proto::{GrantInfo, LeaseInfo};

use crate::broker::{ip_text, Broker};
use crate::error::Result;
use crate::store::{self, edges, leases, users, users::SessionUser, AuditEvent};

/// One user's access, as of `now`.
#[derive(Debug, Clone)]
pub struct AccessOverview {
    pub user: String,
    /// The client's address as the broker sees it (what a renewal would pin to).
    pub source_ip: IpAddr,
    pub leases: Vec<AccessLease>,
    pub grants: Vec<GrantInfo>,
    /// Unix seconds the overview was read at; expiry countdowns count from here.
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct AccessLease {
    pub lease: LeaseInfo,
    /// Whether the lease's pin covers [`AccessOverview::source_ip`].
    pub pinned_here: bool,
}

impl Broker {
    /// The signed-in user's access overview, read in one go.
    pub async fn access_overview(
        &self,
        user: &SessionUser,
        source: IpAddr,
    ) -> Result<AccessOverview> {
        let now = self.now();
        let id = user.user_id;
        let (rows, grants) = self
            .db()
            .read(move |c| {
                let tx = c.unchecked_transaction()?;
                let rows = leases::live_for_user(&tx, id, now)?;
                Ok((rows, edges::live_grants_for_user(&tx, id, now)?))
            })
            .await?;
        let leases = rows
            .iter()
            .map(|r| {
                let lease = r.to_info()?;
                Ok(AccessLease {
                    pinned_here: lease.pin.covers(source),
                    lease,
                })
            })
            .collect::<Result<_>>()?;
        let grants = grants
            .iter()
            .map(edges::GrantListRow::to_info)
            .collect::<Result<_>>()?;
        Ok(AccessOverview {
            user: user.name.clone(),
            source_ip: source.to_canonical(),
            leases,
            grants,
            now,
        })
    }

    /// Records a web form refused for a missing or wrong form token or a foreign `Origin`:
    /// a sign that another site tried to make a signed-in browser act.
    pub async fn form_refused(
        &self,
        actor: Option<&str>,
        source: IpAddr,
        form: &str,
        reason: &str,
    ) -> Result<()> {
        let now = self.auth().now();
        let actor = actor.map(str::to_owned);
        let detail = format!("form={form} reason={reason}");
        self.db()
            .write(move |tx| {
                let event = AuditEvent {
                    kind: "web_form_refused",
                    actor: actor.as_deref(),
                    source_ip: ip_text(Some(source)),
                    detail: Some(detail),
                };
                store::audit(tx, now, event)
            })
            .await
    }

    /// Marks a session just made by signing in on the web pages (see
    /// [`users::SessionUser::web`]).
    pub async fn mark_web_session(&self, token: &str) -> Result<()> {
        let hash = crate::secrets::token_hash(token);
        self.db()
            .write(move |tx| users::mark_web_session(tx, &hash))
            .await
    }

    /// Records an admin page's change refused because the session was not signed in recently
    /// enough: a session cookie taken from an unattended browser should not get this far.
    pub async fn admin_stale_session(&self, actor: &str, source: IpAddr, form: &str) -> Result<()> {
        let detail = format!("form={form}");
        self.web_admin_audit("web_admin_stale_session", actor, source, &detail)
            .await
    }

    /// Records which signed-in admin, from where, is making the change an admin page's form
    /// asks for, before it is made. The change's own audit row follows it with actor `admin`
    /// (the operations are the admin socket's); this row names the person.
    pub async fn web_admin_change(&self, actor: &str, source: IpAddr, detail: &str) -> Result<()> {
        self.web_admin_audit("web_admin_change", actor, source, detail)
            .await
    }

    async fn web_admin_audit(
        &self,
        kind: &'static str,
        actor: &str,
        source: IpAddr,
        detail: &str,
    ) -> Result<()> {
        let now = self.auth().now();
        let (actor, detail) = (actor.to_owned(), detail.to_owned());
        self.db()
            .write(move |tx| {
                let event = AuditEvent {
                    kind,
                    actor: Some(&actor),
                    source_ip: ip_text(Some(source)),
                    detail: Some(detail),
                };
                store::audit(tx, now, event)
            })
            .await
    }
}
