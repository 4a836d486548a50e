//! Certificates from an ACME CA (RFC 8555) for a broker with a public name: `serve --acme-domain
//! NAME`. A friend's browser then trusts the broker without a fingerprint, while the edges and
//! CLIs that pinned it keep their pin across every renewal.
//!
//! How the pin survives: the broker keeps one TLS key (`tls-key.pem`, 0600) and sends a CSR for
//! that same key at every issuance and renewal, so only the certificate around the key changes.
//! What it announces as its fingerprint is the SHA-256 of that key (the SubjectPublicKeyInfo),
//! and `grantwire-pinned-tls` accepts a pin that matches either the certificate or its key.
//! A different key under the same name is still refused wherever a pin was stored.
//!
//! The challenge is TLS-ALPN-01 (RFC 8737) on the broker's own listener: [`Certs`] answers a
//! ClientHello that offers only `acme-tls/1` with the challenge certificate for the name asked,
//! and the acceptor closes such a connection after the handshake ([`crate::conn`]). Nothing else
//! is needed on the host: no port 80, no DNS API.
//!
//! Renewal: when a third of the certificate's lifetime is left (30 days of Let's Encrypt's 90),
//! in the background. A failed attempt is audited as `tls_renewal_failed` (which alerts, one per
//! 15 minutes) and retried with exponential backoff, while the current certificate keeps being
//! served. Until the first certificate arrives the listener completes no ordinary handshake.
//!
//! The crate is instant-acme: async on the tokio and hyper the broker already runs, rustls on
//! ring like the rest of grantwire, and it finalizes an order with a caller's CSR, which is what
//! keeping the key needs (rustls-acme makes a new key for every certificate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::tls::{load_or_make_key, write_private_atomic, KEY_FILE};

/// Let's Encrypt's production directory, the default `--acme-directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The ACME account (its key and URL), 0600.
pub const ACCOUNT_FILE: &str = "acme-account.json";
/// The current certificate chain, 0600.
pub const CERT_FILE: &str = "acme-cert.pem";
/// The directory URL of the CA the saved certificate came from.
pub const CERT_DIRECTORY_FILE: &str = "acme-cert.directory";
/// RFC 8737's ALPN protocol id.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// RFC 8555's problem type for an account the CA does not know.
const ACCOUNT_GONE: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
/// One issuance may take this long in all (account, order, validation, certificate).
const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);
/// The renewal loop looks at the clock at least this often, so a stepped clock or a
/// suspended host is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// What `serve --acme-domain` was given.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The broker's public DNS name; the certificate is for this name only.
    pub domain: String,
    /// Contact address given to the CA (expiry notices), if any.
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// PEM root the directory's own HTTPS certificate is checked against instead of the
    /// system's trust store (a private CA, or a test CA such as Pebble's).
    pub directory_ca: Option<PathBuf>,
}

impl AcmeConfig {
    /// Checks the name before anything is asked of a CA: a DNS name of letters, digits,
    /// hyphens and dots, with at least one dot (a CA issues for no bare host name).
    pub fn check(&self) -> std::result::Result<(), String> {
        let d = &self.domain;
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) {
            return Err(format!(
                "--acme-domain {d:?} is not a DNS name (letters, digits, '-', at least one '.')"
            ));
        }
        if d.parse::<std::net::IpAddr>().is_ok() {
            return Err("--acme-domain takes a DNS name, not an address".into());
        }
        if let Some(email) = &self.email {
            let ok = email.split_once('@').is_some_and(|(local, host)| {
                !local.is_empty() && host.contains('.') && !email.contains([' ', ',', '\n'])
            });
            if !ok {
                return Err(format!("--acme-email {email:?} is not an email address"));
            }
        }
        if !self.directory.starts_with("https://") {
            return Err("--acme-directory must be an https:// URL".into());
        }
        Ok(())
    }
}

/// The listener's certificates: the current one, swapped in place at renewal, and the
/// TLS-ALPN-01 answers while an order is being validated.
#[derive(Debug, Default)]
pub struct Certs {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Certs {
    fn set_current(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }

