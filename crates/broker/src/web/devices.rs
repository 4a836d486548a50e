//! "New device": a lease for the device in hand, as a QR code and a `.conf` download.
//!
//! Where the browser has WebCrypto X25519 (`app.js` finds out when the page loads), the key
//! pair is made in the browser: the page posts only the public key to `POST /devices` with
//! `fetch`, gets the profile without a `PrivateKey` line back as JSON, adds the key line, draws
//! the QR code with `qr.js` and offers the text as a download. The private key never leaves the
//! browser.
//!
//! Where it has not (or without script), the form posts to `POST /devices/server-keys`: the
//! broker makes the pair, issues the lease for its public half, and answers with a page that
//! shows the whole file once, as a QR code (drawn here), a `data:` download and text. The
//! private key is in that response only: not in the database, the log or any later page.
//!
//! Both issue the lease through [`Leases::issue`], pinned to the address the request
//! comes from, and spend the lease budget as `POST /v1/leases` does, but only once the session
//! and the form token have passed: a post that proves nothing spends nobody's budget.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use grantwire_proto::{
    EdgeName, ErrorBody, ErrorCode, ErrorDetail, FieldError, LeaseRequest, PrivateKey, Profile,
    PublicKey,
};
use maud::{html, Markup};

use super::layout::{countdown, csrf_field, frame, utc, SignedIn};
use super::session::{FormGuard, PageForm, WebSession};
use super::{page, qr, PageError};
use crate::answer::{self, ApiError};
use crate::broker::Broker;
use crate::error::Error;
use crate::routes::budgets::LeaseBudget;
use crate::routes::{unrouted, AnyCaller, ClientIp};
use crate::secrets;

/// The form of both posts: the edge, and (browser-made keys only) the public key.
#[derive(serde::Deserialize)]
pub(super) struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    edge: String,
    #[serde(default)]
    public_key: String,
}

/// What `POST /devices` answers: the profile without its key line, and what the page shows.
#[derive(Debug, serde::Serialize)]
pub(super) struct DeviceProfile {
    lease_id: String,
    edge: String,
    /// The wg-quick file without `PrivateKey`; the page inserts that line after `[Interface]`.
    conf_without_key: String,
    /// A file name the WireGuard apps take as the tunnel's name (at most 15 characters).
    file_name: String,
    plex_url: String,
    pin: String,
    expires_at: i64,
    expires_text: String,
    /// The broker's time when the profile was made, for the page's countdown.
    #[serde(skip)]
    now: i64,
}

pub(super) async fn show(
    State(broker): State<Broker>,
    session: WebSession,
    ClientIp(ip): ClientIp,
) -> Result<Response, PageError> {
    let overview = broker.access().overview(&session.user, ip).await?;
    let edges: Vec<&str> = overview.grants.iter().map(|g| g.edge.as_str()).collect();
    let main = new_device_main(&edges, &overview.source_ip.to_string(), &session.csrf);
    Ok(page(
        StatusCode::OK,
        frame("New device", Some(signed_in(&session)), main),
    ))
}

/// `POST /devices`: the browser made the key pair and sends its public half.
///
/// Without a session it answers exactly as a path that does not exist: its only legitimate
/// caller is the page's own script, which sends the session cookie, and a distinctive answer
/// (JSON naming a session) would tell a stranger what the service is.
pub(super) async fn issue_for_browser_key(
    State(broker): State<Broker>,
    caller: Option<AnyCaller>,
    session: Result<WebSession, PageError>,
    guard: Result<FormGuard, PageError>,
    form: Result<PageForm<DeviceForm>, PageError>,
) -> Result<Json<DeviceProfile>, JsonError> {
    let session = match session {
        Ok(session) => session,
        Err(PageError::NeedLogin) => return Err(unrouted(caller).await.into()),
        Err(e) => return Err(e.into()),
    };
    let guard = guard?;
    let PageForm(form) = form?;
    guard
        .session_form(&broker, &session, &form.csrf, "new_device")
        .await?;
    let file_name = file_name(&form.edge)?;
    let public_key: PublicKey =
        form.public_key.trim().parse().map_err(|_| {
            Error::BadRequest("public_key must be a base64 X25519 public key".into())
        })?;
    LeaseBudget::take(&broker, guard.ip)?;
    let req = LeaseRequest {
        edge: form.edge,
        public_key,
    };
    let profile = broker
        .leases()
        .issue(&session.user, req, guard.ip)
        .await?
        .profile;
    Ok(Json(device_profile(&profile, file_name, broker.now())))
}

