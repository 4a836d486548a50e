//! First sign-in of an invited user on the pages: the temporary password at `/welcome`, the QR
//! code and the finishing form at `/welcome/app`, and the way through to
//! signing in; the refusals are in `welcome_refused.rs`.

use std::sync::Arc;

use base64::Engine as _;
use grantwire_broker::clock::{Clock as _, ManualClock};
use grantwire_broker::throttle::RateLimit;
use grantwire_proto::{UserInviteRequest, UserInviteResponse};

use crate::common::*;
use crate::web::support::*;

pub const NEW_PASSWORD: &str = "a password of my own choosing";
pub const REFUSED_ENROL: &str = r#"<p id="error" role="alert">wrong user name or temporary password, or the invitation has expired</p>"#;
pub const MISMATCH: &str = r#"<p id="error" role="alert">the passwords do not match</p>"#;
pub const WRONG_CODE: &str = r#"<p id="error" role="alert">that code was not right; wait for the next one and try again</p>"#;

pub async fn with_clock(rate: Option<RateLimit>) -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| {
        config.clock = c;
        config.session_ttl = std::time::Duration::from_secs(3600);
        if let Some(rate) = rate {
            config.login_rate = rate;
        }
    })
    .await;
    (h, clock)
}

pub async fn invite(h: &Harness, name: &str, ttl_secs: Option<u64>) -> UserInviteResponse {
    let req = UserInviteRequest {
        name: name.into(),
        admin: false,
        ttl_secs,
    };
    h.broker.admin().invites().create(req).await.unwrap()
}

/// The set-up page's parts a test needs: its markup, form token and the secret's text.
pub struct AppPage {
    pub html: String,
    pub csrf: String,
}

impl Harness {
    /// `/welcome`'s pre-session token, from a browser that held none.
    pub async fn welcome_token(&self) -> String {
        let resp = self.get_page("/welcome", None).await;
        assert_eq!(resp.status(), 200);
        let token = cookie_value(&set_cookie(&resp, "__Host-gw_csrf").unwrap());
        assert_eq!(csrf_field(&resp.text().await.unwrap()), token);
        token
    }

    pub async fn post_welcome(&self, user: &str, password: &str) -> reqwest::Response {
        let token = self.welcome_token().await;
        self.post_form(Post {
            path: "/welcome",
            cookie: Some(format!("__Host-gw_csrf={token}")),
            origin: Some(self.broker.url()),
            fields: vec![
                ("user", user.into()),
                ("password", password.into()),
                ("csrf", token),
            ],
        })
        .await
    }

    /// Starts a set-up on the page; returns the set-up cookie's value.
    pub async fn start_setup(&self, invited: &UserInviteResponse) -> String {
        let resp = self
            .post_welcome(&invited.name, &invited.temporary_password)
            .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()["location"], "/welcome/app");
        cookie_value(&set_cookie(&resp, "__Host-gw_enrol").unwrap())
    }

    pub async fn app_page(&self, enrol: &str) -> AppPage {
        let resp = self
            .get_page("/welcome/app", Some(&format!("__Host-gw_enrol={enrol}")))
            .await;
        assert_eq!(resp.status(), 200);
        assert_page_headers("/welcome/app", &resp);
        let html = resp.text().await.unwrap();
        assert_clean_markup(&html);
        let csrf = csrf_field(&html);
        AppPage { html, csrf }
    }

    pub async fn finish(&self, enrol: &str, csrf: &str, fields: [&str; 3]) -> reqwest::Response {
        let [password, again, code] = fields;
        self.post_form(Post {
            path: "/welcome/app",
            cookie: Some(format!("__Host-gw_enrol={enrol}")),
            origin: Some(self.broker.url()),
            fields: vec![
                ("new_password", password.into()),
                ("new_password_again", again.into()),
                ("code", code.into()),
                ("csrf", csrf.into()),
            ],
        })
        .await
    }
}

