//! The command line: one clap definition, from which `--help`, the completions and the man
//! page are all generated.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use grantwire_client_core::{parse_broker_url, Fingerprint};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  runtime failure: network, file I/O, broker error, not logged in, unknown edge or lease
  2  usage error: bad flags or values
  3  refused: wrong user name, password or TOTP code, or an expired session (HTTP 401);
     no grant for the edge, or another user's lease (HTTP 403); the grant's live leases are
     at their cap (HTTP 409 lease_cap); on renew, the lease is gone;
     a broker certificate that is not trusted, or that changed since it was trusted";

/// Log in to a grantwire broker and get pinned, short-lived WireGuard profiles for Plex.
#[derive(Debug, Parser)]
#[command(name = "grantwire", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where the session (session.json, 0600) and default profiles are kept
    /// [default: the OS config directory, e.g. ~/.config/grantwire]
    #[arg(long, global = true, env = "GRANTWIRE_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with password and TOTP code and keep the session on this device
    #[command(after_help = EXIT_CODES)]
    Login(LoginArgs),
    /// Make a keypair here and get a lease on EDGE, pinned to this device's address
    #[command(after_help = EXIT_CODES)]
    Profile(ProfileArgs),
    /// Show the address the broker sees and your live leases, and whether each is pinned here
    #[command(after_help = EXIT_CODES)]
    Whoami(WhoamiArgs),
    /// Move the pin of EDGE's lease to this device's address and extend it
    ///
    /// Uses the last profile made here for EDGE and rewrites its wg-quick file with the same
    /// key and tunnel address, so a running tunnel keeps working.
    #[command(after_help = EXIT_CODES)]
    Renew(RenewArgs),
    /// Check that the last profile made here for EDGE works from where you are now
    ///
    /// Asks the broker once: exit 0 when the lease is live and pinned to the address the
    /// broker sees you at, exit 3 (with what to run) when the pin moved or the lease ended.
    #[command(after_help = STATUS_EXIT_CODES)]
    Status(StatusArgs),
    /// Keep EDGE's lease working while this device moves between networks (runs until stopped)
    ///
    /// Runs until Ctrl-C or SIGTERM, renewing the lease of the last profile made here for EDGE
    /// when the broker sees this device at a new address or the lease nears its end.
    #[command(after_help = WATCH_HELP)]
    Watch(WatchArgs),
    /// End the session on the broker and forget it on this device
    #[command(after_help = EXIT_CODES)]
    Logout(LogoutArgs),
    /// List your live leases: edge, tunnel address, pin, expiry and last handshake
    #[command(after_help = EXIT_CODES)]
    Leases(LeasesArgs),
    /// Revoke one of your leases at once: its profile stops working on the edge
    #[command(after_help = EXIT_CODES)]
    Revoke(RevokeArgs),
    /// Bring up the tunnel to EDGE with wg-quick (Linux)
    ///
    /// Renews the last profile made here for EDGE when it ends within 10 minutes or is pinned
    /// elsewhere, writes it to <wg-dir>/gw-EDGE.conf (mode 0600) and runs `wg-quick up` on it.
    #[command(after_help = EXIT_CODES)]
    Up(UpArgs),
    /// Take the tunnel to EDGE down (`wg-quick down <wg-dir>/gw-EDGE.conf`)
    #[command(after_help = EXIT_CODES)]
    Down(DownArgs),
    /// Print a completion script for SHELL on stdout
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print grantwire's man page on stdout, or write one page per command to DIR
    Man(ManArgs),
}

const COMPLETIONS_HELP: &str = "\
Install, for example:
  bash:  grantwire completions bash > ~/.local/share/bash-completion/completions/grantwire
  zsh:   grantwire completions zsh > ~/.zfunc/_grantwire   (with ~/.zfunc in $fpath)
  fish:  grantwire completions fish > ~/.config/fish/completions/grantwire.fish";

