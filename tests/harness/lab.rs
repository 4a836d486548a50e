//! The scenario topology:
//!
//! ```text
//!  client ns 192.0.2.2 ──veth── 192.0.2.1  home ns  198.51.100.1 ──veth── 198.51.100.2 other ns
//!                                 broker :8443, edge udp/51820 + TUN 10.77.0.1,   (default route
//!                                 stand-in Plex 0.0.0.0:32400, metrics 127.0.0.1:9586  via .1)
//! ```
//!
//! [`Lab::add_ipv6`] puts IPv6 on both links too: 2001:db8:1::2 (client) and 2001:db8:1::1
//! (home), 2001:db8:2::1 (home) and 2001:db8:2::2 (other, default route via ::1). The broker
//! and the edge run with their default listeners, which take both families.
//!
//! Field order is drop order: the daemons stop before their namespaces go, and the temporary
//! directory (data dirs, logs of one-shot commands) goes last.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::grantwire::{
    Broker, ClientCli, Edge, EdgeArgs, EdgeInfo, EdgeStart, UserInfo, BROKER_PORT,
    EDGE_ROOT_WARNING, EDGE_WG_PORT,
};
use super::netns::{unique_base, veth_pair, Netns};
use super::plex::{assert_safe_host, http_get, HttpResult, StandInPlex, PLEX_PORT};
use super::proc::unexpected_warnings;
use super::wan::{BadLink, Line};
use super::wg::WgClient;

pub const HOME_OUTSIDE_IP: &str = "192.0.2.1";
pub const CLIENT_IP: &str = "192.0.2.2";
pub const OTHER_IP: &str = "198.51.100.2";
pub const HOME_OUTSIDE_IP6: &str = "2001:db8:1::1";
pub const CLIENT_IP6: &str = "2001:db8:1::2";
pub const HOME_OTHER_IP6: &str = "2001:db8:2::1";
pub const OTHER_IP6: &str = "2001:db8:2::2";
/// The first client's IPv6 address behind the router of [`Lab::behind_nat`] (routed, not
/// translated; see [`Lab::add_ipv6`]).
pub const ROUTED_CLIENT_IP6: &str = "2001:db8:3::2";
/// The second client of a [`Lab::behind_nat`] lab with IPv6, in the first one's /64.
pub const ROUTED_CLIENT2_IP6: &str = "2001:db8:3::3";
/// curl's budget when polling for a change; a healthy tunnel in a netns answers in milliseconds.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(300);
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// The first client's address behind the NAT ([`Lab::behind_nat`]), and the second's.
pub const NATTED_IP: &str = "203.0.113.2";
pub const NATTED_IP2: &str = "203.0.113.18";

/// The family of the outer transport (the addresses WireGuard's datagrams travel between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both, for tests that run once per family.
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// Home's address on the client's link in this family, where the edge listens.
    pub fn edge_host(self) -> &'static str {
        match self {
            Family::V4 => HOME_OUTSIDE_IP,
            Family::V6 => HOME_OUTSIDE_IP6,
        }
    }

    /// Panics unless the profile at `path` names the edge's endpoint of this family.
    #[track_caller]
    pub fn assert_profile(self, path: &std::path::Path) {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading the profile {}: {e}", path.display()));
        let endpoint = format!("Endpoint = {}\n", self.edge_endpoint());
        assert!(
            text.contains(&endpoint),
            "{} must be a profile for the edge's {self:?} endpoint:\n{text}",
            path.display()
        );
    }

    /// The edge's endpoint of this family as a profile writes it.
    pub fn edge_endpoint(self) -> String {
        match self {
            Family::V4 => format!("{HOME_OUTSIDE_IP}:{EDGE_WG_PORT}"),
            Family::V6 => format!("[{HOME_OUTSIDE_IP6}]:{EDGE_WG_PORT}"),
        }
    }
}

/// How the NAT router of [`Lab::behind_nat`] maps its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// A home router: `masquerade`, the kernel's default UDP timeouts (30 s, 120 s once a flow
    /// has seen replies).
    Home,
    /// A hard NAT that forgets quickly: `masquerade fully-random` (every new mapping gets a
    /// random port) and UDP mappings dropped after `idle_secs` without traffic, replies or not.
    Hard { idle_secs: u32 },
}

