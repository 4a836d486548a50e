//! The checks: one pure function of Plex's preferences, the host's facts and the tunnel.
//!
//! Severity follows one rule. An error lets something other than a lease reach Plex (Remote
//! Access, a router forward, a Plex port with no guard), lets the tunnel skip Plex's own
//! sign-in, or leaves the doctor unable to tell. A warning is a narrower or LAN-only exposure,
//! or a setting that keeps grantwire from working well without opening anything.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::Url;
use serde::Serialize;

use super::host::{HostFacts, Listener, Proto};
use super::prefs::{
    PlexPrefs, ALLOWED_NETWORKS, CUSTOM_CONNECTIONS, DLNA, DLNA_DEFAULT, GDM, GDM_DEFAULT,
    MANUAL_PORT_MAPPING, RELAY, RELAY_DEFAULT, REMOTE_ACCESS,
};
use crate::guard::{TableState, PLEX_TCP_PORTS, PLEX_UDP_PORTS};

/// Plex's HTTP port, the one a lease grants.
pub const PLEX_PORT: u16 = 32400;

/// The tunnel the checks hold Plex's settings against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    pub subnet: Ipv4Net,
    /// The edge's own address in the subnet, where Plex answers leased peers.
    pub address: Ipv4Addr,
}

impl Tunnel {
    /// What belongs in "Custom server access URLs".
    pub fn plex_url(&self) -> String {
        format!("http://{}:{PLEX_PORT}", self.address)
    }
}

/// Stable names: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingId {
    RemoteAccessOn,
    UpnpOn,
    AllowedNetworksCoverTunnel,
    AllowedNetworksSet,
    DlnaOn,
    GdmOn,
    RelayOn,
    CustomUrlMissing,
    PlexPortExposed,
    PlexPortGuardUnknown,
}

impl FindingId {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RemoteAccessOn => "remote_access_on",
            Self::UpnpOn => "upnp_on",
            Self::AllowedNetworksCoverTunnel => "allowed_networks_cover_tunnel",
            Self::AllowedNetworksSet => "allowed_networks_set",
            Self::DlnaOn => "dlna_on",
            Self::GdmOn => "gdm_on",
            Self::RelayOn => "relay_on",
            Self::CustomUrlMissing => "custom_url_missing",
            Self::PlexPortExposed => "plex_port_exposed",
            Self::PlexPortGuardUnknown => "plex_port_guard_unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: FindingId,
    pub severity: Severity,
    /// One line: what is wrong and why it matters here.
    pub problem: String,
    /// The exact change: the Plex setting, the Preferences.xml attribute, or the command.
    pub fix: String,
}

/// Every problem found, errors first.
pub fn check(prefs: &PlexPrefs, host: &HostFacts, tunnel: &Tunnel) -> Vec<Finding> {
    let mut found = Vec::new();
    remote_access(prefs, &mut found);
    allowed_networks(prefs, tunnel, &mut found);
    discovery_and_relay(prefs, &mut found);
    custom_url(prefs, tunnel, &mut found);
    exposure(host, &mut found);
    found.sort_by_key(|f| f.severity);
    found
}

fn remote_access(prefs: &PlexPrefs, found: &mut Vec<Finding>) {
    // Plex leaves Remote Access off until it is enabled, so an absent key means off.
    if !prefs.flag(REMOTE_ACCESS, false) {
        return;
    }
    found.push(Finding {
        id: FindingId::RemoteAccessOn,
        severity: Severity::Error,
        problem: format!(
            "Remote Access is on ({}): Plex publishes this server's public address to plex.tv \
             and wants a port open to the internet, which is what grantwire replaces",
            shown(prefs, REMOTE_ACCESS)
        ),
        fix: pref_fix(
            "Plex Web → Settings → Remote Access → Disable Remote Access",
            "PublishServerOnPlexOnlineKey=\"0\"",
        ),
    });
    // As far as Plex documents it ("Enabling Remote Access for a Server"), it maps a port
    // through UPnP/NAT-PMP only as part of Remote Access, so without it this setting is moot.
    if !prefs.flag(MANUAL_PORT_MAPPING, false) {
        found.push(Finding {
            id: FindingId::UpnpOn,
            severity: Severity::Error,
            problem: format!(
                "Remote Access maps its port automatically ({}): Plex asks the router through \
                 UPnP/NAT-PMP to forward a public port to it, and that forward stays when the \
                 edge stops and removes its guard",
                shown(prefs, MANUAL_PORT_MAPPING)
            ),
            fix: format!(
                "Disable Remote Access (remote_access_on), then delete any forward to this host's \
                 port {PLEX_PORT} in the router's UPnP / port-forwarding table and switch UPnP \
                 off on the router"
            ),
        });
    }
}

