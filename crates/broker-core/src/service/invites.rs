//! Invitations and first sign-in: an admin invites a user with a temporary password
//! (`user invite`); at first sign-in the user proves that password ([`Invites::begin`]),
//! is shown a new TOTP secret, and sends a code for it with a password of their own
//! ([`Invites::finish`]). Only a confirmed code makes the secret count, so a mis-scanned
//! QR code never locks anyone out, and the admin never sees the user's password or secret.
//!
//! Until set-up ends, the user's login is refused everywhere (`sessions.rs`). Every refusal here
//! is the same [`Error::Unauthorized`] as a failed login, counted against the account's failure
//! record so the temporary password and the code cannot be guessed faster than a login can.

use std::net::IpAddr;

use grantwire_proto::{LoginResponse, UserInviteRequest, UserInviteResponse};
use rusqlite::Connection;

use crate::broker::ip_text;
use crate::error::{Error, Result};
use crate::secrets::{self, Token};
use crate::service::sessions::open_session;
use crate::service::Invites;
use crate::service::{audit::admin_audit, check_name};
use crate::store::{self, invites, users, AuditEvent};
use crate::{throttle, totp};

/// How long an invitation lasts when the admin gives no time: long enough to reach a friend
/// over a weekend.
pub const DEFAULT_INVITE_TTL_SECS: u64 = 72 * 3600;
/// The longest invitation: a temporary password should not outlive the month.
pub const MAX_INVITE_TTL_SECS: u64 = 30 * 24 * 3600;
/// Time from accepting the temporary password to confirming a code: enough to install an
/// authenticator app.
pub const INVITE_SETUP_TTL_SECS: i64 = 15 * 60;
/// Random bytes in a temporary password: 80 bits, written as 16 base32 characters.
const TEMPORARY_PASSWORD_BYTES: usize = 10;

/// What the user sees after the temporary password was accepted: the secret to add, and the
/// token that continues the set-up (a bearer secret, like a session token).
pub struct InviteStarted {
    pub token: String,
    pub otpauth_uri: String,
    pub totp_secret: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for InviteStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteStarted")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live set-up as [`Invites::pending`] finds it again by its token.
pub struct PendingInvite {
    pub user: String,
    pub otpauth_uri: String,
    pub totp_secret: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for PendingInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingInvite")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Invites<'_> {
    /// Adds an invited user. The row holds the temporary password's hash and a sealed random
    /// secret nobody is shown, so the user cannot log in until set-up replaces both.
    pub async fn create(&self, req: UserInviteRequest) -> Result<UserInviteResponse> {
        check_name(&req.name, "user")?;
        let ttl = req.ttl_secs.unwrap_or(DEFAULT_INVITE_TTL_SECS);
        if ttl == 0 || ttl > MAX_INVITE_TTL_SECS {
            return Err(Error::BadRequest(format!(
                "ttl_secs must be 1 to {MAX_INVITE_TTL_SECS} (30 days), got {ttl}"
            )));
        }
        let password = temporary_password();
        let phc = self.broker.argon2().hash(password.clone()).await?;
        let unseen = secrets::random_bytes::<{ totp::SECRET_LEN }>();
        let sealed = self.broker.auth().seal_totp(&req.name, &unseen)?;
        let now = self.broker.now();
        let expires_at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let (name, admin) = (req.name.clone(), req.admin);
        self.broker
            .db()
            .write(move |tx| {
                let id = users::insert(tx, &name, &phc, &sealed, admin, now)?;
                users::set_invited(tx, id, expires_at)?;
                let detail = format!("user={name} admin={admin} until={expires_at}");
                admin_audit(tx, now, "user_invited", detail)
            })
            .await?;
        tracing::info!(user = %req.name, admin = req.admin, expires_at, "user invited");
        Ok(UserInviteResponse {
            name: req.name,
            admin: req.admin,
            temporary_password: password,
            expires_at,
        })
    }

