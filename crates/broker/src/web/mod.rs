//! The web pages: a signed-in user's access from a browser, served by the broker next to the
//! JSON API and doing its work through the same [`Broker`] methods. Server-rendered HTML
//! (maud, escaped at compile time), one stylesheet and one small script from the binary, no
//! inline script or style, no third-party asset.
//!
//! Routes (none of them is in the API's [`crate::routes::Route`] list, which is the JSON API):
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | 303 to `/access` with a session; otherwise the API's 401, like any non-page |
//! | `GET /login` | the sign-in form (`user`, `password`, `code`, hidden `csrf`) |
//! | `POST /login` | signs in: 303 to `/access` with the session cookie; 401 page on refusal |
//! | `GET /welcome` | "Set up your account": user name and temporary `password`, hidden `csrf` |
//! | `POST /welcome` | starts a set-up: set-up cookie, 303 to `/welcome/app`; 401 page |
//! | `GET /welcome/app` | the new TOTP secret (QR code, link, text), new password and code form |
//! | `POST /welcome/app` | ends it: 303 to `/access` with the session cookie; else 400/401 page |
//! | `POST /logout` | ends the session on the broker, clears the cookie, 303 to `/login` |
//! | `GET /access` | "My access": address, live leases, grants |
//! | `POST /access/leases/{id}/revoke` | revokes an own lease, 303 to `/access?done=revoked` |
//! | `POST /access/leases/{id}/renew` | re-pins an own lease here, 303 to `/access?done=renewed` |
//! | `GET /devices/new` | "New device": pick an edge; `app.js` makes the key pair when it can |
//! | `POST /devices` | `csrf`, `edge`, `public_key` from the page's script: JSON profile without key |
//! | `POST /devices/server-keys` | `csrf`, `edge`: the broker makes the pair, shows it once |
//! | `GET /assets/style.css`, `GET /assets/app.js`, `GET /assets/qr.js` | stylesheet, scripts (with a page cookie) |
//! | `GET /admin` | admins only (anyone else signed in: 404): links to the sections below |
//! | `GET /admin/users` | users and their state; disable, enable, reset, remove; invite form |
//! | `POST /admin/users/invite` | [`Invites::create`]: temporary password and `/welcome` once |
//! | `POST /admin/users/{name}/disable`, `.../enable` | 303 to `/admin/users?done=...` |
//! | `POST /admin/users/{name}/reset-totp` | [`Accounts::reset_totp`]: the new secret once |
//! | `POST /admin/users/{name}/reset-password` | a new temporary password, shown once |
//! | `POST /admin/users/{name}/remove` | [`Accounts::remove`], 303 `?done=removed` |
//! | `GET /admin/edges`, `POST /admin/edges` | edges with presence; adding shows the token once |
//! | `POST /admin/edges/{name}/remove` | removes an edge, 303 to `/admin/edges?done=removed` |
//! | `GET /admin/grants`, `POST /admin/grants` | live grants; adding one, 303 `?done=added` |
//! | `POST /admin/grants/{user}/{edge}/revoke` | revokes a grant and its leases |
//! | `GET /admin/leases`, `POST /admin/leases/{id}/revoke` | every live lease; revoking one |
//! | `GET /admin/audit?user=&kind=&since=` | the newest audit rows, filtered, newest first |
//! | `GET /admin/alerts` | alerts and their webhook delivery state |
//!
//! A page that needs a session answers a request without a live one with a bare 303 to
//! `/login` (empty body), so it tells a stranger nothing more than the login page does. The
//! one exception is `POST /devices`, which its page's script calls with `fetch`: without a
//! session it answers exactly as a path that does not exist (the API's 401), and it answers a
//! refused form token with JSON 403 `{"error":{"message":...}}`. The stylesheet and scripts are
//! served only to a request carrying one of the pages' cookies (below), which every page sets or
//! needs before it loads them; any other request for them gets the same 401 as a missing path.
//! The admin pages take only a session made by signing in on these pages (marked so in the
//! database), not an admin's API token put in the cookie. The
//! sign-in and set-up pages name neither the product nor its version. `/welcome/app` without a
//! live set-up is a bare 303 to `/welcome` in the same way. Any other path keeps the API's
//! answer (401 to a stranger).
//!
//! **Cookies.** `__Host-gw_session` holds the same session token the API hands out (the broker
//! stores only its hash), `Path=/; Secure; HttpOnly; SameSite=Strict`, no `Domain`, `Max-Age`
//! the session's remaining lifetime. `__Host-gw_csrf` is the sign-in form's pre-session token,
//! with the same flags and no `Max-Age`; it is cleared at sign-in. `__Host-gw_enrol` holds a
//! set-up's token (see [`Invites::begin`]) for the set-up's 15 minutes, the same
//! flags; it is cleared when the set-up ends. The TOTP secret is in no cookie: the QR code
//! page finds it again by that token ([`Invites::pending`]), so a reload shows the same code.
//!
//! **Form tokens (CSRF).** Every form that changes state carries a hidden `csrf` field. Signed
//! in, it is HMAC-SHA256 over the SHA-256 of the session token, keyed by a key derived from
//! `secrets.key` ([`crate::secrets::SealKey::form_key`]): bound to the session, nothing to
//! store, and not forgeable from a copy of the database. The sign-in form has no session yet:
//! it is a double submit, the field equal to the `__Host-gw_csrf` cookie (which no other site,
//! sibling subdomains included, can set); `/welcome` uses the same. The set-up form after it
//! carries the HMAC of the set-up token, as a signed-in form carries the session's. All
//! compare in constant time. A post whose `Origin` is present and not the broker's own
//! (`https://` + the request's host), or whose `Sec-Fetch-Site` says cross-site, is refused
//! like a wrong token: a 403 page ("the form has expired, reload") before any change, and a
//! `web_form_refused` audit row. No route changes state on GET: sign-out is a POST form too.
//! Sign-in and both set-up posts spend the API's per-source login budget (429 page when spent)
//! and go through [`Sessions::login`] or the set-up methods, which count failures on the
//! account, so lockout and the audit log apply as for `POST /v1/login`; renewal spends the
//! lease budget as the API's does.
//!
//! **Admin pages** ([`admin`]) do their work through the same [`Broker`] methods as the admin
//! socket. Every change is a form post checked like any other, and refused (403, audited as
//! `web_admin_stale_session`, nothing done) unless the session was signed in within the last
//! [`admin::RECENT_SIGN_IN_SECS`]: a session cookie left in an unattended browser may read the
//! pages but not change them. A temporary password, set-up token or TOTP secret is shown
//! only on the page that answers the post that made it, never on a page a GET can load again.
//!
//! **Headers.** Pages carry [`PAGE_CSP`] (`script-src 'self'`, `style-src 'self'`, no inline
//! anything, `form-action 'self'`, `frame-ancestors 'none'`) and `Referrer-Policy:
//! same-origin` (under the API's `no-referrer`, browsers send `Origin: null` on the page's own
//! posts); the API's outer layer adds the rest (HSTS, `nosniff`, `no-store`) and keeps its own
//! stricter CSP and `no-referrer` for everything else.

