//! Per-source budgets as extractors: a login or lease route takes one before its handler runs,
//! and a source without one left is answered 429 (the policy is `crate::throttle`'s).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ClientIp;
use crate::answer::ApiError;
use crate::broker::Broker;

/// Extractor: spends one token of the source's login budget, or answers 429.
pub struct LoginBudget;

impl FromRequestParts<Broker> for LoginBudget {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, broker).await?;
        broker.sessions().spend_login(ip)?;
        Ok(Self)
    }
}

/// Extractor: spends one token of the source's lease budget, or answers 429.
pub struct LeaseBudget;

impl FromRequestParts<Broker> for LeaseBudget {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, broker).await?;
        Self::take(broker, ip)
    }
}

impl LeaseBudget {
    /// Spends one lease request of `ip`'s budget. For handlers that must check a session and
    /// a form token first, so that a request that proves nothing cannot spend a signed-in
    /// user's budget at the same address (the API's routes take the session extractor first).
    pub fn take(broker: &Broker, ip: std::net::IpAddr) -> Result<Self, ApiError> {
        broker.sessions().spend_lease(ip)?;
        Ok(Self)
    }
}
