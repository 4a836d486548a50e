//! Starting and stopping a broker: data directory, database, TLS identity, the HTTPS listener
//! and the admin socket. Used by `grantwire-broker serve` and, in-process, by tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin_socket::AdminListener;
use crate::broker::Broker;
use crate::conn::GuardedAcceptor;
use crate::error::{Error, Result};
use crate::{routes, secrets, store, tls};

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
    /// Certificates from an ACME CA instead (`--acme-domain`); not with `tls_cert`.
    pub acme: Option<crate::acme::AcmeConfig>,
    pub session_ttl: Duration,
    /// How long a session may go unused before it ends.
    pub session_idle: Duration,
    /// Time for logins and sessions; tests pass a [`crate::clock::ManualClock`].
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
    /// Per-source budgets of the login and lease routes.
    pub login_rate: crate::throttle::RateLimit,
    pub lease_rate: crate::throttle::RateLimit,
    /// Peers allowed to name the client in `X-Forwarded-For` (reverse proxies).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where alerts are POSTed; `None`: they are only recorded.
    pub alert_webhook: Option<crate::alerts::Webhook>,
    /// Caps on open public connections (`serve` derives them from the descriptor limit).
    pub conn_limits: crate::conn::ConnLimits,
    /// How long a connection may make no progress.
    pub conn_timeouts: crate::conn::Timeouts,
    /// Age past which audit rows and alerts are deleted (see [`crate::retention`]).
    pub retention: Duration,
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
            acme: None,
            session_ttl: Duration::from_secs(12 * 3600),
            session_idle: Duration::from_secs(3600),
            clock: std::sync::Arc::new(crate::clock::SystemClock),
            login_rate: crate::throttle::LOGIN_RATE,
            lease_rate: crate::throttle::LEASE_RATE,
            trusted_proxies: Vec::new(),
            alert_webhook: None,
            conn_limits: crate::conn::ConnLimits::default(),
            conn_timeouts: crate::conn::Timeouts::default(),
            retention: crate::retention::DEFAULT_RETENTION,
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
    /// The expiry sweeper and the alert sender; they end on the broker's shutdown signal.
    background: Vec<JoinHandle<()>>,
    conns: Arc<crate::conn::ConnTracker>,
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

    /// What clients and edges pin, 64 lowercase hex digits: SHA-256 of the TLS certificate, or
    /// with ACME certificates of the TLS key (the same across renewals).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Public connections open now (each holds a slot from accept to close).
    pub fn open_connections(&self) -> usize {
        self.conns.open()
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
        for task in self.background {
            task.await?;
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
    let db_path = config.data_dir.join(DB_FILE);
    let db = store::open(&db_path).await?;
    let permits = secrets::argon2_permits(std::thread::available_parallelism().ok());
    let argon2 = secrets::Argon2Gate::new(permits).await?;
    let conns =
        crate::conn::ConnTracker::with_proxies(config.conn_limits, config.trusted_proxies.clone());
    let auth_config = crate::service::sessions::AuthConfig {
        conns: conns.clone(),
        clock: config.clock.clone(),
        session_idle: config.session_idle,
        login_rate: config.login_rate,
        lease_rate: config.lease_rate,
    };
    let auth =
        crate::service::sessions::AuthState::prepare(&db, &config.data_dir, auth_config).await?;
    let proxies = crate::proxy::TrustedProxies::new(config.trusted_proxies.clone());
    let broker = Broker::new(db, config.session_ttl, argon2, auth, proxies)?;
    let (identity, acme, presented) = match &config.acme {
        None => {
            let identity = tls::load_or_create(
                &config.data_dir,
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                config.listen,
            )?;
            let presented = if config.tls_cert.is_some() {
                tls::Presented::Operator
            } else {
                tls::Presented::SelfSigned {
                    fingerprint: identity.fingerprint.clone(),
                }
            };
            (identity, None, presented)
        }
        Some(acme) => {
            if config.tls_cert.is_some() {
                return Err(Error::BadRequest(
                    "--acme-domain and --tls-cert are alternatives".into(),
                ));
            }
            acme.check().map_err(Error::BadRequest)?;
            let manager = Arc::new(crate::acme::Manager::load(&config.data_dir, acme.clone())?);
            let identity =
                tls::with_resolver(manager.certs(), manager.key_pin(), &config.data_dir)?;
            let presented = tls::Presented::Acme {
                domain: acme.domain.clone(),
            };
            (identity, Some(manager), presented)
        }
    };

    let listener = bind_public(config.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let https = axum_server::Handle::new();
    let tls = RustlsAcceptor::new(RustlsConfig::from_config(identity.config));
    let acceptor = GuardedAcceptor::new(Arc::clone(&conns), tls, config.conn_timeouts);
    let mut server = axum_server::from_tcp(listener).acceptor(acceptor);
    let builder = server.http_builder();
    // Also bounds an idle HTTP/1 keep-alive connection: hyper starts this clock whenever it
    // waits for the next request head.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.conn_timeouts.first_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(crate::conn::H2_PING_INTERVAL)
        .keep_alive_timeout(crate::conn::H2_PING_TIMEOUT);
    let server = server.handle(https.clone()).serve(
        routes::app(broker.clone(), presented).into_make_service_with_connect_info::<SocketAddr>(),
    );

    let (admin_stop, mut stop_rx) = watch::channel(false);
    let admin_server = axum::serve(admin_listener, routes::admin_app(broker.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });

    let tasks = vec![
        tokio::spawn(server),
        tokio::spawn(async move { admin_server.await }),
    ];
    // The first pass before `start` returns: a broker started after a long stop has nothing
    // past the retention by the time anyone can look.
    broker.apply_retention(config.retention).await?;
    let mut background = vec![
        tokio::spawn(sweep_expired(broker.clone())),
        tokio::spawn(crate::retention::run(broker.clone(), config.retention)),
    ];
    if let Some(manager) = acme {
        background.push(tokio::spawn(crate::acme::run(manager, broker.clone())));
    }
    if let Some(webhook) = config.alert_webhook.clone() {
        background.push(tokio::spawn(crate::alerts::run(broker.clone(), webhook)));
    }
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
        background,
        conns,
    })
}

