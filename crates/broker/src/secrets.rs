//! Bearer tokens, password hashes and other secret material.
//!
//! Tokens (sessions, enrolment tokens, edge credentials) are 32 random bytes, base64url without
//! padding; only their SHA-256 is stored, so a copy of the database grants nothing. A stored
//! digest is found by an indexed equality lookup: what timing could reveal is a prefix of a
//! SHA-256 digest, which does not help forge the token.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// Shortest password `user add` takes.
pub const MIN_PASSWORD_LEN: usize = 8;

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

/// Rejects passwords the broker will not store.
pub fn check_password_policy(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::BadRequest(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
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
    /// Made at start rather than on first use, so the first login for an unknown name is not
    /// slower (and so distinguishable) from later ones.
    dummy: Arc<str>,
}

impl Argon2Gate {
    pub async fn new(permits: usize) -> Result<Self> {
        let dummy = tokio::task::spawn_blocking(make_dummy_hash).await??;
        Ok(Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            dummy: dummy.into(),
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

    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("argon2 semaphore closed".into()))
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
    fn short_passwords_are_refused() {
        assert!(check_password_policy("1234567").is_err());
        assert!(check_password_policy("12345678").is_ok());
    }
}