impl Nat {
    fn set_up(self, nat: &Netns, outside: &str) {
        nat.sysctl("net.ipv4.ip_forward", "1");
        let flags = match self {
            Nat::Home => "",
            Nat::Hard { .. } => " fully-random",
        };
        let ruleset = format!(
            "table ip gwnat {{\n\
             \x20   chain post {{\n\
             \x20       type nat hook postrouting priority srcnat; policy accept;\n\
             \x20       oifname \"{outside}\" masquerade{flags}\n\
             \x20   }}\n\
             }}\n"
        );
        nat.exec_with(
            &["nft", "-f", "-"],
            Some(ruleset.as_bytes()),
            Duration::from_secs(10),
        )
        .expect_ok("loading the NAT ruleset");
        if let Nat::Hard { idle_secs } = self {
            // conntrack's sysctls are per namespace; the NAT table above made them appear.
            for knob in [
                "nf_conntrack_udp_timeout",
                "nf_conntrack_udp_timeout_stream",
            ] {
                nat.sysctl(&format!("net.netfilter.{knob}"), &idle_secs.to_string());
            }
        }
    }
}

/// How long a first page load may take: handshake plus one TCP exchange, with room for a
/// loaded CI machine.
pub const FIRST_LOAD: Duration = Duration::from_secs(10);

/// One request of [`Lab::poll_page`].
#[derive(Debug)]
pub struct PagePoll {
    /// Start of the request, relative to the event being measured.
    pub at: Duration,
    pub loaded: bool,
}

pub struct Lab {
    pub edge: Option<Edge>,
    pub broker: Broker,
    pub plex: StandInPlex,
    pub other: Option<Netns>,
    pub client: Netns,
    /// Behind the NAT ([`Lab::behind_nat`]): a second client sharing the first's public address.
    pub client2: Option<Netns>,
    /// The NAT router between home and the clients ([`Lab::behind_nat`]).
    pub nat: Option<Netns>,
    pub home: Netns,
    /// Unique name stem of this lab; derive interface names from it with one more character.
    pub base: String,
    /// The client namespace's end of its link to home (where 192.0.2.2/24 lives), or to the
    /// NAT router (203.0.113.2/28).
    pub client_if: String,
    /// Home's end of its link to the client, or to the NAT router (192.0.2.1/24).
    pub home_client_if: String,
    /// Home's end of its link to the other namespace (198.51.100.1/24), and the other's end.
    pub home_other_if: Option<String>,
    pub other_if: Option<String>,
    /// The NAT router's end of its link to the first client ([`Lab::behind_nat`]).
    pub nat_client_if: Option<String>,
    /// The NAT router's end of its link to home (192.0.2.2/24).
    pub nat_outside_if: Option<String>,
    /// The router's and the second client's ends of their link ([`Lab::behind_nat`]).
    pub client2_link: Option<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// Namespaces, veths, the stand-in Plex and a running broker; `with_other` adds the "other"
    /// namespace on a second link.
    pub fn new(tag: &str, with_other: bool) -> Lab {
        Self::build(tag, with_other, None)
    }

    /// Two clients behind a NAT router whose public address is 192.0.2.2 (where the plain lab's
    /// client sits), as a home router or a carrier-grade NAT puts them:
    ///
    /// ```text
    ///  client  203.0.113.2/28  ─┐
    ///                           ├─ nat ns (masquerade) 192.0.2.2 ──veth── 192.0.2.1 home ns
    ///  client2 203.0.113.18/28 ─┘
    /// ```
    pub fn behind_nat(tag: &str, nat: Nat) -> Lab {
        Self::build(tag, false, Some(nat))
    }

