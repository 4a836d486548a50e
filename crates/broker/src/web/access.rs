//! "My access": the signed-in user's address, live leases and grants, with a revoke and a
//! renew form per lease. The work is [`Broker`]'s; this only renders and redirects.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};

use super::layout::{countdown, csrf_field, frame, rfc3339, utc, SignedIn};
use super::session::{FormGuard, PageForm, TokenOnly, WebSession};
use super::{page, PageError};
use crate::broker::Broker;
use crate::routes::budgets::LeaseBudget;
use crate::routes::ClientIp;
use crate::service::access::{AccessLease, AccessOverview};

/// What the redirect after a form says was done. Only these fixed words are read from the
/// query, so nothing in the URL is ever echoed into the page.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Done {
    Revoked,
    Renewed,
}

#[derive(serde::Deserialize)]
pub(super) struct DoneQuery {
    done: Option<Done>,
}

pub(super) async fn show(
    State(broker): State<Broker>,
    session: WebSession,
    ClientIp(ip): ClientIp,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let overview = broker.access().overview(&session.user, ip).await?;
    let done = query.ok().and_then(|Query(q)| q.done);
    let signed_in = SignedIn {
        name: &session.user.name,
        csrf: &session.csrf,
        admin: session.user.admin,
    };
    let main = access_main(&overview, &session.csrf, done);
    Ok(page(
        StatusCode::OK,
        frame("My access", Some(signed_in), main),
    ))
}

pub(super) async fn revoke(
    State(broker): State<Broker>,
    session: WebSession,
    guard: FormGuard,
    Path(id): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    guard
        .session_form(&broker, &session, &form.csrf, "revoke")
        .await?;
    broker
        .leases()
        .revoke_own(&session.user, &id, guard.ip)
        .await?;
    Ok(super::see_other("/access?done=revoked"))
}

/// Spends the lease budget like the API's renewal does, after the session and form token are
/// checked.
pub(super) async fn renew(
    State(broker): State<Broker>,
    session: WebSession,
    guard: FormGuard,
    Path(id): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    guard
        .session_form(&broker, &session, &form.csrf, "renew")
        .await?;
    LeaseBudget::take(&broker, guard.ip)?;
    broker.leases().renew(&session.user, &id, guard.ip).await?;
    Ok(super::see_other("/access?done=renewed"))
}

fn access_main(o: &AccessOverview, csrf: &str, done: Option<Done>) -> Markup {
    html! {
        h1 { "My access" }
        @match done {
            Some(Done::Revoked) => p id="notice" class="notice" role="status" { "Lease revoked." },
            Some(Done::Renewed) => p id="notice" class="notice" role="status" {
                "Lease renewed and pinned to this address."
            },
            None => {},
        }
        p { "Signed in as " strong id="whoami-user" { (o.user) } "." }
        p { "This device reaches the broker from " code id="source-ip" { (o.source_ip) } "." }
        p { a id="new-device-link" class="button" href="/devices/new" { "New device" } }
        h2 { "Live leases" }
        @if o.leases.is_empty() {
            p id="no-leases" class="muted" { "No live leases." }
        } @else {
            table id="leases" {
                thead { tr {
                    th scope="col" { "Edge" } th scope="col" { "Tunnel address" }
                    th scope="col" { "Pinned to" } th scope="col" { "Expires" }
                    th scope="col" { "Last handshake" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for lease in &o.leases { (lease_row(lease, o.now, csrf)) }
                }
            }
        }
        h2 { "Your grants" }
        @if o.grants.is_empty() {
            p id="no-grants" class="muted" { "No grants: ask an administrator for access." }
        } @else {
            ul id="grants" {
                @for g in &o.grants {
                    li data-edge=(g.edge) {
                        strong { (g.edge) }
                        @if let Some(end) = g.expires_at { ", until " (utc(end)) }
                    }
                }
            }
        }
    }
}

fn lease_row(a: &AccessLease, now: i64, csrf: &str) -> Markup {
    let l = &a.lease;
    let handshake = l.usage.and_then(|u| u.last_handshake_at);
    html! {
        tr data-lease-id=(l.id) {
            td data-label="Edge" class="edge" { (l.edge) }
            td data-label="Tunnel address" class="address" { code { (l.tunnel_address) } }
            td data-label="Pinned to" class="pin" {
                code { (l.pin) }
                @if a.pinned_here {
                    " " span class="pinned-here" { "(this device's address)" }
                } @else {
                    " " span class="pinned-elsewhere muted" { "(another address)" }
                }
            }
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
                form class="revoke" method="post" action={ "/access/leases/" (l.id) "/revoke" } {
                    (csrf_field(csrf))
                    button class="danger" type="submit" aria-label={ "Revoke lease on " (l.edge) } {
                        "Revoke"
                    }
                }
                form class="renew" method="post" action={ "/access/leases/" (l.id) "/renew" } {
                    (csrf_field(csrf))
                    button class="secondary" type="submit"
                        aria-label={ "Renew lease on " (l.edge) " to this address" } {
                        "Renew to this address"
                    }
                }
            }
        }
    }
}
