//! Sessions by cookie, form tokens (CSRF) and the same-origin check of form posts. The scheme
//! is described in the module doc of [`crate::web`].

use std::net::IpAddr;

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;

use super::PageError;
use crate::broker::Broker;
use crate::error::Error;
use crate::routes::ClientIp;
use crate::secrets;
use crate::store::users::SessionUser;

/// The session cookie. `__Host-`: the browser keeps it only if it is `Secure`, has `Path=/`
/// and no `Domain`, so no other host (a sibling subdomain included) can set or shadow it.
pub(super) const SESSION_COOKIE: &str = "__Host-gw_session";
/// The sign-in form's pre-session token (double submit).
pub(super) const LOGIN_CSRF_COOKIE: &str = "__Host-gw_csrf";
/// The token of a set-up under way ([`Invites::begin`]), between accepting the
/// temporary password and confirming a code: a bearer secret like the session token.
pub(super) const WELCOME_COOKIE: &str = "__Host-gw_enrol";

/// A `Set-Cookie` value with the flags every cookie of ours has; `max_age` `None` makes a
/// cookie that ends with the browser session.
pub(super) fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Some(secs) = max_age {
        text.push_str(&format!("; Max-Age={}", secs.max(0)));
    }
    // Our names and base64url values are visible ASCII.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name`, from any of the request's `Cookie` headers.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A new random pre-session token, or the one the browser already holds.
pub(super) fn login_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, LOGIN_CSRF_COOKIE).filter(|v| is_token_shaped(v)) {
        Some(v) => (v.to_owned(), false),
        None => (URL_SAFE_NO_PAD.encode(secrets::random_bytes::<32>()), true),
    }
}

/// Whether the request carries one of the pages' own cookies (session, sign-in form token or
/// set-up), as every request a page of ours makes for its stylesheet and scripts does: the
/// browser got the cookie with the page. Not proof of anything (a stranger may load `/login`
/// and take its cookie), but a request without one did not come from our pages, and gets the
/// answer of a path that does not exist.
pub(super) fn has_page_cookie(headers: &HeaderMap) -> bool {
    [SESSION_COOKIE, LOGIN_CSRF_COOKIE, WELCOME_COOKIE]
        .iter()
        .any(|name| cookie(headers, name).is_some_and(is_token_shaped))
}

/// 32 bytes in base64url, the shape of every token we hand out; anything else is not ours.
fn is_token_shaped(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A page request with a live session from the session cookie. Without one the page answers
/// with a bare redirect to the sign-in page ([`PageError::NeedLogin`]).
pub(crate) struct WebSession {
    pub user: SessionUser,
    /// This session's form token.
    pub csrf: String,
}

impl FromRequestParts<Broker> for WebSession {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, PageError> {
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(PageError::NeedLogin)?;
        let user = match broker.sessions().user_of(token).await {
            Ok(user) => user,
            Err(Error::Unauthorized) => return Err(PageError::NeedLogin),
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            user,
            csrf: form_token(broker, token),
        })
    }
}

impl OptionalFromRequestParts<Broker> for WebSession {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        broker: &Broker,
    ) -> Result<Option<Self>, PageError> {
        match <Self as FromRequestParts<Broker>>::from_request_parts(parts, broker).await {
            Ok(session) => Ok(Some(session)),
            Err(PageError::NeedLogin) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The form token of a session or a set-up: HMAC-SHA256 of the token's stored hash under
/// the form key. Both tokens are 256 random bits, so one's form token never passes as the
/// other's.
pub(super) fn form_token(broker: &Broker, bearer_token: &str) -> String {
    let tag = ring::hmac::sign(
        broker.auth().seal.form_key(),
        &secrets::token_hash(bearer_token),
    );
    URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// What a state-changing post is checked against before it may change anything: where the
/// browser says it comes from, and the pre-session cookie of the sign-in form.
pub(crate) struct FormGuard {
    pub ip: IpAddr,
    foreign: bool,
    login_cookie: Option<String>,
}

impl FromRequestParts<Broker> for FormGuard {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, broker: &Broker) -> Result<Self, PageError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, broker).await?;
        Ok(Self {
            ip,
            foreign: is_foreign(parts),
            login_cookie: cookie(&parts.headers, LOGIN_CSRF_COOKIE).map(str::to_owned),
        })
    }
}

