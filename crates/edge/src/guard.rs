//! The guard: an nftables table `inet grantwire` that keeps Plex's ports closed on every
//! interface but the tunnel and loopback, so Plex (which listens everywhere) is reachable only
//! through admitted leases and the LAN ranges the operator allowed.
//!
//! It also spares the edge a flood: datagrams to the WireGuard port from outside every lease's
//! pin (sets `pins4`/`pins6`, rewritten whenever the lease set changes) pass at most
//! [`UNPINNED_PER_SEC`] a second, and the rest are dropped in the kernel before any socket
//! sees them. The edge still drops every datagram it does get from outside a pin, unanswered;
//! the few that reach it keep the report of a lease key used off its pin working. The sets are
//! only an optimisation: a stale set can slow a new pin down (to that shared rate) but never
//! admits anyone.
//!
//! Handshake initiations are limited per source too, pinned or not, because a pin is only an
//! address and anyone can forge one: a flood of initiations from a friend's address would
//! otherwise reach the edge's one socket as fast as the attacker can send, and the edge, busy
//! checking MAC1 and answering cookies, would fall behind on every friend's data. In the kernel,
//! before any socket: at most [`INITIATIONS_PER_PORT`] a second from one address and port (a
//! WireGuard client sends one every 5 s, or fewer), so a flood from one port never touches the
//! friend's own port; and at most [`INITIATIONS_PER_ADDRESS`] from one address over all its
//! ports (room for a carrier-grade NAT's many users), so a flood that changes ports costs the
//! edge that much and no more. Transport data is never limited here: a running session is
//! never slowed by a flood of initiations. Under what does get through, boringtun's cookies
//! still spare the Diffie-Hellman work. (The per-source state is two dynamic sets a family of at
//! most 65,536 entries, forgotten after 10 s idle; a full set stops limiting new sources, which
//! then meet the edge's own checks.)

//!
//! With `--silent-host` ([`HostPolicy::Silent`]) the guard keeps the whole host quiet to
//! strangers, not only Plex's ports: on every interface but loopback and the tunnel it drops
//! whatever no connection of the host's own asked for, except the WireGuard port, the allowed
//! LAN ranges, the listed ports, and the ICMPv6 messages IPv6 cannot work without (neighbour
//! and router discovery, multicast listener queries). A port scan then draws nothing: no TCP
//! reset, no ICMP port-unreachable, no echo reply. Off by default, because it also closes the
//! host's other services (SSH, a broker on this host) unless they are listed.

mod worker;

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};
use std::str::FromStr;

use ipnet::IpNet;

use crate::listen::Served;

pub use worker::GuardThread;

/// Plex's TCP ports: the server (32400), DLNA (32469) and Plex Companion (8324).
pub const PLEX_TCP_PORTS: &[PortRange] = &[
    PortRange::one(32400),
    PortRange::one(32469),
    PortRange::one(8324),
];
/// Plex's UDP ports: SSDP (1900), mDNS/Bonjour (5353), GDM discovery (32410-32414). SSDP and
/// GDM answers were the amplification vector fixed in PMS 1.21.3.4014.
pub const PLEX_UDP_PORTS: &[PortRange] = &[
    PortRange::one(1900),
    PortRange::one(5353),
    PortRange {
        first: 32410,
        last: 32414,
    },
];

/// An inclusive range of ports, so the guard and `doctor` share one list of Plex's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const fn one(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// nft's set syntax: `32400, 32469` and `32410-32414`.
fn nft_set(ranges: &[PortRange]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the guard's table is loaded, as far as `nft` can tell this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableState {
    Present,
    Absent,
    /// `nft` could not answer (not installed here, or no CAP_NET_ADMIN): the reason.
    Unknown(String),
}

/// Datagrams a second to the WireGuard port from outside every pin that the kernel lets reach
/// the edge, all sources together.
pub const UNPINNED_PER_SEC: u32 = 256;

/// Handshake initiations a second from one source address and port that the kernel lets reach
/// the edge (see the module comment).
pub const INITIATIONS_PER_PORT: u32 = 5;
/// Handshake initiations a second from one source address, over all its ports.
pub const INITIATIONS_PER_ADDRESS: u32 = 500;

/// Whether the guard closes only Plex's ports or silences the whole host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostPolicy {
    /// Only Plex's ports are closed; the host's other services answer as they always did.
    #[default]
    Open,
    /// Everything unsolicited is dropped but the WireGuard port and these ports.
    Silent(Vec<HostPort>),
}

