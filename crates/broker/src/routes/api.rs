//! The public API: login, leases, edge enrolment, the edge's push stream and its reports.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::{header, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use futures_util::Stream;
use grantwire_proto::{
    EdgeReport, EnrolRequest, EnrolResponse, LeaseListResponse, LeaseRequest, LeaseResponse,
    LeaseRevokeResponse, LeaseSet, LoginRequest, LoginResponse, WhoamiResponse,
};
use tokio::sync::broadcast::error::RecvError;

use super::{AnyCaller, ClientIp, EdgeIdentity, UserSession};
use crate::answer::{ApiJson, GuardedJson, Result};
use crate::broker::Broker;
use crate::error::Error;
use crate::routes::budgets::{LeaseBudget, LoginBudget};

/// Interval of SSE keep-alive comments: short enough to keep NAT and proxy idle timers (often
/// 30-60 s) from closing the edge's connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Every route of the public API. The router is built from this list, and the OpenAPI
/// description (`openapi.json`) is checked against it in a test, so neither can name a route the
/// other lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Logout,
    Leases,
    MyLeases,
    Renew,
    Revoke,
    Whoami,
    Enrol,
    Sync,
    Report,
    OpenApi,
}

impl Route {
    pub const ALL: [Route; 11] = [
        Route::Login,
        Route::Logout,
        Route::Leases,
        Route::MyLeases,
        Route::Renew,
        Route::Revoke,
        Route::Whoami,
        Route::Enrol,
        Route::Sync,
        Route::Report,
        Route::OpenApi,
    ];

    /// The path, in axum's (and OpenAPI's) `{param}` syntax.
    pub fn path(self) -> &'static str {
        match self {
            Route::Login => "/v1/login",
            Route::Logout => "/v1/logout",
            Route::Leases | Route::MyLeases => "/v1/leases",
            Route::Renew => "/v1/leases/{id}/renew",
            Route::Revoke => "/v1/leases/{id}/revoke",
            Route::Whoami => "/v1/whoami",
            Route::Enrol => "/v1/edge/enrol",
            Route::Sync => "/v1/edge/sync",
            Route::Report => "/v1/edge/report",
            Route::OpenApi => "/v1/openapi.json",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Route::MyLeases | Route::Whoami | Route::Sync | Route::OpenApi => Method::GET,
            _ => Method::POST,
        }
    }

    fn handler(self) -> MethodRouter<Broker> {
        match self {
            Route::Login => post(login),
            Route::Logout => post(logout),
            Route::Leases => post(lease),
            Route::MyLeases => get(my_leases),
            Route::Renew => post(renew),
            Route::Revoke => post(revoke),
            Route::Whoami => get(whoami),
            Route::Enrol => post(enrol),
            Route::Sync => get(sync),
            Route::Report => post(report),
            Route::OpenApi => get(openapi),
        }
    }
}

pub fn router() -> Router<Broker> {
    Route::ALL.iter().fold(Router::new(), |router, route| {
        router.route(route.path(), route.handler())
    })
}

/// The OpenAPI 3.1 description of the routes above, served to authenticated callers only.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

async fn login(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    _: LoginBudget,
    GuardedJson(req): GuardedJson<LoginRequest>,
) -> Result<Json<LoginResponse>> {
    Ok(Json(broker.sessions().login(req, ip).await?))
}

