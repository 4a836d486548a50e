//! What a signed-in user sees of their own access: the address the broker sees them at, their
//! live leases (each with whether it is pinned there), and the edges they hold grants on. The
//! web pages render this and decide nothing themselves.

use std::net::IpAddr;

use grantwire_proto::{GrantInfo, LeaseInfo};

use crate::broker::Broker;
use crate::error::Result;
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

impl Broker {
    /// The signed-in user's access overview, read in one go.
    pub async fn access_overview(
        &self,
        user: &SessionUser,
        source: IpAddr,
    ) -> Result<AccessOverview> {
        let now = self.now();
        let id = user.user_id;
        let (rows, grants) = self
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
}
