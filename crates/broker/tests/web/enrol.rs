//! First sign-in of an invited user on the pages: the temporary password at `/welcome`, the QR
//! code and the finishing form at `/welcome/app`, and what each refusal leaves unchanged.

use std::sync::Arc;

use base64::Engine as _;
use grantwire_broker::throttle::{Clock as _, ManualClock, RateLimit};
use grantwire_proto::{UserInviteRequest, UserInviteResponse};

use crate::common::*;
use crate::support::*;

const NEW_PASSWORD: &str = "a password of my own choosing";
const REFUSED_ENROL: &str = r#"<p id="error" role="alert">wrong user name or temporary password, or the invitation has expired</p>"#;
const MISMATCH: &str = r#"<p id="error" role="alert">the passwords do not match</p>"#;
const WRONG_CODE: &str = r#"<p id="error" role="alert">that code was not right; wait for the next one and try again</p>"#;

async fn with_clock(rate: Option<RateLimit>) -> (Harness, Arc<ManualClock>) {
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

async fn invite(h: &Harness, name: &str, ttl_secs: Option<u64>) -> UserInviteResponse {
    let req = UserInviteRequest {
        name: name.into(),
        admin: false,
        ttl_secs,
    };
    h.broker.admin().user_invite(req).await.unwrap()
}

/// The enrolment page's parts a test needs: its markup, form token and the secret's text.
struct AppPage {
    html: String,
    csrf: String,
}

impl Harness {
    /// `/welcome`'s pre-session token, from a browser that held none.
    async fn welcome_token(&self) -> String {
        let resp = self.get_page("/welcome", None).await;
        assert_eq!(resp.status(), 200);
        let token = cookie_value(&set_cookie(&resp, "__Host-gw_csrf").unwrap());
        assert_eq!(csrf_field(&resp.text().await.unwrap()), token);
        token
    }

    async fn post_welcome(&self, user: &str, password: &str) -> reqwest::Response {
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

    /// Starts an enrolment on the page; returns the enrolment cookie's value.
    async fn start_enrolment(&self, invited: &UserInviteResponse) -> String {
        let resp = self
            .post_welcome(&invited.name, &invited.temporary_password)
            .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()["location"], "/welcome/app");
        cookie_value(&set_cookie(&resp, "__Host-gw_enrol").unwrap())
    }

    async fn app_page(&self, enrol: &str) -> AppPage {
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

    async fn finish(&self, enrol: &str, csrf: &str, fields: [&str; 3]) -> reqwest::Response {
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
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in {html}"))
        + start.len();
    let len = html[from..].find(end).unwrap();
    &html[from..from + len]
}

/// Reads the page's QR image back to the text it encodes, with a real decoder.
fn decode_qr(html: &str) -> String {
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

fn code_at(secret_text: &str, clock: &ManualClock) -> String {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_text.as_bytes())
        .unwrap();
    grantwire_broker::totp::code_at(&secret, u64::try_from(clock.now_secs()).unwrap())
}

#[tokio::test]
async fn the_welcome_page_names_nothing_and_the_sign_in_page_links_to_it() {
    let h = Harness::start().await;
    let resp = h.get_page("/welcome", None).await;
    assert_eq!(resp.status(), 200);
    assert_page_headers("/welcome", &resp);
    let cookie = set_cookie(&resp, "__Host-gw_csrf").unwrap();
    let token = cookie_value(&cookie);
    assert_eq!(
        cookie,
        format!("__Host-gw_csrf={token}; Path=/; Secure; HttpOnly; SameSite=Strict")
    );
    let html = resp.text().await.unwrap();
    assert_clean_markup(&html);
    assert_eq!(csrf_field(&html), token);
    let lower = html.to_lowercase();
    for word in [
        "grantwire",
        "plex",
        "wireguard",
        "lease",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(!lower.contains(word), "{word} on the welcome page: {html}");
    }
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

    // The QR code page without a live enrolment: a bare redirect to the start, nothing said.
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
async fn refused_temporary_passwords_get_one_message_and_change_nothing() {
    let (h, clock) = with_clock(None).await;
    let bob = invite(&h, "bob", Some(3600)).await;
    let before = h.broker.admin().counts().await.unwrap();
    for (user, password, kind) in [
        ("bob", "AAAA-BBBB-CCCC-DDDD", "enrol_failed"),
        ("nobody", bob.temporary_password.as_str(), "enrol_failed"),
    ] {
        let resp = h.post_welcome(user, password).await;
        assert_eq!(resp.status(), 401, "{user}");
        assert_page_headers("refused welcome", &resp);
        assert!(resp.headers().get("set-cookie").is_none(), "{user}");
        let html = resp.text().await.unwrap();
        assert_clean_markup(&html);
        assert!(html.contains(REFUSED_ENROL), "{html}");
        assert!(html.contains(&format!(r#"value="{user}""#)), "{html}");
        assert!(!html.contains(password), "the password comes back: {html}");
        assert_eq!(h.audit_kinds().await.last().unwrap(), kind);
    }
    clock.advance(std::time::Duration::from_secs(3600));
    let resp = h.post_welcome("bob", &bob.temporary_password).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(resp.text().await.unwrap().contains(REFUSED_ENROL));
    assert_eq!(
        h.audit_kinds().await.last().unwrap(),
        "enrol_invite_expired"
    );
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
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

    // The page: the QR code reads back to the enrolment's URI, whose secret is the text shown.
    let pending = h.broker.admin().enrolment(&enrol).await.unwrap().unwrap();
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
    assert!(h.broker.admin().enrolment(&enrol).await.unwrap().is_some());
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

    // The enrolment is over: its cookie leads back to the start, the temporary password is
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

#[tokio::test]
async fn set_up_posts_without_their_token_or_from_elsewhere_change_nothing() {
    let (h, _clock) = with_clock(None).await;
    let bob = invite(&h, "bob", None).await;
    let token = h.welcome_token().await;
    let own = Some(h.broker.url());
    let elsewhere = Some("https://evil.example".to_owned());
    let start = |csrf: &str, origin: Option<String>| Post {
        path: "/welcome",
        cookie: Some(format!("__Host-gw_csrf={token}")),
        origin,
        fields: vec![
            ("user", "bob".into()),
            ("password", bob.temporary_password.clone()),
            ("csrf", csrf.into()),
        ],
    };
    for (what, post) in [
        ("no token", start("", own.clone())),
        ("wrong token", start("x".repeat(43).as_str(), own.clone())),
        ("other origin", start(&token, elsewhere.clone())),
    ] {
        let resp = h.post_form(post).await;
        assert_eq!(resp.status(), 403, "{what}");
        assert_page_headers(what, &resp);
        assert!(resp.headers().get("set-cookie").is_none(), "{what}");
        assert_clean_markup(&resp.text().await.unwrap());
        assert_eq!(h.audit_kinds().await.last().unwrap(), "web_form_refused");
    }
    assert!(!h.audit_kinds().await.iter().any(|k| k == "enrol_started"));

    let enrol = h.start_enrolment(&bob).await;
    let page = h.app_page(&enrol).await;
    let pending = h.broker.admin().enrolment(&enrol).await.unwrap().unwrap();
    let finish = |csrf: &str, cookie: String, origin: Option<String>| Post {
        path: "/welcome/app",
        cookie: Some(cookie),
        origin,
        fields: vec![
            ("new_password", NEW_PASSWORD.into()),
            ("new_password_again", NEW_PASSWORD.into()),
            ("code", "000000".into()),
            ("csrf", csrf.into()),
        ],
    };
    let enrol_cookie = format!("__Host-gw_enrol={enrol}");
    // The pre-session double submit does not pass here: the form is bound to the enrolment.
    let double = format!("{enrol_cookie}; __Host-gw_csrf={token}");
    for (what, post) in [
        ("no token", finish("", enrol_cookie.clone(), own.clone())),
        ("pre-session token", finish(&token, double, own.clone())),
        (
            "other origin",
            finish(&page.csrf, enrol_cookie.clone(), elsewhere.clone()),
        ),
    ] {
        let before = h.audit_kinds().await.len();
        let resp = h.post_form(post).await;
        assert_eq!(resp.status(), 403, "{what}");
        assert!(resp.headers().get("set-cookie").is_none(), "{what}");
        let kinds = h.audit_kinds().await;
        assert_eq!(kinds[before..], ["web_form_refused"], "{what}");
    }
    // Without the enrolment's cookie there is nothing to finish: back to the start.
    let resp = h.post_form(finish(&page.csrf, String::new(), own)).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/welcome");
    // Nothing counted: the enrolment is as it was, with no failure on the account.
    let still = h.broker.admin().enrolment(&enrol).await.unwrap().unwrap();
    assert_eq!(still.totp_secret, pending.totp_secret);
    let users = h.broker.admin().user_list().await.unwrap();
    assert_eq!(users.users[0].locked_until, None);
    assert!(!h.audit_kinds().await.iter().any(|k| k == "enrol_failed"));
    h.shutdown().await;
}

#[tokio::test]
async fn setting_up_spends_the_login_budget() {
    let rate = RateLimit {
        burst: 3,
        per_sec: 1,
    };
    let (h, clock) = with_clock(Some(rate)).await;
    let bob = invite(&h, "bob", None).await;
    let enrol = h.start_enrolment(&bob).await;
    let page = h.app_page(&enrol).await;
    let secret = between(&decode_qr(&page.html), "secret=", "&").to_owned();
    // One budget per source for the API's login, sign-in and both set-up forms.
    assert_eq!(h.login_raw("bob", "wrong", "000000").await.status(), 401);
    let resp = h
        .finish(&enrol, &page.csrf, [NEW_PASSWORD, NEW_PASSWORD, "000000"])
        .await;
    assert_eq!(resp.status(), 401);
    let audit_before = h.audit_kinds().await.len();
    for resp in [
        h.post_welcome("bob", &bob.temporary_password).await,
        h.finish(
            &enrol,
            &page.csrf,
            [NEW_PASSWORD, NEW_PASSWORD, &code_at(&secret, &clock)],
        )
        .await,
    ] {
        assert_eq!(resp.status(), 429);
        assert_page_headers("over budget", &resp);
        assert!(resp.headers().get("retry-after").is_some());
        assert!(resp.headers().get("set-cookie").is_none());
        assert_clean_markup(&resp.text().await.unwrap());
    }
    assert_eq!(h.audit_kinds().await.len(), audit_before);
    assert!(h.broker.admin().enrolment(&enrol).await.unwrap().is_some());

    clock.advance(std::time::Duration::from_secs(1));
    let code = code_at(&secret, &clock);
    let resp = h
        .finish(&enrol, &page.csrf, [NEW_PASSWORD, NEW_PASSWORD, &code])
        .await;
    assert_eq!(resp.status(), 303);
    assert!(set_cookie(&resp, "__Host-gw_session").is_some());
    h.shutdown().await;
}
