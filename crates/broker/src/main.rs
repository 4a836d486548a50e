//! `grantwire-broker`: parses flags, runs the broker or sends one admin command to the running
//! broker over its Unix socket, and prints the result. All logic lives in the library.

mod cli;
mod output;

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Parser as _;
use grantwire_broker::{secrets, AdminClient, AdminError, ServeConfig, ADMIN_SOCKET};
use grantwire_proto::{
    EdgeAddRequest, ErrorCode, GrantAddRequest, GrantRevokeRequest, UserAddRequest,
};

use cli::{Cli, Command, EdgeCommand, GrantCommand, LeaseCommand, ServeArgs, UserCommand};

/// Exit code for a refusal (auth, grant, pin), distinct from a runtime failure (1) and a
/// usage error (2, from clap).
const EXIT_REFUSED: u8 = 3;

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
            let refused = e.downcast_ref::<AdminError>().is_some_and(|a| {
                matches!(
                    a,
                    AdminError::Refused {
                        code: ErrorCode::Unauthorized | ErrorCode::Forbidden,
                        ..
                    }
                )
            });
            ExitCode::from(if refused { EXIT_REFUSED } else { 1 })
        }
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
            let password = read_password(password_stdin)?;
            secrets::check_password_policy(&password)?;
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
            let req = GrantAddRequest {
                user,
                edge,
                lease_ttl_secs: Some(lease_ttl.as_secs()),
            };
            output::grant_added(&admin.grant_add(&req).await?, json)
        }
        Command::Grant(GrantCommand::Revoke { user, edge, json }) => {
            let req = GrantRevokeRequest { user, edge };
            output::grant_revoked(&admin.grant_revoke(&req).await?, json)
        }
        Command::Lease(LeaseCommand::List { json }) => {
            output::lease_list(&admin.lease_list().await?, json)
        }
    }
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
        bail!("the passwords differ");
    }
    Ok(first)
}
