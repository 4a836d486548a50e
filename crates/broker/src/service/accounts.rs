//! Operator actions on users besides `user add`: list, disable, enable, reset the password,
//! reset the TOTP secret. Each change and its audit row share one transaction, and every change
//! that takes a credential away ends all of the user's sessions in that same transaction.

use grantwire_proto::{
    UserAddResponse, UserChangeResponse, UserInfo, UserListResponse, UserNameRequest,
    UserPasswordRequest,
};
use sqlx::SqliteConnection;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::secrets;
use crate::service::admin::check_name;
use crate::store::{self, users, AuditEvent};
use crate::totp;

impl Broker {
    pub async fn user_list(&self) -> Result<UserListResponse> {
        let now = self.auth().now();
        let mut conn = self.db().acquire().await?;
        let rows = users::all(&mut conn).await?;
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
    pub async fn user_disable(&self, req: UserNameRequest) -> Result<UserChangeResponse> {
        let now = self.auth().now();
        let mut tx = self.write_tx().await?;
        let id = user_id(&mut tx, &req.name).await?;
        users::set_disabled(&mut tx, id, Some(now)).await?;
        let ended = users::delete_sessions(&mut tx, id).await?;
        audit(&mut tx, now, "user_disabled", &req.name, ended).await?;
        tx.commit().await?;
        tracing::info!(user = %req.name, sessions = ended, "user disabled");
        Ok(UserChangeResponse {
            name: req.name,
            disabled: true,
            ended_sessions: ended,
        })
    }

    pub async fn user_enable(&self, req: UserNameRequest) -> Result<UserChangeResponse> {
        let now = self.auth().now();
        let mut tx = self.write_tx().await?;
        let id = user_id(&mut tx, &req.name).await?;
        users::set_disabled(&mut tx, id, None).await?;
        audit(&mut tx, now, "user_enabled", &req.name, 0).await?;
        tx.commit().await?;
        tracing::info!(user = %req.name, "user enabled");
        Ok(UserChangeResponse {
            name: req.name,
            disabled: false,
            ended_sessions: 0,
        })
    }

    /// Sets a new password (same policy as `user add`), clears the failure streak and ends the
    /// user's sessions.
    pub async fn user_reset_password(
        &self,
        req: UserPasswordRequest,
    ) -> Result<UserChangeResponse> {
        check_name(&req.name, "user")?;
        secrets::check_password_policy(&req.password)?;
        let phc = self.argon2().hash(req.password).await?;
        let now = self.auth().now();
        let mut tx = self.write_tx().await?;
        let id = user_id(&mut tx, &req.name).await?;
        let disabled = users::by_name(&mut tx, &req.name)
            .await?
            .is_some_and(|u| u.disabled_at.is_some());
        users::set_password_hash(&mut tx, id, &phc).await?;
        let ended = users::delete_sessions(&mut tx, id).await?;
        audit(&mut tx, now, "user_password_reset", &req.name, ended).await?;
        tx.commit().await?;
        tracing::info!(user = %req.name, sessions = ended, "password reset");
        Ok(UserChangeResponse {
            name: req.name,
            disabled,
            ended_sessions: ended,
        })
    }

    /// Gives the user a new TOTP secret (shown once, like `user add`) and ends their sessions.
    pub async fn user_reset_totp(&self, req: UserNameRequest) -> Result<UserAddResponse> {
        let secret = secrets::random_bytes::<{ totp::SECRET_LEN }>();
        let sealed = self.auth().seal_totp(&req.name, &secret)?;
        let now = self.auth().now();
        let mut tx = self.write_tx().await?;
        let user = users::by_name(&mut tx, &req.name)
            .await?
            .ok_or_else(|| not_found(&req.name))?;
        users::set_totp_sealed(&mut tx, user.id, &sealed).await?;
        let ended = users::delete_sessions(&mut tx, user.id).await?;
        audit(&mut tx, now, "user_totp_reset", &req.name, ended).await?;
        tx.commit().await?;
        tracing::info!(user = %req.name, sessions = ended, "TOTP secret reset");
        Ok(UserAddResponse {
            otpauth_uri: totp::otpauth_uri(&req.name, &secret),
            totp_secret: totp::secret_to_base32(&secret),
            name: req.name,
            admin: user.admin,
        })
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("no user named {name:?}"))
}

async fn user_id(conn: &mut SqliteConnection, name: &str) -> Result<i64> {
    users::by_name(conn, name)
        .await?
        .map(|u| u.id)
        .ok_or_else(|| not_found(name))
}

async fn audit(
    conn: &mut SqliteConnection,
    now: i64,
    kind: &str,
    user: &str,
    ended_sessions: u64,
) -> Result<()> {
    let event = AuditEvent {
        kind,
        actor: Some("admin"),
        source_ip: None,
        detail: Some(format!("user={user} sessions_ended={ended_sessions}")),
    };
    store::audit(conn, now, event).await
}
