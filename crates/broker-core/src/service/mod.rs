//! The broker's operations, grouped by concern. Each file holds the operations on one thing,
//! whoever calls them (the API, the web pages or the admin socket), as methods of a small handle
//! that borrows the [`Broker`]'s shared state: `broker.grants().revoke(req)`. A concern's
//! handle reaches the state (database, clock, edge channel) through `self.broker`, and another
//! concern only through that concern's handle, so each file reads on its own:
//!
//! - [`accounts`]: users, as the operator adds, lists, disables, resets and removes them;
//! - [`sessions`]: login (password + TOTP), sessions, logout, and the failure and per-source
//!   budgets that slow guessing down;
//! - [`invites`]: users invited with a temporary password, and their first sign-in, where they
//!   set their own password and TOTP secret ("enrol" is only ever said of edges);
//! - [`edges`]: edges added by the operator, their enrolment, lease sets and reports;
//! - [`grants`]: who may reach which edge, on what terms;
//! - [`leases`]: issuing, renewing, listing and revoking leases, and their expiry;
//! - [`access`]: what a signed-in user sees of their own access;
//! - [`audit`]: the audit log's query and the rows the web pages add.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod edges;
pub mod endpoint;
pub mod grants;
pub mod invites;
pub mod leases;
pub mod sessions;

use crate::broker::Broker;
use crate::error::{Error, Result};

/// Declares a concern's handle: a borrow of the broker, made by `Broker::<concern>()`.
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            pub(crate) broker: &'a Broker,
        }
    };
}

handle!(
    /// [`accounts`]' operations: `broker.accounts()`.
    Accounts
);
handle!(
    /// [`sessions`]' operations: `broker.sessions()`.
    Sessions
);
handle!(
    /// [`invites`]' operations: `broker.invites()`.
    Invites
);
handle!(
    /// [`edges`]' operations: `broker.edges()`.
    Edges
);
handle!(
    /// [`grants`]' operations: `broker.grants()`.
    Grants
);
handle!(
    /// [`leases`]' operations: `broker.leases()`.
    Leases
);
handle!(
    /// [`access`]' operations: `broker.access()`.
    Access
);
handle!(
    /// [`audit`]' operations: `broker.audit()`.
    Audit
);

/// `what` is "edge" for a [`grantwire_proto::EdgeName`], anything else ("user") for a
/// [`grantwire_proto::UserName`]: names appear in URIs, file names and audit lines unescaped,
/// and clients parse them by the same types, so what is accepted here can be sent to them.
pub fn check_name(name: &str, what: &str) -> Result<()> {
    let parsed = match what {
        "edge" => name.parse::<grantwire_proto::EdgeName>().map(drop),
        _ => name.parse::<grantwire_proto::UserName>().map(drop),
    };
    parsed.map_err(|e| Error::BadRequest(format!("{what} name must be {}", e.rule())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_by_the_proto_rules() {
        assert!(check_name("home-1", "edge").is_ok());
        assert!(check_name("alice", "user").is_ok());
        for bad in ["", "Home", "a b", "x".repeat(33).as_str(), "é"] {
            assert!(check_name(bad, "edge").is_err(), "{bad}");
            assert!(check_name(bad, "user").is_err(), "{bad}");
        }
    }
}
