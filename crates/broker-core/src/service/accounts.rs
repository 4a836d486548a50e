//! Operator actions on users besides `user add`: list, disable, enable, reset the password,
//! reset the TOTP secret, remove. Each change and its audit row share one transaction, and
//! every change that takes a credential away ends all of the user's sessions and live leases
//! in that same transaction; the edges that held those leases get their new sets right after
//! the commit, so a tunnel stops within a second of the command returning.

use grantwire_proto::{
    UserAddRequest, UserAddResponse, UserChangeResponse, UserInfo, UserListResponse,
    UserNameRequest, UserPasswordRequest, UserRemoveResponse,
};
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::service::audit::admin_audit;
use crate::service::check_name;
use crate::service::Accounts;
use crate::store::{self, leases, users, AuditEvent};
use crate::{secrets, totp};

impl Accounts<'_> {
    pub async fn list(&self) -> Result<UserListResponse> {
        let now = self.broker.now();
        let rows = self.broker.db().read(users::all).await?;
        let users = rows
            .into_iter()
            .map(|r| UserInfo {
                name: r.name,
                admin: r.admin,
                disabled: r.disabled_at.is_some(),
                created_at: r.created_at,
                locked_until: r.locked_until.filter(|t| *t > now),
                invited_until: r.invite_expires_at,
            })
            .collect();
        Ok(UserListResponse { users })
    }

    /// Refuses the user's logins and ends their sessions.
    pub async fn disable(&self, req: UserNameRequest) -> Result<UserChangeResponse> {
        let now = self.broker.now();
        let name = req.name.clone();
        let cut = self
            .broker
            .db()
            .write(move |tx| {
                let id = user_id(tx, &name)?;
                users::set_disabled(tx, id, Some(now))?;
                cut_off(tx, id, &name, now, "user_disabled")
            })
            .await?;
        self.tell_edges(&cut);
        tracing::info!(user = %req.name, sessions = cut.sessions, leases = cut.leases.len(), "user disabled");
        Ok(UserChangeResponse {
            name: req.name,
            disabled: true,
            ended_sessions: cut.sessions,
            revoked_leases: cut.leases.len() as u64,
        })
    }

    pub async fn enable(&self, req: UserNameRequest) -> Result<UserChangeResponse> {
        let now = self.broker.now();
        let name = req.name.clone();
        self.broker
            .db()
            .write(move |tx| {
                let id = user_id(tx, &name)?;
                users::set_disabled(tx, id, None)?;
                audit(tx, now, "user_enabled", &name, 0)
            })
            .await?;
        tracing::info!(user = %req.name, "user enabled");
        Ok(UserChangeResponse {
            name: req.name,
            disabled: false,
            ended_sessions: 0,
            revoked_leases: 0,
        })
    }

    /// Sets a new password (same policy as `user add`), clears the failure streak and ends the
    /// user's sessions.
    pub async fn reset_password(&self, req: UserPasswordRequest) -> Result<UserChangeResponse> {
        check_name(&req.name, "user")?;
        secrets::check_password_policy(&req.password)?;
        let phc = self.broker.argon2().hash(req.password).await?;
        let now = self.broker.now();
        let name = req.name.clone();
        let (disabled, cut) = self
            .broker
            .db()
            .write(move |tx| {
                let user = users::by_name(tx, &name)?.ok_or_else(|| not_found(&name))?;
                users::set_password_hash(tx, user.id, &phc)?;
                let cut = cut_off(tx, user.id, &name, now, "user_password_reset")?;
                Ok((user.disabled_at.is_some(), cut))
            })
            .await?;
        self.tell_edges(&cut);
        tracing::info!(user = %req.name, sessions = cut.sessions, leases = cut.leases.len(), "password reset");
        Ok(UserChangeResponse {
            name: req.name,
            disabled,
            ended_sessions: cut.sessions,
            revoked_leases: cut.leases.len() as u64,
        })
    }

    /// Gives the user a new TOTP secret (shown once, like `user add`) and ends their sessions.
    pub async fn reset_totp(&self, req: UserNameRequest) -> Result<UserAddResponse> {
        let secret = secrets::random_bytes::<{ totp::SECRET_LEN }>();
        let sealed = self.broker.auth().seal_totp(&req.name, &secret)?;
        let now = self.broker.now();
        let name = req.name.clone();
        let (user, cut) = self
            .broker
            .db()
            .write(move |tx| {
                let user = users::by_name(tx, &name)?.ok_or_else(|| not_found(&name))?;
                users::set_totp_sealed(tx, user.id, &sealed)?;
                let cut = cut_off(tx, user.id, &name, now, "user_totp_reset")?;
                Ok((user, cut))
            })
            .await?;
        self.tell_edges(&cut);
        tracing::info!(user = %req.name, sessions = cut.sessions, leases = cut.leases.len(), "TOTP secret reset");
        Ok(UserAddResponse {
            otpauth_uri: totp::otpauth_uri(&req.name, &secret),
            totp_secret: totp::secret_to_base32(&secret),
            name: req.name,
            admin: user.admin,
        })
    }

    pub async fn add(&self, req: UserAddRequest) -> Result<UserAddResponse> {
        check_name(&req.name, "user")?;
        secrets::check_password_policy(&req.password)?;
        let phc = self.broker.argon2().hash(req.password).await?;
        let secret = secrets::random_bytes::<{ totp::SECRET_LEN }>();
        let sealed = self.broker.auth().seal_totp(&req.name, &secret)?;
        let now = self.broker.now();
        let (name, admin) = (req.name.clone(), req.admin);
        self.broker
            .db()
            .write(move |tx| {
                users::insert(tx, &name, &phc, &sealed, admin, now)?;
                admin_audit(tx, now, "user_added", format!("user={name}"))
            })
            .await?;
        tracing::info!(user = %req.name, admin = req.admin, "user added");
        Ok(UserAddResponse {
            otpauth_uri: totp::otpauth_uri(&req.name, &secret),
            totp_secret: totp::secret_to_base32(&secret),
            name: req.name,
            admin: req.admin,
        })
    }
}

