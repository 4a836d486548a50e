//! Who may hold a connection to the public listener, and for how long.
//!
//! One stranger must not be able to freeze the broker by opening connections and sending
//! nothing. Every accepted TCP connection takes a slot before any TLS work: at most
//! [`ConnLimits::per_source`] per source (an IPv4 address or an IPv6 /64), at most
//! [`ConnLimits::public`] in all, and a further [`ConnLimits::known`] slots only for networks a
//! user has logged in from or an edge has synced from (see [`ConnTracker::mark_known`]). A
//! connection over its cap is closed at once. The total is derived from the descriptor limit
//! with a reserve kept back for the database, the admin socket and the known pool, so the
//! public listener can never exhaust the process's descriptors.
//!
//! Once admitted, a connection that makes no progress is closed: the TLS handshake gets
//! [`HANDSHAKE_TIMEOUT`], the first request bytes [`FIRST_BYTES_TIMEOUT`], and afterwards a
//! connection with nothing read or written for [`IDLE_TIMEOUT`] ends (an edge's sync stream
//! writes a keep-alive every 15 s, so it never idles out).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsAcceptor;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::throttle::source_key;

/// TLS handshake must finish within this (a client on a slow mobile link needs a few round
/// trips; ten seconds is far beyond that).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the handshake, the first request bytes must arrive within this, and an HTTP/1 request
/// head must be complete within it (which also closes an idle keep-alive connection).
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with nothing read or written for this long is closed. Four times the edges'
/// 15 s sync keep-alive, so a live sync stream never meets it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 connections are pinged this often; one that does not answer within
/// [`H2_PING_TIMEOUT`] is closed.
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections one source may hold: a household behind one NAT address with a few devices and
/// browser tabs needs a handful each; 64 leaves room while one address cannot take more than a
/// small part of the total.
pub const PER_SOURCE: usize = 64;
/// Public connections at most, whatever the descriptor limit: a broker serving a household
/// and its friends never needs more, and each connection costs memory for TLS buffers.
pub const MAX_PUBLIC: usize = 4096;
/// Descriptors never given to public connections: SQLite's pool and WAL files, the admin
/// socket and its clients, the log, the blocking pool's files. 128 is several times what a
/// broker uses besides connections.
pub const FD_RESERVE: u64 = 128;
/// Slots beyond the public cap, only for known networks: an eighth of what the descriptor
/// limit leaves, so users and edges who have been here before get in during a flood.
const KNOWN_SHARE: usize = 8;
/// Known networks remembered at most (they are added only by a successful login or an edge's
/// credential, so this bounds memory, not strangers).
const MAX_KNOWN: usize = 100_000;

/// The caps of [`ConnTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub per_source: usize,
    /// Connections from any source.
    pub public: usize,
    /// Further connections only for known networks.
    pub known: usize,
}

impl ConnLimits {
    /// The caps for a process allowed `nofile` descriptors: what remains after
    /// [`FD_RESERVE`], an eighth of it for known networks, the rest (at most [`MAX_PUBLIC`])
    /// for anyone.
    pub fn for_fd_limit(nofile: u64) -> Self {
        let usable = usize::try_from(nofile.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
        let known = (usable / KNOWN_SHARE).min(MAX_PUBLIC / KNOWN_SHARE);
        let public = (usable - known).min(MAX_PUBLIC);
        Self {
            per_source: PER_SOURCE.min(public.max(1)),
            public,
            known,
        }
    }
}

impl Default for ConnLimits {
    /// For a process allowed 65,536 descriptors (systemd's usual hard limit).
    fn default() -> Self {
        Self::for_fd_limit(65_536)
    }
}

/// Counts open public connections per source and in all.
#[derive(Debug)]
pub struct ConnTracker {
    limits: ConnLimits,
    /// Configured trusted proxies: every client behind one arrives from its address, so it
    /// has no per-source cap (its connections still count in the total).
    proxies: Vec<ipnet::IpNet>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    per_source: HashMap<IpAddr, usize>,
    total: usize,
    known: std::collections::HashSet<IpAddr>,
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    SourceFull,
    AllFull,
}

impl ConnTracker {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Self::with_proxies(limits, Vec::new())
    }

