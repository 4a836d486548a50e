//! `grantwire-broker`: parses flags, runs the broker or sends one admin command to the running
//! broker over its Unix socket, and prints the result. All logic lives in the library.

mod cli;
mod output;

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use grantwire_broker::{
    alloc, check_endpoint, check_name, secrets, AdminClient, AdminError, ServeConfig, ADMIN_SOCKET,
};
use grantwire_proto::{
    EdgeAddRequest, ErrorCode, GrantAddRequest, GrantRevokeRequest, UserAddRequest,
};

use cli::{Cli, Command, EdgeCommand, GrantCommand, LeaseCommand, ServeArgs, UserCommand};

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
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let admin = AdminClient::new(cli.data_dir.join(ADMIN_SOCKET));
    match cli.command {
        Command::Serve(args) => serve(cli.data_dir, args).await,
        Command::User(UserCommand::Add {
            name,
            admin: is_admin,
            password_stdin,
            json,
        }) => {
            check_name(&name, "user").map_err(usage)?;
            let password = read_password(password_stdin)?;
            secrets::check_password_policy(&password).map_err(usage)?;
            let req = UserAddRequest {
                name,
                password,
                admin: is_admin,
            };
            let resp = admin.user_add(&req).await?;
            output::user_added(&resp, json)
        }
        Command::Edge(EdgeCommand::Add {
            name,
            endpoint,
            subnet,
            json,
        }) => {
            check_name(&name, "edge").map_err(usage)?;
            check_endpoint(&endpoint).map_err(usage)?;
            let subnet = alloc::check_subnet(subnet).map_err(usage)?;
            let req = EdgeAddRequest {
                name,
                endpoint,
                subnet: Some(subnet),
            };
            let resp = admin.edge_add(&req).await?;
            output::edge_added(&resp, &cli.data_dir, json)
        }
        Command::Grant(GrantCommand::Add {
            user,
            edge,
            lease_ttl,
            json,
        }) => {
            check_names(&user, &edge)?;
            if lease_ttl.as_secs() == 0 {
                return Err(usage("--lease-ttl must be at least 1s"));
            }
            let req = GrantAddRequest {
                user,
                edge,
                lease_ttl_secs: Some(lease_ttl.as_secs()),
            };
            output::grant_added(&admin.grant_add(&req).await?, json)
        }
        Command::Grant(GrantCommand::Revoke { user, edge, json }) => {
            check_names(&user, &edge)?;
            let req = GrantRevokeRequest { user, edge };
            output::grant_revoked(&admin.grant_revoke(&req).await?, json)
        }
        Command::Lease(LeaseCommand::List { json }) => {
            output::lease_list(&admin.lease_list().await?, json)
        }
    }
}

fn check_names(user: &str, edge: &str) -> anyhow::Result<()> {
    check_name(user, "user").map_err(usage)?;
    check_name(edge, "edge").map_err(usage)?;
    Ok(())
}

async fn serve(data_dir: std::path::PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig {
        data_dir,
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        session_ttl: args.session_ttl.into(),
    };
    let mut running = grantwire_broker::start(config)
        .await
        .context("starting the broker")?;
    eprintln!("grantwire-broker: listening on {}", running.url());
    eprintln!(
        "grantwire-broker: TLS certificate SHA-256 fingerprint: {}",
        running.fingerprint()
    );
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
