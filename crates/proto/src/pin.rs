//! The source-address pin of a lease: the prefix a client's WireGuard datagrams must come from.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default pin prefix lengths (DESIGN.md): one IPv4 address, one IPv6 /64 (a host's privacy
/// addresses rotate inside its /64).
pub const DEFAULT_PIN_PREFIX_V4: u8 = 32;
pub const DEFAULT_PIN_PREFIX_V6: u8 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("not an address prefix like 192.0.2.7/32 or 2001:db8::/64")]
    Syntax,
    #[error("prefix length {0} is out of range for the address family")]
    Length(u8),
    #[error("a pin may not be a wildcard prefix shorter than /{min}")]
    TooWide { min: u8 },
}

/// A source-address prefix, host bits cleared. IPv4-mapped IPv6 sources are stored as IPv4, so a
/// dual-stack socket and an IPv4 socket pin the same client the same way.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin(IpNet);

/// Pins wider than this would turn a lease into "from anywhere", which grantwire never issues.
const MIN_PREFIX_V4: u8 = 8;
const MIN_PREFIX_V6: u8 = 32;

impl Pin {
    /// The pin for a client seen at `source`, masked to the grant's prefix length for its family.
    pub fn for_source(source: IpAddr, prefix_v4: u8, prefix_v6: u8) -> Result<Self, PinError> {
        let source = source.to_canonical();
        let len = match source {
            IpAddr::V4(_) => prefix_v4,
            IpAddr::V6(_) => prefix_v6,
        };
        Self::new(source, len)
    }

    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PinError> {
        let addr = addr.to_canonical();
        let min = match addr {
            IpAddr::V4(_) => MIN_PREFIX_V4,
            IpAddr::V6(_) => MIN_PREFIX_V6,
        };
        let net = IpNet::new(addr, len).map_err(|_| PinError::Length(len))?;
        if len < min {
            return Err(PinError::TooWide { min });
        }
        Ok(Self(net.trunc()))
    }

    /// Whether a datagram from `source` may belong to this pin's lease.
    pub fn covers(&self, source: IpAddr) -> bool {
        self.0.contains(&source.to_canonical())
    }

    pub fn network(&self) -> IpNet {
        self.0
    }
}

impl FromStr for Pin {
    type Err = PinError;
    fn from_str(s: &str) -> Result<Self, PinError> {
        let net: IpNet = s.trim().parse().map_err(|_| PinError::Syntax)?;
        Self::new(net.addr(), net.prefix_len())
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({})", self.0)
    }
}

impl Serialize for Pin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn v4_pin_covers_only_its_address() {
        let pin = Pin::for_source("192.0.2.7".parse().unwrap(), 32, 64).unwrap();
        assert_eq!(pin.to_string(), "192.0.2.7/32");
        assert!(pin.covers("192.0.2.7".parse().unwrap()));
        assert!(!pin.covers("192.0.2.8".parse().unwrap()));
        assert!(!pin.covers("::ffff:192.0.2.8".parse().unwrap()));
        assert!(pin.covers("::ffff:192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn v6_pin_is_masked_to_64() {
        let pin = Pin::for_source("2001:db8:1:2:aaaa::1".parse().unwrap(), 32, 64).unwrap();
        assert_eq!(pin.to_string(), "2001:db8:1:2::/64");
        assert!(pin.covers("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert!(!pin.covers("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn mapped_source_pins_as_v4() {
        let pin = Pin::for_source("::ffff:198.51.100.4".parse().unwrap(), 32, 64).unwrap();
        assert_eq!(pin.to_string(), "198.51.100.4/32");
    }

    #[test]
    fn refuses_wildcards_and_garbage() {
        assert_eq!(
            "0.0.0.0/0".parse::<Pin>(),
            Err(PinError::TooWide { min: 8 })
        );
        assert_eq!("::/0".parse::<Pin>(), Err(PinError::TooWide { min: 32 }));
        assert_eq!(
            Pin::new("192.0.2.1".parse().unwrap(), 33),
            Err(PinError::Length(33))
        );
        assert_eq!("192.0.2.1/33".parse::<Pin>(), Err(PinError::Syntax));
        assert_eq!("nonsense".parse::<Pin>(), Err(PinError::Syntax));
    }

    proptest! {
        #[test]
        fn v4_pin_covers_exactly_its_prefix(a in any::<u32>(), b in any::<u32>(), len in 8u8..=32) {
            let pin = Pin::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap();
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            let same = (a & mask) == (b & mask);
            prop_assert_eq!(pin.covers(IpAddr::V4(Ipv4Addr::from(b))), same);
            prop_assert_eq!(pin.to_string().parse::<Pin>().unwrap(), pin);
        }

        #[test]
        fn v6_pin_covers_exactly_its_prefix(a in any::<u128>(), b in any::<u128>(), len in 32u8..=128) {
            // Skip v4-mapped space, which canonicalises to IPv4 by design.
            prop_assume!((a >> 32) != 0xffff && (b >> 32) != 0xffff);
            let pin = Pin::new(IpAddr::V6(Ipv6Addr::from(a)), len).unwrap();
            let mask = u128::MAX << (128 - u32::from(len));
            prop_assert_eq!(pin.covers(IpAddr::V6(Ipv6Addr::from(b))), (a & mask) == (b & mask));
        }
    }
}