mod access;
mod admin;
mod devices;
mod layout;
mod login;
mod qr;
mod session;
mod welcome;

use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;

use admin::{audit, edges, grants, leases, users};

use crate::answer::ApiError;
use crate::broker::Broker;
use crate::error::Error;

/// The Content-Security-Policy of every page: only the broker's own stylesheet and scripts,
/// images from itself or `data:`, `fetch` and forms only to itself, never framed, no `<base>`.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The page routes, merged into the public app before its fallback.
pub(crate) fn router() -> Router<Broker> {
    Router::new()
        .route("/", get(login::root))
        .route("/login", get(login::show).post(login::submit))
        .route("/welcome", get(welcome::show).post(welcome::start))
        .route("/welcome/app", get(welcome::app).post(welcome::finish))
        .route("/logout", post(login::logout))
        .route("/access", get(access::show))
        .route("/access/leases/{id}/revoke", post(access::revoke))
        .route("/access/leases/{id}/renew", post(access::renew))
        // Admin pages (web/admin.rs)
        .route("/admin", get(admin::overview))
        .route("/admin/users", get(users::show))
        .route("/admin/users/invite", post(users::invite))
        .route("/admin/users/{name}/disable", post(users::disable))
        .route("/admin/users/{name}/enable", post(users::enable))
        .route("/admin/users/{name}/reset-totp", post(users::reset_totp))
        .route(
            "/admin/users/{name}/reset-password",
            post(users::reset_password),
        )
        .route("/admin/users/{name}/remove", post(users::remove))
        .route("/admin/edges", get(edges::show).post(edges::add))
        .route("/admin/edges/{name}/remove", post(edges::remove))
        .route("/admin/grants", get(grants::show).post(grants::add))
        .route("/admin/grants/{user}/{edge}/revoke", post(grants::revoke))
        .route("/admin/leases", get(leases::show))
        .route("/admin/leases/{id}/revoke", post(leases::revoke))
        .route("/admin/audit", get(audit::show))
        .route("/admin/alerts", get(audit::alerts))
        .route("/devices/new", get(devices::show))
        .route("/devices", post(devices::issue_for_browser_key))
        .route("/devices/server-keys", post(devices::issue_with_server_key))
        .route("/assets/style.css", get(layout::stylesheet))
        .route("/assets/app.js", get(layout::script))
        .route("/assets/qr.js", get(layout::qr_script))
}

/// An HTML page response with the page CSP.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    // Not the API's `no-referrer`: under it Chromium sends `Origin: null` on the page's own
    // form posts, which the origin check refuses. `same-origin` sends no referrer elsewhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A bare 303 to `to`, with an empty body.
fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// Why a page request was not served, as the browser gets it.
#[derive(Debug)]
pub(crate) enum PageError {
    /// No live session: a bare redirect to the sign-in page.
    NeedLogin,
    /// A state-changing post without the right form token, or from another origin.
    FormExpired,
    /// A signed-in user who is not an admin asked for an admin page: as if there were none.
    NotFound,
    /// An admin change from a session signed in too long ago; the page offers to sign in
    /// again, which needs the session's form token to sign out first.
    StaleSession { csrf: String },
    /// The broker refused or failed; shown as a page with the error's status and public text.
    Broker(Error),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        Self::Broker(e)
    }
}

impl From<ApiError> for PageError {
    fn from(ApiError(e): ApiError) -> Self {
        Self::Broker(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::NeedLogin => see_other("/login"),
            Self::FormExpired => page(
                StatusCode::FORBIDDEN,
                layout::message_page(
                    "Form expired",
                    "This form has expired. Reload the page and try again.",
                ),
            ),
            Self::NotFound => page(
                StatusCode::NOT_FOUND,
                layout::message_page("Not found", "There is no page here."),
            ),
            Self::StaleSession { csrf } => {
                page(StatusCode::FORBIDDEN, layout::sign_in_again_page(&csrf))
            }
            Self::Broker(e) => error_page(e),
        }
    }
}

fn error_page(e: Error) -> Response {
    let body = e.body();
    let api = ApiError(e).into_response();
    let status = api.status();
    let mut response = page(
        status,
        layout::message_page("Not done", &body.error.message),
    );
    // A 429 keeps its Retry-After.
    if let Some(retry) = api.headers().get(header::RETRY_AFTER) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    response
}
