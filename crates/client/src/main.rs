//! `grantwire`: log in to a grantwire broker and get a WireGuard profile for Plex.
//!
//! Thin over `grantwire-client-core`: this file reads arguments, the terminal and stdin, calls
//! the core, and prints. Human text goes to stderr; stdout carries only what a script or a
//! phone reads (`--json` objects, the QR code).

use std::io::{self, BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use clap::{Args, Parser, Subcommand};
use grantwire_client_core::time::format_unix_time;
use grantwire_client_core::{
    default_profile_path, keys, parse_broker_url, render_qr, write_profile, BrokerClient, Error,
    ErrorKind, Fingerprint, LeaseStore, SessionStore, StoredLease,
};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  runtime failure: network, TLS trust or pin mismatch, file I/O, broker error, not logged in,
     unknown edge (HTTP 404)
  2  usage error: bad flags or values
  3  refused: wrong user name, password or TOTP code, or an expired session (HTTP 401);
     no grant for the edge (HTTP 403); on renew, the lease is gone (HTTP 403, 404)";

/// Log in to a grantwire broker and get pinned, short-lived WireGuard profiles for Plex.
#[derive(Debug, Parser)]
#[command(name = "grantwire", version, after_help = EXIT_CODES)]
struct Cli {
    /// Where the session (session.json, 0600) and default profiles are kept
    /// [default: the OS config directory, e.g. ~/.config/grantwire]
    #[arg(long, global = true, env = "GRANTWIRE_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in with password and TOTP code and keep the session on this device
    #[command(after_help = EXIT_CODES)]
    Login(LoginArgs),
    /// Make a keypair here and get a lease on EDGE, pinned to this device's address
    #[command(after_help = EXIT_CODES)]
    Profile(ProfileArgs),
    /// Show the address the broker sees and your live leases, and whether each is pinned here
    #[command(after_help = EXIT_CODES)]
    Whoami(WhoamiArgs),
    /// Re-pin the last profile made here for EDGE to this device's address and extend it;
    /// rewrites its wg-quick file with the same key
    #[command(after_help = EXIT_CODES)]
    Renew(RenewArgs),
    /// End the session on the broker and forget it on this device
    #[command(after_help = EXIT_CODES)]
    Logout(LogoutArgs),
}

#[derive(Debug, Args)]
struct WhoamiArgs {
    /// Print one JSON object {user, source_ip, leases: [{id, edge, pin, pinned_here,
    /// expires_at}]} on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RenewArgs {
    /// The edge whose last profile (made here by `grantwire profile EDGE`) to renew
    edge: String,

    /// Write the renewed wg-quick profile to FILE, mode 0600 [default: where `grantwire
    /// profile` wrote it, else <config-dir>/profiles/EDGE.conf unless --json is given]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Print one JSON object {profile, wg_quick, path} on stdout; wg_quick holds the private key
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LogoutArgs {
    /// Print one JSON object {logged_out} on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// The broker, e.g. https://plex-host.example:8443 (https:// is assumed when left out)
    #[arg(long, env = "GRANTWIRE_BROKER", value_name = "URL", value_parser = broker_url)]
    broker: String,

    /// Your user name on the broker
    #[arg(long, env = "GRANTWIRE_USER", value_name = "NAME")]
    user: String,

    /// SHA-256 fingerprint of the broker's certificate, as the broker printed it at start
    /// (also in <data-dir>/tls-cert.sha256); required unless its certificate is CA-signed
    #[arg(long, env = "GRANTWIRE_FINGERPRINT", value_name = "SHA256")]
    fingerprint: Option<Fingerprint>,

    /// Read the password from the first line of stdin instead of asking on the terminal
    #[arg(long)]
    password_stdin: bool,

    /// The current 6-digit TOTP code [default: asked for]
    #[arg(long, value_name = "CODE", value_parser = totp_code)]
    totp: Option<String>,

    /// Print one JSON object {user, broker, expires_at} on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ProfileArgs {
    /// The edge's name, as the broker's admin registered it
    edge: String,

    /// Write the wg-quick profile to FILE, mode 0600 [default when neither --qr nor --json is
    /// given: <config-dir>/profiles/EDGE.conf]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Show the profile as a QR code on stdout, for "Create from QR code" in the WireGuard apps
    #[arg(long, conflicts_with = "json")]
    qr: bool,

    /// Print one JSON object {profile, wg_quick, path} on stdout; wg_quick holds the private key
    #[arg(long)]
    json: bool,
}

/// A mistake in what the user typed that clap could not see (an empty password line, a
/// malformed code typed at the prompt): exit code 2 like clap's own.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A refusal the CLI words itself (the message names the command to run): exit code 3.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("grantwire: {}", message(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config_dir = resolve_config_dir(cli.config_dir)?;
    // One request at a time: a current-thread runtime is all the CLI needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Login(args) => runtime.block_on(login(&config_dir, args)),
        Command::Profile(args) => runtime.block_on(profile(&config_dir, args)),
        Command::Whoami(args) => runtime.block_on(whoami(&config_dir, args)),
        Command::Renew(args) => runtime.block_on(renew(&config_dir, args)),
        Command::Logout(args) => runtime.block_on(logout(&config_dir, args)),
    }
}

