//! `/admin/users`: the user list with disable, enable, reset and remove forms, and the
//! invitation form. An invitation's temporary password and a reset's secret appear only on the
//! page that answers the post. Disable, both resets and remove end the user's sessions and live
//! leases: their tunnels stop within a second.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderMap};
use axum::http::Uri;
use axum::response::Response;
use axum::Extension;
use grantwire_proto::{
    UserInfo, UserInviteRequest, UserInviteResponse, UserName, UserNameRequest, UserPasswordRequest,
};
use maud::{html, Markup};

use super::{blank_none, named, notice, AdminChange, AdminSession};
use crate::broker::Broker;
use crate::error::Error;
use crate::service::invites::{DEFAULT_INVITE_TTL_SECS, MAX_INVITE_TTL_SECS};
use crate::tls::Presented;
use crate::web::layout::{csrf_field, rfc3339, utc};
use crate::web::session::{PageForm, TokenOnly};
use crate::web::welcome::grouped;
use crate::web::{qr, see_other, PageError};

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::web) enum Done {
    Disabled,
    Enabled,
    Removed,
}

#[derive(serde::Deserialize)]
pub(in crate::web) struct DoneQuery {
    done: Option<Done>,
}

pub(in crate::web) async fn show(
    State(broker): State<Broker>,
    admin: AdminSession,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let list = broker.accounts().list().await?;
    let now = broker.now();
    let done = query.ok().and_then(|Query(q)| q.done).map(|d| match d {
        Done::Disabled => "User disabled; their sessions and leases are ended.",
        Done::Enabled => "User enabled.",
        Done::Removed => "User removed with their grants; their sessions and leases are ended.",
    });
    let main = html! {
        h1 { "Users" }
        (notice(done))
        table id="users" {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Admin" } th scope="col" { "State" }
                th scope="col" { "Created" } th scope="col" { "Actions" }
            } }
            tbody {
                @for u in &list.users { (user_row(u, now, admin.csrf())) }
            }
        }
        (invite_form(admin.csrf()))
    };
    Ok(admin.page("Users", main))
}

#[derive(serde::Deserialize)]
pub(in crate::web) struct InviteForm {
    #[serde(default)]
    name: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    csrf: String,
}

/// Invites a user and shows the temporary password and the set-up page's address, once.
pub(in crate::web) async fn invite(
    change: AdminChange,
    headers: HeaderMap,
    uri: Uri,
    Extension(presented): Extension<Presented>,
    PageForm(form): PageForm<InviteForm>,
) -> Result<Response, PageError> {
    let (broker, admin) = change
        .allow(&form.csrf, "admin_invite", &named("user", &form.name))
        .await?;
    let ttl_secs = match blank_none(&form.hours) {
        None => None,
        Some(h) => Some(hours_to_secs(h)?),
    };
    let req = UserInviteRequest {
        name: form.name.trim().to_owned(),
        admin: form.admin.is_some(),
        ttl_secs,
    };
    let invited = broker.invites().create(req).await?;
    let welcome = welcome_url(&headers, &uri, &presented);
    Ok(admin.page("User invited", invited_main(&invited, &welcome, &presented)))
}

pub(in crate::web) async fn disable(
    change: AdminChange,
    Path(name): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, _) = change
        .allow(&form.csrf, "admin_disable", &named("user", &name))
        .await?;
    broker.accounts().disable(UserNameRequest { name }).await?;
    Ok(see_other("/admin/users?done=disabled"))
}

pub(in crate::web) async fn enable(
    change: AdminChange,
    Path(name): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, _) = change
        .allow(&form.csrf, "admin_enable", &named("user", &name))
        .await?;
    broker.accounts().enable(UserNameRequest { name }).await?;
    Ok(see_other("/admin/users?done=enabled"))
}

pub(in crate::web) async fn remove(
    change: AdminChange,
    Path(name): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, _) = change
        .allow(&form.csrf, "admin_remove_user", &named("user", &name))
        .await?;
    broker.accounts().remove(UserNameRequest { name }).await?;
    Ok(see_other("/admin/users?done=removed"))
}

/// Gives the user a new temporary password (as an invitation's: 80 random bits, grouped for
/// reading out) and shows it once. Their authenticator stays as it was.
pub(in crate::web) async fn reset_password(
    change: AdminChange,
    Path(name): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, admin) = change
        .allow(&form.csrf, "admin_reset_password", &named("user", &name))
        .await?;
    let password = crate::service::invites::temporary_password();
    let req = UserPasswordRequest {
        name,
        password: password.clone(),
    };
    let reset = broker.accounts().reset_password(req).await?;
    let main = html! {
        h1 { "New password" }
        p { "The password of " strong id="reset-user" { (reset.name) }
            " is replaced; their sessions and leases are ended." }
        p { "Give it to them by a way only they read. It is shown only this once; their "
            "authenticator app stays as it was." }
        p { "Password: " code id="new-password" { (password) } }
        p { a href="/admin/users" { "Back to users" } }
    };
    Ok(admin.page("New password", main))
}

