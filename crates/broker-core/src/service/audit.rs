//! The audit log: the operator's query, and the rows the web pages add (a form refused, an admin
//! page used with a stale session, a change made from the admin pages).

use std::net::IpAddr;

use grantwire_proto::{AuditQuery, AuditResponse};

use crate::broker::ip_text;
use crate::error::{Error, Result};
use crate::service::check_name;
use crate::service::Audit;
use crate::store::{self, AuditEvent};

impl Audit<'_> {
    /// The audit log, filtered for an operator.
    pub async fn query(&self, q: AuditQuery) -> Result<AuditResponse> {
        if let Some(user) = &q.user {
            check_name(user, "user")?;
        }
        if let Some(kind) = &q.kind {
            check_kind(kind)?;
        }
        let entries = self
            .broker
            .db()
            .read(move |c| {
                let filter = store::audit::Filter {
                    since: q.since,
                    user: q.user.as_deref(),
                    kind: q.kind.as_deref(),
                    limit: q.limit,
                };
                store::audit::query(c, filter)
            })
            .await?;
        Ok(AuditResponse { entries })
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
        let now = self.broker.now();
        let actor = actor.map(str::to_owned);
        let detail = format!("form={form} reason={reason}");
        self.broker
            .db()
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
        let now = self.broker.now();
        let (actor, detail) = (actor.to_owned(), detail.to_owned());
        self.broker
            .db()
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

impl Audit<'_> {
    /// Records what the broker's certificate manager did: `tls_certificate_issued` (detail:
    /// the domain and the validity period) or `tls_renewal_failed` (detail: the
    /// error), which also raises an alert. No actor and no source: the broker did it.
    pub async fn tls_event(&self, kind: &'static str, detail: String) -> Result<()> {
        let now = self.broker.now();
        self.broker
            .db()
            .write(move |tx| {
                let event = AuditEvent {
                    kind,
                    actor: None,
                    source_ip: None,
                    detail: Some(detail),
                };
                store::audit(tx, now, event)
            })
            .await
    }
}

pub fn admin_audit(
    conn: &rusqlite::Connection,
    now: i64,
    kind: &str,
    detail: String,
) -> Result<()> {
    let event = AuditEvent {
        kind,
        actor: Some("admin"),
        source_ip: None,
        detail: Some(detail),
    };
    store::audit(conn, now, event)
}

/// Audit kinds are `[a-z_]`, at most 40 characters; anything else matches no row anyway.
pub fn check_kind(kind: &str) -> Result<()> {
    let ok =
        (1..=40).contains(&kind.len()) && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "an audit kind is 1-40 characters of a-z and '_'".into(),
        ))
    }
}