    fn build(tag: &str, with_other: bool, nat_kind: Option<Nat>) -> Lab {
        let base = unique_base(tag);
        let dir = tempfile::Builder::new()
            .prefix("grantwire-e2e-lab")
            .tempdir()
            .expect("lab dir");
        let home = Netns::new(&format!("{base}-home"));
        let client = Netns::new(&format!("{base}-client"));
        let (mut nat_inside, mut nat_outside_if, mut second_link) = (None, None, None);
        let (home_client_if, client_if, nat, client2) = match nat_kind {
            None => {
                let (home_if, client_if) = veth_pair(
                    &home,
                    &format!("{HOME_OUTSIDE_IP}/24"),
                    &client,
                    &format!("{CLIENT_IP}/24"),
                );
                (home_if, client_if, None, None)
            }
            Some(kind) => {
                let nat = Netns::new(&format!("{base}-nat"));
                let client2 = Netns::new(&format!("{base}-client2"));
                let (home_if, nat_outside) = veth_pair(
                    &home,
                    &format!("{HOME_OUTSIDE_IP}/24"),
                    &nat,
                    &format!("{CLIENT_IP}/24"),
                );
                let (nat_client_if, client_if) =
                    veth_pair(&nat, "203.0.113.1/28", &client, &format!("{NATTED_IP}/28"));
                let (nat_client2, client2_if) = veth_pair(
                    &nat,
                    "203.0.113.17/28",
                    &client2,
                    &format!("{NATTED_IP2}/28"),
                );
                second_link = Some((nat_client2, client2_if));
                client.route_via("default", "203.0.113.1");
                client2.route_via("default", "203.0.113.17");
                kind.set_up(&nat, &nat_outside);
                nat_inside = Some(nat_client_if);
                nat_outside_if = Some(nat_outside);
                (home_if, client_if, Some(nat), Some(client2))
            }
        };
        let (other, home_other_if, other_if) = if with_other {
            let other = Netns::new(&format!("{base}-other"));
            let (home_if, other_if) =
                veth_pair(&home, "198.51.100.1/24", &other, &format!("{OTHER_IP}/24"));
            other.route_via("default", "198.51.100.1");
            (Some(other), Some(home_if), Some(other_if))
        } else {
            (None, None, None)
        };
        let plex = StandInPlex::start(&home);
        let broker = Broker::start(&home, &dir.path().join("broker"));
        Lab {
            edge: None,
            broker,
            plex,
            other,
            client,
            client2,
            nat,
            home,
            base,
            client_if,
            home_client_if,
            home_other_if,
            other_if,
            nat_client_if: nat_inside,
            nat_outside_if,
            client2_link: second_link,
            dir,
        }
    }

    /// IPv6 on the client's link and, if there is one, the other namespace's (addresses in the
    /// module comment). Usable at once: duplicate address detection is off for them.
    ///
    /// In a [`Lab::behind_nat`] lab the router routes IPv6 without translating it, as home
    /// routers with a delegated prefix do: the router is 2001:db8:1::2 on home's link and
    /// 2001:db8:3::1 on the first client's, the client is [`ROUTED_CLIENT_IP6`] (2001:db8:3::2,
    /// default route via the router), and home routes 2001:db8:3::/64 to the router. The second
    /// client is [`ROUTED_CLIENT2_IP6`] (2001:db8:3::3), in the same /64, so both are pinned
    /// to one prefix as two devices of a household are.
    pub fn add_ipv6(&self) {
        let add = |ns: &Netns, ip: &str, dev: &str| {
            super::plex::assert_safe_host(ip);
            let cidr = format!("{ip}/64");
            ns.exec_ok(&["ip", "-6", "addr", "add", &cidr, "dev", dev, "nodad"]);
        };
        let default_via = |ns: &Netns, gateway: &str| {
            ns.exec_ok(&["ip", "-6", "route", "replace", "default", "via", gateway]);
        };
        add(&self.home, HOME_OUTSIDE_IP6, &self.home_client_if);
        match (&self.nat, &self.nat_outside_if, &self.nat_client_if) {
            (Some(nat), Some(outside), Some(inside)) => {
                add(nat, CLIENT_IP6, outside);
                add(nat, "2001:db8:3::1", inside);
                nat.sysctl("net.ipv6.conf.all.forwarding", "1");
                add(&self.client, ROUTED_CLIENT_IP6, &self.client_if);
                default_via(&self.client, "2001:db8:3::1");
                self.home.exec_ok(&[
                    "ip",
                    "-6",
                    "route",
                    "replace",
                    "2001:db8:3::/64",
                    "via",
                    CLIENT_IP6,
                ]);
                if let (Some(client2), Some((nat_if, client2_if))) =
                    (&self.client2, &self.client2_link)
                {
                    // The second client's address is in the first one's /64, as two devices
                    // of one household are; a host route stands in for their shared link.
                    add(nat, "2001:db8:4::1", nat_if);
                    add(client2, "2001:db8:4::2", client2_if);
                    assert_safe_host(ROUTED_CLIENT2_IP6);
                    let host = format!("{ROUTED_CLIENT2_IP6}/128");
                    client2
                        .exec_ok(&["ip", "-6", "addr", "add", &host, "dev", client2_if, "nodad"]);
                    client2.exec_ok(&[
                        "ip",
                        "-6",
                        "route",
                        "replace",
                        "default",
                        "via",
                        "2001:db8:4::1",
                        "src",
                        ROUTED_CLIENT2_IP6,
                    ]);
                    nat.exec_ok(&[
                        "ip",
                        "-6",
                        "route",
                        "replace",
                        &host,
                        "via",
                        "2001:db8:4::2",
                    ]);
                }
            }
            _ => add(&self.client, CLIENT_IP6, &self.client_if),
        }
        if let (Some(other), Some(home_if), Some(other_if)) =
            (&self.other, &self.home_other_if, &self.other_if)
        {
            add(&self.home, HOME_OTHER_IP6, home_if);
            add(other, OTHER_IP6, other_if);
            default_via(other, HOME_OTHER_IP6);
        }
    }

