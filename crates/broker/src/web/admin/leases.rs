//! `/admin/leases`: every live lease, with a revoke form each.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use grantwire_proto::{LeaseInfo, LeaseRevokeRequest};
use maud::{html, Markup};

use super::{named, notice, AdminChange, AdminSession};
use crate::broker::Broker;
use crate::web::layout::{countdown, csrf_field, rfc3339, utc};
use crate::web::session::{PageForm, TokenOnly};
use crate::web::{see_other, PageError};

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::web) enum Done {
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
    let leases = broker.leases().list().await?.leases;
    let now = broker.now();
    let done = query.ok().and_then(|Query(q)| q.done).map(|d| match d {
        Done::Revoked => "Lease revoked.",
    });
    let main = html! {
        h1 { "Live leases" }
        (notice(done))
        @if leases.is_empty() {
            p id="no-leases" class="muted" { "No live leases." }
        } @else {
            table id="leases" {
                thead { tr {
                    th scope="col" { "User" } th scope="col" { "Edge" }
                    th scope="col" { "Tunnel address" } th scope="col" { "Pinned to" }
                    th scope="col" { "Expires" } th scope="col" { "Last handshake" }
                    th scope="col" { "Actions" }
                } }
                tbody {
                    @for l in &leases { (lease_row(l, now, admin.csrf())) }
                }
            }
        }
    };
    Ok(admin.page("Live leases", main))
}

pub(in crate::web) async fn revoke(
    change: AdminChange,
    Path(id): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, _) = change
        .allow(&form.csrf, "admin_lease_revoke", &named("lease", &id))
        .await?;
    broker.leases().revoke(LeaseRevokeRequest { id }).await?;
    Ok(see_other("/admin/leases?done=revoked"))
}

fn lease_row(l: &LeaseInfo, now: i64, csrf: &str) -> Markup {
    let handshake = l.usage.as_ref().and_then(|u| u.last_handshake_at);
    html! {
        tr data-lease-id=(l.id) {
            td data-label="User" class="user" { (l.user) }
            td data-label="Edge" class="edge" { (l.edge) }
            td data-label="Tunnel address" class="address" { code { (l.tunnel_address) } }
            td data-label="Pinned to" class="pin" { code { (l.pin) } }
            td data-label="Expires" class="expires" {
                time datetime=(rfc3339(l.expires_at)) { (utc(l.expires_at)) }
                " (" span class="countdown" data-expires=(l.expires_at) {
                    (countdown(l.expires_at - now))
                } ")"
            }
            td data-label="Last handshake" class="handshake" {
                @match handshake {
                    Some(at) => time datetime=(rfc3339(at)) { (utc(at)) },
                    None => span class="muted" { "none yet" },
                }
            }
            td class="actions" {
                form class="revoke" method="post" action={ "/admin/leases/" (l.id) "/revoke" } {
                    (csrf_field(csrf))
                    button class="danger" type="submit"
                        aria-label={ "Revoke the lease of " (l.user) " on " (l.edge) } {
                        "Revoke"
                    }
                }
            }
        }
    }
}
