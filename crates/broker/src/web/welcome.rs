//! First sign-in of an invited user: the temporary password (`/welcome`), then the new TOTP
//! secret as a QR code with a form for a password of their own and a code that proves the app
//! holds the secret (`/welcome/app`). The work is [`Invites::begin`] and
//! [`Invites::finish`]; this renders, checks form tokens and sets cookies.
//!
//! Between the two steps the browser holds the set-up token in `__Host-gw_enrol` and
//! nothing else: `GET /welcome/app` finds the secret again through [`Invites::pending`]
//! (sealed in the database), so a reload shows the same QR code. The token is in no URL and
//! the secret in no cookie; neither is logged. The secret leaves the broker only in the page
//! body, which the API's outer layer marks `no-store`.

use axum::extract::State;
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::layout::{csrf_field, frame, rfc3339, utc};
use super::login::{pre_session_page, signed_in};
use super::session::{
    cookie, form_token, set_cookie, FormGuard, PageForm, WebSession, WELCOME_COOKIE,
};
use super::{page, qr, see_other, PageError};
use crate::answer::ApiError;
use crate::broker::Broker;
use crate::error::Error;
use crate::routes::budgets::LoginBudget;
use crate::secrets::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::service::invites::PendingInvite;

/// The one refusal of the temporary password: which part was wrong is not said, as at sign-in.
const REFUSED: &str = "wrong user name or temporary password, or the invitation has expired";
const MISMATCH: &str = "the passwords do not match";
/// A wrong code leaves the set-up as it was ([`Invites::finish`]), so the user may
/// simply try the app's next code.
const WRONG_CODE: &str = "that code was not right; wait for the next one and try again";

pub(super) async fn show(session: Option<WebSession>, headers: HeaderMap) -> Response {
    pre_session_page(session, &headers, |token| welcome_page(token, "", None))
}

#[derive(serde::Deserialize)]
pub(super) struct StartForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// The temporary password is a password: the per-source login budget is spent first, as on
/// `/login`, and [`Invites::begin`] counts failures on the account like a login.
pub(super) async fn start(
    State(broker): State<Broker>,
    budget: Result<LoginBudget, ApiError>,
    guard: FormGuard,
    PageForm(form): PageForm<StartForm>,
) -> Result<Response, PageError> {
    budget?;
    guard
        .pre_session_form(&broker, &form.csrf, "welcome")
        .await?;
    let started = match broker
        .invites()
        .begin(&form.user, form.password, guard.ip)
        .await
    {
        Ok(started) => started,
        Err(Error::Unauthorized) => {
            let markup = welcome_page(&form.csrf, &form.user, Some(REFUSED));
            return Ok(page(StatusCode::UNAUTHORIZED, markup));
        }
        Err(e) => return Err(e.into()),
    };
    let max_age = started.expires_at.saturating_sub(broker.now());
    let enrol = set_cookie(WELCOME_COOKIE, &started.token, Some(max_age));
    Ok(([(header::SET_COOKIE, enrol)], see_other("/welcome/app")).into_response())
}

/// The QR code page. Without a live set-up: a bare 303 to `/welcome`, like a page that
/// needs a session sends a stranger to `/login`.
pub(super) async fn app(
    State(broker): State<Broker>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let Some(token) = cookie(&headers, WELCOME_COOKIE) else {
        return Ok(see_other("/welcome"));
    };
    let Some(pending) = broker.invites().pending(token).await? else {
        return Ok(see_other("/welcome"));
    };
    app_response(&broker, token, &pending, StatusCode::OK, None)
}

