//! `/admin/edges`: edges with whether they are connected now, the add form (its enrolment
//! token shown once, on the page that answers the post) and a remove form per edge.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use grantwire_proto::{EdgeAddRequest, EdgeInfo, EdgeName, EdgeRemoveRequest};
use maud::{html, Markup};

use super::{blank_none, named, notice, AdminChange, AdminSession};
use crate::broker::Broker;
use crate::error::Error;
use crate::web::layout::{csrf_field, rfc3339, utc};
use crate::web::session::{PageForm, TokenOnly};
use crate::web::{see_other, PageError};

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::web) enum Done {
    Removed,
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
    let list = broker.edges().list().await?;
    let done = query.ok().and_then(|Query(q)| q.done).map(|d| match d {
        Done::Removed => "Edge removed, with its grants and leases.",
    });
    let main = html! {
        h1 { "Edges" }
        (notice(done))
        @if list.edges.is_empty() {
            p id="no-edges" class="muted" { "No edges yet." }
        } @else {
            table id="edges" {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Endpoint" }
                    th scope="col" { "Tunnel address" } th scope="col" { "State" }
                    th scope="col" { "Last seen" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for e in &list.edges { (edge_row(e, admin.csrf())) }
                }
            }
        }
        (add_form(admin.csrf()))
    };
    Ok(admin.page("Edges", main))
}

#[derive(serde::Deserialize)]
pub(in crate::web) struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    csrf: String,
}

/// Adds an edge and shows its enrolment token, once.
pub(in crate::web) async fn add(
    change: AdminChange,
    PageForm(form): PageForm<AddForm>,
) -> Result<Response, PageError> {
    let (broker, admin) = change
        .allow(&form.csrf, "admin_edge_add", &named("edge", &form.name))
        .await?;
    let subnet = blank_none(&form.subnet)
        .map(|s| {
            s.parse()
                .map_err(|_| Error::BadRequest(format!("{s:?} is not an IPv4 subnet")))
        })
        .transpose()?;
    let req = EdgeAddRequest {
        name: form.name.trim().to_owned(),
        endpoint: form.endpoint.trim().to_owned(),
        subnet,
        ..Default::default()
    };
    let added = broker.edges().add(req).await?;
    let main = html! {
        h1 { "Edge added" }
        p { "Enrol " strong { (added.name) } " with this token on the edge host. "
            "It is shown only this once and works once." }
        dl id="edge-result" class="result" {
            dt { "Edge" } dd { code id="edge-name" { (added.name) } }
            dt { "Enrolment token" } dd { code id="enrolment-token" { (added.enrolment_token) } }
            dt { "Token works until" } dd {
                time id="enrolment-expires" datetime=(rfc3339(added.enrolment_expires_at)) {
                    (utc(added.enrolment_expires_at))
                }
            }
            dt { "Subnet" } dd { code { (added.subnet) } }
            dt { "Edge's tunnel address" } dd { code { (added.tunnel_address) } }
        }
        p { a href="/admin/edges" { "Back to edges" } }
    };
    Ok(admin.page("Edge added", main))
}

pub(in crate::web) async fn remove(
    change: AdminChange,
    Path(name): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, _) = change
        .allow(&form.csrf, "admin_edge_remove", &named("edge", &name))
        .await?;
    broker.edges().remove(EdgeRemoveRequest { name }).await?;
    Ok(see_other("/admin/edges?done=removed"))
}

fn edge_row(e: &EdgeInfo, csrf: &str) -> Markup {
    let state = if e.connected {
        "connected"
    } else if e.enrolled {
        "not connected"
    } else {
        "not enrolled"
    };
    html! {
        tr data-edge=(e.name) {
            td data-label="Name" class="name" { (e.name) }
            td data-label="Endpoint" class="endpoint" {
                @for (i, ep) in e.endpoints.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (ep) }
                }
            }
            td data-label="Tunnel address" class="address" {
                code { (e.tunnel_address) } " in " code { (e.subnet) }
            }
            td data-label="State" class="state" { (state) }
            td data-label="Last seen" class="last-seen" {
                @match e.last_seen {
                    Some(at) => time datetime=(rfc3339(at)) { (utc(at)) },
                    None => span class="muted" { "never" },
                }
            }
            td class="actions" {
                form class="remove" method="post" action={ "/admin/edges/" (e.name) "/remove" } {
                    (csrf_field(csrf))
                    button class="danger" type="submit"
                        aria-label={ "Remove edge " (e.name) ", its grants and leases" } {
                        "Remove"
                    }
                }
            }
        }
    }
}

fn add_form(csrf: &str) -> Markup {
    html! {
        h2 { "Add an edge" }
        form id="edge-add" class="admin-form" method="post" action="/admin/edges" {
            (csrf_field(csrf))
            label for="edge-name-input" { "Name (a-z, 0-9 and -)" }
            input id="edge-name-input" name="name" type="text" required maxlength=(EdgeName::MAX_LEN)
                pattern=(EdgeName::HTML_PATTERN) autocomplete="off" autocapitalize="none"
                spellcheck="false";
            label for="edge-endpoint" { "Endpoint clients connect to (HOST:PORT)" }
            input id="edge-endpoint" name="endpoint" type="text" required
                placeholder="plex.example.net:51820" autocomplete="off" autocapitalize="none"
                spellcheck="false";
            label for="edge-subnet" { "Tunnel subnet (optional, default 10.77.0.0/24)" }
            input id="edge-subnet" name="subnet" type="text" autocomplete="off"
                autocapitalize="none" spellcheck="false";
            button id="edge-add-submit" type="submit" { "Add edge" }
        }
    }
}
