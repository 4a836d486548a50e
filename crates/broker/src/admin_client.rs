//! Client side of the admin socket: HTTP/1.1 over the Unix socket in the data directory, used by
//! the admin commands of the CLI so their changes go through the running broker (and reach the
//! edges at once).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use grantwire_proto::{
    AuditQuery, AuditResponse, BackupRequest, BackupResponse, EdgeAddRequest, EdgeAddResponse,
    EdgeListResponse, EdgeRemoveRequest, EdgeRemoveResponse, ErrorBody, ErrorCode, GrantAddRequest,
    GrantInfo, GrantListResponse, GrantRevokeRequest, GrantRevokeResponse, LeaseListResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, UserAddRequest, UserAddResponse,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use grantwire_proto::{
    UserChangeResponse, UserInviteRequest, UserInviteResponse, UserListResponse, UserNameRequest,
    UserPasswordRequest, UserRemoveResponse,
};

use crate::routes::admin as paths;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the broker's admin socket at {}: is `grantwire-broker serve` running?", .path.display())]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The socket (or its directory) is not ours to open, or the broker hung up on us because
    /// our uid is neither root nor its own.
    #[error("permission denied on the admin socket {}: run as root or as the broker's user", .path.display())]
    PermissionDenied { path: PathBuf },
    #[error("admin socket: {0}")]
    Http(#[from] hyper::Error),
    #[error("admin request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("admin response: {0}")]
    Json(#[from] serde_json::Error),
    /// The broker refused; `code` says why.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
}

/// Talks to one broker's admin socket.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn user_add(&self, req: &UserAddRequest) -> Result<UserAddResponse, AdminError> {
        self.call(Method::POST, paths::USERS, Some(req)).await
    }

    pub async fn user_list(&self) -> Result<UserListResponse, AdminError> {
        self.call::<(), _>(Method::GET, paths::USERS, None).await
    }

    pub async fn user_disable(&self, name: &str) -> Result<UserChangeResponse, AdminError> {
        let req = UserNameRequest { name: name.into() };
        self.call(Method::POST, paths::USERS_DISABLE, Some(&req))
            .await
    }

    pub async fn user_enable(&self, name: &str) -> Result<UserChangeResponse, AdminError> {
        let req = UserNameRequest { name: name.into() };
        self.call(Method::POST, paths::USERS_ENABLE, Some(&req))
            .await
    }

    pub async fn user_reset_password(
        &self,
        req: &UserPasswordRequest,
    ) -> Result<UserChangeResponse, AdminError> {
        self.call(Method::POST, paths::USERS_RESET_PASSWORD, Some(req))
            .await
    }

    pub async fn user_reset_totp(&self, name: &str) -> Result<UserAddResponse, AdminError> {
        let req = UserNameRequest { name: name.into() };
        self.call(Method::POST, paths::USERS_RESET_TOTP, Some(&req))
            .await
    }

    pub async fn user_remove(&self, name: &str) -> Result<UserRemoveResponse, AdminError> {
        let req = UserNameRequest { name: name.into() };
        self.call(Method::POST, paths::USERS_REMOVE, Some(&req))
            .await
    }

    pub async fn user_invite(
        &self,
        req: &UserInviteRequest,
    ) -> Result<UserInviteResponse, AdminError> {
        self.call(Method::POST, paths::USERS_INVITE, Some(req))
            .await
    }

    pub async fn edge_add(&self, req: &EdgeAddRequest) -> Result<EdgeAddResponse, AdminError> {
        self.call(Method::POST, paths::EDGES, Some(req)).await
    }

    pub async fn edge_list(&self) -> Result<EdgeListResponse, AdminError> {
        self.call::<(), _>(Method::GET, paths::EDGES, None).await
    }

    pub async fn edge_remove(
        &self,
        req: &EdgeRemoveRequest,
    ) -> Result<EdgeRemoveResponse, AdminError> {
        self.call(Method::POST, paths::EDGES_REMOVE, Some(req))
            .await
    }

    pub async fn grant_add(&self, req: &GrantAddRequest) -> Result<GrantInfo, AdminError> {
        self.call(Method::POST, paths::GRANTS, Some(req)).await
    }

    pub async fn grant_list(&self) -> Result<GrantListResponse, AdminError> {
        self.call::<(), _>(Method::GET, paths::GRANTS, None).await
    }

    pub async fn grant_revoke(
        &self,
        req: &GrantRevokeRequest,
    ) -> Result<GrantRevokeResponse, AdminError> {
        self.call(Method::POST, paths::GRANTS_REVOKE, Some(req))
            .await
    }

    pub async fn lease_revoke(
        &self,
        req: &LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, AdminError> {
        self.call(Method::POST, paths::LEASES_REVOKE, Some(req))
            .await
    }

    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditResponse, AdminError> {
        self.call(Method::POST, paths::AUDIT, Some(q)).await
    }

    pub async fn backup(&self, req: &BackupRequest) -> Result<BackupResponse, AdminError> {
        self.call(Method::POST, paths::BACKUP, Some(req)).await
    }

    pub async fn lease_list(&self) -> Result<LeaseListResponse, AdminError> {
        self.call::<(), _>(Method::GET, paths::LEASES, None).await
    }

    /// One request on a fresh connection: admin commands are one-shot.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, AdminError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| connect_error(&self.socket, e))?;
        match self.exchange(stream, method, path, body).await {
            Err(AdminError::Http(e)) => Err(self.explain_hangup(e).await),
            other => other,
        }
    }

    async fn exchange<B: Serialize, R: DeserializeOwned>(
        &self,
        stream: UnixStream,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, AdminError> {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        driver.abort();
        if status.is_success() {
            return Ok(serde_json::from_slice(&body)?);
        }
        let err: ErrorBody = serde_json::from_slice(&body)?;
        Err(AdminError::Refused {
            code: err.error.code,
            message: err.error.message,
        })
    }

    /// The broker accepts admin connections only from root and its own uid, and drops any
    /// other without a word (see `admin_socket`), which reaches us as a connection closed
    /// before the response. When our uid is one it would drop, say so rather than show a bare
    /// HTTP error.
    async fn explain_hangup(&self, e: hyper::Error) -> AdminError {
        let owner = std::fs::metadata(&self.socket).map(|m| m.uid()).ok();
        match (own_uid().await, owner) {
            (Some(own), Some(owner)) if uid_check_refuses(own, owner) => {
                AdminError::PermissionDenied {
                    path: self.socket.clone(),
                }
            }
            _ => AdminError::Http(e),
        }
    }
}

