//! Login (password + TOTP) and session lookup.

use std::net::IpAddr;

use grantwire_proto::{LoginRequest, LoginResponse};

use crate::broker::{ip_text, Broker};
use crate::error::{Error, Result};
use crate::secrets::{self, Token};
use crate::store::{self, users, AuditEvent};
use crate::totp;

/// Longest user name we look up or write to the audit log; longer names cannot exist.
const MAX_NAME_LEN: usize = 64;

impl Broker {
    /// Checks password and TOTP code and opens a session. Every failure is the same
    /// [`Error::Unauthorized`], and an unknown user costs the same argon2 work as a known one.
    pub async fn login(&self, req: LoginRequest, source: IpAddr) -> Result<LoginResponse> {
        let now = store::now();
        let user = if req.user.len() <= MAX_NAME_LEN {
            let mut conn = self.db().acquire().await?;
            users::by_name(&mut conn, &req.user).await?
        } else {
            None
        };
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let password_ok = self.argon2().verify(req.password, phc).await?;
        // An unknown user's code is checked against a dummy secret, so the work done (and the
        // time taken) does not depend on whether the name exists.
        let dummy_secret = [0u8; totp::SECRET_LEN];
        let secret = user
            .as_ref()
            .map_or(&dummy_secret[..], |u| &u.totp_secret[..]);
        let secs = u64::try_from(now).unwrap_or(0);
        let step = totp::verify(secret, &req.code, secs).filter(|_| user.is_some());

        let mut tx = self.write_tx().await?;
        let accepted = match (&user, password_ok, step) {
            (Some(u), true, Some(step)) => users::claim_totp_step(&mut tx, u.id, step).await?,
            _ => false,
        };
        let source_text = ip_text(Some(source));
        let actor: String = req.user.chars().take(MAX_NAME_LEN).collect();
        let (Some(user), true) = (user, accepted) else {
            let event = AuditEvent {
                kind: "login_failed",
                actor: Some(&actor),
                source_ip: source_text,
                detail: None,
            };
            store::audit(&mut tx, now, event).await?;
            tx.commit().await?;
            tracing::info!(user = %actor, %source, "login refused");
            return Err(Error::Unauthorized);
        };

        let token = Token::generate();
        let ttl = i64::try_from(self.session_ttl().as_secs()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(ttl);
        let hash = secrets::token_hash(token.as_str());
        users::insert_session(&mut tx, user.id, &hash, now, expires_at).await?;
        let event = AuditEvent {
            kind: "login_ok",
            actor: Some(&user.name),
            source_ip: source_text,
            detail: None,
        };
        store::audit(&mut tx, now, event).await?;
        tx.commit().await?;
        tracing::info!(user = %user.name, %source, "login");
        Ok(LoginResponse {
            token: token.into_string(),
            expires_at,
        })
    }

    /// The user behind a bearer session token, if the session is live.
    pub async fn session(&self, token: &str) -> Result<users::SessionUser> {
        let mut conn = self.db().acquire().await?;
        let hash = secrets::token_hash(token);
        users::session_user(&mut conn, &hash, store::now())
            .await?
            .ok_or(Error::Unauthorized)
    }
}