async fn login(config_dir: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let client = BrokerClient::new(&args.broker, args.fingerprint)?;
    let (password, code) = read_credentials(&args)?;
    let session = client.login(&args.user, &password, &code).await?;
    SessionStore::new(config_dir).save(&session)?;
    if args.json {
        print_json(&serde_json::json!({
            "user": session.user,
            "broker": session.broker_url,
            "expires_at": session.expires_at,
        }))?;
    } else {
        eprintln!(
            "logged in as {} until {}",
            session.user,
            format_unix_time(session.expires_at)
        );
    }
    Ok(())
}

/// Ends the stored session on its broker, then deletes it here. If the broker cannot be
/// reached the file is kept, so the session (still live there) can be ended by a retry. A
/// session already expired by this device's clock is only deleted.
async fn logout(config_dir: &Path, args: LogoutArgs) -> anyhow::Result<()> {
    let store = SessionStore::new(config_dir);
    let logged_out = match store.load() {
        Ok(session) => {
            BrokerClient::for_session(&session)?
                .logout(&session)
                .await?;
            true
        }
        Err(grantwire_client_core::Error::SessionExpired { .. }) => true,
        Err(grantwire_client_core::Error::NotLoggedIn) => false,
        Err(e) => return Err(e.into()),
    };
    store.remove()?;
    if args.json {
        print_json(&serde_json::json!({ "logged_out": logged_out }))?;
    } else if logged_out {
        eprintln!("logged out");
    } else {
        eprintln!("not logged in");
    }
    Ok(())
}

async fn profile(config_dir: &Path, args: ProfileArgs) -> anyhow::Result<()> {
    let session = SessionStore::new(config_dir).load()?;
    // Worked out before asking for a lease, so a bad edge name costs no lease.
    let path = match (&args.out, args.qr || args.json) {
        (Some(out), _) => Some(out.clone()),
        (None, true) => None,
        (None, false) => Some(default_profile_path(config_dir, &args.edge)?),
    };
    let leases = LeaseStore::new(config_dir);
    // An edge name that is no plain file name (possible with --out) cannot be remembered.
    let remember = leases.path(&args.edge).is_ok();
    let client = BrokerClient::for_session(&session)?;
    let key = keys::generate();
    let profile = client
        .request_lease(&session, &args.edge, &key.public_key())
        .await?;
    let wg_quick = profile.to_wg_quick(&key);

    if let Some(path) = &path {
        write_profile(path, &wg_quick)?;
        if !args.json {
            eprintln!("wrote {} (mode 0600)", path.display());
        }
    }
    if remember {
        let stored = StoredLease {
            lease_id: profile.lease_id.clone(),
            private_key: key,
            path: path.as_deref().map(absolute),
        };
        leases.save(&args.edge, &stored)?;
    } else {
        eprintln!(
            "note: edge name {:?} is no plain file name; `grantwire renew` will not know this profile",
            args.edge
        );
    }
    if args.qr {
        write_stdout(&render_qr(&wg_quick)?)?;
    }
    if args.json {
        print_json(&serde_json::json!({
            "profile": profile,
            "wg_quick": wg_quick,
            "path": path.as_ref().map(|p| p.display().to_string()),
        }))?;
    } else {
        eprintln!("Plex on the tunnel: {}", profile.plex_url);
        eprintln!(
            "works only from {} until {}",
            profile.pin,
            format_unix_time(profile.expires_at)
        );
    }
    Ok(())
}

