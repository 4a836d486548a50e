//! An edge's endpoint as a client of one address family gets it (scenario B8, a dual-stack
//! mismatch). A lease is pinned to the family the client reached the broker over, so its
//! WireGuard datagrams must go to the edge over that family too: from the other family they
//! come from an address outside the pin and are dropped, silently.
//!
//! An address literal of the client's family is handed out as it is (one of the other family
//! is refused, see `no_endpoint_for`). A host name (an owner's dynamic-DNS name, say) is
//! resolved by the broker when the lease is issued or renewed, before its transaction:
//!
//! - addresses of the client's family only: the name is handed out, so a client that brings its
//!   tunnel up again later follows the name to a new address;
//! - addresses of both families: the client's WireGuard might pick the other family, so the
//!   first address of the client's family is handed out instead of the name;
//! - none of the client's family: refused (409), saying what the broker found, since such a
//!   lease could never connect;
//! - no answer within [`RESOLVE_TIMEOUT`], or an error: 503 with `Retry-After`, since DNS may
//!   answer in a moment (`grantwire watch` retries it; `profile` keeps its key for the retry).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::edges::EdgeRow;

/// How long a lease request waits for DNS.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// What a client is told to wait after a name did not resolve (503 `Retry-After`).
pub const UNRESOLVED_RETRY_AFTER_SECS: u64 = 5;

/// What an edge's endpoint name stood for, for a client at `source`, when it was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The endpoint as stored (`NAME:PORT`).
    pub endpoint: String,
    /// What to hand out, or why the lease is refused.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every address is of the client's family: hand out the name.
    Name,
    /// Both families: hand out this address of the client's.
    Address(SocketAddr),
    /// The name's addresses, none of the client's family.
    OtherFamily(Vec<IpAddr>),
    /// No answer: the resolver's error, or a timeout.
    Unresolved(String),
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical().is_ipv4() == b.to_canonical().is_ipv4()
}

/// Sorts a name's addresses for a client at `source` (see the module comment).
pub fn judge(endpoint: &str, source: IpAddr, addrs: &[SocketAddr]) -> Resolved {
    let ours: Vec<&SocketAddr> = addrs
        .iter()
        .filter(|a| same_family(a.ip(), source))
        .collect();
    let outcome = match ours.first() {
        None if addrs.is_empty() => Outcome::Unresolved("the name has no addresses".into()),
        None => {
            let mut ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            ips.dedup();
            Outcome::OtherFamily(ips)
        }
        Some(_) if ours.len() == addrs.len() => Outcome::Name,
        Some(first) => Outcome::Address(**first),
    };
    Resolved {
        endpoint: endpoint.to_owned(),
        outcome,
    }
}

/// Lookups running at once. Each holds a thread of tokio's blocking pool (getaddrinfo) until
/// the resolver answers, which the timeout above does not shorten: the permit goes with the
/// thread, so against a resolver that never answers a lease storm cannot take the threads that
/// database reads and password checks share.
const CONCURRENT_LOOKUPS: usize = 4;
static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_LOOKUPS);

/// Looks `endpoint` (`NAME:PORT`) up for a client at `source`; `None` for an address literal,
/// which needs no lookup. Every lease asks afresh (the resolver's own cache, if any, spares
/// DNS), so a changed address is seen at once.
pub async fn resolve(endpoint: &str, source: IpAddr) -> Option<Resolved> {
    if endpoint.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let unresolved = |why: String| Resolved {
        endpoint: endpoint.to_owned(),
        outcome: Outcome::Unresolved(why),
    };
    let waited = format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs());
    let name = endpoint.to_owned();
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, async move {
        let permit = LOOKUPS.acquire().await.map_err(std::io::Error::other)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            std::net::ToSocketAddrs::to_socket_addrs(&name).map(Iterator::collect::<Vec<_>>)
        })
        .await
        .map_err(std::io::Error::other)?
    })
    .await;
    Some(match lookup {
        Ok(Ok(addrs)) => judge(endpoint, source, &addrs),
        Ok(Err(e)) => unresolved(e.to_string()),
        Err(_) => unresolved(waited),
    })
}

