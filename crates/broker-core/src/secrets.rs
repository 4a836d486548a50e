//! Bearer tokens, password hashes and other secret material.
//!
//! Tokens (sessions, enrolment tokens, edge credentials) are 32 random bytes, base64url without
//! padding; only their SHA-256 is stored, so a copy of the database grants nothing. A stored
//! digest is found by an indexed equality lookup: what timing could reveal is a prefix of a
//! SHA-256 digest, which does not help forge the token.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// Shortest password the broker stores, in characters (NIST SP 800-63B asks for at least 8;
/// 12 is ASVS 2.1.1's level for a service reachable by strangers).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password, in characters: long enough for any passphrase, short enough that argon2
/// is never asked to hash a megabyte.
pub const MAX_PASSWORD_LEN: usize = 128;

/// A bearer token as handed out once. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of a presented token, the form stored in the database.
pub fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// The length rule alone (characters, not bytes), which the CLI checks before asking the
/// broker. No composition rules: they make passwords harder to remember, not to guess.
pub fn check_password_length(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        return Err(Error::BadRequest(format!(
            "password must be at least {MIN_PASSWORD_LEN} and at most {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// Rejects passwords the broker will not store: the length rule, and any password on the
/// shipped list of common ones (compared case-insensitively).
pub fn check_password_policy(password: &str) -> Result<()> {
    check_password_length(password)?;
    if crate::passwords::is_common(password) {
        return Err(Error::BadRequest(
            "password is among the most common passwords; choose another".into(),
        ));
    }
    Ok(())
}

/// File in the data directory holding the key that seals TOTP secrets. Kept apart from the
/// database so a copy of `broker.db` alone does not give the second factor away.
pub const SECRETS_KEY_FILE: &str = "secrets.key";
const SEAL_KEY_LEN: usize = 32;

/// ChaCha20-Poly1305 key for TOTP secrets at rest. A sealed value is `nonce || ciphertext ||
/// tag` with a random 96-bit nonce: the few thousand seals a broker ever makes are far from
/// the ~2^32 at which random nonces risk a collision. Redacted in `Debug`.
///
/// The same file also yields the HMAC key of the web pages' form tokens ([`SealKey::form_key`]):
/// one secret to back up, and a copy of `broker.db` alone does not let anyone forge a form.
pub struct SealKey {
    aead: LessSafeKey,
    form: ring::hmac::Key,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key = UnboundKey::new(&aead::CHACHA20_POLY1305, bytes)
            .map_err(|_| Error::Internal("secrets key must be 32 bytes".into()))?;
        // A separate key for a separate use (HKDF-Expand's one-block form): a form token never
        // says anything about the key that seals TOTP secrets.
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes);
        let derived = ring::hmac::sign(&root, b"grantwire web form key v1\x01");
        Ok(Self {
            aead: LessSafeKey::new(key),
            form: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    /// The HMAC-SHA256 key the web pages derive a session's form (CSRF) token with.
    pub fn form_key(&self) -> &ring::hmac::Key {
        &self.form
    }

    /// Reads the key file; `None` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == SEAL_KEY_LEN => Self::from_bytes(&bytes).map(Some),
            Ok(_) => Err(Error::Internal(format!(
                "{} is not a {SEAL_KEY_LEN}-byte key",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes a new random key and writes it (mode 0600, never over an existing file).
    pub fn create(path: &Path) -> Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let bytes = random_bytes::<SEAL_KEY_LEN>();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        Self::from_bytes(&bytes)
    }

    /// Seals `plaintext`, bound to `aad` (the user's name): a sealed secret moved to another
    /// user's row does not open.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut in_out = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| Error::Internal("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Opens a value made by [`SealKey::seal`] with the same `aad`; `None` if it does not
    /// authenticate (wrong key, wrong user, or tampered).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Most argon2 computations the broker runs at once. Each takes 19 MiB and a core for tens of
/// milliseconds; without a bound a login flood would run hundreds side by side and exhaust
/// memory, where a queue only makes the flood slower.
pub const MAX_ARGON2_PERMITS: usize = 4;

/// Concurrent argon2 computations for a host with `parallelism` cores: one per core, at least
/// one, at most [`MAX_ARGON2_PERMITS`].
pub fn argon2_permits(parallelism: Option<NonZeroUsize>) -> usize {
    parallelism
        .map_or(1, NonZeroUsize::get)
        .clamp(1, MAX_ARGON2_PERMITS)
}

/// The only way the request path runs argon2: on the blocking pool, at most `permits` at once,
/// with a dummy hash made up front for unknown users.
#[derive(Clone)]
pub struct Argon2Gate {
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit, and how many may wait: past that a request is refused at
    /// once (429) rather than queued, so a flood holds neither memory nor connections.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// Made at start rather than on first use, so the first login for an unknown name is not
    /// slower (and so distinguishable) from later ones.
    dummy: Arc<str>,
    /// Checks each source (IPv4 address, IPv6 /64) has waiting or running.
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Checks one source may have waiting or running at once. With one queue for everyone, fifty
/// addresses each at their allowed login rate filled it and every other login got 429; with
/// this cap each source holds at most two places, and a source's first check always gets a
/// place (see [`Argon2Gate::verify_from`]), so a login waits behind at most two checks of
/// each other source, whatever they send.
pub const MAX_ARGON2_PER_SOURCE: usize = 2;

/// Requests allowed to wait for an argon2 permit. With 4 permits and ~50 ms a hash this is
/// under a second of queue; anything beyond is a flood and is refused at once.
pub const MAX_ARGON2_WAITING: usize = 64;

impl Argon2Gate {
    pub async fn new(permits: usize) -> Result<Self> {
        Self::with_queue(permits, MAX_ARGON2_WAITING).await
    }

    pub async fn with_queue(permits: usize, max_waiting: usize) -> Result<Self> {
        let dummy = tokio::task::spawn_blocking(make_dummy_hash).await??;
        Ok(Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            dummy: dummy.into(),
            sources: Arc::default(),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let permit = self.permit().await?;
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done even if the request is dropped meanwhile: the
            // blocking task runs on regardless, and the bound is on work, not on requests.
            let _permit = permit;
            hash_password(&password)
        })
        .await?
    }

    /// See [`verify_password`]; `None` checks against the dummy hash.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool> {
        let permit = self.permit().await?;
        let dummy = Arc::clone(&self.dummy);
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_password(&password, phc.as_deref(), &dummy)
        })
        .await?)
    }

    /// [`Argon2Gate::verify`] for a request from `source`, admitted fairly: at most
    /// [`MAX_ARGON2_PER_SOURCE`] checks per source waiting or running (more get 429 at once),
    /// and a source's first check queues even when the shared queue is full. The queue is so
    /// bounded by its size plus the number of sources, which the connection caps bound.
    pub async fn verify_from(
        &self,
        source: IpAddr,
        password: String,
        phc: Option<String>,
    ) -> Result<bool> {
        let turn = self.admit(source)?;
        let permit = self.permit_queued(turn.first).await?;
        let dummy = Arc::clone(&self.dummy);
        Ok(tokio::task::spawn_blocking(move || {
            // Both held until the hash is done, even if the request is dropped meanwhile.
            let (_permit, _turn) = (permit, turn);
            verify_password(&password, phc.as_deref(), &dummy)
        })
        .await?)
    }

    fn admit(&self, source: IpAddr) -> Result<SourceTurn> {
        let key = crate::throttle::source_key(source);
        let mut map = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.entry(key).or_insert(0);
        if *held >= MAX_ARGON2_PER_SOURCE {
            return Err(Error::RateLimited { retry_after: 1 });
        }
        *held += 1;
        Ok(SourceTurn {
            sources: Arc::clone(&self.sources),
            key,
            first: *held == 1,
        })
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        self.permit_queued(false).await
    }

    /// A permit, waiting for it in the shared queue; refused (429) when the queue is full,
    /// unless `always_queue`.
    async fn permit_queued(&self, always_queue: bool) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting && !always_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::RateLimited { retry_after: 1 });
        }
        // Counted out again even when the request is dropped while it waits.
        let _waiting = WaitGuard(&self.waiting);
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("argon2 semaphore closed".into()))
    }
}