impl FormGuard {
    /// Passes a signed-in form whose token is the session's.
    pub async fn session_form(
        &self,
        broker: &Broker,
        session: &WebSession,
        presented: &str,
        form: &str,
    ) -> Result<(), PageError> {
        let expected = Some(session.csrf.as_str());
        self.check(broker, Some(&session.user.name), expected, presented, form)
            .await
    }

    /// Passes a form shown before sign-in (`login`, `welcome`) when its token equals the
    /// pre-session cookie.
    pub async fn pre_session_form(
        &self,
        broker: &Broker,
        presented: &str,
        form: &str,
    ) -> Result<(), PageError> {
        let expected = self.login_cookie.as_deref();
        self.check(broker, None, expected, presented, form).await
    }

    /// Passes the set-up's form when its token is [`form_token`] of the set-up token.
    pub async fn welcome_form(
        &self,
        broker: &Broker,
        setup_token: &str,
        presented: &str,
    ) -> Result<(), PageError> {
        let expected = form_token(broker, setup_token);
        self.check(broker, None, Some(&expected), presented, "enrol")
            .await
    }

    async fn check(
        &self,
        broker: &Broker,
        actor: Option<&str>,
        expected: Option<&str>,
        presented: &str,
        form: &str,
    ) -> Result<(), PageError> {
        let reason = if self.foreign {
            "foreign origin"
        } else if expected.is_some_and(|e| tokens_match(e, presented)) {
            return Ok(());
        } else {
            "bad form token"
        };
        tracing::info!(form, source = %self.ip, reason, "web form refused");
        // Best effort: the refusal stands whether or not the audit row could be written.
        if let Err(e) = broker
            .audit()
            .form_refused(actor, self.ip, form, reason)
            .await
        {
            tracing::info!(error = %e, "auditing a refused form failed");
        }
        Err(PageError::FormExpired)
    }
}

/// Constant-time equality of two non-empty tokens (an empty expected token matches nothing).
fn tokens_match(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether the browser says the post comes from another site: an `Origin` that is not
/// `https://` + this request's host, or `Sec-Fetch-Site: cross-site`/`same-site`. A post
/// with neither header (an old browser, a script) is left to the form token.
fn is_foreign(parts: &Parts) -> bool {
    let headers = &parts.headers;
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return true;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the request's authority.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return true;
    };
    let own = format!("https://{host}");
    !origin.as_bytes().eq_ignore_ascii_case(own.as_bytes())
}

/// A url-encoded form body. A body that is not one carries no form token, so it is refused
/// like a post without one: 403, nothing done.
pub(crate) struct PageForm<T>(pub T);

impl<S, T> FromRequest<S> for PageForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Self(v))
            .map_err(|_| PageError::FormExpired)
    }
}

/// The body of a signed-in form that carries nothing but its token.
#[derive(serde::Deserialize)]
pub(crate) struct TokenOnly {
    #[serde(default)]
    pub csrf: String,
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_across_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-gw_csrf=x"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-gw_session=tok"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, LOGIN_CSRF_COOKIE), Some("x"));
        assert_eq!(cookie(&h, "gw_session"), None);
    }

    #[test]
    fn a_malformed_pre_session_cookie_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-gw_csrf=short"),
        );
        let (token, new) = login_token(&h);
        assert!(new && is_token_shaped(&token), "{token}");
        let cookie = format!("__Host-gw_csrf={token}");
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert_eq!(login_token(&h), (token, false));
    }

    #[test]
    fn tokens_match_only_when_equal_and_non_empty() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn cookie_flags() {
        let v = set_cookie(SESSION_COOKIE, "t", Some(60));
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-gw_session=t; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=60"
        );
    }
}