fn allowed_networks(prefs: &PlexPrefs, tunnel: &Tunnel, found: &mut Vec<Finding>) {
    let entries = plex_networks(prefs.get(ALLOWED_NETWORKS).unwrap_or(""));
    let (cover, other): (Vec<_>, Vec<_>) = entries
        .iter()
        .partition(|(_, net)| net.is_some_and(|n| overlaps_tunnel(&n, tunnel.subnet)));
    let fix = pref_fix(
        "Plex Web → Settings → Network (Show Advanced) → empty \"List of IP addresses and \
         networks that are allowed without auth\"",
        "allowedNetworks=\"\"",
    );
    if !cover.is_empty() {
        found.push(Finding {
            id: FindingId::AllowedNetworksCoverTunnel,
            severity: Severity::Error,
            problem: format!(
                "allowedNetworks lets {} use Plex without signing in, and that covers the \
                 tunnel {}: every leased peer would skip Plex's own sign-in",
                listed(&cover),
                tunnel.subnet
            ),
            fix: fix.clone(),
        });
    }
    if !other.is_empty() {
        let unreadable = other.iter().any(|(_, net)| net.is_none());
        found.push(Finding {
            id: FindingId::AllowedNetworksSet,
            severity: Severity::Warning,
            problem: format!(
                "allowedNetworks lets {} use Plex without signing in{}: anything there, or able \
                 to send from such an address, skips Plex's sign-in",
                listed(&other),
                if unreadable {
                    " (an entry that is not an address, IP/prefix or IP/netmask is kept as \
                     written)"
                } else {
                    ""
                }
            ),
            fix,
        });
    }
}

fn discovery_and_relay(prefs: &PlexPrefs, found: &mut Vec<Finding>) {
    if prefs.flag(DLNA, DLNA_DEFAULT) {
        found.push(Finding {
            id: FindingId::DlnaOn,
            severity: Severity::Warning,
            problem: format!(
                "The DLNA server is on ({}): any DLNA player that reaches TCP 32469 or UDP 1900 \
                 browses and plays the whole library without signing in (the guard lets such \
                 traffic in from --allow-lan ranges)",
                shown(prefs, DLNA)
            ),
            fix: pref_fix(
                "Plex Web → Settings → DLNA → untick \"Enable the DLNA server\"",
                "DlnaEnabled=\"0\"",
            ),
        });
    }
    if prefs.flag(GDM, GDM_DEFAULT) {
        found.push(Finding {
            id: FindingId::GdmOn,
            severity: Severity::Warning,
            problem: format!(
                "Local network discovery (GDM) is on ({}): Plex answers discovery on UDP \
                 32410-32414 to anyone who asks, the answers once abused to amplify DDoS \
                 (PMS 1.21.3.4014 stopped answering the internet)",
                shown(prefs, GDM)
            ),
            fix: pref_fix(
                "Plex Web → Settings → Network → untick \"Enable local network discovery \
                 (GDM)\" (keep it only if a TV on an --allow-lan range must find the server by \
                 itself)",
                "GdmEnabled=\"0\"",
            ),
        });
    }
    if prefs.flag(RELAY, RELAY_DEFAULT) {
        found.push(Finding {
            id: FindingId::RelayOn,
            severity: Severity::Warning,
            problem: format!(
                "Relay is on ({}): when no direct connection works, Plex streams through \
                 plex.tv's relays over a connection it opens itself, which an inbound guard \
                 cannot stop",
                shown(prefs, RELAY)
            ),
            fix: pref_fix(
                "Plex Web → Settings → Network (Show Advanced) → untick \"Enable Relay\"",
                "RelayEnabled=\"0\"",
            ),
        });
    }
}