/// A source's place among the argon2 checks; given back on drop.
struct SourceTurn {
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
    /// Whether the source had nothing else waiting or running.
    first: bool,
}

impl Drop for SourceTurn {
    fn drop(&mut self) {
        let mut map = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// argon2id with the crate's defaults (19 MiB, t=2, p=1: OWASP's minimum recommendation), as a
/// PHC string. CPU-heavy: call through [`Argon2Gate`].
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2 hash: {e}")))
}

/// Checks a password against a PHC string; `None` verifies against `dummy` so an unknown user
/// costs the same time as a known one, and is refused whatever the outcome. CPU-heavy: call
/// through [`Argon2Gate`].
pub fn verify_password(password: &str, phc: Option<&str>, dummy: &str) -> bool {
    let known = phc.is_some();
    let Ok(parsed) = PasswordHash::new(phc.unwrap_or(dummy)) else {
        tracing::error!("stored password hash does not parse");
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && known
}

/// A hash of a random password nobody knows, with the same parameters as real ones.
fn make_dummy_hash() -> Result<String> {
    hash_password(&URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_dummy() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let dummy = make_dummy_hash().unwrap();
        assert!(verify_password("correct horse", Some(&phc), &dummy));
        assert!(!verify_password("wrong horse", Some(&phc), &dummy));
        assert!(!verify_password("correct horse", None, &dummy));
        // Even the dummy's own password is refused for an unknown user.
        let known_dummy = hash_password("correct horse").unwrap();
        assert!(!verify_password("correct horse", None, &known_dummy));
    }

    #[test]
    fn argon2_permits_follow_cores_within_bounds() {
        let n = |c: usize| NonZeroUsize::new(c);
        assert_eq!(argon2_permits(None), 1);
        assert_eq!(argon2_permits(n(1)), 1);
        assert_eq!(argon2_permits(n(3)), 3);
        assert_eq!(argon2_permits(n(64)), MAX_ARGON2_PERMITS);
    }

    #[tokio::test]
    async fn the_dummy_hash_exists_once_the_gate_does() {
        let gate = Argon2Gate::new(1).await.unwrap();
        assert!(PasswordHash::new(&gate.dummy).is_ok(), "{}", gate.dummy);
    }

    #[tokio::test]
    async fn argon2_work_waits_for_a_permit() {
        let gate = Argon2Gate::new(1).await.unwrap();
        let phc = gate.hash("correct horse".into()).await.unwrap();
        let held = gate.permit().await.unwrap();
        let verify = gate.verify("correct horse".into(), Some(phc.clone()));
        tokio::pin!(verify);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut verify).await;
        assert!(waited.is_err(), "argon2 ran without a permit");
        let hash = gate.hash("another one".into());
        tokio::pin!(hash);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), &mut hash).await;
        assert!(waited.is_err(), "argon2 ran without a permit");
        drop(held);
        assert!(verify.await.unwrap());
        assert!(hash.await.is_ok());
    }

    /// Whether `check` answers 429 on its first poll (without waiting for a permit).
    async fn refused_at_once(check: impl std::future::Future<Output = Result<bool>>) -> bool {
        tokio::pin!(check);
        matches!(
            futures_util::poll!(&mut check),
            std::task::Poll::Ready(Err(Error::RateLimited { .. }))
        )
    }

    #[tokio::test]
    async fn each_source_holds_at_most_two_places_and_a_new_source_always_queues() {
        let gate = Argon2Gate::with_queue(1, 3).await.unwrap();
        let held = gate.permit().await.unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b_too: IpAddr = "2001:db8:1:2::99".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let a1 = gate.verify_from(a, "x".into(), None);
        let a2 = gate.verify_from(a, "x".into(), None);
        tokio::pin!(a1, a2);
        assert!(futures_util::poll!(&mut a1).is_pending());
        assert!(
            futures_util::poll!(&mut a2).is_pending(),
            "a's second did not queue"
        );
        // a's third is refused at once, though the queue is not full.
        let a3 = refused_at_once(gate.verify_from(a, "x".into(), None)).await;
        assert!(a3, "a's third was not refused at once");
        // b's first fills the shared queue (three places), yet c gets in; b's second (from the
        // same /64) does not.
        let b1 = gate.verify_from(b, "x".into(), None);
        let c1 = gate.verify_from(c, "x".into(), None);
        tokio::pin!(b1, c1);
        assert!(futures_util::poll!(&mut b1).is_pending(), "b was refused");
        assert!(futures_util::poll!(&mut c1).is_pending(), "c was refused");
        let b2 = refused_at_once(gate.verify_from(b_too, "x".into(), None)).await;
        assert!(b2, "b's second was not refused at once");
        drop(held);
        for done in [a1.await, a2.await, b1.await, c1.await] {
            assert!(!done.unwrap(), "an unknown user's check passed");
        }
        // Every place was given back.
        assert!(gate.sources.lock().unwrap().is_empty());
        let again = gate.verify_from(a, "x".into(), None).await;
        assert!(!again.unwrap());
    }

    #[test]
    fn tokens_are_random_and_redacted() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43);
        assert!(!format!("{a:?}").contains(a.as_str()));
        assert_eq!(token_hash(a.as_str()).len(), 32);
    }

    #[test]
    fn password_length_counts_characters() {
        assert!(check_password_policy("elevenchars").is_err());
        assert!(check_password_policy("twelve chars").is_ok());
        // 11 characters in 22 bytes: too short although the bytes would pass.
        assert!(check_password_length(&"é".repeat(11)).is_err());
        assert!(check_password_length(&"é".repeat(12)).is_ok());
        assert!(check_password_length(&"x".repeat(128)).is_ok());
        // 128 characters but 256 bytes is fine; 129 characters is not.
        assert!(check_password_length(&"é".repeat(128)).is_ok());
        assert!(check_password_length(&"x".repeat(129)).is_err());
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for common in ["1qaz2wsx3edc", "1QAZ2WSX3EDC", "123qweasdzxc"] {
            let err = check_password_policy(common).unwrap_err();
            assert!(err.to_string().contains("most common"), "{common}: {err}");
        }
        assert!(check_password_policy("correct horse battery").is_ok());
    }

    #[test]
    fn sealed_secrets_open_only_with_the_key_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRETS_KEY_FILE);
        assert!(SealKey::load(&path).unwrap().is_none());
        let key = SealKey::create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            SealKey::create(&path).is_err(),
            "an existing key was replaced"
        );

        let secret = b"12345678901234567890";
        let a = key.seal(b"alice", secret).unwrap();
        let b = key.seal(b"alice", secret).unwrap();
        assert_ne!(a, b, "nonces repeat");
        assert!(!a.windows(secret.len()).any(|w| w == secret));
        let reloaded = SealKey::load(&path).unwrap().unwrap();
        assert_eq!(reloaded.open(b"alice", &a).unwrap(), secret);
        assert!(key.open(b"bob", &a).is_none());
        let other = SealKey::create(&dir.path().join("other")).unwrap();
        assert!(other.open(b"alice", &a).is_none());
        let mut tampered = a.clone();
        tampered[20] ^= 1;
        assert!(key.open(b"alice", &tampered).is_none());
        assert!(key.open(b"alice", &a[..5]).is_none());
        assert!(format!("{key:?}").contains("redacted"));
    }

    #[tokio::test]
    async fn a_full_argon2_queue_refuses_at_once() {
        let gate = Argon2Gate::with_queue(1, 2).await.unwrap();
        let held = gate.permit().await.unwrap();
        let w1 = gate.hash("correct horse one".into());
        let w2 = gate.hash("correct horse two".into());
        tokio::pin!(w1);
        tokio::pin!(w2);
        let short = std::time::Duration::from_millis(50);
        assert!(tokio::time::timeout(short, &mut w1).await.is_err());
        assert!(tokio::time::timeout(short, &mut w2).await.is_err());
        let refused = tokio::time::timeout(short, gate.verify("x".into(), None))
            .await
            .expect("the third waiter was queued instead of refused");
        assert!(
            matches!(refused, Err(Error::RateLimited { .. })),
            "{refused:?}"
        );
        drop(held);
        assert!(w1.await.is_ok());
        assert!(w2.await.is_ok());
        // Once the queue drained, requests are served again.
        assert!(!gate.verify("x".into(), None).await.unwrap());
    }
}
