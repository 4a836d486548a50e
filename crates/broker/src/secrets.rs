//! Bearer tokens, password hashes and other secret material.
//!
//! Tokens (sessions, enrolment tokens, edge credentials) are 32 random bytes, base64url without
//! padding; only their SHA-256 is stored, so a copy of the database grants nothing. A stored
//! digest is found by an indexed equality lookup: what timing could reveal is a prefix of a
//! SHA-256 digest, which does not help forge the token.

use std::fmt;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;

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

/// argon2id with the crate's defaults (19 MiB, t=2, p=1: OWASP's minimum recommendation), as a
/// PHC string. CPU-heavy: call from `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2 hash: {e}")))
}

/// Checks a password against a PHC string; `None` verifies against a dummy hash so an unknown
/// user costs the same time as a known one. CPU-heavy: call from `spawn_blocking`.
pub fn verify_password(password: &str, phc: Option<&str>) -> bool {
    let dummy;
    let phc = match phc {
        Some(p) => p,
        None => {
            dummy = dummy_hash();
            dummy
        }
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::error!("stored password hash does not parse");
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    // The dummy's password is random and never known, but refuse explicitly anyway.
    ok && phc_is_real(phc)
}

fn phc_is_real(phc: &str) -> bool {
    DUMMY.get().is_none_or(|d| d != phc)
}

static DUMMY: OnceLock<String> = OnceLock::new();

fn dummy_hash() -> &'static str {
    DUMMY.get_or_init(|| {
        let random = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        // Hashing cannot fail with default parameters and a fresh salt; keep a parseable
        // fallback so the code path (and its cost) stays the same if it ever did.
        hash_password(&random).unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
             q3s8aWqs0ZXe3ZP4nW7NvLGG6YxGHTqf7Yc2B6bY7QE"
                .into()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_dummy() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&phc)));
        assert!(!verify_password("wrong horse", Some(&phc)));
        assert!(!verify_password("correct horse", None));
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
