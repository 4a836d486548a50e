//! `grantwire-broker`: parses flags, runs the broker or sends one admin command to the running
//! broker over its Unix socket, and prints the result. All logic lives in the library.

mod cli;
mod output;
mod user_cmd;

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use grantwire_broker::{
    check_endpoints, check_kind, check_name, lease_terms, AdminClient, AdminError, ServeConfig,
    ADMIN_SOCKET,
};
use grantwire_proto::{
    AuditQuery, BackupRequest, EdgeAddRequest, EdgeRemoveRequest, ErrorCode, GrantAddRequest,
    GrantRevokeRequest, LeaseRevokeRequest,
};

use cli::{Cli, Command, EdgeCommand, GrantCommand, LeaseCommand, ServeArgs};

/// Exit codes (DESIGN.md): a runtime failure is 1; a usage error (clap's, a local argument
/// check, or the admin API's `bad_request`) is 2; a refusal (auth, grant, pin, the admin
/// socket's permission check) is 3.
const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;

/// An argument the command refused before (or instead of) asking the broker.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    Usage(e.to_string()).into()
}

/// A check the broker would make, made here first: its message alone, without the
/// "bad request:" of the error's `Display`.
fn refused_locally(e: grantwire_broker::Error) -> anyhow::Error {
    usage(e.body().error.message)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("grantwire-broker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grantwire-broker: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return EXIT_USAGE;
    }
    match e.downcast_ref::<AdminError>() {
        Some(AdminError::Refused {
            code: ErrorCode::BadRequest,
            ..
        }) => EXIT_USAGE,
        Some(
            AdminError::Refused {
                code: ErrorCode::Unauthorized | ErrorCode::Forbidden,
                ..
            }
            | AdminError::PermissionDenied { .. },
        ) => EXIT_REFUSED,
        _ => EXIT_FAILURE,
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let admin = AdminClient::new(cli.data_dir.join(ADMIN_SOCKET));
    match cli.command {
        Command::Serve(args) => serve(cli.data_dir, args).await,
        Command::User(cmd) => user_cmd::run(&admin, cmd).await,
        Command::Edge(EdgeCommand::Add {
            name,
            endpoint,
            subnet,
            expires,
            json,
        }) => {
            check_name(&name, "edge").map_err(refused_locally)?;
            if expires.as_secs() == 0 {
                return Err(usage("--expires must be at least 1s"));
            }
            check_endpoints(&endpoint).map_err(refused_locally)?;
            let subnet = lease_terms::check_subnet(subnet).map_err(usage)?;
            let mut endpoints = endpoint.into_iter();
            let req = EdgeAddRequest {
                name,
                endpoint: endpoints.next().unwrap_or_default(),
                extra_endpoints: endpoints.collect(),
                subnet: Some(subnet),
                expires_secs: Some(expires.as_secs()),
            };
            let resp = admin.edge_add(&req).await?;
            output::edge_added(&resp, &cli.data_dir, json)
        }
        Command::Edge(EdgeCommand::List { json }) => {
            output::edge_list(&admin.edge_list().await?, json)
        }
        Command::Edge(EdgeCommand::Remove { name, json }) => {
            check_name(&name, "edge").map_err(refused_locally)?;
            let resp = admin.edge_remove(&EdgeRemoveRequest { name }).await?;
            output::edge_removed(&resp, json)
        }
        Command::Grant(GrantCommand::Add {
            user,
            edge,
            lease_ttl,
            until,
            ports,
            pin_prefix4,
            pin_prefix6,
            max_leases,
            json,
        }) => {
            check_names(&user, &edge)?;
            if lease_ttl.as_secs() == 0 {
                return Err(usage("--lease-ttl must be at least 1s"));
            }
            let ends_at = until
                .as_deref()
                .map(|u| parse_until(u, std::time::SystemTime::now()))
                .transpose()
                .map_err(usage)?;
            let req = GrantAddRequest {
                user,
                edge,
                lease_ttl_secs: Some(lease_ttl.as_secs()),
                ends_at,
                ports: (!ports.is_empty()).then_some(ports),
                pin_prefix4,
                pin_prefix6,
                max_leases,
            };
            output::grant_added(&admin.grant_add(&req).await?, json)
        }
        Command::Grant(GrantCommand::List { json }) => {
            output::grant_list(&admin.grant_list().await?, json)
        }
        Command::Grant(GrantCommand::Revoke { user, edge, json }) => {
            check_names(&user, &edge)?;
            let req = GrantRevokeRequest { user, edge };
            output::grant_revoked(&admin.grant_revoke(&req).await?, json)
        }
        Command::Backup { file, json } => {
            // The broker may run in another directory: send it an absolute path.
            let file = std::path::absolute(&file)
                .with_context(|| format!("resolving {}", file.display()))?;
            let path = file
                .to_str()
                .ok_or_else(|| usage("the backup path must be UTF-8"))?
                .to_owned();
            let resp = admin.backup(&BackupRequest { path }).await?;
            output::backup(&resp, json)
        }
        Command::Audit {
            since,
            user,
            kind,
            json,
        } => {
            if let Some(u) = &user {
                check_name(u, "user").map_err(refused_locally)?;
            }
            if let Some(k) = &kind {
                check_kind(k).map_err(refused_locally)?;
            }
            let since = since
                .as_deref()
                .map(|s| parse_since(s, std::time::SystemTime::now()))
                .transpose()
                .map_err(usage)?;
            let resp = admin
                .audit(&AuditQuery {
                    since,
                    user,
                    kind,
                    ..Default::default()
                })
                .await?;
            output::audit(&resp, json)
        }
        Command::Lease(LeaseCommand::Revoke { id, json }) => {
            let resp = admin.lease_revoke(&LeaseRevokeRequest { id }).await?;
            output::lease_revoked(&resp, json)
        }
        Command::Lease(LeaseCommand::List { json }) => {
            output::lease_list(&admin.lease_list().await?, json)
        }
    }
}

/// `--since`: a duration back from `now`, or an RFC 3339 UTC time.
fn parse_since(text: &str, now: std::time::SystemTime) -> Result<i64, String> {
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            let d = humantime::parse_duration(text).map_err(|_| {
                format!("--since {text:?}: not a duration (24h) or an RFC 3339 time (2026-01-31T00:00:00Z)")
            })?;
            now.checked_sub(d)
                .ok_or_else(|| format!("--since {text:?} is too far back"))?
        }
    };
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("--since {text:?} is before 1970"))?
        .as_secs();
    i64::try_from(secs).map_err(|_| format!("--since {text:?} is too far away"))
}