    /// Checks an invited user's temporary password and starts their set-up with a new TOTP
    /// secret. Asking again replaces the secret and the token (a QR code scanned badly).
    pub async fn begin(
        &self,
        name: &str,
        password: String,
        source: IpAddr,
    ) -> Result<InviteStarted> {
        let now = self.broker.now();
        let user = {
            let name = name.to_owned();
            self.broker
                .db()
                .read(move |c| users::by_name(c, &name))
                .await?
        };
        // Hashed even when the user is unknown or not invited, so the answer takes as long.
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let password_ok = self
            .broker
            .argon2()
            .verify_from(source, password, phc)
            .await?;
        let secret = secrets::random_bytes::<{ totp::SECRET_LEN }>();
        let sealed = match &user {
            Some(u) => self.broker.auth().seal_totp(&u.name, &secret)?,
            None => Vec::new(),
        };
        let token = Token::generate();
        let expires_at = now.saturating_add(INVITE_SETUP_TTL_SECS);
        let hash = secrets::token_hash(token.as_str());
        let actor: String = name.chars().take(64).collect();
        let who = actor.clone();
        let answer = self
            .broker
            .db()
            .write(move |tx| {
                let refused = match &user {
                    None => Some("enrol_failed"),
                    Some(u) => refusal(tx, u, now, password_ok)?,
                };
                let user = match (user, refused) {
                    (Some(user), None) => user,
                    (user, refused) => {
                        let kind = refused.unwrap_or("enrol_failed");
                        return record_refusal(tx, user.as_ref(), &who, kind, source, now).map(Err);
                    }
                };
                invites::replace(tx, user.id, &hash, &sealed, now, expires_at)?;
                audit(tx, now, "enrol_started", &user.name, source)?;
                Ok(Ok(user.name))
            })
            .await?;
        let name = refused(answer, &actor, source)?;
        tracing::info!(user = %name, %source, "enrolment started");
        Ok(InviteStarted {
            token: token.into_string(),
            otpauth_uri: totp::otpauth_uri(&name, &secret),
            totp_secret: totp::secret_to_base32(&secret),
            expires_at,
        })
    }

    /// Ends a set-up: `code` must be valid for the secret [`Invites::begin`] showed,
    /// and `new_password` meets the password policy. Then the secret counts, the password is
    /// the user's own, the invitation is over, and a session is opened. A wrong code leaves
    /// the set-up as it was, so the user can try again with the next code.
    pub async fn finish(
        &self,
        token: &str,
        new_password: String,
        code: &str,
        source: IpAddr,
    ) -> Result<LoginResponse> {
        secrets::check_password_policy(&new_password)?;
        let now = self.broker.now();
        let hash = secrets::token_hash(token);
        let found = self
            .broker
            .db()
            .read(move |c| pending(c, &hash, now))
            .await?;
        let Some((invite, user)) = found else {
            return Err(Error::Unauthorized);
        };
        let phc = self.broker.argon2().hash(new_password).await?;
        let secret = self
            .broker
            .auth()
            .seal
            .open(user.name.as_bytes(), &invite.totp_sealed)
            .ok_or_else(|| Error::Internal("an enrolment's secret does not open".into()))?;
        let step = totp::verify(&secret, code, u64::try_from(now).unwrap_or(0));
        let ttl = self.broker.session_ttl();
        let name = user.name.clone();
        let answer = self
            .broker
            .db()
            .write(move |tx| {
                let refused = refusal(tx, &user, now, true)?;
                let (Some(step), None) = (step, refused) else {
                    let kind = refused.unwrap_or("enrol_failed");
                    return record_refusal(tx, Some(&user), &user.name, kind, source, now).map(Err);
                };
                users::finish_invite(tx, user.id, &phc, &invite.totp_sealed, step)?;
                invites::delete(tx, invite.id)?;
                audit(tx, now, "user_enrolled", &user.name, source)?;
                open_session(tx, &user, ttl, source, now).map(Ok)
            })
            .await?;
        let session = refused(answer, &name, source)?;
        self.broker.auth().conns.mark_known(source);
        tracing::info!(user = %name, %source, "enrolled");
        Ok(session)
    }

