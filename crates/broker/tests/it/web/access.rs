//! "My access" and its forms: what the page lists, the lease forms, refused forms, sign-out.

use grantwire_proto::LeaseResponse;
use serde_json::json;

use crate::common::*;
use crate::web::support::*;

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
        !html.contains(theirs.lease_id.as_str()),
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
    assert!(last
        .detail
        .as_deref()
        .unwrap()
        .contains(here.lease_id.as_str()));

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