/// Shows where the broker sees this device and whether each live lease is pinned there.
async fn whoami(config_dir: &Path, args: WhoamiArgs) -> anyhow::Result<()> {
    let session = SessionStore::new(config_dir).load()?;
    let client = BrokerClient::for_session(&session)?;
    let me = client.whoami(&session).await?;
    if args.json {
        print_json(&serde_json::to_value(&me).context("cannot encode the answer")?)?;
        return Ok(());
    }
    eprintln!("{}, seen by the broker at {}", me.user, me.source_ip);
    if me.leases.is_empty() {
        eprintln!("no live leases");
    }
    for lease in &me.leases {
        let here = if lease.pinned_here {
            "pinned here"
        } else {
            "NOT pinned here: run `grantwire renew`"
        };
        eprintln!(
            "{}: pin {} ({here}), until {}",
            lease.edge,
            lease.pin,
            format_unix_time(lease.expires_at)
        );
    }
    Ok(())
}

/// Re-pins the lease of the last profile made here for the edge and rewrites its wg-quick
/// file with the key kept from then: the tunnel address and keys stay, pin and expiry move.
async fn renew(config_dir: &Path, args: RenewArgs) -> anyhow::Result<()> {
    let leases = LeaseStore::new(config_dir);
    let edge = &args.edge;
    let Some(stored) = leases.load(edge)? else {
        return Err(anyhow!(
            "no profile for {edge}: run `grantwire profile {edge}`"
        ));
    };
    let session = SessionStore::new(config_dir).load()?;
    let path = match (&args.out, &stored.path, args.json) {
        (Some(out), _, _) => Some(out.clone()),
        (None, Some(kept), _) => Some(kept.clone()),
        (None, None, true) => None,
        (None, None, false) => Some(default_profile_path(config_dir, edge)?),
    };
    let client = BrokerClient::for_session(&session)?;
    let profile = match client.renew(&session, &stored.lease_id).await {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::LeaseGone => {
            return Err(Refused(format!("{e}: run `grantwire profile {edge}`")).into())
        }
        Err(e) => return Err(e.into()),
    };
    let wg_quick = profile.to_wg_quick(&stored.private_key);
    if let Some(path) = &path {
        write_profile(path, &wg_quick)?;
        if !args.json {
            eprintln!("rewrote {} (mode 0600)", path.display());
        }
    }
    let kept = StoredLease {
        lease_id: profile.lease_id.clone(),
        path: path.as_deref().map(absolute).or(stored.path.clone()),
        ..stored
    };
    leases.save(edge, &kept)?;
    if args.json {
        print_json(&serde_json::json!({
            "profile": profile,
            "wg_quick": wg_quick,
            "path": path.as_ref().map(|p| p.display().to_string()),
        }))?;
    } else {
        eprintln!(
            "renewed: works only from {} until {}",
            profile.pin,
            format_unix_time(profile.expires_at)
        );
    }
    Ok(())
}

/// `path` made absolute against the current directory, so a later renew run elsewhere
/// rewrites the same file. Left as is when the current directory is unknown.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The password from stdin's first line or the terminal (no echo), then the TOTP code from
/// `--totp` or the next line of stdin (typed at a prompt, or piped after the password).
fn read_credentials(args: &LoginArgs) -> anyhow::Result<(String, String)> {
    let mut stdin = io::stdin().lock();
    let password = if args.password_stdin {
        read_line(&mut stdin)?
            .filter(|p| !p.is_empty())
            .ok_or_else(|| UsageError("--password-stdin: no password on stdin".into()))?
    } else {
        rpassword::prompt_password(format!("Password for {}: ", args.user))
            .context("cannot ask for the password on the terminal; use --password-stdin")?
    };
    let code = match &args.totp {
        Some(code) => code.clone(),
        None => {
            eprint!("TOTP code: ");
            let typed = read_line(&mut stdin)?
                .ok_or_else(|| UsageError("no TOTP code: pass --totp CODE".into()))?;
            totp_code(&typed).map_err(UsageError)?
        }
    };
    Ok((password, code))
}

