//! The command line of `grantwire-broker` (binary only; the library never sees clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;

#[derive(Debug, Parser)]
#[command(
    name = "grantwire-broker",
    version,
    about = "Authenticates users, checks grants and issues pinned WireGuard leases for grantwire edges"
)]
pub struct Cli {
    /// Directory for the database, TLS key and admin socket.
    #[arg(
        long,
        global = true,
        env = "GRANTWIRE_DATA_DIR",
        default_value = "./grantwire-data"
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: HTTPS API and the local admin socket.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage edges.
    #[command(subcommand)]
    Edge(EdgeCommand),
    /// Manage grants (user -> edge).
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Inspect leases.
    #[command(subcommand)]
    Lease(LeaseCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS listener.
    #[arg(long, env = "GRANTWIRE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain; without it a self-signed certificate is made and kept.
    #[arg(long, env = "GRANTWIRE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GRANTWIRE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Lifetime of a login session (e.g. 12h, 30m, 1s).
    #[arg(long, env = "GRANTWIRE_SESSION_TTL", default_value = "12h")]
    pub session_ttl: humantime::Duration,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; prints the TOTP secret and otpauth URI once.
    Add {
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EdgeCommand {
    /// Register an edge; prints its one-time enrolment token.
    Add {
        /// Edge name: 1-32 characters of a-z, 0-9 and '-'.
        name: String,
        /// HOST:PORT clients send WireGuard to.
        #[arg(long)]
        endpoint: String,
        /// Tunnel subnet, /16 to /29; the edge takes its first host address.
        #[arg(long, default_value = "10.77.0.0/24")]
        subnet: Ipv4Net,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Let USER request leases on EDGE.
    Add {
        user: String,
        edge: String,
        /// Lifetime of each lease under this grant (e.g. 8h, 30m, 5s).
        #[arg(long, default_value = "8h")]
        lease_ttl: humantime::Duration,
        #[arg(long)]
        json: bool,
    },
    /// Revoke USER's grant on EDGE and its live leases, at once.
    Revoke {
        user: String,
        edge: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// List live leases.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn documented_forms_parse() {
        for line in [
            "grantwire-broker serve --data-dir d --listen 127.0.0.1:0",
            "grantwire-broker user add alice --admin --password-stdin --json",
            "grantwire-broker edge add home --endpoint 192.0.2.1:51820 --subnet 10.9.0.0/24 --json",
            "grantwire-broker grant add alice home --lease-ttl 5s --json",
            "grantwire-broker grant revoke alice home",
            "grantwire-broker lease list --json",
        ] {
            let args = line.split_whitespace();
            assert!(Cli::try_parse_from(args).is_ok(), "{line}");
        }
        let bad = ["grantwire-broker", "serve", "--tls-cert", "c.pem"];
        assert!(Cli::try_parse_from(bad).is_err());
    }
}
