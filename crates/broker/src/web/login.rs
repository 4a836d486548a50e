//! Signing in and out, and the root path.

use axum::extract::State;
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use grantwire_proto::{LoginRequest, LoginResponse};
use maud::{html, Markup};

use super::layout::{csrf_field, frame};
use super::session::{
    login_token, set_cookie, FormGuard, PageForm, TokenOnly, WebSession, LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
};
use super::{see_other, PageError};
use crate::answer::ApiError;
use crate::broker::Broker;
use crate::error::Error;
use crate::routes::budgets::LoginBudget;
use crate::routes::{unrouted, AnyCaller};

/// The one refusal text: which of the three was wrong is not said, as in the API.
const REFUSED: &str = "wrong user name, password or code";

/// A signed-in browser goes on to its access page. Anyone else gets what any path that is no
/// page gets ([`unrouted`]): `/` is the first thing a scanner asks for, and a redirect to a
/// sign-in form would tell it more than DESIGN.md lets an unauthenticated request learn.
pub(super) async fn root(session: Option<WebSession>, caller: Option<AnyCaller>) -> Response {
    match session {
        Some(_) => see_other("/access"),
        None => unrouted(caller).await.into_response(),
    }
}

pub(super) async fn show(session: Option<WebSession>, headers: HeaderMap) -> Response {
    pre_session_page(session, &headers, |token| login_page(token, "", None))
}

/// A form page for someone not signed in (sign-in, set-up): with its pre-session token, set
/// as the cookie too unless the browser holds one already. Signed in, it leads to `/access`.
pub(super) fn pre_session_page(
    session: Option<WebSession>,
    headers: &HeaderMap,
    render: impl FnOnce(&str) -> Markup,
) -> Response {
    if session.is_some() {
        return see_other("/access");
    }
    let (token, new) = login_token(headers);
    let mut response = super::page(StatusCode::OK, render(&token));
    if new {
        let cookie = set_cookie(LOGIN_CSRF_COOKIE, &token, None);
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

/// The API's order: the per-source budget is spent before anything else is looked at, so
/// a guesser gets 429s here exactly as on `POST /v1/login`.
pub(super) async fn submit(
    State(broker): State<Broker>,
    budget: Result<LoginBudget, ApiError>,
    guard: FormGuard,
    PageForm(form): PageForm<LoginForm>,
) -> Result<Response, PageError> {
    budget?;
    guard.pre_session_form(&broker, &form.csrf, "login").await?;
    let req = LoginRequest {
        user: form.user.clone(),
        password: form.password,
        code: form.code,
    };
    let login = match broker.sessions().login(req, guard.ip).await {
        Ok(login) => login,
        Err(Error::Unauthorized) => {
            let markup = login_page(&form.csrf, &form.user, Some(REFUSED));
            return Ok(super::page(StatusCode::UNAUTHORIZED, markup));
        }
        Err(e) => return Err(e.into()),
    };
    signed_in(&broker, &login).await
}

/// The answer to a sign-in (or a finished enrolment): the session cookie for the session's
/// remaining lifetime, the spent pre-session token cleared, and on to `/access`. The session
/// is marked as the web pages' first: only such a session opens the admin pages.
pub(super) async fn signed_in(
    broker: &Broker,
    login: &LoginResponse,
) -> Result<Response, PageError> {
    broker.sessions().mark_web_session(&login.token).await?;
    let max_age = login.expires_at.saturating_sub(broker.now());
    let mut response = see_other("/access");
    let headers = response.headers_mut();
    let session = set_cookie(SESSION_COOKIE, &login.token, Some(max_age));
    headers.append(header::SET_COOKIE, session);
    headers.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", Some(0)),
    );
    Ok(response)
}

pub(super) async fn logout(
    State(broker): State<Broker>,
    session: WebSession,
    guard: FormGuard,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    guard
        .session_form(&broker, &session, &form.csrf, "logout")
        .await?;
    broker.sessions().logout(&session.user, guard.ip).await?;
    let clear = set_cookie(SESSION_COOKIE, "", Some(0));
    Ok(([(header::SET_COOKIE, clear)], see_other("/login")).into_response())
}

/// The sign-in form. Generic on purpose: nothing on it says what the service is.
fn login_page(csrf: &str, user: &str, error: Option<&str>) -> Markup {
    frame(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error {
                p id="error" role="alert" { (error) }
            }
            form id="login" class="login" method="post" action="/login" {
                (csrf_field(csrf))
                label for="user" { "User name" }
                input id="user" name="user" type="text" value=(user) required
                    autocomplete="username" autocapitalize="none" spellcheck="false";
                label for="password" { "Password" }
                input id="password" name="password" type="password" required
                    autocomplete="current-password";
                label for="code" { "Code from your authenticator app" }
                input id="code" name="code" type="text" required autocomplete="one-time-code"
                    inputmode="numeric" pattern="[0-9]{6}" maxlength="6";
                button id="submit" type="submit" { "Sign in" }
            }
            p { a id="welcome-link" href="/welcome" { "Invited? Set up your account" } }
        },
    )
}
