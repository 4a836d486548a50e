//! Refusals on the set-up pages: a wrong, unknown or expired temporary password, a post
//! without its form token or from another origin, and the login budget; none changes anything.

use grantwire_broker::throttle::RateLimit;

use crate::web::support::*;
use crate::web::welcome::*;
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

    let enrol = h.start_setup(&bob).await;
    let page = h.app_page(&enrol).await;
    let pending = h
        .broker
        .admin()
        .invites()
        .pending(&enrol)
        .await
        .unwrap()
        .unwrap();
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
    // The pre-session double submit does not pass here: the form is bound to the set-up.
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
    // Without the set-up's cookie there is nothing to finish: back to the start.
    let resp = h.post_form(finish(&page.csrf, String::new(), own)).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/welcome");
    // Nothing counted: the set-up is as it was, with no failure on the account.
    let still = h
        .broker
        .admin()
        .invites()
        .pending(&enrol)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.totp_secret, pending.totp_secret);
    let users = h.broker.admin().accounts().list().await.unwrap();
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
    let enrol = h.start_setup(&bob).await;
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
    assert!(h
        .broker
        .admin()
        .invites()
        .pending(&enrol)
        .await
        .unwrap()
        .is_some());

    clock.advance(std::time::Duration::from_secs(1));
    let code = code_at(&secret, &clock);
    let resp = h
        .finish(&enrol, &page.csrf, [NEW_PASSWORD, NEW_PASSWORD, &code])
        .await;
    assert_eq!(resp.status(), 303);
    assert!(set_cookie(&resp, "__Host-gw_session").is_some());
    h.shutdown().await;
}