    /// A tracker that exempts `proxies` from the per-source cap.
    pub fn with_proxies(limits: ConnLimits, proxies: Vec<ipnet::IpNet>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            proxies,
            state: Mutex::new(State::default()),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Takes a slot for a connection from `ip`, held until the returned [`ConnSlot`] drops.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let key = source_key(ip);
        let mut state = self.lock();
        let held = state.per_source.get(&key).copied().unwrap_or(0);
        let proxy = self.proxies.iter().any(|p| p.contains(&ip.to_canonical()));
        if held >= self.limits.per_source && !proxy {
            return Err(Refused::SourceFull);
        }
        let cap = if state.known.contains(&key) {
            self.limits.public + self.limits.known
        } else {
            self.limits.public
        };
        if state.total >= cap {
            return Err(Refused::AllFull);
        }
        state.total += 1;
        *state.per_source.entry(key).or_insert(0) += 1;
        Ok(ConnSlot {
            tracker: Arc::clone(self),
            key,
        })
    }

    /// Lets `ip`'s network use the known pool: a user proved password and code from it, or an
    /// edge presented its credential from it.
    pub fn mark_known(&self, ip: IpAddr) {
        let mut state = self.lock();
        if state.known.len() < MAX_KNOWN {
            state.known.insert(source_key(ip));
        }
    }

    /// Open public connections.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted connection's place in the count.
#[derive(Debug)]
pub struct ConnSlot {
    tracker: Arc<ConnTracker>,
    key: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut state = self.tracker.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.per_source.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                state.per_source.remove(&self.key);
            }
        }
    }
}

impl crate::service::sessions::KnownSources for ConnTracker {
    fn mark_known(&self, ip: IpAddr) {
        ConnTracker::mark_known(self, ip);
    }
}

/// The public listener's acceptor: a slot first (refused connections are closed before any
/// TLS work), then the TLS handshake, then the progress timeouts.
#[derive(Clone)]
pub struct GuardedAcceptor {
    tracker: Arc<ConnTracker>,
    tls: RustlsAcceptor,
    timeouts: Timeouts,
}

/// The progress timeouts; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub handshake: Duration,
    pub first_bytes: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: HANDSHAKE_TIMEOUT,
            first_bytes: FIRST_BYTES_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }
}

impl GuardedAcceptor {
    pub fn new(tracker: Arc<ConnTracker>, tls: RustlsAcceptor, timeouts: Timeouts) -> Self {
        Self {
            tracker,
            tls: tls.handshake_timeout(timeouts.handshake),
            timeouts,
        }
    }
}

type AcceptFuture<T, S> = Pin<Box<dyn Future<Output = io::Result<(T, S)>> + Send>>;

impl<S: Send + 'static> Accept<TcpStream, S> for GuardedAcceptor {
    type Stream = Guarded<<RustlsAcceptor as Accept<TcpStream, S>>::Stream>;
    type Service = S;
    type Future = AcceptFuture<Self::Stream, S>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let slot = stream
            .peer_addr()
            .and_then(|peer| {
                self.tracker.admit(peer.ip()).map_err(|why| {
                    tracing::debug!(%peer, ?why, "connection closed at accept");
                    io::Error::other("over the connection cap")
                })
            })
            .map(|slot| (slot, stream));
        let tls = self.tls.clone();
        let timeouts = self.timeouts;
        Box::pin(async move {
            // On refusal the stream is dropped here: closed before TLS.
            let (slot, stream) = slot?;
            let (tls_stream, service) = tls.accept(stream, service).await?;
            // A TLS-ALPN-01 validation (RFC 8737) ends with the handshake: the CA only looks
            // at the certificate. Nothing is served on such a connection.
            if tls_stream.get_ref().1.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
                return Err(io::Error::other(
                    "ACME TLS-ALPN-01 validation: handshake only",
                ));
            }
            Ok((Guarded::new(tls_stream, slot, timeouts), service))
        })
    }
}