/// A port strangers may still reach on a silent host: `tcp/22`, `udp/546`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub proto: Proto,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let expected = || format!("expected tcp/PORT or udp/PORT (tcp/22, say), got {s:?}");
        let (proto, port) = s.split_once('/').ok_or_else(expected)?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(expected()),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} in {s:?} is not a port number (1-65535)"))?;
        if port == 0 {
            return Err(format!("port 0 in {s:?} is not a port strangers can reach"));
        }
        Ok(HostPort { proto, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{proto}/{}", self.port)
    }
}

/// Refuses a `--host-allow` port the guard would not open anyway: one of Plex's ports (which
/// stay closed to outside whatever is listed; `--allow-lan` is for the LAN) or the WireGuard
/// port (open already, with its own limits).
pub fn check_host_allow(allowed: &[HostPort], wg_port: u16) -> Result<(), String> {
    for port in allowed {
        let plex = match port.proto {
            Proto::Tcp => PLEX_TCP_PORTS,
            Proto::Udp => PLEX_UDP_PORTS,
        };
        if plex.iter().any(|r| r.contains(port.port)) {
            return Err(format!(
                "--host-allow {port}: that is Plex's port, which the guard keeps closed to \
                 outside whatever is listed; give your LAN --allow-lan instead"
            ));
        }
        if port.proto == Proto::Udp && port.port == wg_port {
            return Err(format!(
                "--host-allow {port}: that is the WireGuard port, open already (with its own \
                 limits)"
            ));
        }
    }
    Ok(())
}