const STATUS_EXIT_CODES: &str = "\
Exit codes:
  0  the lease is live and pinned to the address the broker sees you at
  1  runtime failure: network, file I/O, broker error, not logged in, no profile for EDGE
  2  usage error: bad flags or values
  3  the pin moved (the broker sees you elsewhere: run `grantwire renew EDGE`), the lease
     expired or ended (run `grantwire profile EDGE`), or the session or the broker's
     certificate was refused";

const WATCH_HELP: &str = "\
Each check asks the broker where it sees this device. The lease is renewed, and its wg-quick
file (where `grantwire profile` or `renew` wrote it) rewritten, when its pin no longer covers
that address, or when less than 10 minutes (a third of a shorter lease) are left. Keys, tunnel
address and endpoint stay the same, so a tunnel that is up (`grantwire up EDGE`, wg-quick, a
WireGuard app) keeps working without being touched. While the broker cannot be reached, checks
are retried after 1 s, doubling up to 60 s (or --every, if longer). Progress goes to stderr,
one line per event.

Exit codes:
  0  stopped by SIGINT (Ctrl-C) or SIGTERM
  1  runtime failure other than the network: file I/O, not logged in, no profile for EDGE
  2  usage error: bad flags or values (--every below 1s)
  3  refused: the session expired or the broker no longer accepts it (`grantwire login`);
     the lease is gone, e.g. its grant was revoked or it expired meanwhile (`grantwire
     profile EDGE`); a broker certificate that is not trusted, or that changed";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The edge whose last profile (made here by `grantwire profile EDGE`) to check
    pub edge: String,

    /// Print one JSON object {edge, lease_id, pin, source_ip, pinned_here, expires_at, state}
    /// on stdout, state being "ok", "pin_moved" or "expired"; the exit code is as without it
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The edge whose last profile (made here by `grantwire profile EDGE`) to keep working
    pub edge: String,

    /// How often to ask the broker where it sees this device, e.g. 30s, 2m (at least 1s)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::watch::parse_every)]
    pub every: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// Print one JSON object {leases: [{id, edge, tunnel_address, pin, created_at, expires_at,
    /// last_handshake_at}]} on stdout; times are Unix seconds, last_handshake_at null if none
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The lease's id, as `grantwire leases` shows it (l-0123456789abcdef)
    pub lease: String,

    /// Print one JSON object {revoked: {id, edge}} on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write grantwire.1 and one grantwire-COMMAND.1 per command into DIR (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Print one JSON object {user, source_ip, leases: [{id, edge, pin, pinned_here,
    /// expires_at}]} on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The edge whose last profile (made here by `grantwire profile EDGE`) to renew
    pub edge: String,

    /// Write the renewed wg-quick profile to FILE, mode 0600 [default: where `grantwire
    /// profile` wrote it, else <config-dir>/profiles/EDGE.conf unless --json is given]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print one JSON object {profile, wg_quick, path} on stdout; wg_quick holds the private key
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The edge whose last profile (made here by `grantwire profile EDGE`) to bring up; at
    /// most 12 characters, as the interface gw-EDGE must fit Linux's 15
    pub edge: String,

    /// Where wg-quick's file gw-EDGE.conf is written; it and every directory above it must be
    /// root's and writable by no one else (wg-quick runs the file as root)
    #[arg(
        long,
        env = "GRANTWIRE_WG_DIR",
        value_name = "DIR",
        default_value = "/etc/wireguard"
    )]
    pub wg_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The edge whose tunnel (brought up by `grantwire up EDGE`) to take down
    pub edge: String,

    /// Where `grantwire up` wrote gw-EDGE.conf
    #[arg(
        long,
        env = "GRANTWIRE_WG_DIR",
        value_name = "DIR",
        default_value = "/etc/wireguard"
    )]
    pub wg_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Print one JSON object {logged_out} on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The broker, e.g. https://plex-host.example:8443 (https:// is assumed when left out)
    #[arg(long, env = "GRANTWIRE_BROKER", value_name = "URL", value_parser = broker_url)]
    pub broker: String,

    /// Your user name on the broker
    #[arg(long, env = "GRANTWIRE_USER", value_name = "NAME")]
    pub user: String,

    /// SHA-256 fingerprint of the broker's certificate, as the broker printed it at start
    /// (also in <data-dir>/tls-cert.sha256). Without it, a broker whose certificate no public
    /// CA signed is trusted only once you accept its fingerprint on the terminal; either way
    /// it is remembered in <config-dir>/known_brokers.json, and a later change is refused
    #[arg(long, env = "GRANTWIRE_FINGERPRINT", value_name = "SHA256")]
    pub fingerprint: Option<Fingerprint>,

    /// Read the password from the first line of stdin instead of asking on the terminal
    #[arg(long)]
    pub password_stdin: bool,

    /// The current 6-digit TOTP code [default: asked for]
    #[arg(long, value_name = "CODE", value_parser = totp_code)]
    pub totp: Option<String>,

    /// Print one JSON object {user, broker, expires_at} on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The edge's name, as the broker's admin registered it
    pub edge: String,

    /// Write the wg-quick profile to FILE, mode 0600 [default when none of --qr, --qr-png,
    /// --qr-svg and --json is given: <config-dir>/profiles/EDGE.conf]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Show the profile as a QR code on stdout, for "Create from QR code" in the WireGuard apps
    #[arg(long, conflicts_with = "json")]
    pub qr: bool,

    /// Write the profile's QR code as a PNG image to FILE, mode 0600 (it holds the private key)
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,

    /// Write the profile's QR code as an SVG image to FILE, mode 0600 (it holds the private key)
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,

    /// Print one JSON object {profile, wg_quick, path} on stdout; wg_quick holds the private key
    #[arg(long)]
    pub json: bool,
}

