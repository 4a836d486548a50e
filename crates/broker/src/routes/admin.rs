//! The admin API. Served only on the Unix socket in the data directory (mode 0600), so being
//! able to connect is the authorization.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use grantwire_proto::{
    AuditQuery, AuditResponse, BackupRequest, BackupResponse, EdgeAddRequest, EdgeAddResponse,
    EdgeListResponse, EdgeRemoveRequest, EdgeRemoveResponse, GrantAddRequest, GrantInfo,
    GrantListResponse, GrantRevokeRequest, GrantRevokeResponse, LeaseListResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, UserAddRequest, UserAddResponse,
};

use grantwire_proto::{
    UserChangeResponse, UserInviteRequest, UserInviteResponse, UserListResponse, UserNameRequest,
    UserPasswordRequest, UserRemoveResponse,
};

use crate::answer::{ApiJson, Result};
use crate::broker::Broker;

/// Paths, shared with the admin client.
pub const USERS: &str = "/v1/admin/users";
pub const USERS_DISABLE: &str = "/v1/admin/users/disable";
pub const USERS_ENABLE: &str = "/v1/admin/users/enable";
pub const USERS_RESET_PASSWORD: &str = "/v1/admin/users/reset-password";
pub const USERS_RESET_TOTP: &str = "/v1/admin/users/reset-totp";
pub const USERS_REMOVE: &str = "/v1/admin/users/remove";
pub const USERS_INVITE: &str = "/v1/admin/users/invite";
pub const EDGES: &str = "/v1/admin/edges";
pub const EDGES_REMOVE: &str = "/v1/admin/edges/remove";
pub const GRANTS: &str = "/v1/admin/grants";
pub const GRANTS_REVOKE: &str = "/v1/admin/grants/revoke";
pub const LEASES: &str = "/v1/admin/leases";
pub const AUDIT: &str = "/v1/admin/audit";
pub const BACKUP: &str = "/v1/admin/backup";
pub const LEASES_REVOKE: &str = "/v1/admin/leases/revoke";

pub fn router() -> Router<Broker> {
    Router::new()
        .route(USERS, post(user_add).get(user_list))
        .route(USERS_DISABLE, post(user_disable))
        .route(USERS_ENABLE, post(user_enable))
        .route(USERS_RESET_PASSWORD, post(user_reset_password))
        .route(USERS_RESET_TOTP, post(user_reset_totp))
        .route(USERS_REMOVE, post(user_remove))
        .route(USERS_INVITE, post(user_invite))
        .route(EDGES, post(edge_add).get(edge_list))
        .route(EDGES_REMOVE, post(edge_remove))
        .route(GRANTS, post(grant_add).get(grant_list))
        .route(GRANTS_REVOKE, post(grant_revoke))
        .route(LEASES, get(lease_list))
        .route(AUDIT, post(audit))
        .route(BACKUP, post(backup))
        .route(LEASES_REVOKE, post(lease_revoke))
}

async fn user_add(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserAddRequest>,
) -> Result<Json<UserAddResponse>> {
    Ok(Json(b.accounts().add(req).await?))
}

async fn user_list(State(b): State<Broker>) -> Result<Json<UserListResponse>> {
    Ok(Json(b.accounts().list().await?))
}

async fn user_disable(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserNameRequest>,
) -> Result<Json<UserChangeResponse>> {
    Ok(Json(b.accounts().disable(req).await?))
}

async fn user_enable(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserNameRequest>,
) -> Result<Json<UserChangeResponse>> {
    Ok(Json(b.accounts().enable(req).await?))
}

async fn user_reset_password(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserPasswordRequest>,
) -> Result<Json<UserChangeResponse>> {
    Ok(Json(b.accounts().reset_password(req).await?))
}

async fn user_reset_totp(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserNameRequest>,
) -> Result<Json<UserAddResponse>> {
    Ok(Json(b.accounts().reset_totp(req).await?))
}

async fn user_remove(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserNameRequest>,
) -> Result<Json<UserRemoveResponse>> {
    Ok(Json(b.accounts().remove(req).await?))
}

async fn user_invite(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<UserInviteRequest>,
) -> Result<Json<UserInviteResponse>> {
    Ok(Json(b.invites().create(req).await?))
}

async fn edge_add(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<EdgeAddRequest>,
) -> Result<Json<EdgeAddResponse>> {
    Ok(Json(b.edges().add(req).await?))
}

async fn edge_list(State(b): State<Broker>) -> Result<Json<EdgeListResponse>> {
    Ok(Json(b.edges().list().await?))
}

async fn edge_remove(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<EdgeRemoveRequest>,
) -> Result<Json<EdgeRemoveResponse>> {
    Ok(Json(b.edges().remove(req).await?))
}

async fn grant_add(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<GrantAddRequest>,
) -> Result<Json<GrantInfo>> {
    Ok(Json(b.grants().add(req).await?))
}

async fn grant_list(State(b): State<Broker>) -> Result<Json<GrantListResponse>> {
    Ok(Json(b.grants().list().await?))
}

async fn grant_revoke(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<GrantRevokeRequest>,
) -> Result<Json<GrantRevokeResponse>> {
    Ok(Json(b.grants().revoke(req).await?))
}

async fn lease_revoke(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<LeaseRevokeRequest>,
) -> Result<Json<LeaseRevokeResponse>> {
    Ok(Json(b.leases().revoke(req).await?))
}

async fn audit(
    State(b): State<Broker>,
    ApiJson(q): ApiJson<AuditQuery>,
) -> Result<Json<AuditResponse>> {
    Ok(Json(b.audit().query(q).await?))
}

async fn backup(
    State(b): State<Broker>,
    ApiJson(req): ApiJson<BackupRequest>,
) -> Result<Json<BackupResponse>> {
    Ok(Json(b.backup(req).await?))
}

async fn lease_list(State(b): State<Broker>) -> Result<Json<LeaseListResponse>> {
    Ok(Json(b.leases().list().await?))
}
