//! The test's browser: form posts with chosen cookies and `Origin`, cookie parsing, and the
//! checks every page must pass (headers, and markup without inline script, style or handler).

use grantwire_proto::{LeaseListResponse, LeaseResponse};

use crate::common::*;

/// Written out here, not taken from the broker, so a change there fails.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";
pub const REFUSED: &str = r#"<p id="error" role="alert">wrong user name, password or code</p>"#;

/// A form post: its fields, and the cookie and `Origin` it is sent with.
pub struct Post<'a> {
    pub path: &'a str,
    pub cookie: Option<String>,
    pub origin: Option<String>,
    pub fields: Vec<(&'a str, String)>,
}

impl Harness {
    pub async fn get_page(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    pub async fn post_form(&self, post: Post<'_>) -> reqwest::Response {
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
    pub async fn login_form_token(&self) -> String {
        let resp = self.get_page("/login", None).await;
        assert_eq!(resp.status(), 200);
        let cookie = set_cookie(&resp, "__Host-gw_csrf").unwrap();
        let token = cookie_value(&cookie);
        assert_eq!(csrf_field(&resp.text().await.unwrap()), token);
        token
    }

    pub async fn page_login(&self, user: &str, password: &str, code: &str) -> reqwest::Response {
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
    pub async fn web_session(&self, user: &str) -> String {
        let secret = self.add_user(user).await;
        let resp = self.page_login(user, PASSWORD, &code_now(&secret)).await;
        assert_eq!(resp.status(), 303);
        cookie_value(&set_cookie(&resp, "__Host-gw_session").unwrap())
    }

    /// `/access` as `session` sees it: the page and its form token.
    pub async fn access(&self, session: &str) -> (String, String) {
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
    pub async fn session_post(&self, path: &str, session: &str, csrf: &str) -> reqwest::Response {
        self.post_form(Post {
            path,
            cookie: Some(session_cookie(session)),
            origin: Some(self.broker.url()),
            fields: vec![("csrf", csrf.into())],
        })
        .await
    }

    pub async fn api_leases(&self, token: &str) -> LeaseListResponse {
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

    pub async fn api_lease(&self, token: &str, edge: &str) -> LeaseResponse {
        let resp = self.request_lease(token, edge).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    pub async fn audit_kinds(&self) -> Vec<String> {
        let log = self.broker.admin().audit_log().await.unwrap();
        log.into_iter().map(|r| r.kind).collect()
    }
}

pub fn session_cookie(token: &str) -> String {
    format!("__Host-gw_session={token}")
}

/// The `Set-Cookie` header that sets `name`, if any.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&prefix))
}

pub fn cookie_value(set_cookie: &str) -> String {
    let (_, rest) = set_cookie.split_once('=').unwrap();
    rest.split(';').next().unwrap().to_owned()
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_field(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("no csrf field") + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_owned()
}

#[track_caller]
pub fn assert_page_headers(what: &str, resp: &reqwest::Response) {
    let h = resp.headers();
    let csp: Vec<_> = h.get_all("content-security-policy").iter().collect();
    assert_eq!(csp, [PAGE_CSP], "{what}");
    assert_eq!(h["content-type"], "text/html; charset=utf-8", "{what}");
    assert_eq!(h["cache-control"], "no-store", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    // Same-origin, so the browser's own form posts carry a real Origin (not `null`).
    let referrer: Vec<_> = h.get_all("referrer-policy").iter().collect();
    assert_eq!(referrer, ["same-origin"], "{what}");
    assert_eq!(h["strict-transport-security"], "max-age=31536000", "{what}");
}

/// No inline script, no `<style>` element, no `style=` attribute, no `on*=` handler, no
/// `javascript:` URL: what the page CSP would block anyway, so a page that needs one is broken.
#[track_caller]
pub fn assert_clean_markup(html: &str) {
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
pub fn tag_attributes(tag: &str) -> (String, Vec<String>) {
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

/// GETs a page anyone may load that carries a form (`/login`, `/welcome`): 200 with the page
/// rules and clean markup, a `__Host-gw_csrf` cookie with the page rules' flags whose token is
/// the form's, and no word naming the product or its version (a stranger learns nothing of what
/// answers). Returns the token and the page.
pub async fn anonymous_form_page(h: &Harness, path: &str, what: &str) -> (String, String) {
    let resp = h.get_page(path, None).await;
    assert_eq!(resp.status(), 200);
    assert_page_headers(path, &resp);
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
        assert!(!lower.contains(word), "{word} on the {what}: {html}");
    }
    (token, html)
}
