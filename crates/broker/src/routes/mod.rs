//! HTTP routers: the public API (HTTPS) and the admin API (Unix socket only), and the
//! authorization extractors the handlers take.

pub mod admin;
mod api;
pub mod budgets;

pub use api::{Route, OPENAPI_JSON};

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::header::{self, HeaderValue, AUTHORIZATION};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Router;

use crate::answer::{self, ApiError};
use crate::broker::Broker;
use crate::error::Error;
use crate::store::{edges::EdgeRow, users::SessionUser};

/// Largest request body we read. Every request is a few hundred bytes of JSON; the cap keeps a
/// stranger from making the broker buffer more.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The public API, served over HTTPS. Must be served with `ConnectInfo<SocketAddr>`.
/// `presented` says where the TLS certificate comes from (the invitation page tells the admin
/// what a friend's browser will make of it).
pub fn app(broker: Broker, presented: crate::tls::Presented) -> Router {
    let api = Router::new()
        .merge(api::router())
        .merge(crate::web::router())
        .fallback(unrouted)
        .method_not_allowed_fallback(unrouted)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(presented))
        .with_state(broker);
    // axum adds `Allow` to a wrong-method answer after the router's own layers have run, which
    // would tell a stranger which routes exist; the headers are set on the outside of it all.
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers every public response carries, errors and streams included: HTTPS only from now on
/// (HSTS), no content sniffing, nothing may be referred from a response, and nothing is cached
/// (responses carry session tokens and leases). No `Server` banner.
const SECURITY_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-store"),
];

/// The API's referrer policy. A web page sets `same-origin` instead (`crate::web::page`):
/// under `no-referrer` browsers send `Origin: null` on a page's own form posts, which the
/// pages' origin check must refuse; `same-origin` still sends nothing to another site.
const API_REFERRER_POLICY: &str = "no-referrer";

/// The API's Content-Security-Policy: nothing may be loaded or framed. A web page sets its
/// own (`crate::web::PAGE_CSP`), which this leaves in place; every other response gets this.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(API_CSP));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static(API_REFERRER_POLICY));
    headers.remove(header::SERVER);
    // The broker never answers 405, so `Allow` could only ever name routes to a prober.
    headers.remove(header::ALLOW);
    response
}

/// A path or method no route has. A caller without a live session or edge credential gets the
/// same 401 as on any protected route, so probing paths tells a stranger nothing, not even
/// which paths exist; an authenticated caller learns it made a mistake (404).
pub(crate) async fn unrouted(caller: Option<AnyCaller>) -> ApiError {
    ApiError(match caller {
        Some(_) => Error::NotFound("not found".into()),
        None => Error::Unauthorized,
    })
}

/// The admin API, served only on the owner-only Unix socket.
pub fn admin_app(broker: Broker) -> Router {
    Router::new()
        .merge(admin::router())
        .fallback(answer::not_found)
        .method_not_allowed_fallback(answer::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(broker)
}

/// The client's address: the TCP peer of the connection, or, only when that peer is a
/// configured trusted proxy, the first untrusted hop of its `X-Forwarded-For` (see
/// [`crate::proxy`]). Anyone else's forwarding headers are ignored, so a client cannot choose its
/// own pin.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Broker> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| Error::Internal("server was started without connect info".into()))?;
        let headers = parts.headers.get_all("x-forwarded-for");
        let ip = broker
            .trusted_proxies()
            .client_ip(peer, headers.iter().map(|v| v.as_bytes()));
        Ok(Self(ip))
    }
}

/// A request with a live user session (`Authorization: Bearer <session token>`).
pub struct UserSession(pub SessionUser);

impl FromRequestParts<Broker> for UserSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, broker).await?;
        let token = bearer(parts).ok_or(Error::Unauthorized)?;
        match broker.sessions().user_of(token).await {
            Err(Error::Unauthorized) => Err(broker.sessions().token_miss(ip).into()),
            session => Ok(Self(session?)),
        }
    }
}

/// A request from an enrolled edge (`Authorization: Bearer <edge credential>`).
pub struct EdgeIdentity(pub EdgeRow);

impl FromRequestParts<Broker> for EdgeIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, broker).await?;
        let credential = bearer(parts).ok_or(Error::Unauthorized)?;
        let edge = match broker.edges().by_credential(credential).await {
            Err(Error::Unauthorized) => return Err(broker.sessions().token_miss(ip).into()),
            edge => edge?,
        };
        // The edge's network may use the reserved connection slots, so its reconnect gets in
        // while strangers hold the public ones.
        broker.auth().conns.mark_known(ip);
        Ok(Self(edge))
    }
}

/// A request from a live user session or an enrolled edge, whichever the bearer token is.
pub struct AnyCaller;

impl FromRequestParts<Broker> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, broker).await?;
        let token = bearer(parts).ok_or(Error::Unauthorized)?;
        match broker.sessions().user_of(token).await {
            Ok(_) => return Ok(Self),
            Err(Error::Unauthorized) => {}
            Err(e) => return Err(e.into()),
        }
        match broker.edges().by_credential(token).await {
            Err(Error::Unauthorized) => Err(broker.sessions().token_miss(ip).into()),
            edge => edge.map(|_| Self).map_err(ApiError),
        }
    }
}

impl axum::extract::OptionalFromRequestParts<Broker> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        broker: &Broker,
    ) -> Result<Option<Self>, ApiError> {
        match <Self as FromRequestParts<Broker>>::from_request_parts(parts, broker).await {
            Ok(caller) => Ok(Some(caller)),
            Err(ApiError(Error::Unauthorized)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