/// What the guard lets through besides the tunnel and loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSpec {
    pub tun_name: String,
    pub allow_lan: Vec<IpNet>,
    /// Plex's ports only, or the whole host (`--silent-host`).
    pub host: HostPolicy,
    /// The edge's WireGuard port.
    pub wg_port: u16,
    /// What the WireGuard socket takes; datagrams to the port it does not take are dropped
    /// here, so the kernel never answers them with ICMP port-unreachable.
    pub wg_served: Served,
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("`nft` was not found; install the nftables package")]
    NftMissing(#[source] std::io::Error),
    #[error("nftables refused the change: the edge needs CAP_NET_ADMIN (run as root or grant the capability)")]
    NotPermitted,
    #[error("running nft failed")]
    Spawn(#[source] std::io::Error),
    #[error("nft failed: {0}")]
    Nft(String),
    #[error("the guard's thread has stopped")]
    ThreadGone,
}

/// The firewall boundary, so tests run without nftables.
pub trait Guard {
    /// Installs the table, atomically replacing any stale one from an earlier run.
    fn install(&mut self, spec: &GuardSpec) -> Result<(), GuardError>;
    /// Removes the table (clean exit only: after a crash the table stays, which fails closed).
    fn remove(&mut self) -> Result<(), GuardError>;
    /// Replaces the pin sets with `pins`, in one transaction.
    fn set_pins(&mut self, pins: &[IpNet]) -> Result<(), GuardError>;
}

/// The real guard, through `nft -f -`.
#[derive(Debug, Default)]
pub struct NftGuard;

impl Guard for NftGuard {
    fn install(&mut self, spec: &GuardSpec) -> Result<(), GuardError> {
        run_nft(&["-f", "-"], Some(&render_ruleset(spec)))
    }

    fn remove(&mut self) -> Result<(), GuardError> {
        run_nft(&["delete", "table", "inet", "grantwire"], None)
    }

    fn set_pins(&mut self, pins: &[IpNet]) -> Result<(), GuardError> {
        run_nft(&["-f", "-"], Some(&render_pins(pins)))
    }
}

/// The nft commands that replace both pin sets with `pins`. Overlapping or adjacent prefixes
/// (two leases behind one NAT address) are merged first: an interval set refuses overlaps.
pub fn render_pins(pins: &[IpNet]) -> String {
    let v4: Vec<_> = pins
        .iter()
        .filter_map(|p| match p {
            IpNet::V4(n) => Some(n.trunc()),
            IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<_> = pins
        .iter()
        .filter_map(|p| match p {
            IpNet::V6(n) => Some(n.trunc()),
            IpNet::V4(_) => None,
        })
        .collect();
    let mut text = String::from("flush set inet grantwire pins4\nflush set inet grantwire pins6\n");
    let v4: Vec<String> = ipnet::Ipv4Net::aggregate(&v4)
        .iter()
        .map(ToString::to_string)
        .collect();
    let v6: Vec<String> = ipnet::Ipv6Net::aggregate(&v6)
        .iter()
        .map(ToString::to_string)
        .collect();
    if !v4.is_empty() {
        text.push_str(&format!(
            "add element inet grantwire pins4 {{ {} }}\n",
            v4.join(", ")
        ));
    }
    if !v6.is_empty() {
        text.push_str(&format!(
            "add element inet grantwire pins6 {{ {} }}\n",
            v6.join(", ")
        ));
    }
    text
}

/// The ruleset piped to `nft -f -`. The leading `table` + `delete table` pair makes the load
/// one transaction that replaces a stale table whether or not one exists.
pub fn render_ruleset(spec: &GuardSpec) -> String {
    let mut allow = String::new();
    let v4: Vec<String> = spec
        .allow_lan
        .iter()
        .filter(|n| matches!(n, IpNet::V4(_)))
        .map(|n| n.trunc().to_string())
        .collect();
    let v6: Vec<String> = spec
        .allow_lan
        .iter()
        .filter(|n| matches!(n, IpNet::V6(_)))
        .map(|n| n.trunc().to_string())
        .collect();
    if !v4.is_empty() {
        allow.push_str(&format!(
            "        ip saddr {{ {} }} accept\n",
            v4.join(", ")
        ));
    }
    if !v6.is_empty() {
        allow.push_str(&format!(
            "        ip6 saddr {{ {} }} accept\n",
            v6.join(", ")
        ));
    }
    format!(
        "table inet grantwire\n\
         delete table inet grantwire\n\
         table inet grantwire {{\n\
         \x20   set pins4 {{ type ipv4_addr; flags interval; }}\n\
         \x20   set pins6 {{ type ipv6_addr; flags interval; }}\n\
         {init_sets}\
         \x20   chain input {{\n\
         \x20       type filter hook input priority filter - 10; policy accept;\n\
         \x20       iifname \"lo\" accept\n\
         \x20       iifname {tun} accept\n\
         {silence}\
         \x20       udp dport {wg} ip saddr != @pins4 limit rate over {rate}/second drop\n\
         \x20       udp dport {wg} ip6 saddr != @pins6 limit rate over {rate}/second drop\n\
         {init_rules}\
         {allow}\
         \x20       tcp dport {{ {tcp} }} drop\n\
         \x20       udp dport {{ {udp} }} drop\n\
         {host}\
         \x20   }}\n\
         {untracked}\
         }}\n",
        tun = quote(&spec.tun_name),
        wg = spec.wg_port,
        silence = spec.wg_served.port_rules(spec.wg_port),
        rate = UNPINNED_PER_SEC,
        init_sets = INITIATION_SETS,
        init_rules = initiation_rules(spec.wg_port),
        tcp = nft_set(PLEX_TCP_PORTS),
        udp = nft_set(PLEX_UDP_PORTS),
        host = host_rules(&spec.host, spec.wg_port),
        untracked = untracked_chains(&spec.host, spec.wg_port),
    )
}

/// On a silent host, the WireGuard port's datagrams bypass conntrack (nothing on an open one,
/// whose rules need no connection state). The silent host's rules track connections, and a
/// flood of datagrams from forged sources (a /64 pin offers 2^64 of them) would otherwise
/// make an entry each; the port is accepted by its own rule, so it needs no state.
fn untracked_chains(host: &HostPolicy, wg_port: u16) -> String {
    if *host == HostPolicy::Open {
        return String::new();
    }
    format!(
        "    chain untracked_in {{\n        \
         type filter hook prerouting priority raw; policy accept;\n        \
         udp dport {wg_port} notrack\n    \
         }}\n    \
         chain untracked_out {{\n        \
         type filter hook output priority raw; policy accept;\n        \
         udp sport {wg_port} notrack\n    \
         }}\n"
    )
}

/// The end of the input chain on a silent host (nothing on an open one): answers to the
/// host's own connections and the ICMPv6 that IPv6 needs pass, then the WireGuard port (whose
/// excess the rules above already dropped) and the listed ports; everything else is dropped.
fn host_rules(host: &HostPolicy, wg_port: u16) -> String {
    let HostPolicy::Silent(allowed) = host else {
        return String::new();
    };
    // DHCPv6 answers a client from its server's link-local address, never from beyond the
    // link, so the host keeps its DHCPv6 address without opening the port to the internet.
    let mut rules = String::from(
        "        ct state established,related accept\n        \
         icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, \
         mld-listener-query } accept\n        \
         ip6 saddr fe80::/10 udp dport 546 accept\n",
    );
    rules.push_str(&format!("        udp dport {wg_port} accept\n"));
    for (proto, name) in [(Proto::Tcp, "tcp"), (Proto::Udp, "udp")] {
        let ports: Vec<String> = allowed
            .iter()
            .filter(|p| p.proto == proto)
            .map(|p| p.port.to_string())
            .collect();
        if !ports.is_empty() {
            rules.push_str(&format!(
                "        {name} dport {{ {} }} accept\n",
                ports.join(", ")
            ));
        }
    }
    rules.push_str("        drop\n");
    rules
}

/// The per-source state of the initiation limits: by address and port, and by address.
const INITIATION_SETS: &str = "\
\x20   set init_port4 { type ipv4_addr . inet_service; size 65536; flags dynamic,timeout; timeout 10s; }\n\
\x20   set init_addr4 { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 10s; }\n\
\x20   set init_port6 { type ipv6_addr . inet_service; size 65536; flags dynamic,timeout; timeout 10s; }\n\
\x20   set init_addr6 { type ipv6_addr; size 65536; flags dynamic,timeout; timeout 10s; }\n";

/// The rules that drop handshake initiations (UDP length 8 + 148, payload starting with type 1
/// and three zero bytes) over the per-source rates. The per-port rule comes first, so a flood
/// from one port is dropped before it can use up its address's budget.
fn initiation_rules(wg_port: u16) -> String {
    let initiation = format!("udp dport {wg_port} udp length 156 @th,64,32 0x01000000");
    let (port, addr) = (INITIATIONS_PER_PORT, INITIATIONS_PER_ADDRESS);
    [("ip", "4"), ("ip6", "6")]
        .iter()
        .map(|(ip, family)| {
            format!(
                "        {initiation} update @init_port{family} {{ {ip} saddr . udp sport \
                 limit rate over {port}/second burst {port} packets }} drop\n        \
                 {initiation} update @init_addr{family} {{ {ip} saddr \
                 limit rate over {addr}/second burst {addr} packets }} drop\n"
            )
        })
        .collect()
}

/// Asks nft whether table `inet grantwire` is loaded. Listing needs CAP_NET_ADMIN like
/// changing does, so without it the answer is `Unknown`, never a guess.
pub fn probe_table() -> TableState {
    match run_nft(&["list", "table", "inet", "grantwire"], None) {
        Ok(()) => TableState::Present,
        // nft's words for a table that does not exist (ENOENT from the kernel).
        Err(GuardError::Nft(stderr)) if stderr.contains("No such file or directory") => {
            TableState::Absent
        }
        Err(GuardError::NftMissing(_)) => {
            // Not "absent": the edge may run with a PATH (systemd's) that has nft while this
            // shell's does not.
            TableState::Unknown("`nft` is not in this PATH".into())
        }
        Err(GuardError::NotPermitted) => {
            TableState::Unknown("listing nftables needs CAP_NET_ADMIN (root)".into())
        }
        Err(err) => TableState::Unknown(err.to_string()),
    }
}

/// nft string literal. Interface names cannot hold quotes (the kernel allows them, but the
/// name comes from our own flag); any `"` is dropped rather than escaped, which nft lacks.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', ""))
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<(), GuardError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GuardError::NftMissing(e),
            _ => GuardError::Spawn(e),
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(GuardError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(GuardError::Spawn)?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.contains("Operation not permitted") {
        return Err(GuardError::NotPermitted);
    }
    Err(GuardError::Nft(stderr))
}

/// Records what it was asked to do, for tests of the shell.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeGuard {
    pub installed: Option<GuardSpec>,
    pub removals: usize,
    pub pins: Vec<IpNet>,
}

#[cfg(test)]
impl Guard for FakeGuard {
    fn install(&mut self, spec: &GuardSpec) -> Result<(), GuardError> {
        self.installed = Some(spec.clone());
        Ok(())
    }

    fn remove(&mut self) -> Result<(), GuardError> {
        self.installed = None;
        self.removals += 1;
        Ok(())
    }

    fn set_pins(&mut self, pins: &[IpNet]) -> Result<(), GuardError> {
        self.pins = pins.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_without_lan_ranges() {
        let text = render_ruleset(&GuardSpec {
            tun_name: "gw0".into(),
            allow_lan: vec![],
            host: HostPolicy::Open,
            wg_port: 51820,
            wg_served: Served::DualStack,
        });
        assert_eq!(
            text,
            "table inet grantwire\n\
             delete table inet grantwire\n\
             table inet grantwire {\n\
             \x20   set pins4 { type ipv4_addr; flags interval; }\n\
             \x20   set pins6 { type ipv6_addr; flags interval; }\n\
             \x20   set init_port4 { type ipv4_addr . inet_service; size 65536; flags dynamic,timeout; timeout 10s; }\n\
             \x20   set init_addr4 { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 10s; }\n\
             \x20   set init_port6 { type ipv6_addr . inet_service; size 65536; flags dynamic,timeout; timeout 10s; }\n\
             \x20   set init_addr6 { type ipv6_addr; size 65536; flags dynamic,timeout; timeout 10s; }\n\
             \x20   chain input {\n\
             \x20       type filter hook input priority filter - 10; policy accept;\n\
             \x20       iifname \"lo\" accept\n\
             \x20       iifname \"gw0\" accept\n\
             \x20       udp dport 51820 ip saddr != @pins4 limit rate over 256/second drop\n\
             \x20       udp dport 51820 ip6 saddr != @pins6 limit rate over 256/second drop\n\
             \x20       udp dport 51820 udp length 156 @th,64,32 0x01000000 update @init_port4 { ip saddr . udp sport limit rate over 5/second burst 5 packets } drop\n\
             \x20       udp dport 51820 udp length 156 @th,64,32 0x01000000 update @init_addr4 { ip saddr limit rate over 500/second burst 500 packets } drop\n\
             \x20       udp dport 51820 udp length 156 @th,64,32 0x01000000 update @init_port6 { ip6 saddr . udp sport limit rate over 5/second burst 5 packets } drop\n\
             \x20       udp dport 51820 udp length 156 @th,64,32 0x01000000 update @init_addr6 { ip6 saddr limit rate over 500/second burst 500 packets } drop\n\
             \x20       tcp dport { 32400, 32469, 8324 } drop\n\
             \x20       udp dport { 1900, 5353, 32410-32414 } drop\n\
             \x20   }\n\
             }\n"
        );
    }

    #[test]
    fn a_socket_on_one_family_has_the_other_dropped_before_any_rate() {
        let text = render_ruleset(&GuardSpec {
            tun_name: "gw0".into(),
            allow_lan: vec![],
            host: HostPolicy::Open,
            wg_port: 51820,
            wg_served: Served::V4(std::net::Ipv4Addr::UNSPECIFIED),
        });
        let silence = text
            .find("meta nfproto ipv6 udp dport 51820 drop\n")
            .expect("the IPv6 silence rule");
        let rate = text.find("limit rate").unwrap();
        assert!(text.find("iifname \"gw0\" accept").unwrap() < silence && silence < rate);
    }

    #[test]
    fn lan_ranges_split_by_family_before_the_drops() {
        let text = render_ruleset(&GuardSpec {
            tun_name: "plex\"tun".into(),
            allow_lan: vec![
                "192.168.1.7/24".parse().unwrap(),
                "fd00::/64".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ],
            host: HostPolicy::Open,
            wg_port: 51820,
            wg_served: Served::DualStack,
        });
        let v4 = text
            .find("ip saddr { 192.168.1.0/24, 10.1.0.0/16 } accept")
            .unwrap();
        let v6 = text.find("ip6 saddr { fd00::/64 } accept").unwrap();
        let drop = text.find("tcp dport").unwrap();
        assert!(v4 < drop && v6 < drop);
        assert!(text.contains("iifname \"plextun\" accept"));
    }

    #[test]
    fn pin_sets_are_replaced_whole_with_overlaps_merged() {
        let pins: Vec<IpNet> = [
            "192.0.2.7/32",
            "192.0.2.7/32",
            "198.51.100.0/24",
            "198.51.100.9/32",
            "2001:db8:1::/64",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        assert_eq!(
            render_pins(&pins),
            "flush set inet grantwire pins4\n\
             flush set inet grantwire pins6\n\
             add element inet grantwire pins4 { 192.0.2.7/32, 198.51.100.0/24 }\n\
             add element inet grantwire pins6 { 2001:db8:1::/64 }\n"
        );
        // No lease: both sets emptied, nothing added.
        assert_eq!(
            render_pins(&[]),
            "flush set inet grantwire pins4\nflush set inet grantwire pins6\n"
        );
    }

    #[test]
    fn a_silent_host_drops_what_is_left_after_its_allowed_ports() {
        let text = render_ruleset(&GuardSpec {
            tun_name: "gw0".into(),
            allow_lan: vec![],
            host: HostPolicy::Silent(vec![
                "tcp/22".parse().unwrap(),
                "udp/546".parse().unwrap(),
                "tcp/8443".parse().unwrap(),
            ]),
            wg_port: 51820,
            wg_served: Served::DualStack,
        });
        let tail = text
            .split_once("        udp dport { 1900, 5353, 32410-32414 } drop\n")
            .expect("Plex's UDP ports are still dropped first")
            .1;
        assert_eq!(
            tail,
            "        ct state established,related accept\n\
             \x20       icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query } accept\n\
             \x20       ip6 saddr fe80::/10 udp dport 546 accept\n\
             \x20       udp dport 51820 accept\n\
             \x20       tcp dport { 22, 8443 } accept\n\
             \x20       udp dport { 546 } accept\n\
             \x20       drop\n\
             \x20   }\n\
             \x20   chain untracked_in {\n\
             \x20       type filter hook prerouting priority raw; policy accept;\n\
             \x20       udp dport 51820 notrack\n\
             \x20   }\n\
             \x20   chain untracked_out {\n\
             \x20       type filter hook output priority raw; policy accept;\n\
             \x20       udp sport 51820 notrack\n\
             \x20   }\n\
             }\n"
        );
        // With nothing listed, only the WireGuard port stays reachable.
        let bare = render_ruleset(&GuardSpec {
            host: HostPolicy::Silent(vec![]),
            ..GuardSpec {
                tun_name: "gw0".into(),
                allow_lan: vec![],
                host: HostPolicy::Open,
                wg_port: 51820,
                wg_served: Served::DualStack,
            }
        });
        assert!(
            bare.contains("udp dport 51820 accept\n        drop\n"),
            "{bare}"
        );
        assert!(!bare.contains("tcp dport { 22"), "{bare}");
    }

    #[test]
    fn plex_ports_and_the_wireguard_port_are_not_host_allow_ports() {
        let ports =
            |list: &[&str]| -> Vec<HostPort> { list.iter().map(|p| p.parse().unwrap()).collect() };
        assert_eq!(
            check_host_allow(&ports(&["tcp/22", "udp/546", "tcp/51820"]), 51820),
            Ok(())
        );
        for (bad, says) in [
            ("tcp/32400", "Plex's port"),
            ("udp/32412", "Plex's port"),
            ("udp/1900", "Plex's port"),
            ("udp/51820", "the WireGuard port"),
        ] {
            let err = check_host_allow(&ports(&["tcp/22", bad]), 51820).unwrap_err();
            assert!(err.contains(says) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn host_ports_parse_only_as_tcp_or_udp_slash_a_real_port() {
        let ok: HostPort = " TCP/22 ".parse().unwrap();
        assert_eq!(
            (ok.proto, ok.port, ok.to_string().as_str()),
            (Proto::Tcp, 22, "tcp/22")
        );
        for (bad, says) in [
            ("22", "expected tcp/PORT"),
            ("sctp/22", "expected tcp/PORT"),
            ("tcp/0", "port 0"),
            ("udp/65536", "not a port number"),
            ("tcp/ssh", "not a port number"),
        ] {
            let err = bad.parse::<HostPort>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn port_ranges_cover_exactly_their_ports() {
        let gdm = PLEX_UDP_PORTS[2];
        assert!(gdm.contains(32410) && gdm.contains(32414));
        assert!(!gdm.contains(32409) && !gdm.contains(32415));
        assert!(PortRange::one(32400).contains(32400));
        assert!(!PortRange::one(32400).contains(32401));
    }

    #[test]
    fn fake_guard_records_install_and_remove() {
        let mut guard = FakeGuard::default();
        let spec = GuardSpec {
            tun_name: "gw0".into(),
            allow_lan: vec![],
            host: HostPolicy::Open,
            wg_port: 51820,
            wg_served: Served::DualStack,
        };
        guard.install(&spec).unwrap();
        assert_eq!(guard.installed.as_ref(), Some(&spec));
        guard.remove().unwrap();
        assert_eq!((guard.installed.is_none(), guard.removals), (true, 1));
    }
}