#[derive(serde::Deserialize)]
pub(super) struct FinishForm {
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

/// A code is guessable in a way the set-up token is not, so this spends the login budget
/// too; [`Invites::finish`] counts a wrong code on the account like a failed login.
pub(super) async fn finish(
    State(broker): State<Broker>,
    budget: Result<LoginBudget, ApiError>,
    guard: FormGuard,
    headers: HeaderMap,
    PageForm(form): PageForm<FinishForm>,
) -> Result<Response, PageError> {
    budget?;
    let Some(token) = cookie(&headers, WELCOME_COOKIE) else {
        return Ok(see_other("/welcome"));
    };
    guard.welcome_form(&broker, token, &form.csrf).await?;
    let Some(pending) = broker.invites().pending(token).await? else {
        return Ok(see_other("/welcome"));
    };
    if form.new_password != form.new_password_again {
        return app_response(
            &broker,
            token,
            &pending,
            StatusCode::BAD_REQUEST,
            Some(MISMATCH),
        );
    }
    let result = broker
        .invites()
        .finish(token, form.new_password, &form.code, guard.ip)
        .await;
    let (status, error) = match result {
        Ok(login) => {
            let mut response = signed_in(&broker, &login).await?;
            let spent = set_cookie(WELCOME_COOKIE, "", Some(0));
            response.headers_mut().append(header::SET_COOKIE, spent);
            return Ok(response);
        }
        // The password policy's own words: they say what to change.
        Err(Error::BadRequest(policy)) => (StatusCode::BAD_REQUEST, policy),
        Err(Error::Unauthorized) => (StatusCode::UNAUTHORIZED, WRONG_CODE.to_owned()),
        Err(e) => return Err(e.into()),
    };
    app_response(&broker, token, &pending, status, Some(&error))
}

fn app_response(
    broker: &Broker,
    token: &str,
    pending: &PendingInvite,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let (qr_url, side) = qr::png_data_url(&pending.otpauth_uri, "an otpauth URI")?;
    let csrf = form_token(broker, token);
    let markup = app_page(pending, &qr_url, side, &csrf, error);
    Ok(page(status, markup))
}

/// The temporary-password form. Like the sign-in page it names nothing: anyone can load it.
fn welcome_page(csrf: &str, user: &str, error: Option<&str>) -> Markup {
    frame(
        "Set up your account",
        None,
        html! {
            h1 { "Set up your account" }
            p { "Enter your user name and the temporary password you were given." }
            @if let Some(error) = error {
                p id="error" role="alert" { (error) }
            }
            form id="enrol-start" class="login" method="post" action="/welcome" {
                (csrf_field(csrf))
                label for="user" { "User name" }
                input id="user" name="user" type="text" value=(user) required
                    autocomplete="username" autocapitalize="none" spellcheck="false";
                label for="temporary-password" { "Temporary password" }
                input id="temporary-password" name="password" type="password" required
                    autocomplete="off" autocapitalize="characters" spellcheck="false";
                button id="submit" type="submit" { "Continue" }
            }
            p { a id="login-link" href="/login" { "Already set up? Sign in" } }
        },
    )
}

/// The secret and the finishing form. The secret is shown three ways: a QR code for a second
/// device's camera, an `otpauth:` link for an app on this device (a phone cannot scan its own
/// screen), and the key as text to type in.
fn app_page(
    pending: &PendingInvite,
    qr_url: &str,
    side: usize,
    csrf: &str,
    error: Option<&str>,
) -> Markup {
    frame(
        "Set up your authenticator app",
        None,
        html! {
            h1 { "Set up your authenticator app" }
            p { "Add an account for " strong id="enrol-user" { (pending.user) }
                " to an authenticator app: scan this code, or open the link on this device, \
                 or type the key in." }
            img id="totp-qr" class="qr" src=(qr_url) width=(side) height=(side)
                alt="QR code that adds this account to an authenticator app";
            p { a id="otpauth-link" href=(pending.otpauth_uri) { "Add to an authenticator app on this device" } }
            p { "Key: " code id="totp-secret" { (grouped(&pending.totp_secret)) } }
            p class="muted" { "Finish by "
                time datetime=(rfc3339(pending.expires_at)) { (utc(pending.expires_at)) }
                "; after that, start again with your temporary password." }
            @if let Some(error) = error {
                p id="error" role="alert" { (error) }
            }
            form id="enrol-finish" class="login" method="post" action="/welcome/app" {
                (csrf_field(csrf))
                // For password managers: the account the new password belongs to.
                input id="enrol-username" type="text" name="username" value=(pending.user)
                    autocomplete="username" readonly hidden;
                label for="new-password" {
                    "New password (at least " (MIN_PASSWORD_LEN) " characters)"
                }
                input id="new-password" name="new_password" type="password" required
                    autocomplete="new-password" minlength=(MIN_PASSWORD_LEN)
                    maxlength=(MAX_PASSWORD_LEN);
                label for="new-password-again" { "New password again" }
                input id="new-password-again" name="new_password_again" type="password"
                    required autocomplete="new-password" minlength=(MIN_PASSWORD_LEN)
                    maxlength=(MAX_PASSWORD_LEN);
                label for="code" { "Code from your authenticator app" }
                input id="code" name="code" type="text" required autocomplete="one-time-code"
                    inputmode="numeric" pattern="[0-9]{6}" maxlength="6";
                button id="submit" type="submit" { "Finish set-up" }
            }
        },
    )
}

/// A base32 key in groups of four, as authenticator apps accept it typed with or without the
/// spaces: 32 characters in a row are easy to misread.
pub(super) fn grouped(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_four() {
        assert_eq!(grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
        assert_eq!(grouped(""), "");
    }
}
