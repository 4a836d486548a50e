//! The admin pages: users, edges, grants, leases, the audit log and alerts, for users with
//! `admin` set. The work is the same [`Broker`] methods the admin socket calls; these only
//! render, check forms and redirect.
//!
//! A signed-in user who is not an admin gets a 404 page for every `/admin` path, as if there
//! were nothing there; a stranger gets the bare 303 to `/login` of any page. A change is a
//! form post that passes the session's form check ([`FormGuard::session_form`], each form
//! under its own name in `web_form_refused`) and then [`AdminChange::allow`]'s recent sign-in check.

pub(super) mod audit;
pub(super) mod edges;
pub(super) mod grants;
pub(super) mod leases;
pub(super) mod users;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};

use super::layout::{frame, rfc3339, utc, SignedIn};
use super::session::{FormGuard, WebSession};
use super::{page, PageError};
use crate::broker::Broker;

/// How long after signing in a session may change anything on the admin pages. Reading needs
/// no fresh sign-in; a change does, so a browser left signed in (sessions last hours) is not
/// enough to add a user or a grant. Fifteen minutes covers a sitting of admin work.
pub(crate) const RECENT_SIGN_IN_SECS: i64 = 15 * 60;

/// How many rows the audit and alert pages show at most: the newest ones.
const PAGE_ROWS: u32 = 200;

/// An admin signed in on the web pages. Anyone else signed in, and an admin's API session,
/// is answered with [`PageError::NotFound`].
pub(crate) struct AdminSession(pub WebSession);

impl FromRequestParts<Broker> for AdminSession {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, PageError> {
        let session =
            <WebSession as FromRequestParts<Broker>>::from_request_parts(parts, broker).await?;
        // An admin's API token (saved by a CLI or app) in the cookie is no key here: only a
        // session made by signing in on these pages is.
        if !session.user.admin || !session.user.web {
            return Err(PageError::NotFound);
        }
        Ok(Self(session))
    }
}

impl AdminSession {
    fn csrf(&self) -> &str {
        &self.0.csrf
    }

    /// An admin page in the frame, with the section links above `main`.
    fn page(&self, title: &str, main: Markup) -> Response {
        let signed_in = SignedIn {
            name: &self.0.user.name,
            csrf: &self.0.csrf,
            admin: true,
        };
        let body = html! {
            (nav())
            (main)
        };
        page(StatusCode::OK, frame(title, Some(signed_in), body))
    }
}

/// `key=value` for an audit detail: bare when `value` is name-shaped (so `audit --user` and
/// the audit page's user filter find the row), quoted and escaped otherwise (a typed name not
/// yet checked cannot forge another `key=`).
fn named(key: &str, value: &str) -> String {
    if crate::service::check_name(value, key).is_ok() {
        format!("{key}={value}")
    } else {
        format!("{key}={value:?}")
    }
}

/// What every admin post starts from: the broker, the admin's session and the form's guard.
/// Nothing may change before [`AdminChange::allow`] has passed.
pub(crate) struct AdminChange {
    broker: Broker,
    admin: AdminSession,
    guard: FormGuard,
}

impl FromRequestParts<Broker> for AdminChange {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, PageError> {
        let admin =
            <AdminSession as FromRequestParts<Broker>>::from_request_parts(parts, broker).await?;
        let guard =
            <FormGuard as FromRequestParts<Broker>>::from_request_parts(parts, broker).await?;
        Ok(Self {
            broker: broker.clone(),
            admin,
            guard,
        })
    }
}

impl AdminChange {
    /// Passes an admin form: first the form token and origin like any signed-in form, then a
    /// recent sign-in. A stale session is audited and changes nothing; a passed form is
    /// audited as `web_admin_change` with the admin's name and address, the form and its
    /// `target` (see [`named`]), before the change is made. Gives back the broker and session
    /// to make the change with.
    async fn allow(
        self,
        presented: &str,
        form: &str,
        target: &str,
    ) -> Result<(Broker, AdminSession), PageError> {
        let Self {
            broker,
            admin,
            guard,
        } = self;
        guard
            .session_form(&broker, &admin.0, presented, form)
            .await?;
        let age = broker.now().saturating_sub(admin.0.user.created_at);
        let user = &admin.0.user.name;
        if age <= RECENT_SIGN_IN_SECS {
            // Who makes the change, recorded before it is made; no record, no change.
            broker
                .audit()
                .web_admin_change(user, guard.ip, &format!("form={form} {target}"))
                .await?;
            return Ok((broker, admin));
        }
        tracing::info!(%user, form, "admin change refused: sign-in not recent");
        // Best effort, as for a refused form: the refusal stands either way.
        if let Err(e) = broker
            .audit()
            .admin_stale_session(user, guard.ip, form)
            .await
        {
            tracing::info!(error = %e, "auditing a stale admin session failed");
        }
        Err(PageError::StaleSession {
            csrf: admin.0.csrf.clone(),
        })
    }
}

pub(super) async fn overview(State(broker): State<Broker>, admin: AdminSession) -> Response {
    let until = admin.0.user.created_at.saturating_add(RECENT_SIGN_IN_SECS);
    let main = html! {
        h1 { "Administration" }
        ul id="admin-sections" class="sections" {
            li { a href="/admin/users" { "Users" } ": invite, disable, enable, reset an authenticator." }
            li { a href="/admin/edges" { "Edges" } ": add, remove, see which are connected." }
            li { a href="/admin/grants" { "Grants" } ": who may reach which edge." }
            li { a href="/admin/leases" { "Leases" } ": every live lease; revoke one." }
            li { a href="/admin/audit" { "Audit log" } ": what happened, filtered." }
            li { a href="/admin/alerts" { "Alerts" } ": what was sent to the alert webhook." }
        }
        p id="recent-sign-in" class="muted" {
            "Changes need a sign-in within the last " (RECENT_SIGN_IN_SECS / 60) " minutes: "
            @if until >= broker.now() {
                "this one allows them until " time datetime=(rfc3339(until)) { (utc(until)) } "."
            } @else {
                "sign out and in again to make any."
            }
        }
    };
    admin.page("Administration", main)
}

fn nav() -> Markup {
    html! {
        nav id="admin-nav" aria-label="Administration" {
            a href="/admin" { "Overview" }
            a href="/admin/users" { "Users" }
            a href="/admin/edges" { "Edges" }
            a href="/admin/grants" { "Grants" }
            a href="/admin/leases" { "Leases" }
            a href="/admin/audit" { "Audit" }
            a href="/admin/alerts" { "Alerts" }
        }
    }
}

/// The notice after a redirect with `?done=`: fixed words only, nothing from the URL.
fn notice(text: Option<&'static str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p id="notice" class="notice" role="status" { (text) }
        }
    }
}

/// A form field that may be left blank: `None` when it is.
fn blank_none(v: &str) -> Option<&str> {
    let v = v.trim();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::named;

    #[test]
    fn audit_targets_are_bare_names_or_quoted_text() {
        assert_eq!(named("user", "alice"), "user=alice");
        assert_eq!(named("edge", "a b edge=x"), r#"edge="a b edge=x""#);
        assert_eq!(named("user", "x\nkind=y"), r#"user="x\nkind=y""#);
    }
}