    /// The live set-up `token` continues, with the secret [`Invites::begin`] showed, so
    /// the page that shows it can be reloaded without starting over. The secret stays sealed in
    /// the database between the two; whoever holds the token could finish the set-up with
    /// their own secret's code anyway, so showing it to them again gives nothing away. Changes
    /// nothing and counts nothing: the token is 256 random bits, not a thing to guess.
    pub async fn pending(&self, token: &str) -> Result<Option<PendingInvite>> {
        let now = self.broker.now();
        let hash = secrets::token_hash(token);
        let Some((invite, user)) = self
            .broker
            .db()
            .read(move |c| pending(c, &hash, now))
            .await?
        else {
            return Ok(None);
        };
        let secret = self
            .broker
            .auth()
            .seal
            .open(user.name.as_bytes(), &invite.totp_sealed)
            .ok_or_else(|| Error::Internal("an enrolment's secret does not open".into()))?;
        Ok(Some(PendingInvite {
            otpauth_uri: totp::otpauth_uri(&user.name, &secret),
            totp_secret: totp::secret_to_base32(&secret),
            expires_at: invite.expires_at,
            user: user.name,
        }))
    }
}

/// The live set-up whose token hashes to `hash`, with its user.
fn pending(
    conn: &Connection,
    hash: &[u8],
    now: i64,
) -> Result<Option<(invites::InviteRow, users::UserRow)>> {
    let Some(invite) = invites::by_token(conn, hash, now)? else {
        return Ok(None);
    };
    Ok(users::by_id(conn, invite.user_id)?.map(|u| (invite, u)))
}

/// Records a refused set-up step: a failure on the account (like a failed login) and its
/// audit row, committed like any change. Returns the audit kind.
fn record_refusal(
    tx: &Connection,
    user: Option<&users::UserRow>,
    actor: &str,
    kind: &'static str,
    source: IpAddr,
    now: i64,
) -> Result<&'static str> {
    if let (Some(u), "enrol_failed") = (user, kind) {
        users::record_failure(tx, u.id, now)?;
    }
    audit(tx, now, kind, actor, source)?;
    Ok(kind)
}

/// The answer to a set-up step: its value, or, for a refusal already recorded, the same
/// [`Error::Unauthorized`] a failed login gets.
fn refused<T>(
    answer: std::result::Result<T, &'static str>,
    actor: &str,
    source: IpAddr,
) -> Result<T> {
    answer.map_err(|kind| {
        tracing::info!(user = %actor, %source, kind, "enrolment refused");
        Error::Unauthorized
    })
}

/// Why `user` may not set up their account now, as an audit kind; `None` when they may.
fn refusal(
    conn: &Connection,
    user: &users::UserRow,
    now: i64,
    password_ok: bool,
) -> Result<Option<&'static str>> {
    if user.disabled_at.is_some() {
        return Ok(Some("enrol_disabled"));
    }
    match user.invite_expires_at {
        None => return Ok(Some("enrol_not_invited")),
        Some(end) if end <= now => return Ok(Some("enrol_invite_expired")),
        Some(_) => {}
    }
    let state = users::account_state(conn, user.id, now)?;
    if throttle::is_locked(state, now) {
        return Ok(Some("enrol_throttled"));
    }
    Ok((!password_ok).then_some("enrol_failed"))
}

fn audit(
    conn: &Connection,
    now: i64,
    kind: &'static str,
    user: &str,
    source: IpAddr,
) -> Result<()> {
    let event = AuditEvent {
        kind,
        actor: Some(user),
        source_ip: ip_text(Some(source)),
        detail: None,
    };
    store::audit(conn, now, event)
}

/// 16 base32 characters in four groups (`ABCD-EFGH-JKLM-NPQR`): easy to read out or type on a
/// phone, 80 bits from the OS's CSPRNG.
pub fn temporary_password() -> String {
    let raw = secrets::random_bytes::<TEMPORARY_PASSWORD_BYTES>();
    let text = data_encoding::BASE32_NOPAD.encode(&raw);
    text.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_passwords_are_grouped_base32_and_differ() {
        let a = temporary_password();
        let b = temporary_password();
        assert_ne!(a, b);
        assert_eq!(a.len(), 19, "{a}");
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.len(), 4, "{a}");
        for g in groups {
            assert_eq!(g.len(), 4, "{a}");
            assert!(g
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        }
    }
}