async fn logout(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    UserSession(user): UserSession,
) -> Result<StatusCode> {
    broker.sessions().logout(&user, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Extractors run in order: the session is checked before the budget, so an anonymous request
// gets the same 401 here as on any other path (a 429 would tell a stranger the route exists)
// and cannot spend the budget of a real user at the same address.
async fn lease(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    UserSession(user): UserSession,
    _: LeaseBudget,
    ApiJson(req): ApiJson<LeaseRequest>,
) -> Result<Json<LeaseResponse>> {
    Ok(Json(broker.leases().issue(&user, req, ip).await?))
}

async fn renew(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    UserSession(user): UserSession,
    _: LeaseBudget,
    Path(id): Path<String>,
) -> Result<Json<LeaseResponse>> {
    Ok(Json(broker.leases().renew(&user, &id, ip).await?))
}

async fn my_leases(
    State(broker): State<Broker>,
    UserSession(user): UserSession,
) -> Result<Json<LeaseListResponse>> {
    Ok(Json(broker.access().leases(&user).await?))
}

async fn revoke(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    UserSession(user): UserSession,
    Path(id): Path<String>,
) -> Result<Json<LeaseRevokeResponse>> {
    Ok(Json(broker.leases().revoke_own(&user, &id, ip).await?))
}

async fn whoami(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    UserSession(user): UserSession,
) -> Result<Json<WhoamiResponse>> {
    Ok(Json(broker.access().whoami(&user, ip).await?))
}

/// Anonymous like login, and on the same per-source budget: each attempt takes the write lock.
async fn enrol(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    _: LoginBudget,
    GuardedJson(req): GuardedJson<EnrolRequest>,
) -> Result<Json<EnrolResponse>> {
    Ok(Json(broker.edges().enrol(req, ip).await?))
}

/// An edge's report of lease traffic and events.
async fn report(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    EdgeIdentity(edge): EdgeIdentity,
    ApiJson(report): ApiJson<EdgeReport>,
) -> Result<StatusCode> {
    broker.edges().report(&edge, report, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn openapi(_: AnyCaller) -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

/// The edge's push stream: its full lease set at once, then again after every change to it.
async fn sync(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    EdgeIdentity(edge): EdgeIdentity,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    tracing::info!(edge = %edge.name, "edge connected for sync");
    // Best effort: a failed audit write (an overloaded database) must not keep the edge from
    // its lease set, and with it from the next revocation.
    if let Err(e) = broker.edges().connected(&edge, ip).await {
        tracing::info!(edge = %edge.name, error = %e, "recording the edge's connection failed");
    }
    Ok(Sse::new(lease_set_stream(broker, edge.id, edge.name))
        .keep_alive(KeepAlive::new().interval(KEEPALIVE_INTERVAL)))
}

struct StreamState {
    broker: Broker,
    changes: tokio::sync::broadcast::Receiver<i64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    edge_id: i64,
    first: bool,
    /// The edge's config as of the last set sent: what an empty set is sent with once the
    /// edge is removed.
    config: Option<grantwire_proto::EdgeConfig>,
    /// The last event has been sent (the edge was removed).
    done: bool,
    /// Counts the edge as connected while the stream lives, and audits its end.
    link: EdgeLink,
}

/// Dropped when the edge's stream ends, however it ends (the edge hung up, was removed, or
/// the broker is shutting down).
struct EdgeLink {
    broker: Broker,
    edge_id: i64,
    name: String,
    presence: Option<crate::presence::PresenceGuard>,
}

impl Drop for EdgeLink {
    fn drop(&mut self) {
        // This stream no longer counts, before anyone asks whether the edge is connected.
        drop(self.presence.take());
        if *self.broker.shutdown_signal().borrow() {
            // The database is closing; every edge is told by its connection ending.
            return;
        }
        let (broker, edge_id, name) = (self.broker.clone(), self.edge_id, self.name.clone());
        tokio::spawn(async move {
            // A dead stream is noticed only at its next keep-alive, maybe after the edge has
            // reconnected: then it is not disconnected, and saying so would misorder the log.
            if broker.presence().is_connected(edge_id) {
                return;
            }
            tracing::info!(edge = %name, "edge disconnected");
            if let Err(e) = broker.edges().disconnected(edge_id, &name).await {
                tracing::debug!(edge = %name, error = %e, "auditing the disconnect failed");
            }
        });
    }
}

fn lease_set_stream(
    broker: Broker,
    edge_id: i64,
    name: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribe before the first read, so a change committed in between is not missed.
    let state = StreamState {
        changes: broker.subscribe(),
        shutdown: broker.shutdown_signal(),
        link: EdgeLink {
            presence: Some(broker.presence().connect(edge_id)),
            broker: broker.clone(),
            edge_id,
            name,
        },
        broker,
        edge_id,
        first: true,
        config: None,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done || (!st.first && !wait_for_change(&mut st).await) {
            return None;
        }
        st.first = false;
        let started = std::time::Instant::now();
        let set = match st.broker.edges().lease_set(st.edge_id).await {
            Ok(set) => set,
            Err(Error::NotFound(_)) => {
                // Removed by an admin: the running edge is told to drop every lease before
                // its stream ends (it would otherwise keep enforcing the last set), and its
                // reconnect is refused, which makes it empty its cache too.
                tracing::info!(
                    edge_id = st.edge_id,
                    "edge removed; sending it an empty set and ending its stream"
                );
                st.done = true;
                let config = st.config.clone()?;
                let empty = LeaseSet {
                    config,
                    leases: Vec::new(),
                    generated_at: st.link.broker.now(),
                    broker_time_ms: Some(st.link.broker.now_ms()),
                };
                let json = serde_json::to_string(&empty).ok()?;
                return Some((Ok(Event::default().event("leases").data(json)), st));
            }
            Err(e) => {
                // Ending the stream makes the edge reconnect and get a fresh full set.
                tracing::error!(edge_id = st.edge_id, error = %e, "building lease set failed");
                return None;
            }
        };
        let read = started.elapsed();
        st.config = Some(set.config.clone());
        let json = match serde_json::to_string(&set) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "serializing lease set failed");
                return None;
            }
        };
        tracing::debug!(
            edge_id = st.edge_id,
            leases = set.leases.len(),
            bytes = json.len(),
            read_us = read.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "lease set built"
        );
        Some((Ok(Event::default().event("leases").data(json)), st))
    })
}

/// Waits until this edge's set changed (or we lagged and may have missed it). False: shut
/// down, or a newer stream of the same edge replaced this one.
async fn wait_for_change(st: &mut StreamState) -> bool {
    if *st.shutdown.borrow() {
        return false;
    }
    let Some(presence) = st.link.presence.as_mut() else {
        return false;
    };
    let replaced = presence.replaced();
    tokio::pin!(replaced);
    loop {
        tokio::select! {
            () = &mut replaced => {
                tracing::info!(edge_id = st.edge_id, "a newer sync stream of this edge replaces this one");
                return false;
            }
            msg = st.changes.recv() => match msg {
                Ok(id) if id == st.edge_id => {
                    // Changes that queued up meanwhile are covered by the one full read that
                    // follows: under a burst of leases the edge gets fewer, fuller sets.
                    while st.changes.try_recv().is_ok() {}
                    return true;
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => return false,
            },
            _ = st.shutdown.changed() => return false,
        }
    }
}
