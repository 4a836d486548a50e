//! What a signed-in user sees of their own access: the address the broker sees them at, their
//! live leases (each with whether it is pinned there), and the edges they hold grants on. The
//! web pages render this and decide nothing themselves.

use std::net::IpAddr;

use grantwire_proto::{GrantInfo, LeaseInfo, LeaseListResponse, WhoamiLease, WhoamiResponse};

use crate::error::Result;
use crate::service::leases::wire_field;
use crate::service::Access;
use crate::store::users::SessionUser;
use crate::store::{edges, leases};

/// One user's access, as of `now`.
#[derive(Debug, Clone)]
pub struct AccessOverview {
    pub user: String,
    /// The client's address as the broker sees it (what a renewal would pin to).
    pub source_ip: IpAddr,
    pub leases: Vec<AccessLease>,
    pub grants: Vec<GrantInfo>,
    /// Unix seconds the overview was read at; expiry countdowns count from here.
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct AccessLease {
    pub lease: LeaseInfo,
    /// Whether the lease's pin covers [`AccessOverview::source_ip`].
    pub pinned_here: bool,
}

impl Access<'_> {
    /// The signed-in user's access overview, read in one go.
    pub async fn overview(&self, user: &SessionUser, source: IpAddr) -> Result<AccessOverview> {
        let now = self.broker.now();
        let id = user.user_id;
        let (rows, grants) = self
            .broker
            .db()
            .read(move |c| {
                let tx = c.unchecked_transaction()?;
                let rows = leases::live_for_user(&tx, id, now)?;
                Ok((rows, edges::live_grants_for_user(&tx, id, now)?))
            })
            .await?;
        let leases = rows
            .iter()
            .map(|r| {
                let lease = r.to_info()?;
                Ok(AccessLease {
                    pinned_here: lease.pin.covers(source),
                    lease,
                })
            })
            .collect::<Result<_>>()?;
        let grants = grants
            .iter()
            .map(edges::GrantListRow::to_info)
            .collect::<Result<_>>()?;
        Ok(AccessOverview {
            user: user.name.clone(),
            source_ip: source.to_canonical(),
            leases,
            grants,
            now,
        })
    }

    /// Who the session is, the address the broker sees it at, and whether each of its live
    /// leases is pinned there.
    pub async fn whoami(&self, user: &SessionUser, source: IpAddr) -> Result<WhoamiResponse> {
        let leases = self
            .live_leases(user)
            .await?
            .into_iter()
            .map(|info| {
                Ok(WhoamiLease {
                    pinned_here: info.pin.covers(source),
                    id: wire_field(&info.id)?,
                    edge: wire_field(&info.edge)?,
                    pin: info.pin,
                    expires_at: info.expires_at,
                    last_handshake_at: info.usage.and_then(|u| u.last_handshake_at),
                })
            })
            .collect::<Result<_>>()?;
        Ok(WhoamiResponse {
            user: user.name.clone(),
            source_ip: source.to_canonical(),
            leases,
            now: Some(self.broker.now()),
        })
    }

    /// The caller's own live leases, with what their edges last reported (the last handshake).
    pub async fn leases(&self, user: &SessionUser) -> Result<LeaseListResponse> {
        let leases = self.live_leases(user).await?;
        Ok(LeaseListResponse { leases })
    }

    async fn live_leases(&self, user: &SessionUser) -> Result<Vec<LeaseInfo>> {
        let (id, now) = (user.user_id, self.broker.now());
        let rows = self
            .broker
            .db()
            .read(move |c| leases::live_for_user(c, id, now))
            .await?;
        rows.iter().map(|r| r.to_info()).collect()
    }
}
