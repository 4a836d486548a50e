//! What a lease gets, as pure arithmetic: a tunnel address from its edge's subnet, a pin on the
//! address it was asked from, and an end; and the grant terms that bound them. No I/O, time
//! passed in, so it is tested without a database.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use grantwire_proto::pin::{DEFAULT_PIN_PREFIX_V4, DEFAULT_PIN_PREFIX_V6};
use grantwire_proto::{Pin, PinError};
use ipnet::Ipv4Net;

/// Subnet sizes an edge may have: /16 leaves room for a large household without making the
/// allocation scan slow; /29 still leaves five client addresses.
pub const MIN_SUBNET_PREFIX: u8 = 16;
pub const MAX_SUBNET_PREFIX: u8 = 29;

/// The edge's own tunnel address: the first host of its subnet.
pub fn edge_address(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Checks an edge subnet and returns it with host bits cleared.
pub fn check_subnet(subnet: Ipv4Net) -> Result<Ipv4Net, String> {
    let p = subnet.prefix_len();
    if !(MIN_SUBNET_PREFIX..=MAX_SUBNET_PREFIX).contains(&p) {
        return Err(format!(
            "subnet prefix must be /{MIN_SUBNET_PREFIX} to /{MAX_SUBNET_PREFIX}, got /{p}"
        ));
    }
    Ok(subnet.trunc())
}

/// The addresses leases of `subnet` may hold, as u32: from the one after the edge's own (the
/// first host) to the last before the broadcast address.
pub fn client_range(subnet: Ipv4Net) -> std::ops::RangeInclusive<u32> {
    let first = u32::from(edge_address(subnet)) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    first..=last
}

/// The lowest address of `subnet` a new lease may take: not the network or broadcast address,
/// not the edge's own address, and not in `used` (addresses of live leases, as u32).
pub fn lowest_free(subnet: Ipv4Net, used: &HashSet<u32>) -> Option<Ipv4Addr> {
    let net = u32::from(subnet.network());
    let broadcast = u32::from(subnet.broadcast());
    let edge = u32::from(edge_address(subnet));
    (net + 1..broadcast)
        .filter(|a| *a != edge)
        .find(|a| !used.contains(a))
        .map(Ipv4Addr::from)
}

/// The pin of a lease requested from `source` (the TCP peer): /32 for IPv4, /64 for IPv6, an
/// IPv4-mapped IPv6 peer pinned as IPv4: the default prefixes of a grant.
pub fn pin_for(source: IpAddr) -> Result<Pin, PinError> {
    Pin::for_source(source, DEFAULT_PIN_PREFIX_V4, DEFAULT_PIN_PREFIX_V6)
}

/// Whether a client at `source` can reach an edge registered with `endpoint` (`HOST:PORT`). A
/// name may resolve to either family, so only an address literal of the other family fails:
/// an IPv6 client pinned to its IPv6 address would send from an address the edge never sees.
pub fn endpoint_serves(endpoint: &str, source: IpAddr) -> bool {
    match endpoint.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().to_canonical().is_ipv4() == source.to_canonical().is_ipv4(),
        Err(_) => true,
    }
}

/// Pin prefix lengths a grant may set. Wider than /8 or /32 would let a lease work from a
/// large part of the internet, which is no pin at all.
pub const PIN_PREFIX4_RANGE: std::ops::RangeInclusive<u8> = 8..=32;
pub const PIN_PREFIX6_RANGE: std::ops::RangeInclusive<u8> = 32..=128;

/// Checks a grant's terms: at least one port and none zero (a `u16` bounds the top), pin
/// prefixes in range, and an end (if any) after `now`.
pub fn check_grant_terms(
    ports: &[u16],
    prefix4: u8,
    prefix6: u8,
    ends_at: Option<i64>,
    now: i64,
) -> Result<(), String> {
    if ports.is_empty() || ports.contains(&0) {
        return Err("ports must be 1 to 65535, at least one".into());
    }
    if !PIN_PREFIX4_RANGE.contains(&prefix4) {
        return Err(format!("pin_prefix4 must be 8 to 32, got {prefix4}"));
    }
    if !PIN_PREFIX6_RANGE.contains(&prefix6) {
        return Err(format!("pin_prefix6 must be 32 to 128, got {prefix6}"));
    }
    if ends_at.is_some_and(|end| end <= now) {
        return Err("the grant's end must be in the future".into());
    }
    if ends_at.is_some_and(|end| end > now.saturating_add(MAX_GRANT_SPAN_SECS)) {
        return Err("the grant's end must be within 100 years (leave it out for no end)".into());
    }
    Ok(())
}

/// How far ahead a grant's end may be set: beyond it a time is a typing slip, and past the
/// year 9999 no page or CLI listing could print it.
pub const MAX_GRANT_SPAN_SECS: i64 = 100 * 366 * 86_400;
/// The longest lease lifetime a grant may give: a lease is meant to end; a year is plenty.
pub const MAX_LEASE_TTL_SECS: u64 = 366 * 86_400;