    /// The router of a [`Lab::behind_nat`] lab filters IPv6 as home routers do (RFC 6092): it
    /// forwards what its clients send, and from outside only what belongs to a flow they
    /// started (conntrack `established`). Its UDP flows are forgotten after the NAT's idle
    /// time ([`Nat::Hard`]), as its IPv4 mappings are. Call after [`Lab::add_ipv6`].
    pub fn firewall_ipv6(&self) {
        let (Some(nat), Some(outside)) = (&self.nat, &self.nat_outside_if) else {
            panic!("firewall_ipv6 needs a router: use Lab::behind_nat");
        };
        let ruleset = format!(
            "table inet gwfw {{\n\
             \x20   counter dropped {{ }}\n\
             \x20   chain forward {{\n\
             \x20       type filter hook forward priority filter; policy accept;\n\
             \x20       meta nfproto ipv6 iifname \"{outside}\" ct state established,related accept\n\
             \x20       meta nfproto ipv6 iifname \"{outside}\" counter name \"dropped\" drop\n\
             \x20   }}\n\
             }}\n"
        );
        super::nft::load(nat, &ruleset);
        // It filters: a datagram home starts toward the client is dropped, not forwarded.
        let probe = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             s.sendto(b'unsolicited', ('{ROUTED_CLIENT_IP6}', 9))\n"
        );
        self.home.exec_ok(&["python3", "-c", &probe]);
        let dropped = crate::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            (self.firewall_ipv6_drops() == 1).then_some(())
        });
        assert!(
            dropped.is_some(),
            "the router's IPv6 filter should drop a datagram from outside that no client asked \
             for; it counted {}",
            self.firewall_ipv6_drops()
        );
    }

    /// How many IPv6 packets from outside the router of [`Lab::firewall_ipv6`] has dropped.
    pub fn firewall_ipv6_drops(&self) -> u64 {
        let nat = self.nat.as_ref().expect("a router");
        super::nft::counter(nat, "gwfw", "dropped").packets
    }

    /// The broker's URL at home's IPv6 address on the client's link.
    pub fn broker_url6(&self) -> String {
        format!("https://[{HOME_OUTSIDE_IP6}]:{BROKER_PORT}")
    }

    /// [`Lab::broker_url`] or [`Lab::broker_url6`]: a client signing in there is pinned in
    /// `family` and given the edge's endpoint of that family.
    pub fn broker_url_for(&self, family: Family) -> String {
        match family {
            Family::V4 => self.broker_url(),
            Family::V6 => self.broker_url6(),
        }
    }

    pub fn broker_url(&self) -> String {
        format!("https://{HOME_OUTSIDE_IP}:{BROKER_PORT}")
    }

    /// `edge add home --endpoint 192.0.2.1:51820`, then `grantwire-edge run` with its token.
    pub fn enrol_edge(&mut self) -> EdgeInfo {
        self.enrol_edge_as(EdgeStart::Root)
    }

    /// [`Lab::enrol_edge`], with the edge started as `how` says.
    pub fn enrol_edge_as(&mut self, how: EdgeStart<'static>) -> EdgeInfo {
        let endpoint = format!("{HOME_OUTSIDE_IP}:{EDGE_WG_PORT}");
        self.enrol_edge_at(&[&endpoint], how, EdgeArgs::default())
    }

    /// [`Lab::enrol_edge`], with `args` around the edge's command line.
    pub fn enrol_edge_with(&mut self, args: EdgeArgs<'_>) -> EdgeInfo {
        let endpoint = format!("{HOME_OUTSIDE_IP}:{EDGE_WG_PORT}");
        self.enrol_edge_at(&[&endpoint], EdgeStart::Root, args)
    }

    /// An edge whose endpoint a client of `family` is given: [`Lab::enrol_edge`] for IPv4;
    /// for IPv6, [`Lab::add_ipv6`] and [`Lab::enrol_edge_dual_stack`].
    pub fn enrol_edge_for(&mut self, family: Family) -> EdgeInfo {
        match family {
            Family::V4 => self.enrol_edge(),
            Family::V6 => {
                self.add_ipv6();
                self.enrol_edge_dual_stack()
            }
        }
    }

    /// [`Lab::enrol_edge`] with an IPv4 and an IPv6 endpoint (call [`Lab::add_ipv6`] first):
    /// a profile gets the one of its pin's family.
    pub fn enrol_edge_dual_stack(&mut self) -> EdgeInfo {
        self.enrol_edge_dual_stack_with(EdgeArgs::default())
    }

    /// [`Lab::enrol_edge_dual_stack`], with `args` around the edge's command line.
    pub fn enrol_edge_dual_stack_with(&mut self, args: EdgeArgs<'_>) -> EdgeInfo {
        let v4 = format!("{HOME_OUTSIDE_IP}:{EDGE_WG_PORT}");
        let v6 = format!("[{HOME_OUTSIDE_IP6}]:{EDGE_WG_PORT}");
        self.enrol_edge_at(&[&v4, &v6], EdgeStart::Root, args)
    }

    /// Enrols edge `home` with `endpoints` (`HOST:PORT` each, as `edge add --endpoint` takes
    /// them) and starts it as `how` says with `args`.
    pub fn enrol_edge_at(
        &mut self,
        endpoints: &[&str],
        how: EdgeStart<'static>,
        args: EdgeArgs<'_>,
    ) -> EdgeInfo {
        let info = self.broker.add_edge_at(&self.home, "home", endpoints);
        super::plex::assert_safe_host(&info.tunnel_ip);
        let edge = Edge::start_with_args(
            &self.home,
            &self.broker,
            &info.enrolment_token,
            self.dir.path(),
            &format!("{}t", self.base),
            how,
            args,
        );
        self.edge = Some(edge);
        info
    }

    pub fn edge(&self) -> &Edge {
        self.edge.as_ref().expect("enrol_edge first")
    }

    pub fn add_user(&self, name: &str) -> UserInfo {
        self.broker
            .add_user(&self.home, name, &format!("{name}-correct-horse-battery"))
    }

    /// A fresh client config directory (one simulated device).
    pub fn device(&self, name: &str) -> ClientCli {
        ClientCli::new(&self.dir.path().join(format!("device-{name}")))
    }

    /// Logs `user` in from the client namespace with the current TOTP code; panics on refusal.
    pub fn login(&self, cli: &ClientCli, user: &UserInfo) {
        self.login_at(cli, user, &self.broker_url());
    }

    /// [`Lab::login`] to the broker at `url` ([`Lab::broker_url6`], say).
    pub fn login_at(&self, cli: &ClientCli, user: &UserInfo, url: &str) {
        self.login_from(&self.client, cli, user, url);
    }

    /// [`Lab::login_at`] from namespace `ns` ([`Lab::client2`], say).
    pub fn login_from(&self, ns: &Netns, cli: &ClientCli, user: &UserInfo, url: &str) {
        let code = user.totp_at(crate::unix_now());
        cli.login(
            ns,
            url,
            &user.name,
            &user.password,
            &self.broker.fingerprint,
            &code,
        )
        .expect_ok(&format!("grantwire login as {}", user.name));
    }

    /// `grantwire profile home --out FILE` from the client namespace; returns the file.
    pub fn profile(&self, cli: &ClientCli, file_name: &str) -> PathBuf {
        self.profile_from(&self.client, cli, file_name)
    }

    /// [`Lab::profile`] from namespace `ns`.
    pub fn profile_from(&self, ns: &Netns, cli: &ClientCli, file_name: &str) -> PathBuf {
        let out = self.dir.path().join(file_name);
        cli.profile(ns, "home", &out)
            .expect_ok("grantwire profile home");
        assert!(
            out.is_file(),
            "grantwire profile --out wrote no {}",
            out.display()
        );
        out
    }

    pub fn plex_url(&self, edge: &EdgeInfo) -> String {
        format!("http://{}:{PLEX_PORT}/", edge.tunnel_ip)
    }

    /// The set-up the data-path scenarios start from, once the edge is enrolled: user `name`
    /// granted `home` on the default terms, signed in from the client namespace, its profile
    /// written (`NAME-home.conf`) and brought up in wireguard-go, and the page loaded through
    /// it. Returns the tunnel and the profile.
    pub fn tunnel_up(&self, edge: &EdgeInfo, name: &str) -> (WgClient, PathBuf) {
        self.tunnel(edge, name, Family::V4)
    }

    /// [`Lab::tunnel_up`] over IPv6 (call [`Lab::add_ipv6`] and enrol a dual-stack edge
    /// first): `name` signs in at the broker's IPv6 address, so the lease is pinned to the
    /// client's /64 and its profile names the edge's IPv6 endpoint (asserted).
    pub fn tunnel_up6(&self, edge: &EdgeInfo, name: &str) -> (WgClient, PathBuf) {
        self.tunnel(edge, name, Family::V6)
    }

    /// [`Lab::tunnel_up`] or [`Lab::tunnel_up6`], as `family` says.
    pub fn tunnel(&self, edge: &EdgeInfo, name: &str, family: Family) -> (WgClient, PathBuf) {
        let profile = self.granted_profile(name, family);
        let wg = WgClient::up(&self.client, &format!("{}c", self.base), &profile);
        self.wait_page(&self.client, &self.plex_url(edge), FIRST_LOAD)
            .unwrap_or_else(|last| {
                panic!("{name}'s page did not load through the tunnel ({family:?}): {last:?}")
            });
        (wg, profile)
    }

    /// `name` added, granted `home`, signed in from the client namespace at the broker's
    /// address of `family` and given a profile (`NAME-home.conf`), whose endpoint is asserted
    /// to be the edge's of that family.
    pub fn granted_profile(&self, name: &str, family: Family) -> PathBuf {
        let user = self.add_user(name);
        self.broker.grant(&self.home, name, "home", None);
        let device = self.device(&format!("{name}-phone"));
        self.login_at(&device, &user, &self.broker_url_for(family));
        let profile = self.profile(&device, &format!("{name}-home.conf"));
        family.assert_profile(&profile);
        profile
    }

    /// alice over a bad line: `name` added, granted `home`, signed in and given a profile
    /// from the client namespace over `family`, her WireGuard pointed at a [`BadLink`] relay
    /// on 127.0.0.1:`relay_port` that sends to the edge's endpoint of that family and does to
    /// every datagram what `line` says, and the page loaded through it within `first_load`.
    /// Returns the interface, the relay and how long that first page took.
    pub fn tunnel_over(
        &self,
        edge: &EdgeInfo,
        name: &str,
        (relay_port, family): (u16, Family),
        line: Line,
        first_load: Duration,
    ) -> (WgClient, BadLink, Duration) {
        let profile = self.granted_profile(name, family);
        let link = BadLink::start(
            &self.client,
            self.dir.path(),
            relay_port,
            (family.edge_host(), EDGE_WG_PORT),
            line,
        );
        let wg = WgClient::up(&self.client, &format!("{}c", self.base), &profile);
        link.route_wireguard(&self.client, wg.ifname());
        let took = self
            .wait_page(&self.client, &self.plex_url(edge), first_load)
            .unwrap_or_else(|last| {
                panic!("{name}'s page did not load over the line {line:?} ({family:?}): {last:?}")
            });
        (wg, link, took)
    }

    /// Starts counting, in home, the WireGuard handshake responses (type 2) the edge sends
    /// toward the client (nftables table `gwtest_responses`); read with
    /// [`Lab::handshake_responses`].
    pub fn count_handshake_responses(&self) {
        let client_if = &self.home_client_if;
        super::nft::load(
            &self.home,
            &format!(
                "table inet gwtest_responses {{\n\
                 \x20   counter responses {{}}\n\
                 \x20   chain post {{\n\
                 \x20       type filter hook postrouting priority srcnat + 10; policy accept;\n\
                 \x20       oifname \"{client_if}\" udp sport {EDGE_WG_PORT} @th,64,8 2 \
                 counter name responses\n\
                 \x20   }}\n\
                 }}\n"
            ),
        );
    }

    /// Handshake responses toward the client since [`Lab::count_handshake_responses`].
    pub fn handshake_responses(&self) -> u64 {
        super::nft::counter(&self.home, "gwtest_responses", "responses").packets
    }

    /// Cuts the edge off from its broker: in home, connections to the broker's port on
    /// 127.0.0.1 (where the edge reaches it) are reset, while the broker keeps serving clients
    /// and the admin. [`Lab::heal_edge_from_broker`] ends the cut.
    pub fn cut_edge_from_broker(&self) {
        let rule = format!(
            "table inet gwtest_cut {{\n\
             \x20   chain out {{\n\
             \x20       type filter hook output priority 0;\n\
             \x20       ip daddr 127.0.0.1 tcp dport {BROKER_PORT} reject with tcp reset\n\
             \x20   }}\n\
             }}\n"
        );
        super::nft::load(&self.home, &rule);
    }

    /// Ends [`Lab::cut_edge_from_broker`].
    pub fn heal_edge_from_broker(&self) {
        self.home
            .exec_ok(&["nft", "delete", "table", "inet", "gwtest_cut"]);
    }

    /// The client "moves network": its address on the link to home changes from 192.0.2.2 to
    /// `to` (in 192.0.2.0/24), and its WireGuard interface `ifname` is told the edge's endpoint
    /// again, as the WireGuard apps do on a network change (wireguard-go otherwise keeps sending
    /// from the vanished address). Its session is kept.
    pub fn move_client(&self, to: &str, ifname: &str) {
        self.move_client_from(CLIENT_IP, to, ifname);
    }

    /// [`Lab::move_client`] from `from`, where an earlier move put the client.
    pub fn move_client_from(&self, from: &str, to: &str, ifname: &str) {
        let old = format!("{from}/24");
        let dev = self.client_if.as_str();
        self.client
            .exec_ok(&["ip", "addr", "del", &old, "dev", dev]);
        self.client.add_addr(&format!("{to}/24"), dev);
        let endpoint = format!("{HOME_OUTSIDE_IP}:{EDGE_WG_PORT}");
        super::wg::set_peer_endpoint(&self.client, ifname, &endpoint);
    }

    /// Polls `url` from `ns` until the stand-in page loads; returns how long it took.
    pub fn wait_page(
        &self,
        ns: &Netns,
        url: &str,
        timeout: Duration,
    ) -> Result<Duration, HttpResult> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            let got = http_get(ns, url, Duration::from_secs(1));
            if got.has(self.plex.marker()) {
                return Ok(start.elapsed());
            }
            last = Some(got);
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| http_get(ns, url, Duration::from_secs(1))))
    }

    /// Requests the page from the client namespace every [`POLL_EVERY`] (each with
    /// [`POLL_TIMEOUT`]) for `window` from now, timing each request from `since`.
    pub fn poll_page(&self, url: &str, since: Instant, window: Duration) -> Vec<PagePoll> {
        let end = Instant::now() + window;
        let mut polls = Vec::new();
        while Instant::now() < end {
            let started = Instant::now();
            let loaded = self.page_loads(&self.client, url, POLL_TIMEOUT);
            polls.push(PagePoll {
                at: started.saturating_duration_since(since),
                loaded,
            });
            std::thread::sleep(POLL_EVERY.saturating_sub(started.elapsed()));
        }
        polls
    }

    /// Whether the page loads from `ns` right now (one short try).
    pub fn page_loads(&self, ns: &Netns, url: &str, timeout: Duration) -> bool {
        http_get(ns, url, timeout).has(self.plex.marker())
    }

    /// Panics on WARN or ERROR lines in the broker's and edge's logs matching none of `allowed`
    /// (nor, for an edge started as root without `--user`, its warning about running as root).
    #[track_caller]
    pub fn assert_no_unexpected_warnings(&self, allowed: &[&str]) {
        let mut found = Vec::new();
        let mut edge_allowed = allowed.to_vec();
        if self
            .edge
            .as_ref()
            .is_some_and(|e| e.start == EdgeStart::Root)
        {
            edge_allowed.push(EDGE_ROOT_WARNING);
        }
        for (proc, allowed) in std::iter::once((self.broker.proc(), allowed)).chain(
            self.edge
                .as_ref()
                .map(|e| (e.proc(), edge_allowed.as_slice())),
        ) {
            for line in unexpected_warnings(&proc.stderr(), allowed) {
                found.push(format!("{}: {line}", proc.label()));
            }
        }
        assert!(
            found.is_empty(),
            "unexpected WARN/ERROR lines (a WARN means a human should look):\n{}",
            found.join("\n")
        );
    }
}