fn connect_error(path: &Path, source: std::io::Error) -> AdminError {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        AdminError::PermissionDenied {
            path: path.to_owned(),
        }
    } else {
        AdminError::Unreachable {
            path: path.to_owned(),
            source,
        }
    }
}

/// Mirrors the broker's rule: root and the socket's owner get in, nobody else.
fn uid_check_refuses(own_uid: u32, socket_owner: u32) -> bool {
    own_uid != 0 && own_uid != socket_owner
}

/// This process's effective uid. SO_PEERCRED on one end of a socket pair reports the creator,
/// which is us: a way to learn it without `unsafe` (denied in this workspace).
async fn own_uid() -> Option<u32> {
    let (a, _b) = UnixStream::pair().ok()?;
    a.peer_cred().ok().map(|c| c.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_connect_is_reported_as_such() {
        let path = Path::new("/srv/grantwire/admin.sock");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = connect_error(path, denied);
        assert!(
            matches!(err, AdminError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "permission denied on the admin socket /srv/grantwire/admin.sock: \
             run as root or as the broker's user"
        );
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = connect_error(path, missing);
        assert!(matches!(err, AdminError::Unreachable { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("is `grantwire-broker serve` running?"));
    }

    #[test]
    fn the_uid_rule_matches_the_brokers() {
        assert!(!uid_check_refuses(0, 1000));
        assert!(!uid_check_refuses(1000, 1000));
        assert!(uid_check_refuses(1001, 1000));
        assert!(uid_check_refuses(1001, 0));
    }

    #[tokio::test]
    async fn own_uid_is_found() {
        let uid = own_uid().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mine = std::fs::metadata(dir.path()).unwrap().uid();
        assert_eq!(uid, mine);
    }
}