/// A connection that ends when it makes no progress: no bytes from the peer within
/// `first_bytes` of the handshake, then nothing read or written for `idle`.
pub struct Guarded<T> {
    inner: T,
    _slot: ConnSlot,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
    /// Whether the peer has sent anything since the handshake.
    spoken: bool,
}

impl<T> Guarded<T> {
    fn new(inner: T, slot: ConnSlot, timeouts: Timeouts) -> Self {
        Self {
            inner,
            _slot: slot,
            deadline: Box::pin(tokio::time::sleep(timeouts.first_bytes)),
            idle: timeouts.idle,
            spoken: false,
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Called when the inner stream is pending: an error once the deadline passed.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection made no progress",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.spoken = true;
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_deadline(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                // Writing before the peer has said anything is not its progress (a stranger
                // must not be kept alive by what the broker sends).
                if n > 0 && self.spoken {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_deadline(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check_deadline(cx).map(Err),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raises the soft descriptor limit to the hard one (systemd gives services a soft 1024 and a
/// hard 524288) and returns the limit now in force, which the caps are derived from.
pub fn raise_fd_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= hard {
        return Ok(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(hard),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "could not raise the descriptor limit");
            Ok(soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_descriptor_limit() {
        let small = ConnLimits::for_fd_limit(1024);
        assert_eq!(small.public + small.known, 1024 - FD_RESERVE as usize);
        assert_eq!(small.known, 112);
        assert_eq!(small.public, 784);
        assert_eq!(small.per_source, PER_SOURCE);
        let big = ConnLimits::for_fd_limit(1 << 20);
        assert_eq!(big.public, MAX_PUBLIC);
        assert_eq!(big.known, MAX_PUBLIC / KNOWN_SHARE);
        let tiny = ConnLimits::for_fd_limit(100);
        assert_eq!((tiny.public, tiny.known, tiny.per_source), (0, 0, 1));
    }

    #[test]
    fn a_source_is_capped_and_its_slots_come_back() {
        let t = ConnTracker::new(ConnLimits {
            per_source: 2,
            public: 3,
            known: 1,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = t.admit(a).unwrap();
        let _a2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).unwrap_err(), Refused::SourceFull);
        let _b1 = t.admit(b).unwrap();
        assert_eq!(t.open(), 3);
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(t.admit(c).unwrap_err(), Refused::AllFull);
        assert_eq!(t.open(), 3, "a refusal takes no slot");
        // A known network gets the reserved slot, and only that one.
        t.mark_known(c);
        let c1 = t.admit(c).unwrap();
        assert_eq!(t.admit(c).unwrap_err(), Refused::AllFull);
        // Slots come back on drop; a known network's connections count in the total too.
        drop(a1);
        assert_eq!(t.open(), 3);
        assert_eq!(t.admit(a).unwrap_err(), Refused::AllFull);
        drop(c1);
        let _a3 = t.admit(a).unwrap();
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn a_trusted_proxy_has_no_per_source_cap() {
        let limits = ConnLimits {
            per_source: 1,
            public: 3,
            known: 0,
        };
        let t = ConnTracker::with_proxies(limits, vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| t.admit(proxy).unwrap()).collect();
        assert_eq!(t.admit(proxy).unwrap_err(), Refused::AllFull);
        drop(held);
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let _o = t.admit(other).unwrap();
        assert_eq!(t.admit(other).unwrap_err(), Refused::SourceFull);
    }

    #[test]
    fn ipv6_sources_are_counted_by_their_64() {
        let t = ConnTracker::new(ConnLimits {
            per_source: 1,
            public: 10,
            known: 0,
        });
        let _x = t.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            t.admit("2001:db8:1:2:ffff::9".parse().unwrap())
                .unwrap_err(),
            Refused::SourceFull
        );
        let _y = t.admit("2001:db8:1:3::1".parse().unwrap()).unwrap();
        let _z = t.admit("::ffff:192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(
            t.admit("192.0.2.1".parse().unwrap()).unwrap_err(),
            Refused::SourceFull,
            "an IPv4-mapped address is its IPv4 address"
        );
    }
}