/// A lease ends after the grant's lease lifetime, but never after the grant itself ends.
pub fn lease_expiry(now: i64, lease_ttl_secs: u64, grant_ends_at: Option<i64>) -> i64 {
    let ttl = i64::try_from(lease_ttl_secs).unwrap_or(i64::MAX);
    let by_ttl = now.saturating_add(ttl);
    match grant_ends_at {
        Some(end) => by_ttl.min(end),
        None => by_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_terms_are_checked() {
        assert!(check_grant_terms(&[32400], 32, 64, None, 100).is_ok());
        assert!(check_grant_terms(&[1, 65535], 8, 32, Some(101), 100).is_ok());
        assert!(check_grant_terms(&[32400], 24, 128, None, 100).is_ok());
        for (ports, p4, p6, end) in [
            (&[][..], 32, 64, None),
            (&[0, 32400][..], 32, 64, None),
            (&[32400][..], 7, 64, None),
            (&[32400][..], 33, 64, None),
            (&[32400][..], 32, 31, None),
            (&[32400][..], 32, 129, None),
            (&[32400][..], 32, 64, Some(100)),
            (&[32400][..], 32, 64, Some(5)),
        ] {
            assert!(
                check_grant_terms(ports, p4, p6, end, 100).is_err(),
                "{ports:?} {p4} {p6} {end:?}"
            );
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocation_skips_network_edge_and_broadcast() {
        let subnet = net("10.77.0.0/29");
        let mut used = HashSet::new();
        let mut got = Vec::new();
        while let Some(a) = lowest_free(subnet, &used) {
            used.insert(u32::from(a));
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            [
                "10.77.0.2",
                "10.77.0.3",
                "10.77.0.4",
                "10.77.0.5",
                "10.77.0.6"
            ]
        );
    }

    #[test]
    fn allocation_reuses_the_lowest_hole() {
        let subnet = net("10.77.0.0/24");
        let used: HashSet<u32> = ["10.77.0.2", "10.77.0.4"]
            .iter()
            .map(|s| u32::from(s.parse::<Ipv4Addr>().unwrap()))
            .collect();
        assert_eq!(
            lowest_free(subnet, &used),
            Some("10.77.0.3".parse().unwrap())
        );
    }

    #[test]
    fn subnet_rules() {
        assert_eq!(
            check_subnet(net("10.77.0.9/24")).unwrap(),
            net("10.77.0.0/24")
        );
        assert!(check_subnet(net("10.0.0.0/8")).is_err());
        assert!(check_subnet(net("10.77.0.0/30")).is_err());
        assert!(check_subnet(net("10.77.0.0/16")).is_ok());
        assert_eq!(
            edge_address(net("10.77.0.0/24")),
            "10.77.0.1".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn pins_follow_the_source_family() {
        let pin = |s: &str| pin_for(s.parse().unwrap()).unwrap().to_string();
        assert_eq!(pin("198.51.100.7"), "198.51.100.7/32");
        assert_eq!(pin("::ffff:198.51.100.7"), "198.51.100.7/32");
        assert_eq!(pin("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert!(pin_for("198.51.100.7".parse().unwrap())
            .unwrap()
            .covers("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn endpoint_family_must_match_a_literal() {
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert!(endpoint_serves("192.0.2.1:51820", v4));
        assert!(endpoint_serves("192.0.2.1:51820", mapped));
        assert!(!endpoint_serves("192.0.2.1:51820", v6));
        assert!(endpoint_serves("[2001:db8::1]:51820", v6));
        assert!(!endpoint_serves("[2001:db8::1]:51820", v4));
        assert!(!endpoint_serves("[2001:db8::1]:51820", mapped));
        assert!(endpoint_serves("plex.example.net:51820", v4));
        assert!(endpoint_serves("plex.example.net:51820", v6));
    }

    #[test]
    fn expiry_never_passes_grant_end() {
        assert_eq!(lease_expiry(1000, 3600, None), 4600);
        assert_eq!(lease_expiry(1000, 3600, Some(2000)), 2000);
        assert_eq!(lease_expiry(1000, 3600, Some(9000)), 4600);
        assert_eq!(lease_expiry(1000, u64::MAX, None), i64::MAX);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever is already taken, the answer is a host of the subnet that is neither the
            /// network, the broadcast, the edge's own address nor taken, and it is the lowest
            /// such address; `None` only when every client address is taken.
            #[test]
            fn lowest_free_is_the_lowest_untaken_client_address(
                base in any::<u32>(),
                prefix in 24u8..=29,
                taken in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let subnet = Ipv4Net::new(Ipv4Addr::from(base), prefix).unwrap().trunc();
                let net = u32::from(subnet.network());
                let size = 1u32 << (32 - u32::from(prefix));
                let used: HashSet<u32> =
                    taken.iter().map(|o| net + u32::from(*o) % size).collect();
                let edge = u32::from(edge_address(subnet));
                let candidates: Vec<u32> = (net + 1..net + size - 1)
                    .filter(|a| *a != edge && !used.contains(a))
                    .collect();
                let got = lowest_free(subnet, &used).map(u32::from);
                prop_assert_eq!(got, candidates.first().copied());
            }

            #[test]
            fn a_lease_never_outlives_its_grant_or_its_ttl(
                now in 0i64..4_000_000_000,
                ttl in 1u64..10_000_000,
                end in proptest::option::of(0i64..4_000_000_000),
            ) {
                let exp = lease_expiry(now, ttl, end);
                prop_assert!(exp <= now + ttl as i64);
                if let Some(end) = end {
                    prop_assert!(exp <= end);
                    prop_assert!(exp == end || exp == now + ttl as i64);
                } else {
                    prop_assert_eq!(exp, now + ttl as i64);
                }
            }
        }
    }
}