/// Connections the kernel may hold for the public listener before it drops SYNs (the kernel
/// caps it at `net.core.somaxconn`, 4096 by default). A stranger opening connections as fast as
/// it can fills a short queue, and a dropped SYN costs the user behind it a 1 s, then 3 s, then
/// 7 s retransmission; the accept loop closes the stranger's over-cap connections faster than
/// that.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the public listener. `[::]` (the default) is one dual-stack socket, so friends on
/// IPv6-only networks reach the broker too; IPv4 peers then arrive IPv4-mapped, and every use
/// of a peer address (pins, budgets, the connection caps) reads it canonical. A host whose kernel
/// has no IPv6 gets `0.0.0.0` instead.
fn bind_public(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let dual_stack = matches!(addr.ip(), IpAddr::V6(v6) if v6.is_unspecified());
    if dual_stack {
        match bind_tcp(addr, true) {
            Err(e) if no_ipv6(&e) => {
                tracing::info!(error = %e, "this host has no IPv6; the broker listens on IPv4 only");
                bind_tcp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())), false)
            }
            other => other,
        }
    } else {
        bind_tcp(addr, false)
    }
    .map_err(Into::into)
}

fn bind_tcp(addr: SocketAddr, dual_stack: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if dual_stack {
        // Explicit, so `net.ipv6.bindv6only=1` on the host does not make it IPv6 only.
        socket2::SockRef::from(&socket).set_only_v6(false)?;
    }
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// The errors of a kernel without IPv6 (`ipv6.disable=1`).
fn no_ipv6(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().map(Errno::from_raw).is_some_and(|errno| {
        matches!(
            errno,
            Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL | Errno::EPROTONOSUPPORT
        )
    })
}

/// Writes the audit rows of leases that expired, every few seconds until shutdown.
async fn sweep_expired(broker: Broker) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        if let Err(e) = broker.leases().sweep_expired().await {
            tracing::error!(error = %e, "recording expired leases failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(crate::service::leases::EXPIRY_SWEEP_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// The data directory holds the database, TLS key and admin socket: owner only. A new one is
/// made 0700. An existing one with any group or other permission is refused rather than
/// chmodded: whatever was readable may already have been read (the TLS key, the database), and
/// a mode the operator chose should not change behind their back.
fn make_private_dir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(false)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Missing parents: make them (0700 too) and the directory itself.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(Error::Internal(format!(
            "data dir {} is not a directory",
            dir.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let path = dir.display();
        return Err(Error::Internal(format!(
            "data dir {path} is mode {mode:04o}; make it 0700 (chmod 700 {path})"
        )));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_data_dir_is_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/data");
        make_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // And an owner-only one is taken as it is.
        make_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn an_open_data_dir_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        for bits in [0o755, 0o750, 0o701, 0o710, 0o1777] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).unwrap();
            let err = make_private_dir(&dir).unwrap_err().to_string();
            let path = dir.display();
            assert_eq!(
                err,
                format!("data dir {path} is mode {bits:04o}; make it 0700 (chmod 700 {path})")
            );
            assert_eq!(mode(&dir), bits, "the mode was changed");
        }
    }

    #[tokio::test]
    async fn the_broker_does_not_start_in_an_open_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = start(ServeConfig::for_tests(&dir)).await.err().unwrap();
        assert!(err.to_string().contains("is mode 0755"), "{err}");
        // Refused before anything was written into it.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