impl Accounts<'_> {
    /// Removes the user: their sessions and live leases end (each lease audited), then the
    /// user row goes with their grants; the audit log keeps the name.
    pub async fn remove(&self, req: UserNameRequest) -> Result<UserRemoveResponse> {
        check_name(&req.name, "user")?;
        let now = self.broker.now();
        let name = req.name.clone();
        let cut = self
            .broker
            .db()
            .write(move |tx| {
                let id = user_id(tx, &name)?;
                let cut = cut_off(tx, id, &name, now, "user_removed")?;
                users::delete(tx, id)?;
                Ok(cut)
            })
            .await?;
        self.tell_edges(&cut);
        tracing::info!(user = %req.name, sessions = cut.sessions, leases = cut.leases.len(), "user removed");
        Ok(UserRemoveResponse {
            name: req.name,
            ended_sessions: cut.sessions,
            revoked_leases: cut.leases.len() as u64,
        })
    }

    /// Pushes a new lease set to every edge that held one of the cut leases.
    fn tell_edges(&self, cut: &Cut) {
        let mut edges: Vec<i64> = cut.leases.iter().map(|(_, edge)| *edge).collect();
        edges.sort_unstable();
        edges.dedup();
        for edge in edges {
            self.broker.notify_edge(edge);
        }
    }
}

/// What taking a credential away ended: sessions, and leases with their edges.
struct Cut {
    sessions: u64,
    leases: Vec<(String, i64)>,
}

/// Ends the user's sessions and live leases, and audits the change (`kind`) and each lease,
/// in the caller's transaction.
fn cut_off(conn: &Connection, user_id: i64, name: &str, now: i64, kind: &str) -> Result<Cut> {
    let sessions = users::delete_sessions(conn, user_id)?;
    let leases = leases::revoke_for_user(conn, user_id, now)?;
    let detail = format!(
        "user={name} sessions_ended={sessions} leases_revoked={}",
        leases.len()
    );
    store::audit(conn, now, admin_event(kind, detail))?;
    for (id, _) in &leases {
        let detail = format!("lease={id} user={name} reason={kind}");
        store::audit(conn, now, admin_event("lease_revoked", detail))?;
    }
    Ok(Cut { sessions, leases })
}

fn admin_event(kind: &str, detail: String) -> AuditEvent<'_> {
    AuditEvent {
        kind,
        actor: Some("admin"),
        source_ip: None,
        detail: Some(detail),
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("no user named {name:?}"))
}

fn user_id(conn: &Connection, name: &str) -> Result<i64> {
    users::by_name(conn, name)?
        .map(|u| u.id)
        .ok_or_else(|| not_found(name))
}

fn audit(conn: &Connection, now: i64, kind: &str, user: &str, ended_sessions: u64) -> Result<()> {
    let detail = format!("user={user} sessions_ended={ended_sessions}");
    store::audit(conn, now, admin_event(kind, detail))
}
