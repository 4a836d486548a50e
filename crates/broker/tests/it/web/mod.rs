//! Issue 6: the web pages over real HTTPS, cookie by cookie (the client keeps no cookie store,
//! so every cookie sent is one the test chose). Signing in and out, the page's headers and
//! markup rules, form tokens and origins, the lease forms, and the login budget.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod access;
mod admin;
mod devices;
mod support;
mod welcome;
mod welcome_refused;

use std::sync::Arc;

use crate::common::*;
use grantwire_broker::clock::{Clock as _, ManualClock};
use grantwire_broker::throttle::RateLimit;
use grantwire_proto::WhoamiResponse;
use support::*;

#[tokio::test]
async fn the_sign_in_page_says_nothing_of_the_service_and_sets_its_form_cookie() {
    let h = Harness::start().await;
    let (token, html) = anonymous_form_page(&h, "/login", "sign-in page").await;
    assert_eq!(token.len(), 43, "{token}");
    for needle in [
        r#"<form id="login" class="login" method="post" action="/login">"#,
        r#"<label for="user">"#,
        r#"<input id="user" name="user" type="text""#,
        r#"<label for="password">"#,
        r#"<input id="password" name="password" type="password""#,
        r#"<label for="code">"#,
        r#"autocomplete="one-time-code" inputmode="numeric""#,
        r#"<button id="submit" type="submit">"#,
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
        r#"<link rel="icon" href="data:,">"#,
    ] {
        assert!(html.contains(needle), "{needle} not in {html}");
    }

    // A browser that holds the cookie keeps its token.
    let again = h
        .get_page("/login", Some(&format!("__Host-gw_csrf={token}")))
        .await;
    assert!(set_cookie(&again, "__Host-gw_csrf").is_none());
    assert_eq!(csrf_field(&again.text().await.unwrap()), token);

    // The assets are there for the sign-in page (whose cookie the browser sends when it loads
    // them) and name nothing either.
    for (path, kind) in [
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/qr.js", "text/javascript; charset=utf-8"),
    ] {
        let resp = h
            .get_page(path, Some(&format!("__Host-gw_csrf={token}")))
            .await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], kind, "{path}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let text = resp.text().await.unwrap().to_lowercase();
        assert!(
            !text.contains("grantwire") && !text.contains("plex"),
            "{path}"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn pages_without_a_session_redirect_to_sign_in_and_say_nothing_else() {
    let h = Harness::start().await;
    for (path, cookie) in [
        ("/access", None),
        ("/access?done=revoked", None),
        ("/access", Some("__Host-gw_session=not-a-session")),
        ("/access", Some("gw_session=x; __Host-gw_csrf=y")),
    ] {
        let resp = h.get_page(path, cookie).await;
        assert_eq!(resp.status(), 303, "{path} {cookie:?}");
        assert_eq!(resp.headers()["location"], "/login", "{path}");
        assert!(resp.headers().get("set-cookie").is_none(), "{path}");
        assert_eq!(resp.text().await.unwrap(), "", "{path}");
    }
    // A signed-in form posted without a session: the same bare redirect, nothing done.
    let resp = h
        .post_form(Post {
            path: "/access/leases/l-0123456789abcdef/revoke",
            cookie: None,
            origin: None,
            fields: vec![("csrf", "x".into())],
        })
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.text().await.unwrap(), "");
    // Paths that are no page keep the API's answer to a stranger, and so does the root: a
    // redirect to a sign-in form there would tell every scanner what answers.
    for path in [
        "/",
        "/no/such/page",
        "/access/leases",
        "/assets/other.css",
        "/login/x",
    ] {
        let resp = h.get_page(path, None).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            resp.headers()["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_refused_sign_in_shows_the_page_again_with_401_and_no_session() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let attempts = [
        ("alice", PASSWORD, "000000".to_owned()),
        ("alice", "not the password", code_now(&secret)),
        ("nobody", PASSWORD, code_now(&secret)),
    ];
    for (user, password, code) in attempts {
        let before = h.broker.admin().counts().await.unwrap();
        let resp = h.page_login(user, password, &code).await;
        assert_eq!(resp.status(), 401, "{user}");
        assert_page_headers("refused sign-in", &resp);
        assert!(set_cookie(&resp, "__Host-gw_session").is_none());
        let html = resp.text().await.unwrap();
        assert_clean_markup(&html);
        assert!(html.contains(REFUSED), "{html}");
        assert!(html.contains(&format!(r#"value="{user}""#)), "{html}");
        assert_eq!(h.broker.admin().counts().await.unwrap(), before);
        let kinds = h.audit_kinds().await;
        assert_eq!(kinds.last().unwrap(), "login_failed");
    }

    // What was typed comes back escaped, in the attribute it is put in.
    let typed = r#""><script>alert(1)</script>"#;
    let resp = h.page_login(typed, PASSWORD, "123456").await;
    assert_eq!(resp.status(), 401);
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains(r#"value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;""#),
        "{html}"
    );
    assert_clean_markup(&html);
    h.shutdown().await;
}

#[tokio::test]
async fn signing_in_sets_the_session_cookie_with_every_flag() {
    let h = Harness::start().await;
    let secret = h.add_user("alice").await;
    let resp = h.page_login("alice", PASSWORD, &code_now(&secret)).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/access");
    let cookie = set_cookie(&resp, "__Host-gw_session").unwrap();
    let token = cookie_value(&cookie);
    let (flags, max_age) = cookie.rsplit_once("; Max-Age=").unwrap();
    assert_eq!(
        flags,
        format!("__Host-gw_session={token}; Path=/; Secure; HttpOnly; SameSite=Strict")
    );
    // The harness's sessions last an hour; the cookie no longer.
    let max_age: u64 = max_age.parse().unwrap();
    assert!((3590..=3600).contains(&max_age), "{max_age}");
    assert!(!cookie.to_lowercase().contains("domain"));
    // The pre-session token is spent.
    let cleared = set_cookie(&resp, "__Host-gw_csrf").unwrap();
    assert!(cleared.ends_with("; Max-Age=0"), "{cleared}");
    assert_eq!(h.audit_kinds().await.last().unwrap(), "login_ok");

    // The cookie holds a session of the broker's: the API takes it as a bearer token.
    let resp = h
        .http
        .get(h.url("/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<WhoamiResponse>().await.unwrap().user, "alice");

    let (html, _) = h.access(&token).await;
    assert!(
        html.contains(r#"<span id="current-user">alice</span>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<code id="source-ip">127.0.0.1</code>"#),
        "{html}"
    );
    assert!(html.contains(r#"id="no-leases""#), "{html}");
    assert!(html.contains(r#"id="no-grants""#), "{html}");
    assert!(html.contains(r#"<form id="logout" method="post" action="/logout">"#));
    // Signed in, the sign-in page and the root lead to the access page.
    for path in ["/", "/login"] {
        let resp = h.get_page(path, Some(&session_cookie(&token))).await;
        assert_eq!(resp.status(), 303, "{path}");
        assert_eq!(resp.headers()["location"], "/access", "{path}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn signing_in_on_the_page_spends_the_apis_login_budget() {
    // A clock that stands still, so the bucket does not refill while the test runs.
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| {
        config.clock = c;
        config.login_rate = RateLimit {
            burst: 3,
            per_sec: 1,
        };
    })
    .await;
    let secret = h.add_user("alice").await;
    let code = || grantwire_broker::totp::code_at(&secret, clock.now_secs() as u64);
    let token = h.login_form_token().await;
    let attempt = |password: &'static str, code: String| {
        let token = token.clone();
        let h = &h;
        async move {
            h.post_form(Post {
                path: "/login",
                cookie: Some(format!("__Host-gw_csrf={token}")),
                origin: None,
                fields: vec![
                    ("user", "alice".into()),
                    ("password", password.into()),
                    ("code", code),
                    ("csrf", token),
                ],
            })
            .await
        }
    };
    // The API and the page draw on one budget per source.
    assert_eq!(h.login_raw("alice", "wrong", "000000").await.status(), 401);
    for _ in 0..2 {
        assert_eq!(attempt("wrong", "000000".into()).await.status(), 401);
    }
    let before = h.broker.admin().counts().await.unwrap();
    let audit_before = h.audit_kinds().await.len();
    let resp = attempt(PASSWORD, code()).await;
    assert_eq!(resp.status(), 429);
    assert_page_headers("over budget", &resp);
    assert!(
        resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(set_cookie(&resp, "__Host-gw_session").is_none());
    assert_clean_markup(&resp.text().await.unwrap());
    assert_eq!(h.login_raw("alice", PASSWORD, &code()).await.status(), 429);
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    assert_eq!(h.audit_kinds().await.len(), audit_before);

    clock.advance(std::time::Duration::from_secs(1));
    let resp = attempt(PASSWORD, code()).await;
    assert_eq!(resp.status(), 303);
    assert!(set_cookie(&resp, "__Host-gw_session").is_some());
    h.shutdown().await;
}

#[tokio::test]
async fn the_page_meets_the_accounts_lockout_like_the_api() {
    let clock = Arc::new(ManualClock::new());
    let c = clock.clone();
    let h = Harness::with_config(move |config| config.clock = c).await;
    let secret = h.add_user("alice").await;
    let code = || grantwire_broker::totp::code_at(&secret, clock.now_secs() as u64);
    // Five failures in a row make the next attempt wait (throttle::FREE_FAILURES).
    for _ in 0..5 {
        let resp = h.page_login("alice", "not the password", "000000").await;
        assert_eq!(resp.status(), 401);
    }
    // The right password and code, refused with the same words while the account waits.
    let resp = h.page_login("alice", PASSWORD, &code()).await;
    assert_eq!(resp.status(), 401);
    assert!(set_cookie(&resp, "__Host-gw_session").is_none());
    assert!(resp.text().await.unwrap().contains(REFUSED));
    let kinds = h.audit_kinds().await;
    assert_eq!(kinds.last().unwrap(), "login_throttled", "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "account_locked"), "{kinds:?}");

    clock.advance(std::time::Duration::from_secs(31));
    let resp = h.page_login("alice", PASSWORD, &code()).await;
    assert_eq!(resp.status(), 303);
    h.shutdown().await;
}