    fn challenges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737: a validation offers acme-tls/1 and nothing else. A hello that offers it
        // beside another protocol is an ordinary one (and negotiates the other protocol).
        let acme = hello.alpn().is_some_and(|protocols| {
            let offered: Vec<&[u8]> = protocols.collect();
            offered == [ACME_TLS_ALPN]
        });
        if acme {
            // Only the name being validated, and only while it is: a stranger offering
            // acme-tls/1 at other times gets no certificate at all.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges().get(&name).cloned();
        }
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The broker's ACME side: its key, its account, the certificates the listener presents.
pub struct Manager {
    config: AcmeConfig,
    data_dir: PathBuf,
    key: rcgen::KeyPair,
    certs: Arc<Certs>,
}

/// A certificate in service: its digest and its validity, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// When to renew: with a third of the lifetime left.
    pub fn renew_at(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before).max(0) / 3
    }

    /// The wait before retry number `failures` (1, 2, ...) after failed renewals: exponential,
    /// from 1/100 of the lifetime (at most a minute) up to 1/20 of it (at most an hour), so a
    /// 90-day certificate retries after 1 min, 2, 4, ... then hourly, and a short-lived test
    /// certificate in seconds.
    pub fn retry_after(&self, failures: u32) -> Duration {
        let life = u64::try_from((self.not_after - self.not_before).max(1)).unwrap_or(1);
        let first = (life / 100).clamp(1, 60);
        let cap = (life / 20).clamp(5, 3600);
        let wait = first.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
        Duration::from_secs(wait.min(cap))
    }
}

impl Manager {
    /// Loads (or makes) the TLS key, and the last certificate if it is still for this key.
    pub fn load(data_dir: &Path, config: AcmeConfig) -> Result<Self> {
        let key = load_or_make_key(&data_dir.join(KEY_FILE))?;
        let manager = Self {
            config,
            data_dir: data_dir.to_owned(),
            key,
            certs: Arc::new(Certs::default()),
        };
        match manager.load_saved() {
            Ok(Some(v)) => tracing::info!(
                not_after = v.not_after,
                "serving the saved ACME certificate until it is renewed"
            ),
            Ok(None) => tracing::info!("no ACME certificate yet; one is asked for at start"),
            Err(e) => {
                tracing::warn!(error = %e, "the saved ACME certificate is not usable; a new one is asked for")
            }
        }
        Ok(manager)
    }

    /// The resolver the listener's rustls configuration uses.
    pub fn certs(&self) -> Arc<Certs> {
        Arc::clone(&self.certs)
    }

    /// SHA-256 of the key's SubjectPublicKeyInfo: the pin, the same for every certificate.
    pub fn key_pin(&self) -> String {
        grantwire_pinned_tls::Fingerprint::of_der(&self.key.public_key_der()).to_string()
    }

    /// The certificate in service and its validity, if there is one.
    pub fn current(&self) -> Option<Validity> {
        let current = self
            .certs
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        validity_of(current.end_entity_cert().ok()?.as_ref()).ok()
    }

    fn load_saved(&self) -> Result<Option<Validity>> {
        let path = self.data_dir.join(CERT_FILE);
        if !path.exists() {
            return Ok(None);
        }
        // A certificate from another CA directory (staging before production, say) is not
        // kept: a new one is asked for at once.
        let from =
            std::fs::read_to_string(self.data_dir.join(CERT_DIRECTORY_FILE)).unwrap_or_default();
        if from.trim() != self.config.directory {
            return Err(Error::Internal(format!(
                "the saved certificate came from {:?}, not {}",
                from.trim(),
                self.config.directory
            )));
        }
        let pem = std::fs::read(&path)?;
        let validity = self.install(&pem)?;
        Ok(Some(validity))
    }

    /// Checks `chain_pem` as [`Manager::install`] does, without serving it.
    fn check(&self, chain_pem: &[u8]) -> Result<Validity> {
        self.parse(chain_pem).map(|(_, validity)| validity)
    }

    /// Makes `chain_pem` the certificate in service, after checking that it holds our key and
    /// names our domain.
    fn install(&self, chain_pem: &[u8]) -> Result<Validity> {
        let (chain, validity) = self.parse(chain_pem)?;
        let certified = certified_key(chain, &self.key)?;
        self.certs.set_current(certified);
        Ok(validity)
    }

