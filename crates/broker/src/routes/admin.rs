//! The admin API. Served only on the Unix socket in the data directory (mode 0600), so being
//! able to connect is the authorization.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use grantwire_proto::{
    EdgeAddRequest, EdgeAddResponse, GrantAddRequest, GrantInfo, GrantRevokeRequest,
    GrantRevokeResponse, LeaseListResponse, UserAddRequest, UserAddResponse,
};

use crate::broker::Broker;
use crate::error::{ApiJson, Result};

/// Paths, shared with the admin client.
pub const USERS: &str = "/v1/admin/users";
pub const EDGES: &str = "/v1/admin/edges";
pub const GRANTS: &str = "/v1/admin/grants";
pub const GRANTS_REVOKE: &str = "/v1/admin/grants/revoke";
pub const LEASES: &str = "/v1/admin/leases";

pub fn router() -> Router<Broker> {
    Router::new()
        .route(USERS, post(user_add))
        .route(EDGES, post(edge_add))
        .route(GRANTS, post(grant_add))
        .route(GRANTS_REVOKE, post(grant_revoke))
        .route(LEASES, get(lease_list))
}

async fn user_add(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserAddRequest>,
) -> Result<Json<UserAddResponse>> {
    Ok(Json(b.user_add(req).await?))
}

async fn edge_add(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<EdgeAddRequest>,
) -> Result<Json<EdgeAddResponse>> {
    Ok(Json(b.edge_add(req).await?))
}

async fn grant_add(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<GrantAddRequest>,
) -> Result<Json<GrantInfo>> {
    Ok(Json(b.grant_add(req).await?))
}

async fn grant_revoke(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<GrantRevokeRequest>,
) -> Result<Json<GrantRevokeResponse>> {
    Ok(Json(b.grant_revoke(req).await?))
}

async fn lease_list(State(b): State<Broker>) -> Result<Json<LeaseListResponse>> {
    Ok(Json(b.lease_list().await?))
}
