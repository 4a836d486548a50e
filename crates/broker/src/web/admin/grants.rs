//! `/admin/grants`: live grants with a revoke form each, and the form that adds one.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use grantwire_proto::pin::{DEFAULT_PIN_PREFIX_V4, DEFAULT_PIN_PREFIX_V6};
use grantwire_proto::{
    GrantAddRequest, GrantInfo, GrantRevokeRequest, DEFAULT_MAX_LEASES, PLEX_PORT,
};
use maud::{html, Markup};

use super::users::hours_to_secs;
use super::{blank_none, named, notice, AdminChange, AdminSession};
use crate::broker::Broker;
use crate::error::Error;
use crate::service::grants::{DEFAULT_LEASE_TTL_SECS, MAX_LEASES_LIMIT};
use crate::web::layout::{csrf_field, rfc3339, utc};
use crate::web::session::{PageForm, TokenOnly};
use crate::web::{see_other, PageError};

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::web) enum Done {
    Added,
    Revoked,
}

#[derive(serde::Deserialize)]
pub(in crate::web) struct DoneQuery {
    done: Option<Done>,
}

pub(in crate::web) async fn show(
    State(broker): State<Broker>,
    admin: AdminSession,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let grants = broker.grants().list().await?.grants;
    let users = broker.accounts().list().await?.users;
    let edges = broker.edges().list().await?.edges;
    let done = query.ok().and_then(|Query(q)| q.done).map(|d| match d {
        Done::Added => "Grant added.",
        Done::Revoked => "Grant revoked, with its leases.",
    });
    let user_names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let edge_names: Vec<&str> = edges.iter().map(|e| e.name.as_str()).collect();
    let main = html! {
        h1 { "Grants" }
        (notice(done))
        @if grants.is_empty() {
            p id="no-grants" class="muted" { "No live grants." }
        } @else {
            table id="grants" {
                thead { tr {
                    th scope="col" { "User" } th scope="col" { "Edge" }
                    th scope="col" { "Lease lifetime" } th scope="col" { "Ports" }
                    th scope="col" { "Until" } th scope="col" { "Pin prefix" }
                    th scope="col" { "Live leases at most" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for g in &grants { (grant_row(g, admin.csrf())) }
                }
            }
        }
        (add_form(admin.csrf(), &user_names, &edge_names))
    };
    Ok(admin.page("Grants", main))
}

#[derive(serde::Deserialize)]
pub(in crate::web) struct AddForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    edge: String,
    #[serde(default)]
    lease_hours: String,
    #[serde(default)]
    ends_hours: String,
    #[serde(default)]
    ports: String,
    #[serde(default)]
    pin_prefix4: String,
    #[serde(default)]
    pin_prefix6: String,
    #[serde(default)]
    max_leases: String,
    #[serde(default)]
    csrf: String,
}

pub(in crate::web) async fn add(
    change: AdminChange,
    PageForm(form): PageForm<AddForm>,
) -> Result<Response, PageError> {
    let (broker, _) = change
        .allow(
            &form.csrf,
            "admin_grant_add",
            &format!(
                "{} {}",
                named("user", &form.user),
                named("edge", &form.edge)
            ),
        )
        .await?;
    let req = grant_request(&form, broker.now())?;
    broker.grants().add(req).await?;
    Ok(see_other("/admin/grants?done=added"))
}

pub(in crate::web) async fn revoke(
    change: AdminChange,
    Path((user, edge)): Path<(String, String)>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, _) = change
        .allow(
            &form.csrf,
            "admin_grant_revoke",
            &format!("{} {}", named("user", &user), named("edge", &edge)),
        )
        .await?;
    broker
        .grants()
        .revoke(GrantRevokeRequest { user, edge })
        .await?;
    Ok(see_other("/admin/grants?done=revoked"))
}

/// The form's text as the request `grant add` sends; blank fields take the service's defaults,
/// and the service checks the terms.
fn grant_request(form: &AddForm, now: i64) -> Result<GrantAddRequest, Error> {
    let ends_at = match blank_none(&form.ends_hours) {
        None => None,
        Some(h) => {
            let secs = i64::try_from(hours_to_secs(h)?)
                .map_err(|_| Error::BadRequest("the grant's end is too far away".into()))?;
            Some(now.saturating_add(secs))
        }
    };
    Ok(GrantAddRequest {
        user: form.user.trim().to_owned(),
        edge: form.edge.trim().to_owned(),
        lease_ttl_secs: blank_none(&form.lease_hours)
            .map(hours_to_secs)
            .transpose()?,
        ends_at,
        ports: blank_none(&form.ports).map(parse_ports).transpose()?,
        pin_prefix4: blank_none(&form.pin_prefix4)
            .map(|p| parse_prefix(p, "IPv4"))
            .transpose()?,
        pin_prefix6: blank_none(&form.pin_prefix6)
            .map(|p| parse_prefix(p, "IPv6"))
            .transpose()?,
        max_leases: blank_none(&form.max_leases)
            .map(parse_max_leases)
            .transpose()?,
    })
}

