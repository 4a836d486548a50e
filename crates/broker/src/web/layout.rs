//! The page frame, the shared bits of markup, time rendering, and the two static assets.

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::has_page_cookie;
use crate::routes::{unrouted, AnyCaller};

/// The stylesheet and script, compiled in: nothing to install beside the binary, nothing
/// loaded from anywhere else. Served with the API's `no-store` like everything else: they
/// are a few kilobytes, and a stale copy after an upgrade would be worse.
const STYLE_CSS: &str = include_str!("assets/style.css");
const APP_JS: &str = include_str!("assets/app.js");
const QR_JS: &str = include_str!("assets/qr.js");

pub(super) async fn stylesheet(caller: Option<AnyCaller>, headers: HeaderMap) -> Response {
    asset(caller, &headers, "text/css; charset=utf-8", STYLE_CSS).await
}

pub(super) async fn script(caller: Option<AnyCaller>, headers: HeaderMap) -> Response {
    asset(caller, &headers, "text/javascript; charset=utf-8", APP_JS).await
}

/// The QR code encoder "New device" draws the profile with (the key never leaves the page).
pub(super) async fn qr_script(caller: Option<AnyCaller>, headers: HeaderMap) -> Response {
    asset(caller, &headers, "text/javascript; charset=utf-8", QR_JS).await
}

/// An asset, for a request from one of our pages (see [`has_page_cookie`]). Anything else gets
/// exactly what a path that does not exist answers: the assets are the most recognisable
/// thing the broker serves, and a scanner fetching them directly must learn nothing from them.
async fn asset(
    caller: Option<AnyCaller>,
    headers: &HeaderMap,
    kind: &'static str,
    body: &'static str,
) -> Response {
    if !has_page_cookie(headers) {
        return unrouted(caller).await.into_response();
    }
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Who is signed in, for the header's name and sign-out form.
pub(super) struct SignedIn<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
    /// Whether the header links to the admin pages.
    pub admin: bool,
}

/// The frame of every page. Without a signed-in user it says nothing about what the service
/// is: no product name, no version, no links.
pub(super) fn frame(title: &str, signed_in: Option<SignedIn<'_>>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                // An empty icon: otherwise every browser asks for /favicon.ico, gets the
                // API's 401 and reports a failed load.
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                @if let Some(who) = signed_in {
                    header {
                        a href="/access" class="brand" { "grantwire" }
                        @if who.admin {
                            a id="admin-link" href="/admin" { "Admin" }
                        }
                        span id="current-user" { (who.name) }
                        form id="logout" method="post" action="/logout" {
                            (csrf_field(who.csrf))
                            button id="logout-submit" type="submit" { "Sign out" }
                        }
                    }
                }
                main { (main) }
            }
        }
    }
}

/// The hidden form-token field every state-changing form carries.
pub(super) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A page with a heading and one sentence, for refusals and errors.
pub(super) fn message_page(title: &str, text: &str) -> Markup {
    frame(
        title,
        None,
        html! {
            h1 { (title) }
            p id="message" role="alert" { (text) }
            p { a href="/" { "Back" } }
        },
    )
}

/// The refusal of an admin change from a session signed in too long ago. Signed in, the
/// sign-in page leads straight back to `/access`, so the way there is through signing out.
pub(super) fn sign_in_again_page(csrf: &str) -> Markup {
    frame(
        "Sign in again",
        None,
        html! {
            h1 { "Sign in again" }
            p id="message" role="alert" { "Sign in again to make changes." }
            form id="sign-in-again" method="post" action="/logout" {
                (csrf_field(csrf))
                button id="sign-in-again-submit" type="submit" { "Sign out and sign in again" }
            }
            p { a id="login-link" href="/login" { "Sign in" } }
        },
    )
}

/// The last second humantime can print (9999-12-31T23:59:59Z); later times are shown as it,
/// never a panic, though the broker refuses to store anything that far out.
const LAST_PRINTABLE: u64 = 253_402_300_799;

/// Unix seconds as `2026-12-01 05:48 UTC`.
pub(super) fn utc(secs: i64) -> String {
    let Ok(secs) = u64::try_from(secs) else {
        return "before 1970".into();
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.min(LAST_PRINTABLE));
    // "2026-12-01T05:48:37Z"
    let text = humantime::format_rfc3339_seconds(at).to_string();
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// Unix seconds as the RFC 3339 text of a `<time datetime>`.
pub(super) fn rfc3339(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0).min(LAST_PRINTABLE);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Time left until an expiry, the way `app.js` renders it too: "in 7 h 59 min".
pub(super) fn countdown(left_secs: i64) -> String {
    if left_secs <= 0 {
        return "now".into();
    }
    let (days, hours, mins) = (
        left_secs / 86_400,
        left_secs % 86_400 / 3600,
        left_secs % 3600 / 60,
    );
    if days > 0 {
        format!("in {days} d {hours} h")
    } else if hours > 0 {
        format!("in {hours} h {mins} min")
    } else if mins > 0 {
        format!("in {mins} min")
    } else {
        "in under a minute".into()
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn countdowns_read_like_a_person_would_say_them() {
        assert_eq!(countdown(8 * 3600 - 30), "in 7 h 59 min");
        assert_eq!(countdown(3600), "in 1 h 0 min");
        assert_eq!(countdown(59 * 60 + 59), "in 59 min");
        assert_eq!(countdown(59), "in under a minute");
        assert_eq!(countdown(0), "now");
        assert_eq!(countdown(2 * 86_400 + 3 * 3600 + 5), "in 2 d 3 h");
    }

    #[test]
    fn times_are_absolute_utc() {
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(-1), "before 1970");
        assert_eq!(utc(i64::MAX), "9999-12-31 23:59 UTC");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn what_a_user_typed_is_escaped_in_text_and_attributes() {
        let name = "<script>alert(1)</script>\"'&";
        let page = frame(
            "t",
            Some(SignedIn {
                name,
                csrf: "\"><script>x</script>",
                admin: false,
            }),
            message_page("m", name),
        )
        .into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("\"><script>x"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"),
            "{page}"
        );
        assert!(
            page.contains("value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""),
            "{page}"
        );
    }

    #[test]
    fn the_signed_out_frame_does_not_say_what_the_service_is() {
        let page = message_page("Sign in", "x").into_string().to_lowercase();
        for word in ["grantwire", "plex", "wireguard", env!("CARGO_PKG_VERSION")] {
            assert!(!page.contains(word), "{word} in {page}");
        }
        let signed_in = frame(
            "t",
            Some(SignedIn {
                name: "a",
                csrf: "c",
                admin: false,
            }),
            html! {},
        );
        assert!(signed_in.into_string().contains("grantwire"));
    }

    #[test]
    fn only_an_admin_sees_the_admin_link() {
        for admin in [false, true] {
            let who = SignedIn {
                name: "a",
                csrf: "c",
                admin,
            };
            let page = frame("t", Some(who), html! {}).into_string();
            assert_eq!(page.contains(r#"href="/admin""#), admin, "{page}");
        }
    }
}