fn custom_url(prefs: &PlexPrefs, tunnel: &Tunnel, found: &mut Vec<Finding>) {
    let listed = prefs.get(CUSTOM_CONNECTIONS).unwrap_or("");
    if listed.split(',').any(|url| is_tunnel_url(url, tunnel)) {
        return;
    }
    let url = tunnel.plex_url();
    let value = if listed.trim().is_empty() {
        url.clone()
    } else {
        format!("{},{url}", listed.trim())
    };
    found.push(Finding {
        id: FindingId::CustomUrlMissing,
        severity: Severity::Warning,
        problem: format!(
            "Custom server access URLs ({}) lack {url}: Plex apps learn the server's addresses \
             from plex.tv and will not try the tunnel; only the browser URL {url}/web works",
            shown(prefs, CUSTOM_CONNECTIONS)
        ),
        fix: pref_fix(
            &format!(
                "Plex Web → Settings → Network (Show Advanced) → add {url} to \"Custom server \
                 access URLs\" (comma-separated)"
            ),
            &format!("customConnections=\"{value}\""),
        ),
    });
}

fn exposure(host: &HostFacts, found: &mut Vec<Finding>) {
    // Loopback only is safe. A socket on the tunnel address is not: Linux accepts a packet
    // for any local address on any interface, so a LAN neighbour can route to it.
    let exposed: Vec<&Listener> = host
        .listeners
        .iter()
        .filter(|l| is_plex_port(l.proto, l.addr.port()))
        .filter(|l| !l.addr.ip().to_canonical().is_loopback())
        .collect();
    if exposed.is_empty() {
        return;
    }
    let sockets = exposed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match &host.guard {
        TableState::Present => {}
        TableState::Absent => found.push(Finding {
            id: FindingId::PlexPortExposed,
            severity: Severity::Error,
            problem: format!(
                "Plex's ports take traffic on {sockets} and the guard (nftables table inet \
                 grantwire) is not loaded: anything that reaches this host reaches Plex (a socket \
                 on a Plex port may be another program's, e.g. avahi on 5353: see its uid)"
            ),
            fix: "Start the edge (grantwire-edge run ..., or sudo scripts/up.sh): it loads the \
                  guard and keeps it until a clean stop. Until then stop Plex: sudo systemctl \
                  stop plexmediaserver"
                .into(),
        }),
        TableState::Unknown(why) => found.push(Finding {
            id: FindingId::PlexPortGuardUnknown,
            severity: Severity::Error,
            problem: format!(
                "Plex's ports take traffic on {sockets}, and whether the guard (nftables table \
                 inet grantwire) covers them is unknown: {why}"
            ),
            fix: "Run the doctor as root: sudo grantwire-edge doctor".into(),
        }),
    }
}

fn is_plex_port(proto: Proto, port: u16) -> bool {
    let ranges = match proto {
        Proto::Tcp => PLEX_TCP_PORTS,
        Proto::Udp => PLEX_UDP_PORTS,
    };
    ranges.iter().any(|r| r.contains(port))
}

/// The setting as it stands, for the problem line.
fn shown(prefs: &PlexPrefs, name: &str) -> String {
    match prefs.get(name) {
        Some(value) => format!("{name}=\"{value}\""),
        None => format!("{name} not set, so Plex's default"),
    }
}

/// Plex rewrites Preferences.xml as it runs, so a hand edit holds only with Plex stopped.
fn pref_fix(in_plex: &str, attribute: &str) -> String {
    format!(
        "{in_plex}; or stop Plex (sudo systemctl stop plexmediaserver), set {attribute} in \
         Preferences.xml, and start it again"
    )
}

fn listed(entries: &[&(String, Option<IpNet>)]) -> String {
    entries
        .iter()
        .map(|(raw, _)| raw.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Plex's allowedNetworks: comma-separated entries, each an address, `IP/prefix` or
/// `IP/netmask` (Plex's support article shows the netmask form). Unreadable entries are kept
/// with `None` so they are still reported.
fn plex_networks(value: &str) -> Vec<(String, Option<IpNet>)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| (e.to_owned(), plex_network(e)))
        .collect()
}

fn plex_network(entry: &str) -> Option<IpNet> {
    let Some((addr, mask)) = entry.split_once('/') else {
        return entry.parse::<IpAddr>().ok().map(IpNet::from);
    };
    let addr: IpAddr = addr.parse().ok()?;
    let prefix = match mask.parse::<u8>() {
        Ok(prefix) => prefix,
        Err(_) => {
            let mask: IpAddr = mask.parse().ok()?;
            if mask.is_ipv4() != addr.is_ipv4() {
                return None;
            }
            ipnet::ip_mask_to_prefix(mask).ok()?
        }
    };
    IpNet::new(addr, prefix).ok()
}

