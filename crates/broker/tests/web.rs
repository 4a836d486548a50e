//! Issue 6: the web pages over real HTTPS, cookie by cookie (the client keeps no cookie store,
//! so every cookie sent is one the test chose). Signing in and out, the page's headers and
//! markup rules, form tokens and origins, the lease forms, and the login budget.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use grantwire_broker::throttle::{Clock as _, ManualClock, RateLimit};
use grantwire_proto::{LeaseListResponse, LeaseResponse, WhoamiResponse};
use serde_json::json;

/// Written out here, not taken from the broker, so a change there fails.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
    img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const REFUSED: &str = r#"<p id="error" role="alert">wrong user name, password or code</p>"#;

/// A form post: its fields, and the cookie and `Origin` it is sent with.
struct Post<'a> {
    path: &'a str,
    cookie: Option<String>,
    origin: Option<String>,
    fields: Vec<(&'a str, String)>,
}

impl Harness {
    async fn get_page(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    async fn post_form(&self, post: Post<'_>) -> reqwest::Response {
        let mut req = self.http.post(self.url(post.path)).form(&post.fields);
        if let Some(c) = post.cookie {
            req = req.header("cookie", c);
        }
        if let Some(o) = post.origin {
            req = req.header("origin", o);
        }
        req.send().await.unwrap()
    }

    /// The sign-in page's pre-session token (cookie and field hold the same).
    async fn login_form_token(&self) -> String {
        let resp = self.get_page("/login", None).await;
        assert_eq!(resp.status(), 200);
        let cookie = set_cookie(&resp, "__Host-gw_csrf").unwrap();
        let token = cookie_value(&cookie);
        assert_eq!(csrf_field(&resp.text().await.unwrap()), token);
        token
    }

    async fn page_login(&self, user: &str, password: &str, code: &str) -> reqwest::Response {
        let token = self.login_form_token().await;
        self.post_form(Post {
            path: "/login",
            cookie: Some(format!("__Host-gw_csrf={token}")),
            origin: Some(self.broker.url()),
            fields: vec![
                ("user", user.into()),
                ("password", password.into()),
                ("code", code.into()),
                ("csrf", token),
            ],
        })
        .await
    }

    /// Adds a user and signs it in through the page; returns the session cookie's value.
    async fn web_session(&self, user: &str) -> String {
        let secret = self.add_user(user).await;
        let resp = self.page_login(user, PASSWORD, &code_now(&secret)).await;
        assert_eq!(resp.status(), 303);
        cookie_value(&set_cookie(&resp, "__Host-gw_session").unwrap())
    }

    /// `/access` as `session` sees it: the page and its form token.
    async fn access(&self, session: &str) -> (String, String) {
        let resp = self
            .get_page("/access", Some(&session_cookie(session)))
            .await;
        assert_eq!(resp.status(), 200);
        assert_page_headers("/access", &resp);
        let html = resp.text().await.unwrap();
        assert_clean_markup(&html);
        let token = csrf_field(&html);
        (html, token)
    }

    /// A signed-in form post from the broker's own origin.
    async fn session_post(&self, path: &str, session: &str, csrf: &str) -> reqwest::Response {
        self.post_form(Post {
            path,
            cookie: Some(session_cookie(session)),
            origin: Some(self.broker.url()),
            fields: vec![("csrf", csrf.into())],
        })
        .await
    }

    async fn api_leases(&self, token: &str) -> LeaseListResponse {
        let resp = self
            .http
            .get(self.url("/v1/leases"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn api_lease(&self, token: &str, edge: &str) -> LeaseResponse {
        let resp = self.request_lease(token, edge).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn audit_kinds(&self) -> Vec<String> {
        let log = self.broker.admin().audit_log().await.unwrap();
        log.into_iter().map(|r| r.kind).collect()
    }
}

fn session_cookie(token: &str) -> String {
    format!("__Host-gw_session={token}")
}

/// The `Set-Cookie` header that sets `name`, if any.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&prefix))
}

fn cookie_value(set_cookie: &str) -> String {
    let (_, rest) = set_cookie.split_once('=').unwrap();
    rest.split(';').next().unwrap().to_owned()
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("no csrf field") + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_owned()
}

#[track_caller]
fn assert_page_headers(what: &str, resp: &reqwest::Response) {
    let h = resp.headers();
    let csp: Vec<_> = h.get_all("content-security-policy").iter().collect();
    assert_eq!(csp, [PAGE_CSP], "{what}");
    assert_eq!(h["content-type"], "text/html; charset=utf-8", "{what}");
    assert_eq!(h["cache-control"], "no-store", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(h["strict-transport-security"], "max-age=31536000", "{what}");
}

/// No inline script, no `<style>` element, no `style=` attribute, no `on*=` handler, no
/// `javascript:` URL: what the page CSP would block anyway, so a page that needs one is broken.
#[track_caller]
fn assert_clean_markup(html: &str) {
    assert!(!html.to_lowercase().contains("javascript:"), "{html}");
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        let (name, attrs) = tag_attributes(tag);
        assert_ne!(name, "style", "style element in {html}");
        for attr in &attrs {
            assert!(
                attr != "style" && !attr.starts_with("on"),
                "attribute {attr} in <{tag}>"
            );
        }
        if name == "script" {
            assert!(attrs.iter().any(|a| a == "src"), "inline script: <{tag}>");
            assert!(rest.starts_with("</script>"), "script with a body: {rest}");
        }
    }
}

/// A tag's lower-cased name and attribute names (values skipped, quoted or not).
fn tag_attributes(tag: &str) -> (String, Vec<String>) {
    let mut chars = tag.trim_end_matches('/').chars().peekable();
    let name: String = chars
        .by_ref()
        .take_while(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    let mut attrs = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut attr = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                break;
            }
            attr.push(c.to_ascii_lowercase());
            chars.next();
        }
        if attr.is_empty() && chars.peek().is_none() {
            return (name, attrs);
        }
        if chars.peek() == Some(&'=') {
            chars.next();
            match chars.peek() {
                Some(&q @ ('"' | '\'')) => {
                    chars.next();
                    for c in chars.by_ref() {
                        if c == q {
                            break;
                        }
                    }
                }
                _ => while chars.next_if(|c| !c.is_whitespace()).is_some() {},
            }
        }
        attrs.push(attr);
    }
}

/// The same attribute scanner finds what it must, so a clean page is not a blind scanner.
#[test]
fn the_markup_check_catches_inline_script_style_and_handlers() {
    for bad in [
        "<script>alert(1)</script>",
        r#"<p style="color:red">x</p>"#,
        r#"<img src=x onerror=alert(1)>"#,
        r#"<a href="x" ONCLICK='y'>x</a>"#,
        r#"<a href="javascript:alert(1)">x</a>"#,
        "<style>p{}</style>",
    ] {
        let caught = std::panic::catch_unwind(|| assert_clean_markup(bad));
        assert!(caught.is_err(), "{bad} passed");
    }
    assert_clean_markup(r#"<script src="/assets/app.js" defer></script><p class="a b">x</p>"#);
}

#[tokio::test]
async fn the_sign_in_page_says_nothing_of_the_service_and_sets_its_form_cookie() {
    let h = Harness::start().await;
    let resp = h.get_page("/login", None).await;
    assert_eq!(resp.status(), 200);
    assert_page_headers("/login", &resp);
    let cookie = set_cookie(&resp, "__Host-gw_csrf").unwrap();
    let token = cookie_value(&cookie);
    assert_eq!(token.len(), 43, "{cookie}");
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
        assert!(!lower.contains(word), "{word} on the sign-in page: {html}");
    }
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
    ] {
        assert!(html.contains(needle), "{needle} not in {html}");
    }

    // A browser that holds the cookie keeps its token.
    let again = h
        .get_page("/login", Some(&format!("__Host-gw_csrf={token}")))
        .await;
    assert!(set_cookie(&again, "__Host-gw_csrf").is_none());
    assert_eq!(csrf_field(&again.text().await.unwrap()), token);

    // The assets are there for the sign-in page and name nothing either.
    for (path, kind) in [
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
    ] {
        let resp = h.get_page(path, None).await;
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
async fn my_access_shows_each_live_lease_and_grant() {
    let h = Harness::start().await;
    let alice = h.web_session("alice").await;
    let bob = h.session("bob").await;
    let (credential, _) = h.enrolled_edge("home").await;
    h.enrolled_edge("cabin").await;
    h.grant("alice", "home").await;
    h.grant("alice", "cabin").await;
    h.grant("bob", "home").await;
    h.enrolled_edge("office").await;
    h.grant("bob", "office").await;
    let mine = h.api_lease(&alice, "home").await.profile;
    let theirs = h.api_lease(&bob, "home").await.profile;
    let report = json!({"leases": [{"lease_id": mine.lease_id,
        "last_handshake_at": 1_700_000_000, "rx_bytes": 1, "tx_bytes": 2}]});
    let resp = h.post("/v1/edge/report", Some(&credential), &report).await;
    assert_eq!(resp.status(), 204);

    let (html, _) = h.access(&alice).await;
    assert!(html.contains(r#"<table id="leases">"#), "{html}");
    assert_eq!(html.matches("<tr data-lease-id=").count(), 1, "{html}");
    assert!(
        !html.contains(&theirs.lease_id),
        "another user's lease shown"
    );
    let row_start = html
        .find(&format!(r#"<tr data-lease-id="{}">"#, mine.lease_id))
        .unwrap();
    let row = &html[row_start..row_start + html[row_start..].find("</tr>").unwrap()];
    let expires = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(mine.expires_at as u64),
    )
    .to_string();
    for needle in [
        r#"<td data-label="Edge" class="edge">home</td>"#.to_owned(),
        format!("<code>{}</code>", mine.address),
        "<code>127.0.0.1/32</code>".to_owned(),
        r#"<span class="pinned-here">"#.to_owned(),
        format!(
            r#"<time datetime="{expires}">{} {} UTC</time>"#,
            &expires[..10],
            &expires[11..16]
        ),
        r#"<time datetime="2023-11-14T22:13:20Z">2023-11-14 22:13 UTC</time>"#.to_owned(),
        format!(r#"action="/access/leases/{}/revoke""#, mine.lease_id),
        format!(r#"action="/access/leases/{}/renew""#, mine.lease_id),
    ] {
        assert!(row.contains(&needle), "{needle} not in {row}");
    }
    // Rendered within a minute of the issue: 8 h, or a few seconds less.
    let countdown = format!(r#"data-expires="{}">in "#, mine.expires_at);
    assert!(
        row.contains(&format!("{countdown}7 h 59 min</span>"))
            || row.contains(&format!("{countdown}8 h 0 min</span>")),
        "{row}"
    );
    assert!(
        html.contains(r#"<ul id="grants"><li data-edge="cabin">"#),
        "{html}"
    );
    assert!(html.contains(r#"<li data-edge="home">"#), "{html}");
    assert_eq!(html.matches("<li data-edge=").count(), 2, "{html}");
    assert!(
        !html.contains("office"),
        "another user's grant shown: {html}"
    );
    h.shutdown().await;
}

/// A form post's path, `Origin` and fields.
type Attempt<'a> = (&'a str, Option<String>, Vec<(&'a str, String)>);

#[tokio::test]
async fn forms_without_the_right_token_or_from_elsewhere_change_nothing() {
    let h = Harness::start().await;
    let alice = h.web_session("alice").await;
    let bob = h.web_session("bob").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let lease = h.api_lease(&alice, "home").await.profile.lease_id;
    let (_, alice_csrf) = h.access(&alice).await;
    let (_, bob_csrf) = h.access(&bob).await;
    assert_ne!(alice_csrf, bob_csrf);
    let revoke = format!("/access/leases/{lease}/revoke");
    let renew = format!("/access/leases/{lease}/renew");
    let own = Some(h.broker.url());
    let refused = h.audit_kinds().await.len();

    let attempts: Vec<Attempt> = vec![
        (&revoke, own.clone(), vec![]),
        (&revoke, own.clone(), vec![("csrf", String::new())]),
        (&revoke, own.clone(), vec![("csrf", bob_csrf.clone())]),
        (&renew, own.clone(), vec![("csrf", bob_csrf.clone())]),
        (
            &revoke,
            Some("https://evil.example".into()),
            vec![("csrf", alice_csrf.clone())],
        ),
        (
            &revoke,
            Some("null".into()),
            vec![("csrf", alice_csrf.clone())],
        ),
        (
            &revoke,
            Some("http://127.0.0.1".into()),
            vec![("csrf", alice_csrf.clone())],
        ),
        ("/logout", own.clone(), vec![("csrf", bob_csrf.clone())]),
    ];
    for (path, origin, fields) in attempts {
        let what = format!("{path} {origin:?} {fields:?}");
        let before = h.broker.admin().counts().await.unwrap();
        let resp = h
            .post_form(Post {
                path,
                cookie: Some(session_cookie(&alice)),
                origin,
                fields,
            })
            .await;
        assert_eq!(resp.status(), 403, "{what}");
        assert_page_headers(&what, &resp);
        let html = resp.text().await.unwrap();
        assert!(html.contains("This form has expired"), "{html}");
        assert_eq!(h.broker.admin().counts().await.unwrap(), before, "{what}");
    }
    // A cross-site fetch is refused even with the token.
    let resp = h
        .http
        .post(h.url(&revoke))
        .header("cookie", session_cookie(&alice))
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", alice_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A body that is no form at all.
    let resp = h
        .http
        .post(h.url(&revoke))
        .header("cookie", session_cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // GET never changes anything; a page session is no API bearer.
    for path in [revoke.as_str(), renew.as_str(), "/logout"] {
        let url = format!("{path}?csrf={alice_csrf}");
        let resp = h.get_page(&url, Some(&session_cookie(&alice))).await;
        assert!(!resp.status().is_success(), "GET {path}: {}", resp.status());
    }

    let live = h.api_leases(&alice).await.leases;
    assert_eq!(live.len(), 1, "the lease must still be live");
    assert_eq!(live[0].pin.to_string(), "127.0.0.1/32");
    h.access(&alice).await; // still signed in
    let kinds = h.audit_kinds().await;
    assert_eq!(
        kinds[refused..]
            .iter()
            .filter(|k| *k == "web_form_refused")
            .count(),
        9,
        "{kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k == "lease_revoked" || k == "logout"));

    // The sign-in form: no pre-session cookie, another one's token, or from elsewhere.
    let secret = h.add_user("carol").await;
    let token = h.login_form_token().await;
    let other = h.login_form_token().await;
    let logins = [
        (None, token.clone(), own.clone()),
        (
            Some(format!("__Host-gw_csrf={other}")),
            token.clone(),
            own.clone(),
        ),
        (
            Some(format!("__Host-gw_csrf={token}")),
            String::new(),
            own.clone(),
        ),
        (
            Some(format!("__Host-gw_csrf={token}")),
            token.clone(),
            Some("https://evil.example".into()),
        ),
    ];
    for (cookie, csrf, origin) in logins {
        let resp = h
            .post_form(Post {
                path: "/login",
                cookie,
                origin,
                fields: vec![
                    ("user", "carol".into()),
                    ("password", PASSWORD.into()),
                    ("code", code_now(&secret)),
                    ("csrf", csrf),
                ],
            })
            .await;
        assert_eq!(resp.status(), 403);
        assert!(set_cookie(&resp, "__Host-gw_session").is_none());
    }
    let kinds = h.audit_kinds().await;
    let logins_ok = kinds.iter().filter(|k| *k == "login_ok").count();
    assert_eq!(logins_ok, 2, "only alice and bob signed in: {kinds:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn the_revoke_form_revokes_and_the_renew_form_pins_here() {
    let h =
        Harness::with_config(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let alice = h.web_session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    // A lease asked for from another network (the proxy names the client).
    let resp = h
        .http
        .post(h.url("/v1/leases"))
        .bearer_auth(&alice)
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"edge": "home", "public_key": keypair().public_key()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let away = resp.json::<LeaseResponse>().await.unwrap().profile;
    assert_eq!(away.pin.to_string(), "198.51.100.7/32");
    let here = h.api_lease(&alice, "home").await.profile;

    let (html, csrf) = h.access(&alice).await;
    assert!(
        html.contains(r#"<span class="pinned-elsewhere muted">"#),
        "{html}"
    );
    let resp = h
        .session_post(
            &format!("/access/leases/{}/renew", away.lease_id),
            &alice,
            &csrf,
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/access?done=renewed");
    let leases = h.api_leases(&alice).await.leases;
    let renewed = leases.iter().find(|l| l.id == away.lease_id).unwrap();
    assert_eq!(renewed.pin.to_string(), "127.0.0.1/32");
    let log = h.broker.admin().audit_log().await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.kind, "lease_renewed");
    assert!(last
        .detail
        .as_deref()
        .unwrap()
        .contains("old_pin=198.51.100.7/32"));
    let resp = h
        .get_page("/access?done=renewed", Some(&session_cookie(&alice)))
        .await;
    let html = resp.text().await.unwrap();
    assert!(html.contains(r#"<p id="notice" class="notice" role="status">Lease renewed"#));
    assert!(!html.contains("pinned-elsewhere"), "{html}");
    // Nothing but the fixed words is read from the query.
    let resp = h
        .get_page("/access?done=%3Cb%3E", Some(&session_cookie(&alice)))
        .await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        !html.contains("id=\"notice\"") && !html.contains("<b>"),
        "{html}"
    );

    let resp = h
        .session_post(
            &format!("/access/leases/{}/revoke", here.lease_id),
            &alice,
            &csrf,
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/access?done=revoked");
    let leases = h.api_leases(&alice).await.leases;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].id, away.lease_id);
    let log = h.broker.admin().audit_log().await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_deref()),
        ("lease_revoked", Some("alice"))
    );
    assert!(last.detail.as_deref().unwrap().contains(&here.lease_id));

    // A lease that is gone: a page saying so, not a crash or a redirect.
    let resp = h
        .session_post(
            &format!("/access/leases/{}/revoke", here.lease_id),
            &alice,
            &csrf,
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_page_headers("revoke of a gone lease", &resp);
    h.shutdown().await;
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_broker() {
    let h = Harness::start().await;
    let alice = h.web_session("alice").await;
    let (_, csrf) = h.access(&alice).await;
    let resp = h.session_post("/logout", &alice, &csrf).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/login");
    let cleared = set_cookie(&resp, "__Host-gw_session").unwrap();
    assert_eq!(
        cleared,
        "__Host-gw_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
    );
    assert_eq!(h.audit_kinds().await.last().unwrap(), "logout");
    // A copy of the old cookie is worth nothing now, on the pages or the API.
    let resp = h.get_page("/access", Some(&session_cookie(&alice))).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/login");
    let resp = h
        .http
        .get(h.url("/v1/whoami"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
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