/// `32400, 8080` or `32400 8080`.
fn parse_ports(text: &str) -> Result<Vec<u16>, Error> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| Error::BadRequest(format!("{p:?} is not a port")))
        })
        .collect()
}

fn parse_prefix(text: &str, family: &str) -> Result<u8, Error> {
    text.trim_start_matches('/')
        .parse()
        .map_err(|_| Error::BadRequest(format!("{text:?} is not an {family} prefix length")))
}

/// Only the number is read here; the service checks its range.
fn parse_max_leases(text: &str) -> Result<u32, Error> {
    text.parse()
        .map_err(|_| Error::BadRequest(format!("{text:?} is not a number of leases")))
}

fn grant_row(g: &GrantInfo, csrf: &str) -> Markup {
    let ports = g
        .ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        tr data-user=(g.user) data-edge=(g.edge) {
            td data-label="User" class="user" { (g.user) }
            td data-label="Edge" class="edge" { (g.edge) }
            td data-label="Lease lifetime" class="ttl" { (hours(g.lease_ttl_secs)) }
            td data-label="Ports" class="ports" { (ports) }
            td data-label="Until" class="until" {
                @match g.expires_at {
                    Some(end) => time datetime=(rfc3339(end)) { (utc(end)) },
                    None => span class="muted" { "no end" },
                }
            }
            td data-label="Pin prefix" class="pin-prefix" {
                "/" (g.pin_prefix4) " (IPv4), /" (g.pin_prefix6) " (IPv6)"
            }
            td data-label="Live leases at most" class="max-leases" { (g.max_leases) }
            td class="actions" {
                form class="revoke" method="post"
                    action={ "/admin/grants/" (g.user) "/" (g.edge) "/revoke" } {
                    (csrf_field(csrf))
                    button class="danger" type="submit"
                        aria-label={ "Revoke the grant of " (g.user) " on " (g.edge) } {
                        "Revoke"
                    }
                }
            }
        }
    }
}

/// A lease lifetime as people say it: "8 h", or minutes when it is not whole hours.
fn hours(secs: u64) -> String {
    if secs % 3600 == 0 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} min", secs / 60)
    }
}

fn add_form(csrf: &str, users: &[&str], edges: &[&str]) -> Markup {
    html! {
        h2 { "Add a grant" }
        @if users.is_empty() || edges.is_empty() {
            p id="grant-add-needs" class="muted" { "A grant needs a user and an edge first." }
        } @else {
            form id="grant-add" class="admin-form" method="post" action="/admin/grants" {
                (csrf_field(csrf))
                label for="grant-user" { "User" }
                select id="grant-user" name="user" required {
                    @for u in users { option value=(u) { (u) } }
                }
                label for="grant-edge" { "Edge" }
                select id="grant-edge" name="edge" required {
                    @for e in edges { option value=(e) { (e) } }
                }
                label for="grant-lease-hours" {
                    "Lease lifetime in hours (blank: " (DEFAULT_LEASE_TTL_SECS / 3600) ")"
                }
                input id="grant-lease-hours" name="lease_hours" type="number" min="1" max="8784"
                    inputmode="numeric";
                label for="grant-ends-hours" { "Grant ends in hours (blank: never)" }
                input id="grant-ends-hours" name="ends_hours" type="number" min="1" max="878400"
                    inputmode="numeric";
                label for="grant-ports" { "TCP ports, comma-separated (blank: " (PLEX_PORT) ")" }
                input id="grant-ports" name="ports" type="text" inputmode="numeric"
                    autocomplete="off";
                label for="grant-pin4" {
                    "Pin prefix for IPv4 clients, 8 to 32 (blank: " (DEFAULT_PIN_PREFIX_V4) ")"
                }
                input id="grant-pin4" name="pin_prefix4" type="number" min="8" max="32"
                    inputmode="numeric";
                label for="grant-pin6" {
                    "Pin prefix for IPv6 clients, 32 to 128 (blank: " (DEFAULT_PIN_PREFIX_V6) ")"
                }
                input id="grant-pin6" name="pin_prefix6" type="number" min="32" max="128"
                    inputmode="numeric";
                label for="grant-max-leases" {
                    "Live leases at most (blank: " (DEFAULT_MAX_LEASES) ")"
                }
                input id="grant-max-leases" name="max_leases" type="number" min="1"
                    max=(MAX_LEASES_LIMIT) inputmode="numeric";
                button id="grant-add-submit" type="submit" { "Add grant" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ports_and_prefixes_are_read_as_typed() {
        assert_eq!(parse_ports("32400, 8080 443").unwrap(), [32400, 8080, 443]);
        assert!(parse_ports("32400,x").is_err());
        assert!(parse_ports("70000").is_err());
        assert_eq!(parse_prefix("/24", "IPv4").unwrap(), 24);
        assert!(parse_prefix("x", "IPv4").is_err());
        assert_eq!(parse_max_leases("12").unwrap(), 12);
        assert!(parse_max_leases("-1").is_err());
        assert_eq!(hours(8 * 3600), "8 h");
        assert_eq!(hours(90 * 60), "90 min");
    }
}
