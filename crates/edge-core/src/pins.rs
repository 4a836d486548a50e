//! [`PinIndex`]: whether any lease's pin covers a source address, in time independent of the
//! number of leases. Every datagram asks this first, so with 10,000 leases a scan of all pins
//! would cost more than the WireGuard work itself.
//!
//! Pins are prefixes of a few lengths (one per grant setting: /32 and /64 by default), so the
//! index keeps the masked networks in one hash map and the lengths in use beside it; a lookup
//! masks the address once per length in use for its family.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use grantwire_proto::Pin;
use ipnet::IpNet;

#[derive(Debug, Default)]
pub(crate) struct PinIndex {
    /// Each pin's network, with how many leases hold it (two clients behind one NAT share one).
    nets: HashMap<IpNet, usize>,
    /// (is IPv6, prefix length) of the pins held, with how many leases use it.
    lengths: BTreeMap<(bool, u8), usize>,
}

impl PinIndex {
    /// Empties the index, sized for `leases` pins to come. Fresh maps rather than `clear`,
    /// which keeps the capacity of the largest set ever held (half a megabyte at 10,000).
    pub fn reset(&mut self, leases: usize) {
        self.nets = HashMap::with_capacity(leases);
        self.lengths.clear();
    }

    pub fn add(&mut self, pin: &Pin) {
        let net = pin.network();
        *self.nets.entry(net).or_default() += 1;
        *self.lengths.entry(key(&net)).or_default() += 1;
    }

    pub fn remove(&mut self, pin: &Pin) {
        let net = pin.network();
        if let Some(n) = self.nets.get_mut(&net) {
            *n -= 1;
            if *n == 0 {
                self.nets.remove(&net);
            }
        }
        let len = key(&net);
        if let Some(n) = self.lengths.get_mut(&len) {
            *n -= 1;
            if *n == 0 {
                self.lengths.remove(&len);
            }
        }
    }

    /// Whether some pin covers `ip` (canonical: an IPv4-mapped IPv6 address counts as IPv4,
    /// as pins are stored).
    pub fn covers(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let v6 = ip.is_ipv6();
        self.lengths
            .range((v6, 0)..=(v6, u8::MAX))
            .any(|(&(_, len), _)| {
                IpNet::new(ip, len).is_ok_and(|net| self.nets.contains_key(&net.trunc()))
            })
    }
}

fn key(net: &IpNet) -> (bool, u8) {
    (matches!(net, IpNet::V6(_)), net.prefix_len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pin(s: &str) -> Pin {
        s.parse().unwrap()
    }

    #[test]
    fn covers_what_its_pins_cover_and_forgets_a_removed_one() {
        let mut index = PinIndex::default();
        let nat = pin("192.0.2.7/32");
        index.add(&nat);
        index.add(&nat);
        index.add(&pin("198.51.100.0/24"));
        index.add(&pin("2001:db8:1::/64"));
        for (ip, covered) in [
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("198.51.100.200", true),
            ("2001:db8:1::99", true),
            ("2001:db8:2::1", false),
            ("::ffff:192.0.2.7", true),
        ] {
            assert_eq!(index.covers(ip.parse().unwrap()), covered, "{ip}");
        }
        // Two leases held the NAT address: it stays covered until both are gone.
        index.remove(&nat);
        assert!(index.covers("192.0.2.7".parse().unwrap()));
        index.remove(&nat);
        assert!(!index.covers("192.0.2.7".parse().unwrap()));
        index.reset(0);
        assert!(!index.covers("198.51.100.1".parse().unwrap()));
    }

    proptest! {
        /// The index answers exactly as a scan of every pin would.
        #[test]
        fn agrees_with_a_scan(
            pins in proptest::collection::vec((any::<[u8; 4]>(), 8u8..=32), 0..20),
            probes in proptest::collection::vec(any::<[u8; 4]>(), 1..20),
        ) {
            let pins: Vec<Pin> = pins
                .iter()
                .map(|(a, len)| Pin::new(IpAddr::from(*a), *len).unwrap())
                .collect();
            let mut index = PinIndex::default();
            for p in &pins {
                index.add(p);
            }
            // Probe both the pins' own addresses and arbitrary ones.
            let ips = pins
                .iter()
                .map(|p| p.network().addr())
                .chain(probes.iter().map(|a| IpAddr::from(*a)));
            for ip in ips {
                prop_assert_eq!(index.covers(ip), pins.iter().any(|p| p.covers(ip)), "{}", ip);
            }
        }
    }
}
