//! The tunnel profile a client receives with its lease, and its wg-quick rendering.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{EdgeName, Endpoint, LeaseId, Pin, PlexUrl, PresharedKey, PrivateKey, PublicKey};

/// Everything a WireGuard client needs for one lease except its private key, which never leaves
/// the device: the client adds it when rendering ([`Profile::to_wg_quick`]).
///
/// Every field is a parsed type, so a profile that deserialized renders a wg-quick file with
/// exactly the lines below and nothing a broker slipped in (see [`crate::names`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub lease_id: LeaseId,
    pub edge: EdgeName,
    /// The client's tunnel address (a /32 inside the edge's subnet).
    pub address: Ipv4Addr,
    pub edge_public_key: PublicKey,
    /// `HOST:PORT` of the edge's WireGuard endpoint, as the operator registered it.
    pub endpoint: Endpoint,
    /// Split tunnel: only the edge's tunnel address, so the user's other traffic is untouched.
    pub allowed_ips: Vec<IpNet>,
    pub preshared_key: PresharedKey,
    pub persistent_keepalive: u16,
    /// Where Plex answers inside the tunnel, e.g. `http://10.77.0.1:32400/web`.
    pub plex_url: PlexUrl,
    /// The source prefix the edge admits this peer from.
    pub pin: Pin,
    /// Unix seconds after which the edge drops the peer.
    pub expires_at: i64,
}

impl Profile {
    /// Renders the profile as a wg-quick configuration file. The comment lines carry what a
    /// person needs to know; `wg-quick strip` and the WireGuard apps ignore them.
    pub fn to_wg_quick(&self, private_key: &PrivateKey) -> String {
        self.render(Some(private_key))
    }

    /// The wg-quick file without its `PrivateKey` line, for a client that holds the key where
    /// the broker cannot see it (the web page's browser-made key): inserting
    /// `PrivateKey = <base64>` right after the `[Interface]` line gives exactly
    /// [`Profile::to_wg_quick`]'s text.
    pub fn to_wg_quick_without_key(&self) -> String {
        self.render(None)
    }

    fn render(&self, private_key: Option<&PrivateKey>) -> String {
        let allowed = self
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# grantwire lease {} for edge {}",
            self.lease_id, self.edge
        );
        let _ = writeln!(out, "# Plex: {}", self.plex_url);
        let _ = writeln!(
            out,
            "# Works only from {} until unix time {}.",
            self.pin, self.expires_at
        );
        let _ = writeln!(out, "[Interface]");
        if let Some(key) = private_key {
            let _ = writeln!(out, "PrivateKey = {}", key.to_base64());
        }
        let _ = writeln!(out, "Address = {}/32", self.address);
        let _ = writeln!(out);
        let _ = writeln!(out, "[Peer]");
        let _ = writeln!(out, "PublicKey = {}", self.edge_public_key);
        let _ = writeln!(out, "PresharedKey = {}", self.preshared_key.to_base64());
        let _ = writeln!(out, "AllowedIPs = {allowed}");
        let _ = writeln!(out, "Endpoint = {}", self.endpoint);
        let _ = writeln!(out, "PersistentKeepalive = {}", self.persistent_keepalive);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Profile {
        Profile {
            lease_id: "l-1".parse().unwrap(),
            edge: "home".parse().unwrap(),
            address: "10.77.0.2".parse().unwrap(),
            edge_public_key: PrivateKey::from_random_bytes([1; 32]).public_key(),
            endpoint: "192.0.2.1:51820".parse().unwrap(),
            allowed_ips: vec!["10.77.0.1/32".parse().unwrap()],
            preshared_key: PresharedKey::from_bytes([2; 32]),
            persistent_keepalive: 25,
            plex_url: "http://10.77.0.1:32400/web".parse().unwrap(),
            pin: "198.51.100.7/32".parse().unwrap(),
            expires_at: 1_700_000_000,
        }
    }

    #[test]
    fn wg_quick_has_every_field_once() {
        let p = sample();
        let sk = PrivateKey::from_random_bytes([3; 32]);
        let text = p.to_wg_quick(&sk);
        let lines: Vec<&str> = text.lines().collect();
        let expect = [
            "[Interface]".to_string(),
            format!("PrivateKey = {}", sk.to_base64()),
            "Address = 10.77.0.2/32".to_string(),
            "[Peer]".to_string(),
            format!("PublicKey = {}", p.edge_public_key),
            format!("PresharedKey = {}", p.preshared_key.to_base64()),
            "AllowedIPs = 10.77.0.1/32".to_string(),
            "Endpoint = 192.0.2.1:51820".to_string(),
            "PersistentKeepalive = 25".to_string(),
        ];
        for want in &expect {
            assert_eq!(
                lines.iter().filter(|l| *l == want).count(),
                1,
                "{want}\n{text}"
            );
        }
        // Interface section precedes Peer section, as wg-quick requires.
        let i = lines.iter().position(|l| *l == "[Interface]").unwrap();
        let j = lines.iter().position(|l| *l == "[Peer]").unwrap();
        assert!(i < j);
        assert!(text.contains("# Plex: http://10.77.0.1:32400/web"));
    }

    #[test]
    fn the_keyless_file_plus_the_key_line_after_interface_is_the_whole_file() {
        let p = sample();
        let sk = PrivateKey::from_random_bytes([3; 32]);
        let keyless = p.to_wg_quick_without_key();
        assert!(!keyless.contains("PrivateKey"), "{keyless}");
        let with_key = keyless.replacen(
            "[Interface]\n",
            &format!("[Interface]\nPrivateKey = {}\n", sk.to_base64()),
            1,
        );
        assert_eq!(with_key, p.to_wg_quick(&sk));
    }

    #[test]
    fn json_round_trip_keeps_keys() {
        let p = sample();
        let json = serde_json::to_string(&p).unwrap();
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn json_with_any_field_out_of_shape_is_refused() {
        let hostile = [
            ("endpoint", "203.0.113.5:51820\nPostUp = touch /tmp/pwned"),
            ("edge", "home\nPostUp = x"),
            ("edge", "../x"),
            ("edge", "a/b"),
            ("lease_id", "l-1\nPostUp = x"),
            ("plex_url", "http://10.77.0.1:32400/web\nPostUp = x"),
            ("preshared_key", "not base64\nPostUp = x"),
            ("edge_public_key", "AAAA"),
            ("address", "10.77.0.2\nPostUp = x"),
            ("allowed_ips", "10.77.0.1/32"),
            ("pin", "198.51.100.7/32\nPostUp = x"),
        ];
        for (field, value) in hostile {
            let mut v = serde_json::to_value(sample()).unwrap();
            v[field] = serde_json::Value::String(value.into());
            assert!(
                serde_json::from_value::<Profile>(v).is_err(),
                "{field} = {value:?}"
            );
        }
    }

    #[test]
    fn json_with_low_order_edge_key_is_refused() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["edge_public_key"] = serde_json::Value::String(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [0u8; 32],
        ));
        assert!(serde_json::from_value::<Profile>(v).is_err());
    }
}