/// Gives the user a new TOTP secret and shows it once, as a QR code and as text.
pub(in crate::web) async fn reset_totp(
    change: AdminChange,
    Path(name): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    let (broker, admin) = change
        .allow(&form.csrf, "admin_reset_totp", &named("user", &name))
        .await?;
    let reset = broker
        .accounts()
        .reset_totp(UserNameRequest { name })
        .await?;
    let (qr_url, side) = qr::png_data_url(&reset.otpauth_uri, "an otpauth URI")?;
    let main = html! {
        h1 { "New authenticator key" }
        p { "The authenticator key of " strong id="reset-user" { (reset.name) }
            " is replaced and their sessions and leases are ended. Their old codes no longer work." }
        p { "Have them add this to their authenticator app. It is shown only this once." }
        img id="totp-qr" class="qr" src=(qr_url) width=(side) height=(side)
            alt="QR code that adds the account to an authenticator app";
        p { "Key: " code id="totp-secret" { (grouped(&reset.totp_secret)) } }
        p { a href="/admin/users" { "Back to users" } }
    };
    Ok(admin.page("New authenticator key", main))
}

fn user_row(u: &UserInfo, now: i64, csrf: &str) -> Markup {
    let state = if u.disabled {
        "disabled"
    } else if u.invited_until.is_some_and(|t| t <= now) {
        "invite expired"
    } else if u.invited_until.is_some() {
        "invited"
    } else if u.locked_until.is_some() {
        "locked"
    } else {
        "active"
    };
    let base = format!("/admin/users/{}", u.name);
    html! {
        tr data-user=(u.name) {
            td data-label="Name" class="name" { (u.name) }
            td data-label="Admin" class="admin" { @if u.admin { "yes" } @else { "no" } }
            td data-label="State" class="state" { (state) }
            td data-label="Created" class="created" {
                time datetime=(rfc3339(u.created_at)) { (utc(u.created_at)) }
            }
            td class="actions" {
                @if u.disabled {
                    form class="enable" method="post" action={ (base) "/enable" } {
                        (csrf_field(csrf))
                        button class="secondary" type="submit" aria-label={ "Enable " (u.name) } {
                            "Enable"
                        }
                    }
                } @else {
                    form class="disable" method="post" action={ (base) "/disable" } {
                        (csrf_field(csrf))
                        button class="danger" type="submit" aria-label={ "Disable " (u.name) } {
                            "Disable"
                        }
                    }
                }
                form class="reset-totp" method="post" action={ (base) "/reset-totp" } {
                    (csrf_field(csrf))
                    button class="secondary" type="submit"
                        aria-label={ "Reset the authenticator key of " (u.name) } {
                        "Reset TOTP"
                    }
                }
                form class="reset-password" method="post" action={ (base) "/reset-password" } {
                    (csrf_field(csrf))
                    button class="secondary" type="submit"
                        aria-label={ "Reset the password of " (u.name) } {
                        "Reset password"
                    }
                }
                form class="remove" method="post" action={ (base) "/remove" } {
                    (csrf_field(csrf))
                    button class="danger" type="submit" aria-label={ "Remove " (u.name) } {
                        "Remove"
                    }
                }
            }
        }
    }
}

fn invite_form(csrf: &str) -> Markup {
    let max_hours = MAX_INVITE_TTL_SECS / 3600;
    html! {
        h2 { "Invite a user" }
        form id="invite" class="admin-form" method="post" action="/admin/users/invite" {
            (csrf_field(csrf))
            label for="invite-name" { "User name (a-z, 0-9 and -)" }
            input id="invite-name" name="name" type="text" required maxlength=(UserName::MAX_LEN)
                pattern=(UserName::HTML_PATTERN) autocomplete="off" autocapitalize="none"
                spellcheck="false";
            div class="check" {
                input id="invite-admin" name="admin" type="checkbox" value="yes";
                label for="invite-admin" { "Administrator" }
            }
            label for="invite-hours" { "Invitation lasts (hours, 1 to " (max_hours) ")" }
            input id="invite-hours" name="hours" type="number" min="1" max=(max_hours)
                value=(DEFAULT_INVITE_TTL_SECS / 3600) inputmode="numeric";
            button id="invite-submit" type="submit" { "Invite" }
        }
    }
}

