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
    /// Write an online, integrity-checked copy of the database to FILE (which must not exist).
    Backup {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log, oldest first.
    Audit {
        /// Only entries since then: a duration back from now (24h) or an RFC 3339 UTC time.
        #[arg(long)]
        since: Option<String>,
        /// Only entries about this user (as actor, or named in the detail).
        #[arg(long)]
        user: Option<String>,
        /// Only entries of this kind (login_failed, web_admin_change, ...).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS listener. The default `[::]:8443` takes IPv4 and IPv6 (IPv4 only on
    /// a host without IPv6).
    #[arg(long, env = "GRANTWIRE_LISTEN", default_value = "[::]:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain; without it a self-signed certificate is made and kept.
    #[arg(long, env = "GRANTWIRE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GRANTWIRE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Get and renew the certificate from an ACME CA (Let's Encrypt by default) for this public
    /// DNS name, with the TLS-ALPN-01 challenge on this listener (which must be reachable on
    /// port 443 under that name). Edges and clients then pin the TLS key, which every renewal
    /// keeps.
    #[arg(long, env = "GRANTWIRE_ACME_DOMAIN", conflicts_with = "tls_cert")]
    pub acme_domain: Option<String>,
    /// Contact address for the CA's expiry notices.
    #[arg(long, env = "GRANTWIRE_ACME_EMAIL", requires = "acme_domain")]
    pub acme_email: Option<String>,
    /// The ACME CA's directory URL.
    #[arg(
        long,
        env = "GRANTWIRE_ACME_DIRECTORY",
        requires = "acme_domain",
        default_value = grantwire_broker::acme::LETS_ENCRYPT
    )]
    pub acme_directory: String,
    /// PEM root certificate to check the ACME directory's HTTPS against instead of the system's
    /// (a private CA, or a test CA).
    #[arg(long, env = "GRANTWIRE_ACME_DIRECTORY_CA", requires = "acme_domain")]
    pub acme_directory_ca: Option<PathBuf>,
    /// Lifetime of a login session (e.g. 12h, 30m, 1s).
    #[arg(long, env = "GRANTWIRE_SESSION_TTL", default_value = "12h")]
    pub session_ttl: humantime::Duration,
    /// A session unused for this long ends (each authenticated request counts as use).
    #[arg(long, env = "GRANTWIRE_SESSION_IDLE", default_value = "1h")]
    pub session_idle: humantime::Duration,
    /// Login requests one source address may make at once (then --login-per-sec).
    #[arg(long, env = "GRANTWIRE_LOGIN_BURST", default_value_t = 10)]
    pub login_burst: u32,
    #[arg(long, env = "GRANTWIRE_LOGIN_PER_SEC", default_value_t = 1)]
    pub login_per_sec: u32,
    /// Lease requests one source address may make at once (then --lease-per-sec).
    #[arg(long, env = "GRANTWIRE_LEASE_BURST", default_value_t = 30)]
    pub lease_burst: u32,
    #[arg(long, env = "GRANTWIRE_LEASE_PER_SEC", default_value_t = 10)]
    pub lease_per_sec: u32,
    /// CIDR of a reverse proxy whose X-Forwarded-For names the client (repeatable; the env
    /// variable takes a comma-separated list). Any other peer's forwarding headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "GRANTWIRE_TRUSTED_PROXY",
        value_delimiter = ',',
        value_parser = grantwire_broker::proxy::parse_cidr
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// POST a JSON alert here when an account is locked, a TOTP code is reused, a lease key is
    /// used off its pin, or a user logs in from a new address. https://, or http:// to loopback.
    /// (Checked in `serve`, not by clap, whose error would echo the URL and its secret path.)
    #[arg(long, env = "GRANTWIRE_ALERT_WEBHOOK", hide_env_values = true)]
    pub alert_webhook: Option<String>,
    /// Audit rows and alerts older than this are deleted (checked at start and hourly);
    /// expired sessions are deleted whatever this says.
    #[arg(long, env = "GRANTWIRE_RETENTION", default_value = "365d")]
    pub retention: humantime::Duration,
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
    /// Invite a user: prints a temporary password (once) with which they choose their own
    /// password and enrol their TOTP app at first sign-in on the broker's web pages.
    Invite {
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// How long the invitation lasts (at most 30 days).
        #[arg(long, value_name = "DURATION", default_value = "72h")]
        expires: humantime::Duration,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List users with their state (active, waiting after failed logins, disabled).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Refuse the user's logins and end their sessions and live leases.
    Disable {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Let a disabled user log in again.
    Enable {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a new password; ends the user's sessions and live leases.
    ResetPassword {
        name: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make a new TOTP secret (printed once, like `user add`); ends the user's sessions and
    /// live leases.
    ResetTotp {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove the user with their grants; ends their sessions and live leases. The audit log
    /// keeps their name.
    Remove {
        name: String,
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
        /// HOST:PORT clients send WireGuard to. Repeat for one IPv4 and one IPv6 address: a
        /// profile gets the one of its pin's family. A hostname stands alone.
        #[arg(long, required = true)]
        endpoint: Vec<String>,
        /// Tunnel subnet, /16 to /29; the edge takes its first host address.
        #[arg(long, default_value = "10.77.0.0/24")]
        subnet: Ipv4Net,
        /// How long the enrolment token works (e.g. 24h, 30m; at most 30 days).
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
        #[arg(long)]
        json: bool,
    },
    /// List edges: endpoints, subnet, enrolment, whether connected now, last seen.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an edge: its grants and leases end and its credential stops working.
    Remove {
        name: String,
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
        /// When the grant ends: an RFC 3339 UTC time (2026-12-31T23:00:00Z) or a duration from
        /// now (30d). Leases never outlive it.
        #[arg(long)]
        until: Option<String>,
        /// TCP ports on the edge the leases may reach, comma-separated (default 32400).
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
        ports: Vec<u16>,
        /// Pin IPv4 clients to this prefix length (8-32, default 32), e.g. 24 behind CGNAT.
        #[arg(long, value_parser = clap::value_parser!(u8).range(8..=32))]
        pin_prefix4: Option<u8>,
        /// Pin IPv6 clients to this prefix length (32-128, default 64).
        #[arg(long, value_parser = clap::value_parser!(u8).range(32..=128))]
        pin_prefix6: Option<u8>,
        /// Live leases the grant may hold at once (default 5); a request over it is refused.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
        max_leases: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// List live grants.
    List {
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
    /// Revoke one live lease; its edge drops the peer at once.
    Revoke {
        id: String,
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
            "grantwire-broker user list --json",
            "grantwire-broker user disable alice --json",
            "grantwire-broker user enable alice",
            "grantwire-broker user reset-password alice --password-stdin --json",
            "grantwire-broker user reset-totp alice --json",
            "grantwire-broker edge add home --endpoint 192.0.2.1:51820 --subnet 10.9.0.0/24 --json",
            "grantwire-broker grant add alice home --lease-ttl 5s --json",
            "grantwire-broker grant revoke alice home",
            "grantwire-broker grant add alice home --until 30d --ports 32400,32469 --pin-prefix4 24 --pin-prefix6 56",
            "grantwire-broker grant add alice home --max-leases 12 --json",
            "grantwire-broker edge add home --endpoint 192.0.2.1:51820 --expires 2h",
            "grantwire-broker serve --retention 90d",
            "grantwire-broker grant list --json",
            "grantwire-broker edge add home --endpoint 192.0.2.1:51820 --endpoint [2001:db8::1]:51820",
            "grantwire-broker edge list --json",
            "grantwire-broker audit --since 24h --user alice --json",
            "grantwire-broker backup /var/backups/broker.db --json",
            "grantwire-broker edge remove home --json",
            "grantwire-broker lease list --json",
            "grantwire-broker serve --trusted-proxy 10.0.0.0/8 --trusted-proxy ::1",
        ] {
            let args = line.split_whitespace();
            assert!(Cli::try_parse_from(args).is_ok(), "{line}");
        }
        let bad = ["grantwire-broker", "serve", "--tls-cert", "c.pem"];
        assert!(Cli::try_parse_from(bad).is_err());
        let bad = [
            "grantwire-broker",
            "serve",
            "--trusted-proxy",
            "10.0.0.0/33",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
        for bad in [
            "grantwire-broker grant add a b --ports 0",
            "grantwire-broker grant add a b --ports 65536",
            "grantwire-broker grant add a b --pin-prefix4 7",
            "grantwire-broker grant add a b --pin-prefix4 33",
            "grantwire-broker grant add a b --pin-prefix6 31",
            "grantwire-broker grant add a b --pin-prefix6 129",
            "grantwire-broker grant add a b --max-leases 0",
            "grantwire-broker grant add a b --max-leases 65537",
        ] {
            assert!(
                Cli::try_parse_from(bad.split_whitespace()).is_err(),
                "{bad}"
            );
        }
        let two = [
            "grantwire-broker",
            "serve",
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.1",
        ];
        let Command::Serve(args) = Cli::try_parse_from(two).unwrap().command else {
            panic!("not serve");
        };
        assert_eq!(args.trusted_proxies.len(), 2);
    }
}