/// `--until`: an RFC 3339 UTC time, or a duration from `now`; it must lie in the future.
fn parse_until(text: &str, now: std::time::SystemTime) -> Result<i64, String> {
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            let d = humantime::parse_duration(text).map_err(|_| {
                format!("--until {text:?}: not an RFC 3339 time (2026-12-31T23:00:00Z) or a duration (30d)")
            })?;
            now + d
        }
    };
    if at <= now {
        return Err(format!("--until {text:?} is not in the future"));
    }
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("--until {text:?} is before 1970"))?
        .as_secs();
    i64::try_from(secs).map_err(|_| format!("--until {text:?} is too far away"))
}

/// Checked here with the types every part of grantwire parses names by, in the words the
/// broker would refuse them with.
fn check_names(user: &str, edge: &str) -> anyhow::Result<()> {
    let refused = |what: &'static str| {
        move |e: grantwire_proto::FieldError| usage(format!("{what} name must be {}", e.rule()))
    };
    user.parse::<grantwire_proto::UserName>()
        .map_err(refused("user"))?;
    edge.parse::<grantwire_proto::EdgeName>()
        .map_err(refused("edge"))?;
    Ok(())
}

async fn serve(data_dir: std::path::PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let alert_webhook = args
        .alert_webhook
        .as_deref()
        .map(grantwire_broker::alerts::Webhook::parse)
        .transpose()
        .map_err(usage)?;
    let nofile = grantwire_broker::conn::raise_fd_limit().context("reading RLIMIT_NOFILE")?;
    let conn_limits = grantwire_broker::conn::ConnLimits::for_fd_limit(nofile);
    tracing::info!(
        nofile,
        per_source = conn_limits.per_source,
        public = conn_limits.public,
        known = conn_limits.known,
        "descriptor limit and connection caps"
    );
    let acme = args
        .acme_domain
        .map(|domain| grantwire_broker::acme::AcmeConfig {
            domain: domain.to_ascii_lowercase(),
            email: args.acme_email,
            directory: args.acme_directory,
            directory_ca: args.acme_directory_ca,
        });
    if let Some(acme) = &acme {
        acme.check().map_err(usage)?;
    }
    let with_acme = acme.is_some();
    let config = ServeConfig {
        data_dir,
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        acme,
        session_ttl: args.session_ttl.into(),
        session_idle: args.session_idle.into(),
        clock: std::sync::Arc::new(grantwire_broker::clock::SystemClock),
        login_rate: grantwire_broker::throttle::RateLimit {
            burst: args.login_burst,
            per_sec: args.login_per_sec,
        },
        lease_rate: grantwire_broker::throttle::RateLimit {
            burst: args.lease_burst,
            per_sec: args.lease_per_sec,
        },
        trusted_proxies: args.trusted_proxies,
        alert_webhook,
        conn_limits,
        conn_timeouts: grantwire_broker::conn::Timeouts::default(),
        retention: args.retention.into(),
    };
    let mut running = grantwire_broker::start(config)
        .await
        .context("starting the broker")?;
    eprintln!("grantwire-broker: listening on {}", running.url());
    if with_acme {
        eprintln!(
            "grantwire-broker: TLS key SHA-256 fingerprint: {} (certificates come from the ACME \
             CA and are renewed for this same key: edges and clients pin this)",
            running.fingerprint()
        );
    } else {
        eprintln!(
            "grantwire-broker: TLS certificate SHA-256 fingerprint: {}",
            running.fingerprint()
        );
    }
    tokio::select! {
        res = running.stopped() => return res.context("broker stopped"),
        res = shutdown_signal() => res?,
    }
    tracing::info!("shutting down");
    running.shutdown().await.context("shutting down")?;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The first line of stdin, or typed twice at a prompt without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ").context("reading the password")?;
    let second = rpassword::prompt_password("Again: ").context("reading the password")?;
    if first != second {
        return Err(usage("the passwords differ"));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ErrorCode) -> anyhow::Error {
        AdminError::Refused {
            code,
            message: "m".into(),
        }
        .into()
    }

    #[test]
    fn since_takes_a_duration_back_or_a_time() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(parse_since("1h", now), Ok(1_799_996_400));
        assert_eq!(parse_since("2030-01-01T00:00:00Z", now), Ok(1_893_456_000));
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn until_takes_a_time_or_a_duration_in_the_future() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(parse_until("1h", now), Ok(1_800_003_600));
        assert_eq!(parse_until("2030-01-01T00:00:00Z", now), Ok(1_893_456_000));
        assert!(parse_until("2020-01-01T00:00:00Z", now).is_err());
        assert!(parse_until("0s", now).is_err());
        assert!(parse_until("tomorrow", now).is_err());
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(&usage("bad name")), EXIT_USAGE);
        assert_eq!(
            exit_code(&usage("bad name").context("adding a user")),
            EXIT_USAGE
        );
        assert_eq!(exit_code(&refused(ErrorCode::BadRequest)), EXIT_USAGE);
        assert_eq!(exit_code(&refused(ErrorCode::Unauthorized)), EXIT_REFUSED);
        assert_eq!(exit_code(&refused(ErrorCode::Forbidden)), EXIT_REFUSED);
        assert_eq!(exit_code(&refused(ErrorCode::NotFound)), EXIT_FAILURE);
        assert_eq!(exit_code(&refused(ErrorCode::Conflict)), EXIT_FAILURE);
        assert_eq!(exit_code(&refused(ErrorCode::Internal)), EXIT_FAILURE);
        let denied = AdminError::PermissionDenied {
            path: "/d/admin.sock".into(),
        };
        assert_eq!(exit_code(&denied.into()), EXIT_REFUSED);
        let down = AdminError::Unreachable {
            path: "/d/admin.sock".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(exit_code(&down.into()), EXIT_FAILURE);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), EXIT_FAILURE);
    }
}