/// `POST /devices/server-keys`: the browser cannot make the pair, so the broker makes it and
/// shows it once.
pub(super) async fn issue_with_server_key(
    State(broker): State<Broker>,
    session: WebSession,
    guard: FormGuard,
    PageForm(form): PageForm<DeviceForm>,
) -> Result<Response, PageError> {
    guard
        .session_form(&broker, &session, &form.csrf, "new_device")
        .await?;
    let file_name = file_name(&form.edge)?;
    LeaseBudget::take(&broker, guard.ip)?;
    let private_key = PrivateKey::from_random_bytes(secrets::random_bytes());
    let req = LeaseRequest {
        edge: form.edge,
        public_key: private_key.public_key(),
    };
    let profile = broker
        .leases()
        .issue(&session.user, req, guard.ip)
        .await?
        .profile;
    let conf = profile.to_wg_quick(&private_key);
    let (qr_url, side) = qr::png_data_url(&conf, "a tunnel profile")?;
    let main = server_key_main(
        &device_profile(&profile, file_name, broker.now()),
        &conf,
        &qr_url,
        side,
    );
    Ok(page(
        StatusCode::OK,
        frame("New device", Some(signed_in(&session)), main),
    ))
}

fn signed_in(session: &WebSession) -> SignedIn<'_> {
    SignedIn {
        name: &session.user.name,
        csrf: &session.csrf,
        admin: session.user.admin,
    }
}

fn device_profile(p: &Profile, file_name: String, now: i64) -> DeviceProfile {
    DeviceProfile {
        lease_id: p.lease_id.to_string(),
        edge: p.edge.to_string(),
        conf_without_key: p.to_wg_quick_without_key(),
        file_name,
        plex_url: p.plex_url.to_string(),
        pin: p.pin.to_string(),
        expires_at: p.expires_at,
        expires_text: utc(p.expires_at),
        now,
    }
}

/// `gw-EDGE.conf`: the WireGuard apps and wg-quick name the tunnel after the file. Checked
/// before the lease budget is spent or a lease made, and refused, as `grantwire up` refuses it,
/// when EDGE is no edge name or too long for a tunnel's name: a shortened name could be another
/// edge's tunnel.
fn file_name(edge: &str) -> Result<String, Error> {
    let edge: EdgeName = edge
        .parse()
        .map_err(|e: FieldError| Error::BadRequest(format!("edge name must be {}", e.rule())))?;
    let tunnel = edge.tunnel_name().map_err(|e| {
        Error::BadRequest(format!(
            "the edge {edge} cannot have a profile made on this page: {e}; ask the admin for an \
             edge with a shorter name"
        ))
    })?;
    Ok(format!("{tunnel}.conf"))
}

/// The refusals of `POST /devices`, as JSON for the page's script: the API's error body for a
/// broker refusal, and the same body (DESIGN.md's `code` and `message`) for the page's own.
#[derive(Debug)]
pub(super) struct JsonError(PageError);

impl From<PageError> for JsonError {
    fn from(e: PageError) -> Self {
        Self(e)
    }
}

impl From<Error> for JsonError {
    fn from(e: Error) -> Self {
        Self(PageError::Broker(e))
    }
}

impl From<ApiError> for JsonError {
    fn from(ApiError(e): ApiError) -> Self {
        Self(PageError::Broker(e))
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let (code, message) = match self.0 {
            PageError::Broker(e) => return ApiError(e).into_response(),
            PageError::NeedLogin => (
                ErrorCode::Unauthorized,
                "Your session has ended. Sign in again.",
            ),
            PageError::FormExpired => (
                ErrorCode::Forbidden,
                "This form has expired. Reload the page and try again.",
            ),
            // The admin pages' refusals; no device route meets them.
            PageError::NotFound => (ErrorCode::NotFound, "Not found."),
            PageError::StaleSession { .. } => {
                (ErrorCode::Forbidden, "Sign in again to make changes.")
            }
        };
        let status = answer::status(code);
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        };
        (status, Json(body)).into_response()
    }
}