/// The text between `start` and the next `end` in `html`.
pub fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in {html}"))
        + start.len();
    let len = html[from..].find(end).unwrap();
    &html[from..from + len]
}

/// Reads the page's QR image back to the text it encodes, with a real decoder.
pub fn decode_qr(html: &str) -> String {
    let b64 = between(html, r#"src="data:image/png;base64,"#, "\"");
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut reader = png::Decoder::new(png.as_slice()).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

/// A refused finishing post: the page again, with the same QR code, the error, and no cookie.
async fn assert_kept(resp: reqwest::Response, uri: &str, status: u16, error: &str) {
    assert_eq!(resp.status(), status, "{error}");
    assert_page_headers("enrol refused", &resp);
    assert!(resp.headers().get("set-cookie").is_none());
    let html = resp.text().await.unwrap();
    assert_clean_markup(&html);
    assert!(html.contains(error), "{error} not in {html}");
    assert_eq!(decode_qr(&html), uri);
}

pub fn code_at(secret_text: &str, clock: &ManualClock) -> String {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_text.as_bytes())
        .unwrap();
    grantwire_broker::totp::code_at(&secret, u64::try_from(clock.now_secs()).unwrap())
}

#[tokio::test]
async fn the_welcome_page_names_nothing_and_the_sign_in_page_links_to_it() {
    let h = Harness::start().await;
    let (_, html) = anonymous_form_page(&h, "/welcome", "welcome page").await;
    for needle in [
        "<title>Set up your account</title>",
        r#"<form id="enrol-start" class="login" method="post" action="/welcome">"#,
        r#"<label for="user">"#,
        r#"<input id="user" name="user" type="text" value="" required autocomplete="username""#,
        r#"<label for="temporary-password">"#,
        r#"<input id="temporary-password" name="password" type="password" required autocomplete="off""#,
        r#"<button id="submit" type="submit">"#,
        r#"<a id="login-link" href="/login">"#,
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
    ] {
        assert!(html.contains(needle), "{needle} not in {html}");
    }
    let login = h.get_page("/login", None).await.text().await.unwrap();
    assert!(
        login.contains(r#"<a id="welcome-link" href="/welcome">Invited? Set up your account</a>"#),
        "{login}"
    );

    // Signed in, there is nothing to set up.
    let session = h.web_session("alice").await;
    let resp = h
        .get_page("/welcome", Some(&session_cookie(&session)))
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/access");

    // The QR code page without a live set-up: a bare redirect to the start, nothing said.
    for cookie in [None, Some("__Host-gw_enrol=not-an-enrolment")] {
        let resp = h.get_page("/welcome/app", cookie).await;
        assert_eq!(resp.status(), 303, "{cookie:?}");
        assert_eq!(resp.headers()["location"], "/welcome");
        assert!(resp.headers().get("set-cookie").is_none());
        assert_eq!(resp.text().await.unwrap(), "");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn an_invited_user_sets_up_the_app_and_then_signs_in_like_anyone() {
    let (h, clock) = with_clock(None).await;
    let bob = invite(&h, "bob", None).await;
    let resp = h.post_welcome("bob", &bob.temporary_password).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/welcome/app");
    let cookie = set_cookie(&resp, "__Host-gw_enrol").unwrap();
    let enrol = cookie_value(&cookie);
    assert_eq!(enrol.len(), 43, "{enrol}");
    assert_eq!(
        cookie,
        format!("__Host-gw_enrol={enrol}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=900")
    );
    assert_eq!(resp.text().await.unwrap(), "");

    // The page: the QR code reads back to the set-up's URI, whose secret is the text shown.
    let pending = h
        .broker
        .admin()
        .invites()
        .pending(&enrol)
        .await
        .unwrap()
        .unwrap();
    let page = h.app_page(&enrol).await;
    let uri = decode_qr(&page.html);
    assert_eq!(uri, pending.otpauth_uri);
    assert!(
        uri.starts_with("otpauth://totp/grantwire:bob?secret="),
        "{uri}"
    );
    let in_uri = between(&uri, "secret=", "&");
    let shown = between(&page.html, r#"<code id="totp-secret">"#, "<");
    assert_eq!(shown.replace(' ', ""), in_uri);
    assert_eq!(shown.split(' ').count(), 8, "{shown}");
    let link = format!(
        r#"<a id="otpauth-link" href="{}">"#,
        uri.replace('&', "&amp;")
    );
    assert!(page.html.contains(&link), "{link} not in {}", page.html);
    for needle in [
        "<title>Set up your authenticator app</title>",
        r#"<img id="totp-qr" class="qr" src="data:image/png;base64,"#,
        r#"<form id="enrol-finish" class="login" method="post" action="/welcome/app">"#,
        r#"<input id="new-password" name="new_password" type="password" required autocomplete="new-password""#,
        r#"<input id="new-password-again" name="new_password_again" type="password" required autocomplete="new-password""#,
        r#"<input id="code" name="code" type="text" required autocomplete="one-time-code" inputmode="numeric""#,
        r#"<button id="submit" type="submit">"#,
    ] {
        assert!(page.html.contains(needle), "{needle} not in {}", page.html);
    }
    // A reload shows the same secret: nothing was started again.
    assert_eq!(decode_qr(&h.app_page(&enrol).await.html), uri);

    let code = code_at(in_uri, &clock);
    let resp = h
        .finish(&enrol, &page.csrf, [NEW_PASSWORD, "another one", &code])
        .await;
    assert_kept(resp, &uri, 400, MISMATCH).await;
    let resp = h
        .finish(&enrol, &page.csrf, ["short", "short", &code])
        .await;
    assert_kept(resp, &uri, 400, "password must be at least 12").await;
    let resp = h
        .finish(&enrol, &page.csrf, [NEW_PASSWORD, NEW_PASSWORD, "000000"])
        .await;
    assert_kept(resp, &uri, 401, WRONG_CODE).await;
    assert!(h
        .broker
        .admin()
        .invites()
        .pending(&enrol)
        .await
        .unwrap()
        .is_some());
    assert_eq!(h.login_raw("bob", NEW_PASSWORD, &code).await.status(), 401);

    let resp = h
        .finish(&enrol, &page.csrf, [NEW_PASSWORD, NEW_PASSWORD, &code])
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/access");
    let cookie = set_cookie(&resp, "__Host-gw_session").unwrap();
    let session = cookie_value(&cookie);
    assert_eq!(
        cookie,
        format!(
            "__Host-gw_session={session}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600"
        )
    );
    for spent in ["__Host-gw_enrol", "__Host-gw_csrf"] {
        let cleared = set_cookie(&resp, spent).unwrap();
        assert!(cleared.ends_with("; Max-Age=0"), "{cleared}");
    }
    let (html, _) = h.access(&session).await;
    assert!(
        html.contains(r#"<span id="current-user">bob</span>"#),
        "{html}"
    );

    // The set-up is over: its cookie leads back to the start, the temporary password is
    // refused there, and the new password signs in with a later code.
    let resp = h
        .get_page("/welcome/app", Some(&format!("__Host-gw_enrol={enrol}")))
        .await;
    assert_eq!(resp.status(), 303);
    let resp = h.post_welcome("bob", &bob.temporary_password).await;
    assert_eq!(resp.status(), 401);
    clock.advance(std::time::Duration::from_secs(30));
    let resp = h
        .page_login("bob", NEW_PASSWORD, &code_at(in_uri, &clock))
        .await;
    assert_eq!(resp.status(), 303);
    assert!(set_cookie(&resp, "__Host-gw_session").is_some());
    let kinds = h.audit_kinds().await;
    assert_eq!(kinds.iter().filter(|k| *k == "user_enrolled").count(), 1);
    h.shutdown().await;
}
