//! The command line: one clap struct, every flag with a `GRANTWIRE_EDGE_*` env fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use grantwire_pinned_tls::Fingerprint;
use ipnet::{IpNet, Ipv4Net};
use reqwest::Url;

use crate::doctor::DEFAULT_PREFS_PATH;
use crate::guard::HostPort;

/// The port and state directory defaults are DESIGN.md's; the TUN name is short because Linux
/// interface names are limited to 15 bytes and scripts type it.
pub const DEFAULT_LISTEN: &str = "[::]:51820";
pub const DEFAULT_STATE_DIR: &str = "./grantwire-edge-state";
pub const DEFAULT_TUN_NAME: &str = "gw0";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9851";

/// `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Self(None));
        }
        s.parse()
            .map(|addr| Self(Some(addr)))
            .map_err(|_| format!("{s:?} is neither ADDR:PORT nor `off`"))
    }
}
pub const DEFAULT_PROC_NET: &str = "/proc/net";

#[derive(Debug, Parser)]
#[command(
    name = "grantwire-edge",
    version,
    about = "Userspace WireGuard endpoint next to Plex that admits only granted, pinned, unexpired peers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start and moved out at once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enrol with the broker on first start, then hold the lease set and run the data plane.
    Run(RunArgs),
    /// Check Plex's settings and this host for ways around the tunnel, with the fix for each.
    /// Exits 0 when nothing is wrong, 1 on any error-severity finding, 2 when it cannot check.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Plex's Preferences.xml (default: where the Linux package keeps it).
    #[arg(long, env = "GRANTWIRE_EDGE_PLEX_PREFS", default_value = DEFAULT_PREFS_PATH)]
    pub plex_prefs: PathBuf,

    /// The edge's state directory, for the tunnel subnet and address it enrolled with.
    #[arg(long, env = "GRANTWIRE_EDGE_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Check against this tunnel subnet instead of the enrolled one; the edge is its first
    /// host address.
    #[arg(long, env = "GRANTWIRE_EDGE_TUNNEL_SUBNET")]
    pub tunnel_subnet: Option<Ipv4Net>,

    /// Where the kernel's socket tables are (tcp, tcp6, udp, udp6); /proc/PID/net reads
    /// another network namespace's, such as a Plex container's.
    #[arg(long, env = "GRANTWIRE_EDGE_PROC_NET", default_value = DEFAULT_PROC_NET)]
    pub proc_net: PathBuf,

    /// Print one JSON object {"ok", "findings", ...} on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Broker base URL, e.g. https://broker.example:8443
    #[arg(long, env = "GRANTWIRE_EDGE_BROKER")]
    pub broker: Url,

    /// File holding the one-time enrolment token; needed only until the edge has enrolled.
    #[arg(long, env = "GRANTWIRE_EDGE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// SHA-256 fingerprint of the broker's certificate (printed by the broker at start);
    /// without it the broker needs a certificate from a public CA.
    #[arg(long, env = "GRANTWIRE_EDGE_BROKER_FINGERPRINT")]
    pub broker_fingerprint: Option<Fingerprint>,

    /// UDP address of the WireGuard endpoint. The default `[::]:51820` takes IPv4 and IPv6
    /// (IPv4 only on a host without IPv6); a narrower address has the guard drop, unanswered,
    /// what its socket does not take.
    #[arg(long, env = "GRANTWIRE_EDGE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Where the private key, broker credential and edge config are kept (created 0700).
    #[arg(long, env = "GRANTWIRE_EDGE_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Name of the TUN interface Plex is reached through.
    #[arg(long, env = "GRANTWIRE_EDGE_TUN_NAME", default_value = DEFAULT_TUN_NAME)]
    pub tun_name: String,

    /// LAN range still allowed to reach Plex directly (the living-room TV); repeatable.
    #[arg(
        long = "allow-lan",
        env = "GRANTWIRE_EDGE_ALLOW_LAN",
        value_delimiter = ','
    )]
    pub allow_lan: Vec<IpNet>,

    /// Keep the whole host silent to strangers, not only Plex's ports: on every interface but
    /// loopback and the tunnel, drop what no connection of the host's own asked for, except
    /// the WireGuard port, `--allow-lan` ranges and `--host-allow` ports. Off by default: it
    /// also closes the host's other services (SSH, a broker on this host) unless listed.
    #[arg(long, env = "GRANTWIRE_EDGE_SILENT_HOST")]
    pub silent_host: bool,

    /// With --silent-host, a port strangers may still reach, as tcp/PORT or udp/PORT (tcp/22
    /// for SSH, tcp/8443 for a broker on this host); repeatable.
    #[arg(
        long = "host-allow",
        env = "GRANTWIRE_EDGE_HOST_ALLOW",
        value_delimiter = ',',
        requires = "silent_host"
    )]
    pub host_allow: Vec<HostPort>,

    /// Serve Prometheus metrics at http://ADDR/metrics, or `off`. Keep it on loopback (or a
    /// management network): the counters say who is being refused and how often.
    #[arg(long, env = "GRANTWIRE_EDGE_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: MetricsListen,

    /// Once the guard, the TUN device and the sockets are set up, become this user, keeping only
    /// CAP_NET_ADMIN (for `nft`: the guard's pin sets, and its removal at a clean stop) and
    /// handing it the state directory. Needs the edge to start as root.
    #[arg(long, env = "GRANTWIRE_EDGE_USER")]
    pub user: Option<String>,

    /// Seconds between reports of each lease's last handshake and bytes to the broker.
    /// Off-pin use of a lease's key is reported at once, whatever this says.
    #[arg(long, env = "GRANTWIRE_EDGE_REPORT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub report_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_repeated_flags() {
        let cli = Cli::try_parse_from([
            "grantwire-edge",
            "run",
            "--broker",
            "https://broker.test:8443",
            "--allow-lan",
            "192.168.1.0/24",
            "--allow-lan",
            "fd00::/64",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(args.tun_name, "gw0");
        assert_eq!(args.allow_lan.len(), 2);
        assert!(args.token_file.is_none());
        assert_eq!(
            args.metrics_listen,
            MetricsListen(Some("127.0.0.1:9851".parse().unwrap()))
        );
        assert!(args.user.is_none());
        assert!(!args.silent_host && args.host_allow.is_empty());
    }

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec![
            "grantwire-edge",
            "run",
            "--broker",
            "https://broker.test:8443",
        ];
        argv.extend(extra);
        let cli = Cli::try_parse_from(argv)?;
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        Ok(args)
    }

    #[test]
    fn a_silent_host_takes_the_ports_it_still_serves() {
        let args = run_args(&["--silent-host", "--host-allow", "tcp/22,udp/546"]).unwrap();
        assert!(args.silent_host);
        let allowed: Vec<String> = args.host_allow.iter().map(ToString::to_string).collect();
        assert_eq!(allowed, ["tcp/22", "udp/546"]);
    }

    #[test]
    fn host_allow_is_refused_without_silent_host_or_with_a_bad_port() {
        let without = run_args(&["--host-allow", "tcp/22"]).unwrap_err();
        assert!(without.to_string().contains("--silent-host"), "{without}");
        for bad in ["22", "icmp/8", "tcp/0", "tcp/65536", "tcp/ssh", "tcp/"] {
            let err = run_args(&["--silent-host", "--host-allow", bad]).unwrap_err();
            assert!(
                err.to_string().contains("tcp/PORT") || err.to_string().contains("port"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn metrics_can_be_turned_off_and_bad_addresses_are_refused() {
        let parse = |value: &str| {
            Cli::try_parse_from([
                "grantwire-edge",
                "run",
                "--broker",
                "https://broker.test:8443",
                "--metrics-listen",
                value,
            ])
            .map(|cli| match cli.command {
                Command::Run(args) => args.metrics_listen,
                _ => panic!("not run"),
            })
        };
        assert_eq!(parse("off").unwrap(), MetricsListen(None));
        assert_eq!(
            parse("[::1]:9900").unwrap(),
            MetricsListen(Some("[::1]:9900".parse().unwrap()))
        );
        let err = parse("localhost").unwrap_err().to_string();
        assert!(err.contains("neither ADDR:PORT nor `off`"), "{err}");
    }

    #[test]
    fn user_flag() {
        let cli = Cli::try_parse_from([
            "grantwire-edge",
            "run",
            "--broker",
            "https://broker.test:8443",
            "--user",
            "grantwire-edge",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.user.as_deref(), Some("grantwire-edge"));
    }

    #[test]
    fn doctor_defaults_and_flags() {
        let cli = Cli::try_parse_from(["grantwire-edge", "doctor"]).unwrap();
        let Command::Doctor(args) = cli.command else {
            panic!("not doctor");
        };
        assert_eq!(args.plex_prefs, PathBuf::from(DEFAULT_PREFS_PATH));
        assert_eq!(args.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(args.proc_net, PathBuf::from("/proc/net"));
        assert!(args.tunnel_subnet.is_none() && !args.json);

        let cli = Cli::try_parse_from([
            "grantwire-edge",
            "doctor",
            "--plex-prefs",
            "/tmp/P.xml",
            "--tunnel-subnet",
            "10.9.0.0/24",
            "--json",
        ])
        .unwrap();
        let Command::Doctor(args) = cli.command else {
            panic!("not doctor");
        };
        assert_eq!(args.plex_prefs, PathBuf::from("/tmp/P.xml"));
        assert_eq!(args.tunnel_subnet, Some("10.9.0.0/24".parse().unwrap()));
        assert!(args.json);

        let err = Cli::try_parse_from(["grantwire-edge", "doctor", "--tunnel-subnet", "fd00::/64"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn bad_fingerprint_is_a_usage_error() {
        let err = Cli::try_parse_from([
            "grantwire-edge",
            "run",
            "--broker",
            "https://b.test",
            "--broker-fingerprint",
            "nope",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