    fn parse(&self, chain_pem: &[u8]) -> Result<(Vec<CertificateDer<'static>>, Validity)> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("reading the ACME certificate: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| Error::Internal("the ACME certificate chain is empty".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| Error::Internal(format!("parsing the ACME certificate: {e}")))?;
        if cert.tbs_certificate.subject_pki.raw != self.key.public_key_der().as_slice() {
            return Err(Error::Internal(
                "the ACME certificate is not for the broker's TLS key".into(),
            ));
        }
        let names_domain = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .is_some_and(|san| {
                san.value.general_names.iter().any(|n| {
                    matches!(n, x509_parser::extensions::GeneralName::DNSName(d)
                        if d.eq_ignore_ascii_case(&self.config.domain))
                })
            });
        if !names_domain {
            return Err(Error::Internal(format!(
                "the ACME certificate does not name {}",
                self.config.domain
            )));
        }
        let validity = validity_of(leaf.as_ref())?;
        Ok((chain, validity))
    }

    /// Asks the CA for a certificate for our key and, on success, saves and serves it.
    pub async fn issue(&self) -> Result<Validity> {
        let result = tokio::time::timeout(ISSUE_TIMEOUT, self.issue_inner()).await;
        // Whatever happened, no challenge answer outlives its order.
        self.certs.challenges().clear();
        match result {
            Ok(r) => r,
            Err(_) => Err(Error::Internal(format!(
                "no certificate within {}s",
                ISSUE_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn issue_inner(&self) -> Result<Validity> {
        let identifiers = [Identifier::Dns(self.config.domain.clone())];
        let account = self.account().await?;
        let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
            // The CA no longer knows the saved account (deactivated, or a test CA restarted):
            // a new one, once.
            Err(instant_acme::Error::Api(p)) if p.r#type.as_deref() == Some(ACCOUNT_GONE) => {
                tracing::warn!("the ACME CA no longer knows the saved account; making a new one");
                std::fs::remove_file(self.data_dir.join(ACCOUNT_FILE))?;
                self.account()
                    .await?
                    .new_order(&NewOrder::new(&identifiers))
                    .await
            }
            other => other,
        }
        .map_err(acme_error("creating the order"))?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(acme_error("reading an authorization"))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(Error::Internal(format!(
                        "the CA's authorization is {other:?}"
                    )))
                }
            }
            let mut challenge = authz
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| Error::Internal("the CA offers no tls-alpn-01 challenge".into()))?;
            let name = challenge.identifier().to_string().to_ascii_lowercase();
            let answer = challenge_cert(&name, challenge.key_authorization().digest().as_ref())?;
            self.certs.challenges().insert(name, answer);
            challenge
                .set_ready()
                .await
                .map_err(acme_error("telling the CA the challenge is ready"))?;
        }
        let poll = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(120));
        let status = order
            .poll_ready(&poll)
            .await
            .map_err(acme_error("waiting for validation"))?;
        if status != OrderStatus::Ready {
            return Err(Error::Internal(format!(
                "the CA did not validate {} (order {status:?})",
                self.config.domain
            )));
        }
        self.certs.challenges().clear();
        let mut params = rcgen::CertificateParams::new(vec![self.config.domain.clone()])
            .map_err(std::io::Error::other)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&self.key)
            .map_err(std::io::Error::other)?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(acme_error("finalizing the order"))?;
        let chain_pem = order
            .poll_certificate(&poll)
            .await
            .map_err(acme_error("downloading the certificate"))?;
        self.check(chain_pem.as_bytes())?;
        // Saved before it is served, through a rename: a crash leaves the old file or the new
        // one, and a certificate that could not be saved is not served (a restart would lose it).
        write_private_atomic(
            &self.data_dir.join(CERT_DIRECTORY_FILE),
            format!("{}\n", self.config.directory).as_bytes(),
        )?;
        write_private_atomic(&self.data_dir.join(CERT_FILE), chain_pem.as_bytes())?;
        self.install(chain_pem.as_bytes())
    }

    /// The saved account, or a new one (saved 0600 before it is used).
    async fn account(&self) -> Result<Account> {
        let builder = match &self.config.directory_ca {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        }
        .map_err(acme_error("setting up the ACME client"))?;
        let path = self.data_dir.join(ACCOUNT_FILE);
        if path.exists() {
            let saved: SavedAccount = serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| Error::Internal(format!("reading {}: {e}", path.display())))?;
            // An account belongs to one CA: a changed --acme-directory makes a new one.
            if saved.directory == self.config.directory {
                return builder
                    .from_credentials(saved.credentials)
                    .await
                    .map_err(acme_error("loading the ACME account"));
            }
        }
        let contact = self.config.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount {
            contact: &contacts,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = builder
            .create(&new, self.config.directory.clone(), None)
            .await
            .map_err(acme_error("creating the ACME account"))?;
        let saved = SavedAccount {
            directory: self.config.directory.clone(),
            credentials,
        };
        let json = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        write_private_atomic(&path, &json)?;
        tracing::info!(directory = %self.config.directory, "created an ACME account");
        Ok(account)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

fn acme_error(doing: &'static str) -> impl Fn(instant_acme::Error) -> Error {
    move |e| Error::Internal(format!("ACME: {doing}: {e}"))
}

fn now_unix() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The validity period of the certificate `der`.
pub fn validity_of(der: &[u8]) -> Result<Validity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Internal(format!("parsing a certificate: {e}")))?;
    let v = cert.validity();
    Ok(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &rcgen::KeyPair,
) -> Result<Arc<CertifiedKey>> {
    let der = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| Error::Internal(format!("loading the TLS key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// RFC 8737's validation certificate: self-signed, for `name`, carrying the SHA-256 of the key
/// authorization in the critical acmeIdentifier extension. Its key is made for it and dropped.
fn challenge_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>> {
    let key = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(std::io::Error::other)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(std::io::Error::other)?;
    certified_key(vec![cert.der().clone()], &key)
}

/// Keeps the certificate current until the broker stops: the first issuance at once when
/// there is none (or it is for another name or past its renewal time), then each renewal when
/// a third of the lifetime is left, retried with backoff after a failure.
/// Ends with the broker's shutdown (an issuance in flight is abandoned).
pub async fn run(manager: Arc<Manager>, broker: Broker) {
    let mut shutdown = broker.shutdown_signal();
    tokio::select! {
        () = keep_current(manager, broker) => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

async fn keep_current(manager: Arc<Manager>, broker: Broker) {
    let mut failures: u32 = 0;
    loop {
        let current = manager.current();
        let due = current.map_or(0, |v| v.renew_at());
        let now = now_unix();
        if now < due {
            let wait = Duration::from_secs(u64::try_from(due - now).unwrap_or(0)).min(MAX_SLEEP);
            tokio::time::sleep(wait).await;
            continue;
        }
        match manager.issue().await {
            Ok(v) if v.renew_at() <= now_unix() => {
                // Due for renewal the moment it arrived: this host's clock is far ahead of the
                // CA's, or the CA issues very short certificates. Ordering again at once would
                // only spend the CA's rate limits; wait as after a failure.
                failures = failures.saturating_add(1);
                let wait = v.retry_after(failures);
                tracing::warn!(
                    not_before = v.not_before,
                    not_after = v.not_after,
                    now = now_unix(),
                    retry_in_secs = wait.as_secs(),
                    "the new ACME certificate is already due for renewal; is this host's clock right?"
                );
                tokio::time::sleep(wait).await;
            }
            Ok(v) => {
                failures = 0;
                tracing::info!(
                    domain = %manager.config.domain,
                    not_after = v.not_after,
                    renew_at = v.renew_at(),
                    "ACME certificate issued"
                );
                let detail = format!(
                    "domain={} not_before={} not_after={}",
                    manager.config.domain, v.not_before, v.not_after
                );
                if let Err(e) = broker
                    .audit()
                    .tls_event("tls_certificate_issued", detail)
                    .await
                {
                    tracing::warn!(error = %e, "recording the certificate in the audit log");
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // Before any certificate, retry as for a one-hour certificate (seconds, then
                // a few minutes): the broker is unusable until one arrives.
                let basis = current.unwrap_or(Validity {
                    not_before: 0,
                    not_after: 3600,
                });
                let wait = basis.retry_after(failures);
                tracing::warn!(
                    error = %e,
                    failures,
                    retry_in_secs = wait.as_secs(),
                    still_serving_until = current.map(|v| v.not_after),
                    "ACME certificate renewal failed"
                );
                let detail = format!(
                    "domain={} failures={failures} error={e}",
                    manager.config.domain
                );
                if let Err(e) = broker.audit().tls_event("tls_renewal_failed", detail).await {
                    tracing::warn!(error = %e, "recording the failed renewal in the audit log");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(domain: &str) -> AcmeConfig {
        AcmeConfig {
            domain: domain.into(),
            email: None,
            directory: LETS_ENCRYPT.into(),
            directory_ca: None,
        }
    }

    #[test]
    fn names_that_no_ca_issues_for_are_refused_before_any_request() {
        assert!(config("broker.example.org").check().is_ok());
        for bad in [
            "localhost",
            "",
            "broker..example",
            "-broker.example",
            "broker.example-",
            "bro ker.example",
            "192.0.2.1",
            "*.example.org",
            &format!("{}.org", "a".repeat(64)),
        ] {
            assert!(config(bad).check().is_err(), "{bad:?} was accepted");
        }
        let mut c = config("broker.example.org");
        c.email = Some("not an address".into());
        assert!(c.check().is_err());
        c.email = Some("admin@example.org".into());
        assert!(c.check().is_ok());
        c.directory = "http://acme.example/dir".into();
        assert!(c.check().is_err());
    }

    #[test]
    fn renewal_comes_with_a_third_of_the_lifetime_left() {
        let ninety_days = Validity {
            not_before: 0,
            not_after: 90 * 86400,
        };
        assert_eq!(ninety_days.renew_at(), 60 * 86400);
        let minute = Validity {
            not_before: 1000,
            not_after: 1060,
        };
        assert_eq!(minute.renew_at(), 1040);
    }

    #[test]
    fn retries_back_off_within_bounds_set_by_the_lifetime() {
        let ninety_days = Validity {
            not_before: 0,
            not_after: 90 * 86400,
        };
        let waits: Vec<u64> = (1..=8)
            .map(|n| ninety_days.retry_after(n).as_secs())
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let minute = Validity {
            not_before: 0,
            not_after: 60,
        };
        let waits: Vec<u64> = (1..=4).map(|n| minute.retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5]);
        assert_eq!(minute.retry_after(u32::MAX).as_secs(), 5);
    }

    /// A client that takes any certificate and any signature, remembering the certificate:
    /// an ACME validator's view (the challenge certificate's critical acmeIdentifier extension
    /// is one webpki, rightly, refuses).
    #[derive(Debug, Default)]
    struct Shown(Mutex<Option<Vec<u8>>>);

    impl rustls::client::danger::ServerCertVerifier for Shown {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error>
        {
            *self.0.lock().unwrap() = Some(end_entity.to_vec());
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
        {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
        {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// A TLS handshake in memory between `certs` and a client offering `alpn` for `sni`: the
    /// certificate presented and the protocol negotiated, or the failure.
    fn handshake(
        certs: &Arc<Certs>,
        sni: &str,
        alpn: &[&[u8]],
    ) -> std::result::Result<(Vec<u8>, Option<Vec<u8>>), String> {
        let dir = tempfile::tempdir().unwrap();
        let server_config =
            crate::tls::with_resolver(certs.clone(), "00".repeat(32), dir.path()).unwrap();
        let shown = Arc::new(Shown::default());
        let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(shown.clone())
        .with_no_client_auth();
        client_config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(server_config.config).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server
                .process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client
                .process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
            if !client.is_handshaking() && !server.is_handshaking() {
                let cert = shown.0.lock().unwrap().clone().unwrap();
                return Ok((cert, server.alpn_protocol().map(<[u8]>::to_vec)));
            }
        }
        Err("the handshake did not finish".into())
    }

    #[test]
    fn the_challenge_answer_goes_only_to_a_validation_of_its_name_while_it_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let manager = Manager::load(dir.path(), config("broker.example.org")).unwrap();
        let ours = rcgen::CertificateParams::new(vec!["broker.example.org".into()])
            .unwrap()
            .self_signed(&manager.key)
            .unwrap();
        manager.install(ours.pem().as_bytes()).unwrap();
        let answer = challenge_cert("broker.example.org", &[7u8; 32]).unwrap();
        let answer_der = answer.cert[0].to_vec();
        let certs = manager.certs();
        certs
            .challenges()
            .insert("broker.example.org".into(), answer);
        let acme: &[&[u8]] = &[ACME_TLS_ALPN];
        let h2: &[u8] = b"h2";

        let real = ours.der().to_vec();

        // A validation: only acme-tls/1, the name being validated.
        assert_eq!(
            handshake(&certs, "broker.example.org", acme),
            Ok((answer_der.clone(), Some(ACME_TLS_ALPN.to_vec())))
        );
        // Another name: no certificate at all.
        assert!(handshake(&certs, "other.example.org", acme).is_err());
        // acme-tls/1 beside h2 is an ordinary hello: the real certificate, and h2.
        assert_eq!(
            handshake(&certs, "broker.example.org", &[h2, ACME_TLS_ALPN]),
            Ok((real.clone(), Some(h2.to_vec())))
        );
        assert_eq!(
            handshake(&certs, "broker.example.org", &[h2]),
            Ok((real.clone(), Some(h2.to_vec())))
        );
        // Once the order is over, a validation hello gets nothing.
        certs.challenges().clear();
        assert!(handshake(&certs, "broker.example.org", acme).is_err());
    }

    #[test]
    fn a_saved_certificate_from_another_ca_directory_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let manager = Manager::load(dir.path(), config("broker.example.org")).unwrap();
        let ours = rcgen::CertificateParams::new(vec!["broker.example.org".into()])
            .unwrap()
            .self_signed(&manager.key)
            .unwrap();
        write_private_atomic(&dir.path().join(CERT_FILE), ours.pem().as_bytes()).unwrap();
        let mut staging = config("broker.example.org");
        staging.directory = "https://staging.example.org/dir".into();
        write_private_atomic(
            &dir.path().join(CERT_DIRECTORY_FILE),
            b"https://staging.example.org/dir\n",
        )
        .unwrap();
        // Saved by the staging CA: served under it, not under production.
        assert!(Manager::load(dir.path(), staging)
            .unwrap()
            .current()
            .is_some());
        let production = Manager::load(dir.path(), config("broker.example.org")).unwrap();
        assert_eq!(production.current(), None);
    }

    #[test]
    fn the_key_is_kept_and_a_certificate_for_another_key_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let first = Manager::load(dir.path(), config("broker.example.org")).unwrap();
        let again = Manager::load(dir.path(), config("broker.example.org")).unwrap();
        assert_eq!(first.key_pin(), again.key_pin());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // A chain for our key and name is served; its key pin is the manager's.
        let ours = rcgen::CertificateParams::new(vec!["broker.example.org".into()])
            .unwrap()
            .self_signed(&first.key)
            .unwrap();
        let v = first.install(ours.pem().as_bytes()).unwrap();
        assert_eq!(first.current(), Some(v));
        let pin: grantwire_pinned_tls::Fingerprint = first.key_pin().parse().unwrap();
        assert!(pin.matches(ours.der()));

        // Another key, or another name: refused, and the served one stays.
        let other_key = rcgen::KeyPair::generate().unwrap();
        let theirs = rcgen::CertificateParams::new(vec!["broker.example.org".into()])
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        assert!(first.install(theirs.pem().as_bytes()).is_err());
        let wrong_name = rcgen::CertificateParams::new(vec!["other.example.org".into()])
            .unwrap()
            .self_signed(&first.key)
            .unwrap();
        assert!(first.install(wrong_name.pem().as_bytes()).is_err());
        assert_eq!(first.current(), Some(v));
        assert!(first.install(b"garbage").is_err());
    }
}
