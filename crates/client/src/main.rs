//! `grantwire`: log in to a grantwire broker and get a WireGuard profile for Plex.
//!
//! Thin over `grantwire-client-core`: this file reads arguments, the terminal and stdin, calls
//! the core, and prints. Human text goes to stderr; stdout carries only what a script or a
//! phone reads (`--json` objects, the QR code).

mod cli;
mod docs;
mod leases;
mod login;
mod status;
mod up;
mod watch;

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use clap::Parser as _;
use grantwire_client_core::time::format_unix_time;
use grantwire_client_core::{
    default_profile_path, keys, render_qr, write_profile, write_qr_png, write_qr_svg, BrokerClient,
    Error, ErrorKind, LeaseStore, PendingKey, Profile, Session, SessionStore, StoredLease,
};

use cli::{Cli, Command, LogoutArgs, ProfileArgs, RenewArgs, WhoamiArgs};

/// A mistake in what the user typed that clap could not see (an empty password line, a
/// malformed code typed at the prompt): exit code 2 like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A refusal the CLI words itself (the message names the command to run): exit code 3.
#[derive(Debug)]
pub struct Refused(pub String);

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
    // These need neither a config directory nor the network.
    match &cli.command {
        Command::Completions(args) => return docs::completions(args),
        Command::Man(args) => return docs::man(args),
        _ => {}
    }
    let config_dir = resolve_config_dir(cli.config_dir)?;
    // One request at a time: a current-thread runtime is all the CLI needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Login(args) => runtime.block_on(login::login(&config_dir, args)),
        Command::Profile(args) => runtime.block_on(profile(&config_dir, args)),
        Command::Whoami(args) => runtime.block_on(whoami(&config_dir, args)),
        Command::Renew(args) => runtime.block_on(renew(&config_dir, args)),
        Command::Status(args) => runtime.block_on(status::status(&config_dir, args)),
        Command::Watch(args) => runtime.block_on(watch::watch(&config_dir, args)),
        Command::Logout(args) => runtime.block_on(logout(&config_dir, args)),
        Command::Leases(args) => runtime.block_on(leases::leases(&config_dir, args)),
        Command::Revoke(args) => runtime.block_on(leases::revoke(&config_dir, args)),
        Command::Up(args) => runtime.block_on(up::up(&config_dir, args)),
        Command::Down(args) => up::down(&args),
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
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
    let shown_elsewhere = args.qr || args.json || args.qr_png.is_some() || args.qr_svg.is_some();
    let path = match (&args.out, shown_elsewhere) {
        (Some(out), _) => Some(out.clone()),
        (None, true) => None,
        (None, false) => Some(default_profile_path(config_dir, &args.edge)?),
    };
    let leases = LeaseStore::new(config_dir);
    // An edge name that is no plain file name (possible with --out) cannot be remembered.
    let remember = leases.path(&args.edge).is_ok();
    let client = BrokerClient::for_session(&session)?;
    let key = if remember {
        pending_or_new_key(&leases, &args.edge, &session)?
    } else {
        keys::generate()
    };
    let asked = client
        .request_lease(&session, &args.edge, &key.public_key())
        .await;
    let profile = match asked {
        Ok(profile) => profile,
        Err(e) => {
            // The broker's refusal of this request settles it: no lease was made. Anything
            // else (a broken connection, a failing broker, an answer that did not parse, a
            // session or certificate to sort out first) leaves it open, and the key waits for
            // the retry.
            let refused = matches!(
                e.kind(),
                ErrorKind::Forbidden
                    | ErrorKind::NotFound
                    | ErrorKind::BadRequest
                    | ErrorKind::Conflict
                    | ErrorKind::LeaseCap
            );
            if remember && refused {
                leases.clear_pending(&args.edge)?;
            }
            return Err(e.into());
        }
    };
    let wg_quick = profile.to_wg_quick(&key);

    if let Some(path) = &path {
        write_profile(path, &wg_quick)?;
        if !args.json {
            eprintln!("wrote {} (mode 0600)", path.display());
        }
    }
    if remember {
        let stored = StoredLease {
            lease_id: profile.lease_id.to_string(),
            private_key: key,
            path: path.as_deref().map(absolute),
            profile: Some(profile.clone()),
        };
        leases.save(&args.edge, &stored)?;
        // Kept until here: if writing the profile failed, a retry still sends the same key.
        leases.clear_pending(&args.edge)?;
    } else {
        eprintln!(
            "note: edge name {:?} is no plain file name; `grantwire renew` will not know this profile",
            args.edge
        );
    }
    for (image, write) in [
        (&args.qr_png, write_qr_png as fn(&Path, &str) -> _),
        (&args.qr_svg, write_qr_svg),
    ] {
        if let Some(image) = image {
            write(image, &wg_quick)?;
            if !args.json {
                eprintln!("wrote QR code {} (mode 0600)", image.display());
            }
        }
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

/// The key for a new lease on `edge`: the one of an earlier request that got no answer, if one
/// is kept for this broker and user (so the broker replaces the lease it may have made rather
/// than adding another: a retry is idempotent), else a fresh one. Either way it is kept as
/// pending before it is sent.
fn pending_or_new_key(
    leases: &LeaseStore,
    edge: &str,
    session: &Session,
) -> anyhow::Result<grantwire_proto::PrivateKey> {
    let key = match leases.pending(edge, &session.broker_url, &session.user)? {
        Some(key) => {
            eprintln!(
                "note: sending the key of an earlier `grantwire profile {edge}` that got no \
                 answer, so a lease the broker made for it is replaced, not doubled"
            );
            key
        }
        None => keys::generate(),
    };
    leases.save_pending(
        edge,
        &PendingKey {
            broker: session.broker_url.clone(),
            user: session.user.clone(),
            private_key: key.clone(),
        },
    )?;
    Ok(key)
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
    let (profile, wg_quick) =
        renew_stored(&leases, &client, &session, edge, stored, path.as_deref()).await?;
    if let Some(path) = &path {
        if !args.json {
            eprintln!("rewrote {} (mode 0600)", path.display());
        }
    }
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

/// Renews `stored` on the broker, writes the wg-quick text to `path` (when given) with the key
/// kept here, and remembers the renewed lease (and `path`, else the path kept before).
/// A lease the broker no longer has is a refusal naming `grantwire profile EDGE`.
pub(crate) async fn renew_stored(
    leases: &LeaseStore,
    client: &BrokerClient,
    session: &Session,
    edge: &str,
    stored: StoredLease,
    path: Option<&Path>,
) -> anyhow::Result<(Profile, String)> {
    let profile = match client.renew(session, &stored.lease_id).await {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::LeaseGone => {
            return Err(Refused(format!("{e}: run `grantwire profile {edge}`")).into())
        }
        Err(e) => return Err(e.into()),
    };
    let wg_quick = profile.to_wg_quick(&stored.private_key);
    if let Some(path) = path {
        write_profile(path, &wg_quick)?;
    }
    let kept = StoredLease {
        lease_id: profile.lease_id.to_string(),
        path: path.map(absolute).or(stored.path.clone()),
        profile: Some(profile.clone()),
        ..stored
    };
    leases.save(edge, &kept)?;
    Ok((profile, wg_quick))
}

/// `path` made absolute against the current directory, so a later renew run elsewhere
/// rewrites the same file. Left as is when the current directory is unknown.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
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

pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    write_stdout(&format!("{value}\n"))
}

pub fn write_stdout(text: &str) -> anyhow::Result<()> {
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
            format!(
                "{core}; run `grantwire login` on a terminal to see and accept its fingerprint, \
                 or pass it with `--fingerprint SHA256`"
            )
        }
        Some(core) => core.to_string(),
        None => format!("{err:#}"),
    }
}