/// Whether any address of `net` is in the tunnel. An IPv6 entry counts through the
/// IPv4-mapped form (`::ffff:10.77.0.2`), which is how a dual-stack socket sees a peer.
fn overlaps_tunnel(net: &IpNet, tunnel: Ipv4Net) -> bool {
    match net {
        IpNet::V4(n) => n.contains(&tunnel.network()) || tunnel.contains(&n.network()),
        IpNet::V6(n) => {
            let Ok(mapped) =
                Ipv6Net::new(tunnel.network().to_ipv6_mapped(), 96 + tunnel.prefix_len())
            else {
                return false;
            };
            n.contains(&mapped.network()) || mapped.contains(&n.network())
        }
    }
}

/// `http://10.77.0.1:32400` with or without a trailing slash, or the `https` form. The port
/// must be written: without it the URL says the scheme's default port, whatever Plex makes of
/// it.
fn is_tunnel_url(text: &str, tunnel: &Tunnel) -> bool {
    let Ok(url) = Url::parse(text.trim()) else {
        return false;
    };
    matches!(url.scheme(), "http" | "https")
        && url.host_str() == Some(tunnel.address.to_string().as_str())
        && url.port() == Some(PLEX_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Preferences.xml the doctor has nothing to say about, for the default tunnel.
    const CLEAN: [(&str, &str); 6] = [
        ("PublishServerOnPlexOnlineKey", "0"),
        ("allowedNetworks", ""),
        ("customConnections", "http://10.77.0.1:32400"),
        ("DlnaEnabled", "0"),
        ("GdmEnabled", "0"),
        ("RelayEnabled", "0"),
    ];

    fn tunnel() -> Tunnel {
        Tunnel {
            subnet: "10.77.0.0/24".parse().unwrap(),
            address: "10.77.0.1".parse().unwrap(),
        }
    }

    /// CLEAN with `changes` applied: `Some` sets an attribute, `None` removes it.
    fn prefs(changes: &[(&str, Option<&str>)]) -> PlexPrefs {
        let mut attrs: Vec<(String, String)> = CLEAN
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (name, value) in changes {
            attrs.retain(|(k, _)| k != name);
            if let Some(value) = value {
                attrs.push((name.to_string(), value.to_string()));
            }
        }
        let body: String = attrs.iter().map(|(k, v)| format!(" {k}=\"{v}\"")).collect();
        PlexPrefs::parse(&format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Preferences{body}/>\n"
        ))
        .unwrap()
    }

    fn quiet_host() -> HostFacts {
        HostFacts {
            listeners: vec![],
            guard: TableState::Absent,
        }
    }

    fn ids(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.id.as_str()).collect()
    }

    fn only(changes: &[(&str, Option<&str>)]) -> Vec<Finding> {
        check(&prefs(changes), &quiet_host(), &tunnel())
    }

    #[test]
    fn a_clean_setup_has_no_findings() {
        assert_eq!(check(&prefs(&[]), &quiet_host(), &tunnel()), []);
    }

    #[test]
    fn remote_access_on_is_an_error() {
        let found = only(&[
            ("PublishServerOnPlexOnlineKey", Some("1")),
            ("ManualPortMappingMode", Some("1")),
        ]);
        assert_eq!(ids(&found), ["remote_access_on"]);
        assert_eq!(found[0].severity, Severity::Error);
        assert!(found[0]
            .problem
            .contains("PublishServerOnPlexOnlineKey=\"1\""));
        assert!(found[0].fix.contains("Settings → Remote Access"));
        assert!(found[0].fix.contains("PublishServerOnPlexOnlineKey=\"0\""));
        // Absent means Plex's default, which is off.
        assert_eq!(only(&[("PublishServerOnPlexOnlineKey", None)]), []);
    }

    #[test]
    fn upnp_fires_only_with_remote_access_mapping_automatically() {
        for manual in [None, Some("0")] {
            let found = only(&[
                ("PublishServerOnPlexOnlineKey", Some("1")),
                ("ManualPortMappingMode", manual),
            ]);
            assert_eq!(ids(&found), ["remote_access_on", "upnp_on"], "{manual:?}");
            assert_eq!(found[1].severity, Severity::Error);
            assert!(found[1].fix.contains("UPnP"));
        }
        assert_eq!(only(&[("ManualPortMappingMode", Some("0"))]), []);
    }

    #[test]
    fn allowed_lan_ranges_are_a_warning() {
        let found = only(&[("allowedNetworks", Some("192.168.1.0/255.255.255.0"))]);
        assert_eq!(ids(&found), ["allowed_networks_set"]);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0].problem.contains("192.168.1.0/255.255.255.0"));
        assert!(found[0].fix.contains("allowedNetworks=\"\""));
    }

    #[test]
    fn allowed_networks_covering_the_tunnel_is_an_error() {
        for entry in [
            "10.77.0.0/255.255.255.0",
            "10.77.0.0/16",
            "10.0.0.0/255.0.0.0",
            "10.77.0.9",
            "10.77.0.128/25",
            "0.0.0.0/0",
            "::/0",
            "::ffff:10.77.0.0/120",
        ] {
            let found = only(&[("allowedNetworks", Some(entry))]);
            assert_eq!(ids(&found), ["allowed_networks_cover_tunnel"], "{entry}");
            assert_eq!(found[0].severity, Severity::Error);
            assert!(found[0].problem.contains(entry));
            assert!(found[0].problem.contains("10.77.0.0/24"));
        }
        for entry in [
            "10.78.0.0/16",
            "10.76.255.255",
            "fd00::/8",
            "::ffff:10.78.0.0/120",
        ] {
            let found = only(&[("allowedNetworks", Some(entry))]);
            assert_eq!(ids(&found), ["allowed_networks_set"], "{entry}");
        }
    }

    #[test]
    fn each_allowed_entry_is_reported_once_and_unreadable_ones_too() {
        let found = only(&[(
            "allowedNetworks",
            Some("192.168.1.0/24, 10.0.0.0/8,bogus,192.168.2.0/255.0.255.0"),
        )]);
        assert_eq!(
            ids(&found),
            ["allowed_networks_cover_tunnel", "allowed_networks_set"]
        );
        assert!(found[0].problem.contains("lets 10.0.0.0/8 use"));
        assert!(found[1]
            .problem
            .contains("lets 192.168.1.0/24, bogus, 192.168.2.0/255.0.255.0 use"));
        assert!(found[1].problem.contains("not an address"));
    }

    #[test]
    fn plex_network_forms() {
        let net = |s: &str| plex_network(s).map(|n| n.to_string());
        assert_eq!(
            net("192.168.42.0/255.255.255.0").as_deref(),
            Some("192.168.42.0/24")
        );
        assert_eq!(net("10.0.0.0/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(net("192.168.1.5").as_deref(), Some("192.168.1.5/32"));
        assert_eq!(net("fd00::/ffff::").as_deref(), Some("fd00::/16"));
        for bad in [
            "192.168.1.0/255.0.255.0",
            "192.168.1.0/33",
            "10.0.0.0/ffff::",
            "host.lan",
            "10.0.0.0/",
        ] {
            assert_eq!(net(bad), None, "{bad}");
        }
    }

    #[test]
    fn dlna_gdm_and_relay_are_warnings_on_by_default() {
        for (name, id) in [
            ("DlnaEnabled", "dlna_on"),
            ("GdmEnabled", "gdm_on"),
            ("RelayEnabled", "relay_on"),
        ] {
            for value in [Some("1"), None] {
                let found = only(&[(name, value)]);
                assert_eq!(ids(&found), [id], "{name}={value:?}");
                assert_eq!(found[0].severity, Severity::Warning);
                assert!(found[0].fix.contains(&format!("{name}=\"0\"")));
            }
        }
        let found = only(&[("DlnaEnabled", None)]);
        assert!(found[0].problem.contains("not set, so Plex's default"));
    }

    #[test]
    fn the_tunnel_url_must_be_among_the_custom_urls() {
        for listed in [
            "http://10.77.0.1:32400/",
            "https://10.77.0.1:32400",
            "https://plex.example:443, http://10.77.0.1:32400",
        ] {
            assert_eq!(only(&[("customConnections", Some(listed))]), [], "{listed}");
        }
        for listed in [
            None,
            Some(""),
            Some("http://10.77.0.1"),
            Some("http://10.77.0.2:32400"),
            Some("ftp://10.77.0.1:32400"),
            Some("10.77.0.1:32400"),
        ] {
            let found = only(&[("customConnections", listed)]);
            assert_eq!(ids(&found), ["custom_url_missing"], "{listed:?}");
            assert_eq!(found[0].severity, Severity::Warning);
        }
    }

    #[test]
    fn the_custom_url_fix_keeps_what_is_there() {
        let found = only(&[("customConnections", Some("https://plex.example:443"))]);
        assert!(found[0].problem.contains("lack http://10.77.0.1:32400"));
        assert!(found[0]
            .fix
            .contains("customConnections=\"https://plex.example:443,http://10.77.0.1:32400\""));
        let found = only(&[("customConnections", None)]);
        assert!(found[0]
            .fix
            .contains("customConnections=\"http://10.77.0.1:32400\""));
    }

    #[test]
    fn the_custom_url_follows_the_tunnel() {
        let other = Tunnel {
            subnet: "10.9.0.0/24".parse().unwrap(),
            address: "10.9.0.1".parse().unwrap(),
        };
        let found = check(&prefs(&[]), &quiet_host(), &other);
        assert_eq!(ids(&found), ["custom_url_missing"]);
        assert!(found[0].fix.contains("add http://10.9.0.1:32400"));
    }

    fn listener(proto: Proto, addr: &str) -> Listener {
        Listener {
            proto,
            addr: addr.parse().unwrap(),
            uid: 998,
        }
    }

    fn with_host(listeners: Vec<Listener>, guard: TableState) -> Vec<Finding> {
        check(&prefs(&[]), &HostFacts { listeners, guard }, &tunnel())
    }

    #[test]
    fn plex_ports_open_beyond_loopback_without_guard_are_an_error() {
        for l in [
            listener(Proto::Tcp, "0.0.0.0:32400"),
            listener(Proto::Tcp, "[::]:32469"),
            listener(Proto::Tcp, "192.168.1.10:8324"),
            listener(Proto::Tcp, "10.77.0.1:32400"),
            listener(Proto::Udp, "0.0.0.0:32412"),
            listener(Proto::Udp, "[::]:1900"),
            listener(Proto::Udp, "[::ffff:192.168.1.10]:5353"),
        ] {
            let shown = l.to_string();
            let found = with_host(vec![l], TableState::Absent);
            assert_eq!(ids(&found), ["plex_port_exposed"], "{shown}");
            assert_eq!(found[0].severity, Severity::Error);
            assert!(found[0].problem.contains(&shown));
            assert!(found[0].fix.contains("grantwire-edge run"));
        }
    }

    #[test]
    fn loopback_other_ports_and_a_loaded_guard_are_fine() {
        let safe = vec![
            listener(Proto::Tcp, "127.0.0.1:32400"),
            listener(Proto::Tcp, "[::1]:32400"),
            listener(Proto::Udp, "[::ffff:127.0.0.1]:32410"),
            listener(Proto::Tcp, "0.0.0.0:22"),
            listener(Proto::Tcp, "0.0.0.0:1900"),
            listener(Proto::Udp, "0.0.0.0:32400"),
            listener(Proto::Udp, "0.0.0.0:32415"),
        ];
        assert_eq!(with_host(safe, TableState::Absent), []);
        let open = vec![listener(Proto::Tcp, "0.0.0.0:32400")];
        assert_eq!(with_host(open, TableState::Present), []);
    }

    #[test]
    fn an_unknown_guard_is_an_error_naming_the_reason() {
        let open = vec![listener(Proto::Tcp, "0.0.0.0:32400")];
        let found = with_host(open, TableState::Unknown("no CAP_NET_ADMIN".into()));
        assert_eq!(ids(&found), ["plex_port_guard_unknown"]);
        assert_eq!(found[0].severity, Severity::Error);
        assert!(found[0].problem.contains("no CAP_NET_ADMIN"));
        assert!(found[0].fix.contains("sudo grantwire-edge doctor"));
        // Nothing to cover, nothing to say, whatever nft answered.
        assert_eq!(with_host(vec![], TableState::Unknown("x".into())), []);
    }

    #[test]
    fn errors_come_before_warnings() {
        let found = only(&[
            ("GdmEnabled", Some("1")),
            ("PublishServerOnPlexOnlineKey", Some("1")),
            ("ManualPortMappingMode", Some("1")),
        ]);
        assert_eq!(ids(&found), ["remote_access_on", "gdm_on"]);
    }

    #[test]
    fn ids_serialize_as_their_names() {
        for id in [
            FindingId::RemoteAccessOn,
            FindingId::UpnpOn,
            FindingId::AllowedNetworksCoverTunnel,
            FindingId::AllowedNetworksSet,
            FindingId::DlnaOn,
            FindingId::GdmOn,
            FindingId::RelayOn,
            FindingId::CustomUrlMissing,
            FindingId::PlexPortExposed,
            FindingId::PlexPortGuardUnknown,
        ] {
            assert_eq!(
                serde_json::to_value(id).unwrap(),
                serde_json::json!(id.as_str())
            );
        }
    }
}