/// The endpoint a lease on `edge` for a client at `source` names, given what its name was
/// found to stand for just before the transaction (`resolved`).
pub fn for_client(edge: &EdgeRow, source: IpAddr, resolved: Option<&Resolved>) -> Result<String> {
    let endpoint = edge
        .endpoint_for(source)
        .ok_or_else(|| no_endpoint_for(&edge.name, source))?;
    if endpoint.parse::<SocketAddr>().is_ok() {
        return Ok(endpoint);
    }
    let family = family(source);
    let Some(resolved) = resolved.filter(|r| r.endpoint == endpoint) else {
        // Looked up under another name: the edge was replaced between the two steps.
        return Err(Error::Conflict(format!(
            "edge {}'s endpoint changed while your lease was being made; ask again",
            edge.name
        )));
    };
    match &resolved.outcome {
        Outcome::Name => Ok(endpoint),
        Outcome::Address(addr) => Ok(addr.to_string()),
        Outcome::OtherFamily(ips) => {
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            Err(Error::Conflict(format!(
                "the broker sees you over {family} (at {}), but edge {}'s endpoint {endpoint} \
                 has no {family} address (it resolves to {}), so a lease pinned to your address \
                 could never connect; reach the broker over the other address family, or ask \
                 its operator to give the name an {family} address",
                source.to_canonical(),
                edge.name,
                ips.join(", ")
            )))
        }
        Outcome::Unresolved(why) => Err(Error::Unavailable {
            message: format!(
                "the broker could not resolve edge {}'s endpoint {endpoint} ({why}), so it \
                 cannot tell which address your {family} lease must use; try again, and if it \
                 persists ask its operator to check the name",
                edge.name
            ),
            retry_after: UNRESOLVED_RETRY_AFTER_SECS,
        }),
    }
}

fn family(source: IpAddr) -> &'static str {
    if source.to_canonical().is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The refusal of a lease, or a renewal, for a client that reached the broker over one address
/// family on an edge with no endpoint of that family. The lease would be pinned to an address
/// of that family and its profile would name the other's endpoint: the client's datagrams
/// would come from an address outside the pin and the tunnel could never come up. So it is
/// refused, saying what the user and the operator can do.
pub fn no_endpoint_for(edge: &str, source: IpAddr) -> Error {
    let family = family(source);
    Error::Conflict(format!(
        "the broker sees you over {family} (at {}), but edge {edge} has no {family} endpoint, so \
         a lease pinned to that address could never connect; reach the broker over the other \
         address family, or ask its operator to add an {family} endpoint to edge {edge}",
        source.to_canonical()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_name_of_the_clients_family_only_is_handed_out_as_the_name() {
        let v4: IpAddr = "198.51.100.9".parse().unwrap();
        let r = judge("home.test:51820", v4, &addrs(&["192.0.2.1:51820"]));
        assert_eq!(r.outcome, Outcome::Name);
    }

    #[test]
    fn a_dual_stack_name_is_handed_out_as_the_clients_family_address() {
        let both = addrs(&[
            "[2001:db8:1::1]:51820",
            "192.0.2.1:51820",
            "192.0.2.7:51820",
        ]);
        let v4: IpAddr = "198.51.100.9".parse().unwrap();
        let v6: IpAddr = "2001:db8:9::2".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
        let first4 = Outcome::Address("192.0.2.1:51820".parse().unwrap());
        assert_eq!(judge("h:51820", v4, &both).outcome, first4);
        assert_eq!(judge("h:51820", mapped, &both).outcome, first4);
        assert_eq!(
            judge("h:51820", v6, &both).outcome,
            Outcome::Address("[2001:db8:1::1]:51820".parse().unwrap())
        );
    }

    #[test]
    fn a_name_without_the_clients_family_or_without_addresses_is_refused_saying_so() {
        let v6: IpAddr = "2001:db8:9::2".parse().unwrap();
        let r = judge("home.test:51820", v6, &addrs(&["192.0.2.1:51820"]));
        assert_eq!(
            r.outcome,
            Outcome::OtherFamily(vec!["192.0.2.1".parse().unwrap()])
        );
        let empty = judge("home.test:51820", v6, &[]);
        assert!(matches!(empty.outcome, Outcome::Unresolved(_)));
    }

    #[tokio::test]
    async fn literals_need_no_lookup() {
        let v4: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(resolve("192.0.2.1:51820", v4).await, None);
        assert_eq!(resolve("[2001:db8::1]:51820", v4).await, None);
    }
}
