//! Trusted reverse proxies: the only peers whose `X-Forwarded-For` may name the client.
//!
//! The pin is the client's address, so whoever can set it chooses where a lease works from. A
//! header from any other peer is ignored; a header from a trusted proxy is read right to left
//! (each proxy appends the address it saw, so the rightmost entries are the ones our proxies
//! wrote and anything to the left of the first untrusted hop may be client-supplied).

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a connection from `peer` carrying these `X-Forwarded-For`
    /// header values (in order of appearance).
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut entries = Vec::new();
        for value in forwarded_for {
            let Ok(text) = std::str::from_utf8(value) else {
                tracing::debug!(%peer, "X-Forwarded-For is not UTF-8; using the peer address");
                return peer;
            };
            for part in text.split(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => entries.push(ip.to_canonical()),
                    Err(_) => {
                        tracing::debug!(%peer, "malformed X-Forwarded-For; using the peer address");
                        return peer;
                    }
                }
            }
        }
        // Every hop trusted (or no header): the leftmost proxy's own address is the best we know.
        let mut last = peer;
        for ip in entries.into_iter().rev() {
            if !self.trusts(ip) {
                return ip;
            }
            last = ip;
        }
        last
    }
}

/// Parses `CIDR` or a bare address (taken as a host route).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("not a CIDR or address: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| parse_cidr(s).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(p: &TrustedProxies, peer: &str, headers: &[&str]) -> IpAddr {
        p.client_ip(ip(peer), headers.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            client(&p, "198.51.100.7", &["203.0.113.9"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(&proxies(&[]), "127.0.0.1", &["203.0.113.9"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_header_is_read_right_to_left_past_trusted_hops() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.5"]);
        // The client put 1.2.3.4 in itself; our proxies appended what they saw.
        let got = client(&p, "10.0.0.1", &["1.2.3.4, 203.0.113.9, 192.0.2.5"]);
        assert_eq!(got, ip("203.0.113.9"));
        // Several header lines count as one list, in order.
        let got = client(&p, "10.0.0.1", &["1.2.3.4", "203.0.113.9", "10.1.1.1"]);
        assert_eq!(got, ip("203.0.113.9"));
        assert_eq!(client(&p, "10.0.0.1", &["2001:db8::7"]), ip("2001:db8::7"));
        // Only trusted hops: the leftmost of them.
        assert_eq!(client(&p, "10.0.0.1", &["10.9.9.9"]), ip("10.9.9.9"));
        assert_eq!(client(&p, "10.0.0.1", &[]), ip("10.0.0.1"));
    }

    #[test]
    fn a_malformed_header_from_a_proxy_falls_back_to_the_peer() {
        let p = proxies(&["10.0.0.0/8"]);
        for bad in [
            "203.0.113.9, junk",
            "",
            "203.0.113.9:443",
            "for=203.0.113.9",
        ] {
            assert_eq!(client(&p, "10.0.0.1", &[bad]), ip("10.0.0.1"), "{bad}");
        }
        let mapped = client(&p, "::ffff:10.0.0.1", &["::ffff:203.0.113.9"]);
        assert_eq!(mapped, ip("203.0.113.9"));
    }

    #[test]
    fn cidrs_parse() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
    }
}