/// What the friend's browser will make of the set-up page, said plainly to the admin who
/// hands out the invitation.
fn certificate_note(presented: &Presented) -> Markup {
    match presented {
        Presented::SelfSigned { fingerprint } => html! {
            p id="certificate-note" class="notice" {
                "Their browser will warn that the connection is not private: this broker's "
                "certificate is its own (self-signed), not one from an authority their device "
                "trusts. Tell them to go on only if the certificate's SHA-256 fingerprint is "
                code id="certificate-fingerprint" { (grouped(fingerprint)) }
                ". To spare them the warning, give the broker a public name: "
                code { "grantwire-broker serve --acme-domain NAME" } "."
            }
        },
        Presented::Acme { domain } => html! {
            p id="certificate-note" {
                "Their browser will trust the set-up page: its certificate for "
                strong { (domain) } " comes from a certificate authority, renewed by the broker."
            }
        },
        Presented::Operator => html! {
            p id="certificate-note" {
                "The set-up page shows the certificate given with " code { "--tls-cert" }
                ": their browser trusts it only if an authority their device trusts signed it, "
                "for the name in the address below."
            }
        },
    }
}

fn invited_main(invited: &UserInviteResponse, welcome: &str, presented: &Presented) -> Markup {
    html! {
        h1 { "User invited" }
        p { "Give these to " strong { (invited.name) } " by a way only they read. "
            "They are shown only this once." }
        dl id="invite-result" class="result" {
            dt { "User name" } dd { code id="invite-user" { (invited.name) } }
            dt { "Temporary password" } dd { code id="temporary-password" { (invited.temporary_password) } }
            dt { "Set-up page" } dd { code id="welcome-url" { (welcome) } }
            dt { "Invitation ends" } dd {
                time datetime=(rfc3339(invited.expires_at)) { (utc(invited.expires_at)) }
            }
        }
        (certificate_note(presented))
        p { a href="/admin/users" { "Back to users" } }
    }
}

/// The set-up page's address as the admin's browser reaches the broker: HTTP/1.1 names the
/// host in `Host`, HTTP/2 in the request's authority. With ACME certificates the host is the
/// certificate's name (the port kept), whatever address the admin used: at another name the
/// friend's browser would not trust the page.
fn welcome_url(headers: &HeaderMap, uri: &Uri, presented: &Presented) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return "/welcome".into();
    };
    match presented {
        Presented::Acme { domain } => {
            let port = host
                .parse::<axum::http::uri::Authority>()
                .ok()
                .and_then(|a| a.port_u16())
                .filter(|p| *p != 443);
            match port {
                Some(port) => format!("https://{domain}:{port}/welcome"),
                None => format!("https://{domain}/welcome"),
            }
        }
        _ => format!("https://{host}/welcome"),
    }
}

/// Whole hours as seconds; the service checks the range.
pub(super) fn hours_to_secs(text: &str) -> Result<u64, Error> {
    text.parse::<u64>()
        .ok()
        .and_then(|h| h.checked_mul(3600))
        .ok_or_else(|| Error::BadRequest(format!("{text:?} is not a whole number of hours")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, h.parse().unwrap());
        m
    }

    #[test]
    fn with_acme_the_set_up_address_is_the_certificates_name() {
        let uri: Uri = "/admin/users/invite".parse().unwrap();
        let acme = Presented::Acme {
            domain: "broker.example.org".into(),
        };
        assert_eq!(
            welcome_url(&host("192.0.2.1:8443"), &uri, &acme),
            "https://broker.example.org:8443/welcome"
        );
        assert_eq!(
            welcome_url(&host("[2001:db8::1]:443"), &uri, &acme),
            "https://broker.example.org/welcome"
        );
        assert_eq!(
            welcome_url(&host("192.0.2.1"), &uri, &acme),
            "https://broker.example.org/welcome"
        );
        let own = Presented::SelfSigned {
            fingerprint: "ab".repeat(32),
        };
        assert_eq!(
            welcome_url(&host("192.0.2.1:8443"), &uri, &own),
            "https://192.0.2.1:8443/welcome"
        );
    }

    #[test]
    fn the_invitation_says_what_the_friends_browser_will_show() {
        let own = certificate_note(&Presented::SelfSigned {
            fingerprint: "ab".repeat(32),
        })
        .into_string();
        assert!(own.contains("will warn"), "{own}");
        assert!(own.contains(&grouped(&"ab".repeat(32))), "{own}");
        let acme = certificate_note(&Presented::Acme {
            domain: "broker.example.org".into(),
        })
        .into_string();
        assert!(
            acme.contains("will trust") && acme.contains("broker.example.org"),
            "{acme}"
        );
        assert!(!acme.contains("warn"), "{acme}");
        let operator = certificate_note(&Presented::Operator).into_string();
        assert!(operator.contains("--tls-cert"), "{operator}");
    }
}
