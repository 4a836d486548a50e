//! The public API: login, leases, edge enrolment and the edge's push stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use grantwire_proto::{
    EnrolRequest, EnrolResponse, LeaseRequest, LeaseResponse, LoginRequest, LoginResponse,
    WhoamiResponse,
};
use tokio::sync::broadcast::error::RecvError;

use super::{ClientIp, EdgeIdentity, UserSession};
use crate::broker::Broker;
use crate::error::{ApiJson, Error, GuardedJson, Result};
use crate::throttle::{LeaseBudget, LoginBudget};

/// Interval of SSE keep-alive comments: short enough to keep NAT and proxy idle timers (often
/// 30-60 s) from closing the edge's connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

pub fn router() -> Router<Broker> {
    Router::new()
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/leases", post(lease))
        .route("/v1/leases/{id}/renew", post(renew))
        .route("/v1/whoami", get(whoami))
        .route("/v1/edge/enrol", post(enrol))
        .route("/v1/edge/sync", get(sync))
}

async fn login(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    _: LoginBudget,
    GuardedJson(req): GuardedJson<LoginRequest>,
) -> Result<Json<LoginResponse>> {
    Ok(Json(broker.login(req, ip).await?))
}

async fn logout(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    UserSession(user): UserSession,
) -> Result<StatusCode> {
    broker.logout(&user, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn lease(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    _: LeaseBudget,
    UserSession(user): UserSession,
    ApiJson(req): ApiJson<LeaseRequest>,
) -> Result<Json<LeaseResponse>> {
    Ok(Json(broker.issue_lease(&user, req, ip).await?))
}

async fn renew(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    _: LeaseBudget,
    UserSession(user): UserSession,
    Path(id): Path<String>,
) -> Result<Json<LeaseResponse>> {
    Ok(Json(broker.renew_lease(&user, &id, ip).await?))
}

async fn whoami(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    UserSession(user): UserSession,
) -> Result<Json<WhoamiResponse>> {
    Ok(Json(broker.whoami(&user, ip).await?))
}

async fn enrol(
    State(broker): State<Broker>,
    ClientIp(ip): ClientIp,
    GuardedJson(req): GuardedJson<EnrolRequest>,
) -> Result<Json<EnrolResponse>> {
    Ok(Json(broker.enrol(req, ip).await?))
}

/// The edge's push stream: its full lease set at once, then again after every change to it.
async fn sync(
    State(broker): State<Broker>,
    EdgeIdentity(edge): EdgeIdentity,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    tracing::info!(edge = %edge.name, "edge connected for sync");
    broker.edge_seen(edge.id).await;
    Sse::new(lease_set_stream(broker, edge.id))
        .keep_alive(KeepAlive::new().interval(KEEPALIVE_INTERVAL))
}

struct StreamState {
    broker: Broker,
    changes: tokio::sync::broadcast::Receiver<i64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    edge_id: i64,
    first: bool,
    /// Counts the edge as connected while the stream lives.
    _presence: crate::presence::PresenceGuard,
}

fn lease_set_stream(broker: Broker, edge_id: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribe before the first read, so a change committed in between is not missed.
    let state = StreamState {
        changes: broker.subscribe(),
        shutdown: broker.shutdown_signal(),
        _presence: broker.presence().connect(edge_id),
        broker,
        edge_id,
        first: true,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if !st.first && !wait_for_change(&mut st).await {
            return None;
        }
        st.first = false;
        let set = match st.broker.lease_set(st.edge_id).await {
            Ok(set) => set,
            Err(Error::NotFound(_)) => {
                tracing::info!(edge_id = st.edge_id, "edge removed; ending its stream");
                return None;
            }
            Err(e) => {
                // Ending the stream makes the edge reconnect and get a fresh full set.
                tracing::error!(edge_id = st.edge_id, error = %e, "building lease set failed");
                return None;
            }
        };
        let json = match serde_json::to_string(&set) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "serializing lease set failed");
                return None;
            }
        };
        Some((Ok(Event::default().event("leases").data(json)), st))
    })
}

/// Waits until this edge's set changed (or we lagged and may have missed it). False: shut down.
async fn wait_for_change(st: &mut StreamState) -> bool {
    if *st.shutdown.borrow() {
        return false;
    }
    loop {
        tokio::select! {
            msg = st.changes.recv() => match msg {
                Ok(id) if id == st.edge_id => return true,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => return false,
            },
            _ = st.shutdown.changed() => return false,
        }
    }
}
