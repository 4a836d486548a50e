//! `/admin/audit`: the newest audit rows, filtered by the query (`user`, `kind`, `since`), and
//! `/admin/alerts`: the alerts and what became of their delivery. Filter values come back into
//! the page only as maud-escaped text and attribute values.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use grantwire_proto::{AuditEntry, AuditQuery};
use maud::{html, Markup};

use super::{blank_none, AdminSession, PAGE_ROWS};
use crate::alerts;
use crate::broker::Broker;
use crate::store::alerts::AlertStatus;
use crate::web::layout::{rfc3339, utc};
use crate::web::PageError;

/// The time windows the filter offers; a fixed list, so nothing to parse or get wrong.
const WINDOWS: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 3600),
    ("24h", "last 24 hours", 24 * 3600),
    ("7d", "last 7 days", 7 * 24 * 3600),
    ("30d", "last 30 days", 30 * 24 * 3600),
];

#[derive(Default, serde::Deserialize)]
pub(in crate::web) struct Filter {
    #[serde(default)]
    user: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    since: String,
}

pub(in crate::web) async fn show(
    State(broker): State<Broker>,
    admin: AdminSession,
    query: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, PageError> {
    let filter = query.map(|Query(f)| f).unwrap_or_default();
    let window = WINDOWS.iter().find(|(v, _, _)| *v == filter.since);
    let q = AuditQuery {
        since: window.map(|(_, _, secs)| broker.now() - secs),
        user: blank_none(&filter.user).map(str::to_owned),
        kind: blank_none(&filter.kind).map(str::to_owned),
        limit: Some(PAGE_ROWS),
    };
    let mut entries = broker.audit().query(q).await?.entries;
    entries.reverse();
    let main = html! {
        h1 { "Audit log" }
        (filter_form(&filter))
        p class="muted" { "Newest first, at most " (PAGE_ROWS) " rows." }
        @if entries.is_empty() {
            p id="no-entries" class="muted" { "No entries match." }
        } @else {
            table id="audit" {
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Kind" } th scope="col" { "Actor" }
                    th scope="col" { "Source" } th scope="col" { "Detail" }
                } }
                tbody { @for e in &entries { (entry_row(e)) } }
            }
        }
    };
    Ok(admin.page("Audit log", main))
}

pub(in crate::web) async fn alerts(
    State(broker): State<Broker>,
    admin: AdminSession,
) -> Result<Response, PageError> {
    let list = alerts::recent(broker.db(), PAGE_ROWS).await?;
    let main = html! {
        h1 { "Alerts" }
        p { "Events a person should hear about (an account locked, a code used twice, a lease \
             key used away from its pin, a sign-in from a new address), and whether the alert \
             webhook took them. Newest first." }
        @if list.is_empty() {
            p id="no-alerts" class="muted" { "No alerts." }
        } @else {
            table id="alerts" {
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Kind" } th scope="col" { "Actor" }
                    th scope="col" { "Source" } th scope="col" { "Delivery" }
                    th scope="col" { "Attempts" } th scope="col" { "Last error" }
                } }
                tbody { @for a in &list { (alert_row(a)) } }
            }
        }
    };
    Ok(admin.page("Alerts", main))
}

fn filter_form(f: &Filter) -> Markup {
    html! {
        form id="audit-filter" class="admin-form filter" method="get" action="/admin/audit" {
            label for="audit-user" { "User" }
            input id="audit-user" name="user" type="text" value=(f.user) autocomplete="off"
                autocapitalize="none" spellcheck="false";
            label for="audit-kind" { "Kind (e.g. login_failed)" }
            input id="audit-kind" name="kind" type="text" value=(f.kind) autocomplete="off"
                autocapitalize="none" spellcheck="false";
            label for="audit-since" { "Since" }
            select id="audit-since" name="since" {
                option value="" selected[f.since.is_empty()] { "any time" }
                @for (value, text, _) in WINDOWS {
                    option value=(value) selected[f.since == value] { (text) }
                }
            }
            button id="audit-filter-submit" type="submit" { "Filter" }
        }
    }
}

fn entry_row(e: &AuditEntry) -> Markup {
    html! {
        tr data-kind=(e.kind) {
            td data-label="Time" class="at" { time datetime=(rfc3339(e.at)) { (utc(e.at)) } }
            td data-label="Kind" class="kind" { code { (e.kind) } }
            td data-label="Actor" class="actor" { (e.actor.as_deref().unwrap_or("")) }
            td data-label="Source" class="source" { (e.source_ip.as_deref().unwrap_or("")) }
            td data-label="Detail" class="detail" { code { (e.detail.as_deref().unwrap_or("")) } }
        }
    }
}

fn alert_row(a: &AlertStatus) -> Markup {
    html! {
        tr data-kind=(a.kind) data-state=(a.state) {
            td data-label="Time" class="at" { time datetime=(rfc3339(a.at)) { (utc(a.at)) } }
            td data-label="Kind" class="kind" { code { (a.kind) } }
            td data-label="Actor" class="actor" { (a.actor.as_deref().unwrap_or("")) }
            td data-label="Source" class="source" { (a.source_ip.as_deref().unwrap_or("")) }
            td data-label="Delivery" class="state" {
                (a.state)
                @if let Some(at) = a.sent_at {
                    " " time datetime=(rfc3339(at)) { (utc(at)) }
                }
            }
            td data-label="Attempts" class="attempts" { (a.attempts) }
            td data-label="Last error" class="error" { (a.last_error.as_deref().unwrap_or("")) }
        }
    }
}