/// One line without its line ending; `None` at end of input.
fn read_line(input: &mut impl BufRead) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line).context("cannot read stdin")? == 0 {
        return Ok(None);
    }
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(Some(line))
}

fn broker_url(s: &str) -> Result<String, String> {
    parse_broker_url(s)
        .map(|u| u.to_string())
        .map_err(|e| e.to_string())
}

/// Six digits; spaces are dropped because authenticator apps show the code as `123 456`.
fn totp_code(s: &str) -> Result<String, String> {
    let code: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err("a TOTP code is 6 digits".into())
    }
}

fn resolve_config_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(dir) => Ok(dir),
        None => directories::ProjectDirs::from("", "", "grantwire")
            .map(|dirs| dirs.config_dir().to_path_buf())
            .ok_or_else(|| {
                anyhow!("no home directory to keep the session in: pass --config-dir DIR")
            }),
    }
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    write_stdout(&format!("{value}\n"))
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Logs go to stderr, off by default below WARN; `GRANTWIRE_LOG=info` shows more. No secret
/// is ever logged at any level, by the core or here.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRANTWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

/// The core's messages are complete (they hold their cause), so they print as they are;
/// other errors print with their whole chain.
fn message(err: &anyhow::Error) -> String {
    match err.downcast_ref::<Error>() {
        Some(core @ Error::Untrusted { .. }) => {
            format!("{core}; pass it to `grantwire login --fingerprint SHA256`")
        }
        Some(core) => core.to_string(),
        None => format!("{err:#}"),
    }
}

/// 3 for a refusal by the broker's policy (401, 403); 404 stays 1, as an unknown edge is most
/// often a typo or a broker-side change, not a decision about this user.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        return 2;
    }
    if err.downcast_ref::<Refused>().is_some() {
        return 3;
    }
    match err.downcast_ref::<Error>().map(Error::kind) {
        Some(ErrorKind::Usage) => 2,
        Some(
            ErrorKind::Unauthorized
            | ErrorKind::SessionExpired
            | ErrorKind::Forbidden
            | ErrorKind::LeaseGone,
        ) => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

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
    fn exit_codes_follow_the_contract() {
        let e = |err: Error| exit_code(&anyhow::Error::from(err));
        assert_eq!(e(Error::NotLoggedIn), 1);
        assert_eq!(e(Error::SessionExpired { expires_at: 0 }), 3);
        let msg = || "m".to_string();
        assert_eq!(e(Error::LoginRefused { message: msg() }), 3);
        let edge = || "home".to_string();
        assert_eq!(
            e(Error::Forbidden {
                edge: edge(),
                message: msg()
            }),
            3
        );
        assert_eq!(
            e(Error::NotFound {
                edge: edge(),
                message: msg()
            }),
            1
        );
        assert_eq!(
            e(Error::Server {
                status: 500,
                message: msg()
            }),
            1
        );
        assert_eq!(
            e(Error::InvalidEdgeName {
                name: "../x".into()
            }),
            2
        );
        assert_eq!(
            e(Error::LeaseGone {
                lease_id: "l-1".into(),
                message: msg()
            }),
            3
        );
        assert_eq!(exit_code(&UsageError("x".into()).into()), 2);
        assert_eq!(exit_code(&Refused("x".into()).into()), 3);
        assert_eq!(exit_code(&anyhow!("other")), 1);
    }

    #[test]
    fn totp_codes_lose_spaces() {
        assert_eq!(totp_code(" 123 456\n").unwrap(), "123456");
        assert!(totp_code("1234567").is_err());
    }

    #[test]
    fn read_line_strips_line_endings() {
        let mut input = io::Cursor::new("pw with spaces \r\n654321\n");
        assert_eq!(read_line(&mut input).unwrap().unwrap(), "pw with spaces ");
        assert_eq!(read_line(&mut input).unwrap().unwrap(), "654321");
        assert_eq!(read_line(&mut input).unwrap(), None);
    }
}