pub fn broker_url(s: &str) -> Result<String, String> {
    parse_broker_url(s)
        .map(|u| u.to_string())
        .map_err(|e| e.to_string())
}

/// Six digits; spaces are dropped because authenticator apps show the code as `123 456`.
pub fn totp_code(s: &str) -> Result<String, String> {
    let code: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err("a TOTP code is 6 digits".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("grantwire").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn login_takes_every_documented_flag() {
        let fp = "ab".repeat(32);
        let cli = parse(&[
            "--config-dir",
            "/tmp/gw",
            "login",
            "--broker",
            "plex-host.example:8443",
            "--user",
            "alice",
            "--fingerprint",
            &fp,
            "--password-stdin",
            "--totp",
            "123 456",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.config_dir.as_deref(), Some(Path::new("/tmp/gw")));
        let Command::Login(args) = cli.command else {
            panic!("not login")
        };
        assert_eq!(args.broker, "https://plex-host.example:8443/");
        assert_eq!(args.user, "alice");
        assert_eq!(args.fingerprint.unwrap().to_string(), fp);
        assert!(args.password_stdin && args.json);
        assert_eq!(args.totp.as_deref(), Some("123456"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let base = ["login", "--broker", "https://b.example", "--user", "a"];
        for extra in [
            &["--fingerprint", "abc"][..],
            &["--totp", "12345"],
            &["--totp", "abcdef"],
        ] {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            let err = parse(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{extra:?}: {err}");
        }
        let err = parse(&["login", "--broker", "http://b.example", "--user", "a"]).unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn profile_flags_and_the_qr_json_conflict() {
        let cli = parse(&["profile", "home", "--out", "gw.conf", "--qr"]).unwrap();
        let Command::Profile(args) = cli.command else {
            panic!("not profile")
        };
        assert_eq!(args.edge, "home");
        assert_eq!(args.out.as_deref(), Some(Path::new("gw.conf")));
        assert!(args.qr && !args.json);
        assert!(parse(&["profile", "home", "--qr", "--json"]).is_err());
        assert!(parse(&["profile"]).is_err());
        // --config-dir is global: it may also follow the subcommand.
        let cli = parse(&["profile", "home", "--config-dir", "/x"]).unwrap();
        assert_eq!(cli.config_dir.as_deref(), Some(Path::new("/x")));
    }

    #[test]
    fn whoami_and_renew_flags() {
        let cli = parse(&["whoami", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Whoami(WhoamiArgs { json: true })
        ));
        let cli = parse(&["renew", "home", "--out", "gw.conf", "--json"]).unwrap();
        let Command::Renew(args) = cli.command else {
            panic!("not renew")
        };
        assert_eq!(args.edge, "home");
        assert_eq!(args.out.as_deref(), Some(Path::new("gw.conf")));
        assert!(args.json);
        assert!(parse(&["renew"]).is_err());
    }

    #[test]
    fn up_and_down_take_the_wg_dir() {
        let Command::Up(args) = parse(&["up", "home"]).unwrap().command else {
            panic!("not up")
        };
        assert_eq!(args.edge, "home");
        if std::env::var_os("GRANTWIRE_WG_DIR").is_none() {
            assert_eq!(args.wg_dir, Path::new("/etc/wireguard"));
        }
        let Command::Down(args) = parse(&["down", "home", "--wg-dir", "/tmp/wg"])
            .unwrap()
            .command
        else {
            panic!("not down")
        };
        assert_eq!(args.wg_dir, Path::new("/tmp/wg"));
        assert!(parse(&["up"]).is_err() && parse(&["down"]).is_err());
    }

    #[test]
    fn status_and_watch_flags() {
        let Command::Status(args) = parse(&["status", "home", "--json"]).unwrap().command else {
            panic!("not status")
        };
        assert_eq!(args.edge, "home");
        assert!(args.json);
        let Command::Watch(args) = parse(&["watch", "home"]).unwrap().command else {
            panic!("not watch")
        };
        assert_eq!(args.every, std::time::Duration::from_secs(30));
        let Command::Watch(args) = parse(&["watch", "home", "--every", "1s"]).unwrap().command
        else {
            panic!("not watch")
        };
        assert_eq!(args.every, std::time::Duration::from_secs(1));
        for bad in ["0", "0s", "999ms", "soon"] {
            let err = parse(&["watch", "home", "--every", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
        assert!(parse(&["status"]).is_err() && parse(&["watch"]).is_err());
    }

    #[test]
    fn totp_codes_lose_spaces() {
        assert_eq!(totp_code(" 123 456\n").unwrap(), "123456");
        assert!(totp_code("1234567").is_err());
    }

    #[test]
    fn new_commands_and_profile_images() {
        let cli = parse(&["profile", "home", "--qr-png", "a.png", "--qr-svg", "a.svg"]).unwrap();
        let Command::Profile(args) = cli.command else {
            panic!("not profile")
        };
        assert_eq!(args.qr_png.as_deref(), Some(Path::new("a.png")));
        assert_eq!(args.qr_svg.as_deref(), Some(Path::new("a.svg")));
        assert!(matches!(
            parse(&["leases", "--json"]).unwrap().command,
            Command::Leases(LeasesArgs { json: true })
        ));
        let Command::Revoke(args) = parse(&["revoke", "l-1"]).unwrap().command else {
            panic!("not revoke")
        };
        assert_eq!(args.lease, "l-1");
        assert!(parse(&["revoke"]).is_err());
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            assert!(parse(&["completions", shell]).is_ok(), "{shell}");
        }
        assert_eq!(parse(&["completions", "tcsh"]).unwrap_err().exit_code(), 2);
        let Command::Man(args) = parse(&["man", "--out", "d"]).unwrap().command else {
            panic!("not man")
        };
        assert_eq!(args.out.as_deref(), Some(Path::new("d")));
    }
}
