//! Client side of the admin socket: HTTP/1.1 over the Unix socket in the data directory, used by
//! the admin commands of the CLI so their changes go through the running broker (and reach the
//! edges at once).

use std::path::{Path, PathBuf};

use grantwire_proto::{
    EdgeAddRequest, EdgeAddResponse, ErrorBody, ErrorCode, GrantAddRequest, GrantInfo,
    GrantRevokeRequest, GrantRevokeResponse, LeaseListResponse, UserAddRequest, UserAddResponse,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::routes::admin as paths;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the broker's admin socket at {}: is `grantwire-broker serve` running?", .path.display())]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

    pub async fn edge_add(&self, req: &EdgeAddRequest) -> Result<EdgeAddResponse, AdminError> {
        self.call(Method::POST, paths::EDGES, Some(req)).await
    }

    pub async fn grant_add(&self, req: &GrantAddRequest) -> Result<GrantInfo, AdminError> {
        self.call(Method::POST, paths::GRANTS, Some(req)).await
    }

    pub async fn grant_revoke(
        &self,
        req: &GrantRevokeRequest,
    ) -> Result<GrantRevokeResponse, AdminError> {
        self.call(Method::POST, paths::GRANTS_REVOKE, Some(req))
            .await
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
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| AdminError::Unreachable {
                    path: self.socket.clone(),
                    source,
                })?;
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
}
