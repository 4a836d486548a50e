//! `grantwire-broker user ...`: the user commands, through the running broker's admin socket.
//! Each prints one JSON object with `--json` and a line of text otherwise.
// Printing results on stdout is this module's job.
#![allow(clippy::print_stdout)]

use std::time::{Duration, UNIX_EPOCH};

use grantwire_broker::{check_name, secrets, AdminClient, MAX_INVITE_TTL_SECS};
use grantwire_proto::{
    UserAddRequest, UserChangeResponse, UserInviteRequest, UserListResponse, UserPasswordRequest,
};

use crate::cli::UserCommand;
use crate::{output, read_password, usage};

pub async fn run(admin: &AdminClient, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            admin: is_admin,
            password_stdin,
            json,
        } => {
            check_name(&name, "user").map_err(usage)?;
            let password = read_password(password_stdin)?;
            secrets::check_password_length(&password).map_err(usage)?;
            let req = UserAddRequest {
                name,
                password,
                admin: is_admin,
            };
            let resp = admin.user_add(&req).await?;
            output::user_added(&resp, json)
        }
        UserCommand::Invite {
            name,
            admin: is_admin,
            expires,
            json,
        } => {
            check_name(&name, "user").map_err(usage)?;
            let ttl_secs = expires.as_secs();
            if ttl_secs == 0 || ttl_secs > MAX_INVITE_TTL_SECS {
                return Err(usage(format!(
                    "--expires must be between 1s and 30 days, got {expires}"
                )));
            }
            let req = UserInviteRequest {
                name,
                admin: is_admin,
                ttl_secs: Some(ttl_secs),
            };
            output::user_invited(&admin.user_invite(&req).await?, json)
        }
        UserCommand::List { json } => list(&admin.user_list().await?, json),
        UserCommand::Disable { name, json } => {
            check_name(&name, "user").map_err(usage)?;
            changed(&admin.user_disable(&name).await?, "Disabled", json)
        }
        UserCommand::Enable { name, json } => {
            check_name(&name, "user").map_err(usage)?;
            changed(&admin.user_enable(&name).await?, "Enabled", json)
        }
        UserCommand::ResetPassword {
            name,
            password_stdin,
            json,
        } => {
            check_name(&name, "user").map_err(usage)?;
            let password = read_password(password_stdin)?;
            secrets::check_password_length(&password).map_err(usage)?;
            let req = UserPasswordRequest { name, password };
            let resp = admin.user_reset_password(&req).await?;
            changed(&resp, "Reset the password of", json)
        }
        UserCommand::ResetTotp { name, json } => {
            check_name(&name, "user").map_err(usage)?;
            let resp = admin.user_reset_totp(&name).await?;
            output::totp_reset(&resp, json)
        }
        UserCommand::Remove { name, json } => {
            check_name(&name, "user").map_err(usage)?;
            let resp = admin.user_remove(&name).await?;
            if json {
                return self::json(&resp);
            }
            println!(
                "Removed user {}; {} session(s) and {} lease(s) ended.",
                resp.name, resp.ended_sessions, resp.revoked_leases
            );
            Ok(())
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn changed(resp: &UserChangeResponse, verb: &str, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    println!(
        "{verb} user {}; {} session(s) and {} lease(s) ended.",
        resp.name, resp.ended_sessions, resp.revoked_leases
    );
    Ok(())
}

fn list(resp: &UserListResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    if resp.users.is_empty() {
        println!("No users.");
        return Ok(());
    }
    println!(
        "{:<32} {:<6} {:<14} CREATED (UTC)",
        "NAME", "ADMIN", "STATE"
    );
    for u in &resp.users {
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)?
                .as_secs(),
        )?;
        let state = match (u.disabled, u.invited_until, u.locked_until) {
            (true, _, _) => "disabled",
            (false, Some(end), _) if end <= now => "invite expired",
            (false, Some(_), _) => "invited",
            (false, None, Some(_)) => "waiting",
            (false, None, None) => "active",
        };
        let admin = if u.admin { "yes" } else { "no" };
        println!(
            "{:<32} {admin:<6} {state:<14} {}",
            u.name,
            time(u.created_at)
        );
    }
    Ok(())
}

fn time(unix: i64) -> String {
    u64::try_from(unix)
        .map(|s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string())
        .unwrap_or_else(|_| unix.to_string())
}
