//! The command line: one clap struct, every flag with a `GRANTWIRE_EDGE_*` env fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use grantwire_client_core::tls::Fingerprint;
use ipnet::IpNet;
use reqwest::Url;

/// The port and state directory defaults are DESIGN.md's; the TUN name is short because Linux
/// interface names are limited to 15 bytes and scripts type it.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:51820";
pub const DEFAULT_STATE_DIR: &str = "./grantwire-edge-state";
pub const DEFAULT_TUN_NAME: &str = "gw0";

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enrol with the broker on first start, then hold the lease set and run the data plane.
    Run(RunArgs),
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

    /// UDP address of the WireGuard endpoint.
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

    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "GRANTWIRE_EDGE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

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
        let Command::Run(args) = cli.command;
        assert_eq!(args.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(args.tun_name, "gw0");
        assert_eq!(args.allow_lan.len(), 2);
        assert!(args.token_file.is_none());
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
