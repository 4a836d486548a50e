//! Starting and stopping a broker: data directory, database, TLS identity, the HTTPS listener
//! and the admin socket. Used by `grantwire-broker serve` and, in-process, by tests.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin_socket::AdminListener;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::{routes, store, tls};

pub const DB_FILE: &str = "broker.db";
pub const ADMIN_SOCKET: &str = "admin.sock";

/// How long open connections (edge streams included) get to finish at shutdown.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub session_ttl: Duration,
}

impl ServeConfig {
    /// Defaults for everything but the data directory; listens on 127.0.0.1 on an ephemeral
    /// port, the form tests want.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_cert: None,
            tls_key: None,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// A broker serving HTTPS and its admin socket. Drop does not stop it: call
/// [`RunningBroker::shutdown`].
pub struct RunningBroker {
    addr: SocketAddr,
    fingerprint: String,
    admin_socket: PathBuf,
    data_dir: PathBuf,
    broker: Broker,
    https: axum_server::Handle,
    admin_stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl RunningBroker {
    /// The address the HTTPS listener is bound to (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://ADDR`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// SHA-256 of the TLS certificate, 64 lowercase hex digits.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The broker's operations (admin actions, counts, audit log), in-process.
    pub fn admin(&self) -> &Broker {
        &self.broker
    }

    /// Resolves when a server task ends on its own (which means it failed).
    pub async fn stopped(&mut self) -> Result<()> {
        let (res, _, _) = futures_util::future::select_all(self.tasks.iter_mut()).await;
        res??;
        Err(Error::Internal("a listener stopped unexpectedly".into()))
    }

    /// Stops accepting, ends edge streams, lets open requests finish (up to a grace period)
    /// and closes the database.
    pub async fn shutdown(self) -> Result<()> {
        self.broker.begin_shutdown();
        self.https.graceful_shutdown(Some(GRACE));
        self.admin_stop.send_replace(true);
        for task in self.tasks {
            task.await??;
        }
        self.broker.db().close().await;
        let _ = std::fs::remove_file(&self.admin_socket);
        Ok(())
    }
}

/// Starts a broker and returns once both listeners are bound.
pub async fn start(config: ServeConfig) -> Result<RunningBroker> {
    make_private_dir(&config.data_dir)?;
    let admin_socket = config.data_dir.join(ADMIN_SOCKET);
    let admin_listener = bind_admin_socket(&admin_socket)?;
    let db = store::open(&config.data_dir.join(DB_FILE)).await?;
    let broker = Broker::new(db, config.session_ttl);
    let identity = tls::load_or_create(
        &config.data_dir,
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        config.listen,
    )?;

    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let https = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(identity.config))
        .handle(https.clone())
        .serve(routes::app(broker.clone()).into_make_service_with_connect_info::<SocketAddr>());

    let (admin_stop, mut stop_rx) = watch::channel(false);
    let admin_server = axum::serve(admin_listener, routes::admin_app(broker.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });

    let tasks = vec![
        tokio::spawn(server),
        tokio::spawn(async move { admin_server.await }),
    ];
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "broker started");
    Ok(RunningBroker {
        addr,
        fingerprint: identity.fingerprint,
        admin_socket,
        data_dir: config.data_dir,
        broker,
        https,
        admin_stop,
        tasks,
    })
}

/// The data directory holds the database, TLS key and admin socket: owner only.
fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Binds the admin socket, replacing a stale one left by a crash. The directory is already
/// 0700, so the moment between bind and chmod exposes nothing.
fn bind_admin_socket(path: &Path) -> Result<AdminListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Conflict(format!(
                "another broker is serving {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(AdminListener::new(listener, path)?)
}
