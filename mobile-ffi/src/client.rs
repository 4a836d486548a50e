//! [`GrantwireClient`], the one object an app holds: it owns the tokio runtime the network
//! calls run on, so the app's own executor (asyncio, Kotlin coroutines, Swift concurrency)
//! only polls a future and never needs a tokio context.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use grantwire_client_core::{self as core, renewal, BrokerClient};
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::records::{
    parse_fingerprint, BrokerTrustInfo, KeyPair, LeaseStatus, Profile, Renewal, Session, WhoAmI,
};
use crate::GrantwireError;

/// Worker threads of the object's runtime. A phone makes a handful of short HTTPS calls at a
/// time (login, renew after a network change); two threads keep one slow handshake from
/// holding up another without a thread per core.
const WORKER_THREADS: usize = 2;

/// The grantwire client for an app: broker trust, login, leases, renewal and profile output.
/// Safe to share between threads; the async methods do not block the calling thread.
#[derive(uniffi::Object)]
pub struct GrantwireClient {
    handle: Handle,
    /// Taken in `Drop` to shut down without blocking: the last reference may go away on a UI
    /// thread or inside another runtime, where a blocking shutdown would stall or panic.
    runtime: Option<Runtime>,
}

#[uniffi::export]
impl GrantwireClient {
    /// Starts the object's runtime (threads named `grantwire-ffi`).
    #[uniffi::constructor]
    pub fn new() -> Result<Arc<Self>, GrantwireError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("grantwire-ffi")
            .enable_all()
            .build()
            .map_err(|e| GrantwireError::Other {
                message: format!("cannot start the client's runtime: {e}"),
            })?;
        Ok(Arc::new(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        }))
    }

    /// A fresh WireGuard keypair from the OS's CSPRNG. Only the public key goes to the broker.
    pub fn generate_keypair(&self) -> KeyPair {
        let private = core::keys::generate();
        KeyPair {
            public_key: private.public_key().to_base64(),
            private_key: private.to_base64(),
        }
    }

    /// One TLS handshake with the broker, sending nothing: whether a public CA signed its
    /// certificate, or else its fingerprint for the person to compare before `login`.
    pub async fn probe(&self, broker_url: String) -> Result<BrokerTrustInfo, GrantwireError> {
        let trust = self
            .run(async move { BrokerClient::probe(&broker_url).await })
            .await?;
        Ok(trust.into())
    }

    /// Logs in with password and the current TOTP code. With `fingerprint` (as `probe` gave
    /// it, or hex with `:` or a `SHA256:` prefix) exactly that certificate is trusted; without,
    /// one a public CA signed.
    pub async fn login(
        &self,
        broker_url: String,
        fingerprint: Option<String>,
        user: String,
        password: String,
        totp: String,
    ) -> Result<Session, GrantwireError> {
        let pin = parse_fingerprint(fingerprint.as_deref())?;
        let session = self
            .run(async move {
                let client = BrokerClient::new(&broker_url, pin)?;
                client.login(&user, &password, &totp).await
            })
            .await?;
        Ok(session.into())
    }

    /// Who the session is, where the broker sees this device, and which leases are pinned
    /// here (one that is not needs `renew`).
    pub async fn whoami(&self, session: Session) -> Result<WhoAmI, GrantwireError> {
        let session = core::Session::try_from(session)?;
        let who = self
            .run(async move { BrokerClient::for_session(&session)?.whoami(&session).await })
            .await?;
        Ok(who.into())
    }

    /// A lease on `edge` for `public_key` (base64), pinned to where the broker sees this
    /// device. Asking again with the same key replaces the user's earlier lease for it.
    pub async fn request_lease(
        &self,
        session: Session,
        edge: String,
        public_key: String,
    ) -> Result<Profile, GrantwireError> {
        let session = core::Session::try_from(session)?;
        let key: core::PublicKey = public_key
            .parse()
            .map_err(|e| GrantwireError::usage(format!("public key: {e}")))?;
        let profile = self
            .run(async move {
                BrokerClient::for_session(&session)?
                    .request_lease(&session, &edge, &key)
                    .await
            })
            .await?;
        Ok(profile.into())
    }

    /// Re-pins lease `lease_id` to where the broker sees this device now and moves its expiry.
    /// The lease keeps its keys and tunnel address: re-apply the profile with the same
    /// private key. Call it when the device changes network.
    pub async fn renew(
        &self,
        session: Session,
        lease_id: String,
    ) -> Result<Profile, GrantwireError> {
        let session = core::Session::try_from(session)?;
        let profile = self
            .run(async move {
                BrokerClient::for_session(&session)?
                    .renew(&session, &lease_id)
                    .await
            })
            .await?;
        Ok(profile.into())
    }

    /// Ends the user's lease `lease_id`; the edge drops the peer at once.
    pub async fn revoke(&self, session: Session, lease_id: String) -> Result<(), GrantwireError> {
        let session = core::Session::try_from(session)?;
        self.run(async move {
            BrokerClient::for_session(&session)?
                .revoke(&session, &lease_id)
                .await
        })
        .await?;
        Ok(())
    }

    /// The profile as a wg-quick file with the device's private key (base64): what
    /// wireguard-android's `Config.parse` and WireGuardKit's `TunnelConfiguration` read.
    pub fn render_wg_quick(
        &self,
        profile: Profile,
        private_key: String,
    ) -> Result<String, GrantwireError> {
        let key: core::PrivateKey = private_key
            .parse()
            .map_err(|e| GrantwireError::usage(format!("private key: {e}")))?;
        Ok(core::Profile::try_from(profile)?.to_wg_quick(&key))
    }

    /// Whether a lease must be renewed at `now` (Unix seconds): the decision `grantwire up` and
    /// `grantwire watch` make, from client-core. `lease` is the lease as `whoami` lists it
    /// (none when it lists no such lease); `lifetime_secs` its whole lifetime as seen at the
    /// last `renew` or `request_lease` (`expires_at` minus the time then), so a short lease is
    /// renewed a third before its end rather than at every check; none for the default, ten
    /// minutes before the end. Call it after `whoami`, e.g. when the phone changes network.
    pub fn renewal(
        &self,
        lease: Option<LeaseStatus>,
        now: i64,
        lifetime_secs: Option<i64>,
    ) -> Result<Renewal, GrantwireError> {
        let lease = lease.map(core::WhoamiLease::try_from).transpose()?;
        let before = renewal::renew_before(lifetime_secs);
        Ok(match renewal::decide_within(lease.as_ref(), now, before) {
            renewal::Decision::Renew(why) => Renewal {
                renew: true,
                reason: Some(why),
                due_in_secs: 0,
            },
            renewal::Decision::Keep => Renewal {
                renew: false,
                reason: None,
                // A kept lease is a listed one; `Duration::MAX` leaves only the lease's time.
                due_in_secs: lease.map_or(0, |l| {
                    renewal::next_check(Duration::MAX, l.expires_at, before, now).as_secs()
                }),
            },
        })
    }

    /// `wg_quick` as an SVG QR code the official WireGuard apps can scan.
    pub fn render_qr_svg(&self, wg_quick: String) -> Result<String, GrantwireError> {
        Ok(core::render_qr_svg(&wg_quick)?)
    }
}

impl GrantwireClient {
    /// Runs `work` on the object's runtime and waits for it without a tokio context: the
    /// `JoinHandle` is an ordinary future, woken from the runtime's threads.
    async fn run<T, F>(&self, work: F) -> Result<T, GrantwireError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, core::Error>> + Send + 'static,
    {
        let task = AbortOnDrop(self.handle.spawn(work));
        match task.await {
            Ok(result) => result.map_err(GrantwireError::from),
            Err(e) => Err(GrantwireError::Other {
                message: format!("the client's task failed: {e}"),
            }),
        }
    }
}

impl Drop for GrantwireClient {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A spawned task that ends when the app drops its future (a cancelled coroutine or Swift
/// `Task`), so an abandoned call does not go on talking to the broker.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