fn new_device_main(edges: &[&str], source_ip: &str, csrf: &str) -> Markup {
    html! {
        h1 { "New device" }
        @if edges.is_empty() {
            p id="no-grants" class="muted" { "No grants: ask an administrator for access." }
        } @else {
            p {
                "Make a WireGuard tunnel for the device in your hand. Its profile works only from "
                code id="source-ip" { (source_ip) }
                ", the address this browser reaches the broker from: scan the QR code with the "
                "WireGuard app on a phone on this same network, or download the file here."
            }
            // `app.js` sets data-keys="browser" once it has made a test key: then the submit
            // is handled in the page and the key stays here. Otherwise the form posts as is.
            form id="new-device" method="post" action="/devices/server-keys" data-keys="server" {
                (csrf_field(csrf))
                label for="edge" { "Server" }
                select id="edge" name="edge" required {
                    @for edge in edges { option value=(edge) { (edge) } }
                }
                p id="key-origin" class="muted" {
                    "The key is made by the broker, shown once and not kept."
                }
                button id="make-device" type="submit" { "Make tunnel" }
            }
            p id="device-error" class="error" role="alert" hidden {}
            section id="device-result" hidden aria-live="polite" {
                h2 { "Your tunnel" }
                p {
                    "Scan this with the WireGuard app (" em { "Add tunnel, Scan from QR code" }
                    ") or download the file for the app on this device."
                }
                canvas id="profile-qr" class="qr" {}
                p {
                    a id="conf-download" class="button" href="#" download { "Download .conf" }
                }
                (profile_facts(None))
                p class="muted" {
                    "This page keeps the key only while it is open. Reload it and it is gone."
                }
            }
        }
        p { a href="/access" { "Back to my access" } }
        // After app.js in document order (both deferred): it draws the QR code.
        script src="/assets/qr.js" defer {}
    }
}

/// Plex URL, pin and expiry: filled in by the server (server-made key) or by `app.js`, which
/// fills each `data-fill` element with that field of the JSON answer.
fn profile_facts(p: Option<&DeviceProfile>) -> Markup {
    let text = |f: fn(&DeviceProfile) -> String| p.map(f).unwrap_or_default();
    let left = p.map(|p| countdown(p.expires_at - p.now));
    html! {
        dl class="facts" {
            dt { "Plex on the tunnel" }
            dd { code id="plex-url" data-fill="plex_url" { (text(|p| p.plex_url.clone())) } }
            dt { "Works only from" }
            dd {
                code id="device-pin" data-fill="pin" { (text(|p| p.pin.clone())) }
                " " span class="muted" {
                    "(the address this browser came from: a device on another network must "
                    "get its own tunnel there)"
                }
            }
            dt { "Until" }
            dd {
                span id="device-expires" data-fill="expires_text" {
                    (text(|p| p.expires_text.clone()))
                }
                " (" span id="device-countdown" class="countdown"
                    data-expires=(p.map_or(0, |p| p.expires_at)) { (left.unwrap_or_default()) } ")"
            }
        }
    }
}

fn server_key_main(p: &DeviceProfile, conf: &str, qr_url: &str, side: usize) -> Markup {
    let download = format!("data:text/plain;base64,{}", STANDARD.encode(conf));
    html! {
        h1 { "New device" }
        p id="server-key-note" class="notice" role="status" {
            "This browser cannot make WireGuard keys, so the broker made this one. It is shown "
            "only now and is not kept: save the file or scan the code before you leave the page."
        }
        section id="device-result" {
            h2 { "Your tunnel" }
            img id="profile-qr" class="qr profile" src=(qr_url) width=(side) height=(side)
                alt="QR code of the tunnel profile";
            p {
                a id="conf-download" class="button" href=(download) download=(p.file_name) {
                    "Download .conf"
                }
            }
            (profile_facts(Some(p)))
            details {
                summary { "Show the file" }
                pre id="device-conf" { (conf) }
            }
        }
        p { a href="/access" { "Back to my access" } }
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_names_are_whole_edge_names_that_fit_an_interface_name() {
        assert_eq!(file_name("home").unwrap(), "gw-home.conf");
        assert_eq!(file_name("abcdefghijkl").unwrap(), "gw-abcdefghijkl.conf");
        // Refused, never shortened: two edges would share "gw-a-very-long-".
        for long in [
            "a-very-long-edge-name",
            "a-very-long-edge-nam2",
            "abcdefghijklm",
        ] {
            let msg = file_name(long).unwrap_err().body().error.message;
            assert!(msg.contains(long) && msg.contains("at most 12"), "{msg}");
        }
        for bad in ["", "Home", "a_b", "a.b", "../x", "home\n"] {
            let msg = file_name(bad).unwrap_err().body().error.message;
            assert!(msg.starts_with("edge name must be"), "{bad:?}: {msg}");
        }
    }
}