/// 3 for a refusal: by the broker's policy (401, 403), or by this device's trust in the broker
/// (a certificate that is not trusted or that changed). 404 stays 1, as an unknown edge or
/// lease is most often a typo or a broker-side change, not a decision about this user.
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
            | ErrorKind::LeaseGone
            | ErrorKind::LeaseCap
            | ErrorKind::Trust,
        ) => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        let e = |err: Error| exit_code(&anyhow::Error::from(err));
        assert_eq!(e(Error::NotLoggedIn), 1);
        assert_eq!(e(Error::SessionExpired { expires_at: 0 }), 3);
        // A session file this version cannot read is handled like an expired session.
        let format = Error::SessionFormat {
            path: "session.json".into(),
            found: "2".into(),
            supported: 1,
        };
        assert_eq!(e(format), 3);
        let msg = || "m".to_string();
        assert_eq!(e(Error::LoginRefused { message: msg() }), 3);
        assert_eq!(e(Error::LeaseCap { message: msg() }), 3);
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
        let fp = grantwire_client_core::Fingerprint::of_der(b"a");
        assert_eq!(
            e(Error::FingerprintChanged {
                broker: "https://b/".into(),
                known: fp,
                presented: grantwire_client_core::Fingerprint::of_der(b"b"),
            }),
            3
        );
        assert_eq!(
            e(Error::UnknownBroker {
                broker: "https://b/".into(),
                fingerprint: fp,
            }),
            3
        );
        assert_eq!(
            e(Error::NotYourLease {
                lease_id: "l-1".into(),
                message: msg()
            }),
            3
        );
        assert_eq!(
            e(Error::UnknownLease {
                lease_id: "l-1".into(),
                message: msg()
            }),
            1
        );
        assert_eq!(
            e(Error::InvalidLeaseId {
                lease_id: "../x".into()
            }),
            2
        );
        assert_eq!(exit_code(&UsageError("x".into()).into()), 2);
        assert_eq!(exit_code(&Refused("x".into()).into()), 3);
        assert_eq!(exit_code(&anyhow!("other")), 1);
    }
}
