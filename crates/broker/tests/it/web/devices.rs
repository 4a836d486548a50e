//! "New device": the page, the browser-key post (`POST /devices`, JSON) and the server-key
//! fallback (`POST /devices/server-keys`), with their refusals. The page's script itself runs
//! in the browser tests (tests/browser_pages.rs); here is what it talks to.

use std::path::Path;

use base64::Engine as _;
use grantwire_proto::{PrivateKey, PublicKey};
use serde_json::Value;

use crate::common::*;
use crate::web::support::*;
use crate::web::welcome::{between, decode_qr};

/// A signed-in user `alice` with a grant on the enrolled edge `home`; her session and the
/// form token of her "New device" page.
async fn alice_with_grant(h: &Harness) -> (String, String) {
    let alice = h.web_session("alice").await;
    h.enrolled_edge("home").await;
    h.grant("alice", "home").await;
    let (_, csrf) = new_device_page(h, &alice).await;
    (alice, csrf)
}

async fn new_device_page(h: &Harness, session: &str) -> (String, String) {
    let resp = h
        .get_page("/devices/new", Some(&session_cookie(session)))
        .await;
    assert_eq!(resp.status(), 200);
    assert_page_headers("/devices/new", &resp);
    let html = resp.text().await.unwrap();
    assert_clean_markup(&html);
    let csrf = csrf_field(&html);
    (html, csrf)
}

fn device_fields(csrf: &str, edge: &str, public_key: Option<&str>) -> Vec<(&'static str, String)> {
    let mut fields = vec![("csrf", csrf.to_owned()), ("edge", edge.to_owned())];
    if let Some(k) = public_key {
        fields.push(("public_key", k.to_owned()));
    }
    fields
}

async fn post_device(
    h: &Harness,
    path: &str,
    session: &str,
    origin: Option<String>,
    fields: Vec<(&str, String)>,
) -> reqwest::Response {
    h.post_form(Post {
        path,
        cookie: Some(session_cookie(session)),
        origin,
        fields,
    })
    .await
}

/// Every file under `dir`, read whole (the database, its WAL, keys, logs).
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

#[track_caller]
fn assert_nowhere_under(dir: &Path, key: &PrivateKey) {
    let b64 = key.to_base64();
    for (path, bytes) in files_under(dir) {
        for needle in [b64.as_bytes(), key.as_bytes().as_slice()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the private key is in {path}"
            );
        }
    }
}

#[tokio::test]
async fn the_page_offers_the_granted_edges_and_posts_to_the_server_key_fallback() {
    let h = Harness::start().await;
    let (alice, _) = alice_with_grant(&h).await;
    h.enrolled_edge("cabin").await;
    let (html, _) = new_device_page(&h, &alice).await;
    assert!(
        html.contains(
            r#"<form id="new-device" method="post" action="/devices/server-keys" data-keys="server">"#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<option value="home">home</option>"#),
        "{html}"
    );
    assert!(
        !html.contains("cabin"),
        "an edge without a grant offered: {html}"
    );
    assert!(
        html.contains(r#"<code id="source-ip">127.0.0.1</code>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<script src="/assets/qr.js" defer></script>"#),
        "{html}"
    );
    // The access page links here.
    let (access, _) = h.access(&alice).await;
    assert!(access.contains(r#"href="/devices/new""#), "{access}");
    // Without a grant: no form at all.
    let bob = h.web_session("bob").await;
    let (html, _) = new_device_page(&h, &bob).await;
    assert!(!html.contains(r#"id="new-device""#), "{html}");
    assert!(html.contains(r#"id="no-grants""#), "{html}");
    // A stranger: the bare redirect.
    let resp = h.get_page("/devices/new", None).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/login");
    h.shutdown().await;
}

#[tokio::test]
async fn a_browser_made_key_gets_the_profile_without_a_private_key() {
    let h = Harness::start().await;
    let (alice, csrf) = alice_with_grant(&h).await;
    let key = keypair();
    let public = key.public_key().to_base64();
    let resp = post_device(
        &h,
        "/devices",
        &alice,
        Some(h.broker.url()),
        device_fields(&csrf, "home", Some(&public)),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    let keyless = body["conf_without_key"].as_str().unwrap();
    assert!(!keyless.contains("PrivateKey"), "{keyless}");
    assert!(
        keyless.contains("\n[Interface]\nAddress = 10."),
        "{keyless}"
    );
    assert_eq!(body["file_name"], "gw-home.conf");
    assert_eq!(body["pin"], "127.0.0.1/32");
    assert_eq!(body["edge"], "home");
    assert!(
        body["plex_url"].as_str().unwrap().starts_with("http://10."),
        "{body}"
    );
    assert!(keyless.contains(&format!("# Plex: {}\n", body["plex_url"].as_str().unwrap())));

    // The lease is on the browser's public key, pinned where the post came from.
    let leases = h.broker.admin().leases().list().await.unwrap().leases;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].id, body["lease_id"].as_str().unwrap());
    assert_eq!(leases[0].public_key, key.public_key());
    assert_eq!(leases[0].pin.to_string(), "127.0.0.1/32");
    assert_eq!(leases[0].expires_at, body["expires_at"].as_i64().unwrap());
    assert!(h.audit_kinds().await.contains(&"lease_issued".to_owned()));
    h.shutdown().await;
}

/// What is sent, from whom and where, the status and words of the message expected.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Option<String>,
    Vec<(&'a str, String)>,
    u16,
    &'a str,
);

#[tokio::test]
async fn the_browser_key_post_refuses_and_changes_nothing() {
    let h = Harness::start().await;
    let (alice, csrf) = alice_with_grant(&h).await;
    h.enrolled_edge("cabin").await;
    let public = keypair().public_key().to_base64();
    let other = PublicKey::from_bytes([9; 32]).unwrap().to_base64();
    let low_order = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let own = Some(h.broker.url());
    let cases: Vec<Case> = vec![
        (
            "no token",
            Some(&alice),
            own.clone(),
            device_fields("", "home", Some(&public)),
            403,
            "expired",
        ),
        (
            "wrong token",
            Some(&alice),
            own.clone(),
            device_fields("x", "home", Some(&public)),
            403,
            "expired",
        ),
        (
            "foreign origin",
            Some(&alice),
            Some("https://evil.example".into()),
            device_fields(&csrf, "home", Some(&public)),
            403,
            "expired",
        ),
        (
            "no key",
            Some(&alice),
            own.clone(),
            device_fields(&csrf, "home", None),
            400,
            "public_key",
        ),
        (
            "not a key",
            Some(&alice),
            own.clone(),
            device_fields(&csrf, "home", Some("abc")),
            400,
            "public_key",
        ),
        (
            "low-order key",
            Some(&alice),
            own.clone(),
            device_fields(&csrf, "home", Some(&low_order)),
            400,
            "public_key",
        ),
        (
            "no grant",
            Some(&alice),
            own.clone(),
            device_fields(&csrf, "cabin", Some(&other)),
            403,
            "grant",
        ),
        (
            "no such edge",
            Some(&alice),
            own.clone(),
            device_fields(&csrf, "attic", Some(&other)),
            404,
            "edge",
        ),
        (
            "no session",
            None,
            own.clone(),
            device_fields(&csrf, "home", Some(&public)),
            401,
            "unauthorized",
        ),
    ];
    for (what, session, origin, fields, status, words) in cases {
        let before = h.broker.admin().counts().await.unwrap();
        let mut req = h.http.post(h.url("/devices")).form(&fields);
        if let Some(s) = session {
            req = req.header("cookie", session_cookie(s));
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{what}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{what}");
        // DESIGN.md's error body, `code` included, whoever refused: the broker or the page.
        let body: grantwire_proto::ErrorBody = resp.json().await.unwrap();
        assert_eq!(body.error.code.http_status(), status, "{what}");
        let message = body.error.message;
        assert!(message.contains(words), "{what}: {message}");
        assert_eq!(h.broker.admin().counts().await.unwrap(), before, "{what}");
    }
    assert!(h
        .broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .is_empty());
    let refused = h.audit_kinds().await;
    assert_eq!(
        refused.iter().filter(|k| *k == "web_form_refused").count(),
        3,
        "{refused:?}"
    );
    h.shutdown().await;
}

/// An edge whose name is too long for a tunnel's name (which `grantwire up` refuses too) and
/// a name the broker's CLI refuses: both posts refuse them with the reason, and nothing is made.
/// The page used to cut the first into another edge's possible file name and issue the lease.
#[tokio::test]
async fn an_edge_name_the_cli_refuses_is_refused_and_nothing_is_made() {
    let h = Harness::start().await;
    let (alice, csrf) = alice_with_grant(&h).await;
    let long = "living-room-2";
    h.enrolled_edge(long).await;
    h.grant("alice", long).await;
    let public = keypair().public_key().to_base64();
    let own = Some(h.broker.url());
    for (edge, words) in [
        (long, "at most 12 characters"),
        ("Home", "edge name must be 1-32 characters of a-z, 0-9 and"),
        ("home.lan", "edge name must be"),
    ] {
        let before = h.broker.admin().counts().await.unwrap();
        let fields = device_fields(&csrf, edge, Some(&public));
        let resp = post_device(&h, "/devices", &alice, own.clone(), fields).await;
        assert_eq!(resp.status(), 400, "{edge}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{edge}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{edge}: {message}");

        let fields = device_fields(&csrf, edge, None);
        let resp = post_device(&h, "/devices/server-keys", &alice, own.clone(), fields).await;
        assert_eq!(resp.status(), 400, "{edge}");
        let html = resp.text().await.unwrap();
        assert!(html.contains(words), "{edge}: {html}");
        assert!(!html.contains("PrivateKey"), "{edge}");
        assert_eq!(h.broker.admin().counts().await.unwrap(), before, "{edge}");
    }
    assert!(h
        .broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn a_server_made_key_is_shown_once_and_kept_nowhere() {
    let h = Harness::start().await;
    let (alice, csrf) = alice_with_grant(&h).await;
    let resp = post_device(
        &h,
        "/devices/server-keys",
        &alice,
        Some(h.broker.url()),
        device_fields(&csrf, "home", None),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_page_headers("/devices/server-keys", &resp);
    let html = resp.text().await.unwrap();
    assert_clean_markup(&html);
    assert!(html.contains(r#"id="server-key-note""#), "{html}");

    // The file three ways: text, download and QR code, all the same.
    let shown = between(&html, r#"<pre id="device-conf">"#, "</pre>").replace("&#x27;", "'");
    let download = between(&html, "href=\"data:text/plain;base64,", "\"");
    let download = base64::engine::general_purpose::STANDARD
        .decode(download)
        .unwrap();
    assert_eq!(String::from_utf8(download).unwrap(), shown);
    assert!(html.contains(r#"download="gw-home.conf""#), "{html}");
    assert_eq!(decode_qr(&html), shown);

    // Its private key is the lease's pair.
    let line = shown
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .expect("no PrivateKey line");
    let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(line)
        .unwrap()
        .try_into()
        .unwrap();
    let key = PrivateKey::from_random_bytes(bytes);
    assert_eq!(key.to_base64(), line, "not a clamped key");
    let leases = h.broker.admin().leases().list().await.unwrap().leases;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].public_key, key.public_key());

    // ... and is nowhere after that answer: not in the data directory (database, WAL, keys,
    // anything) and not on any page.
    assert_nowhere_under(h.broker.data_dir(), &key);
    let (access, _) = h.access(&alice).await;
    let (again, _) = new_device_page(&h, &alice).await;
    for page in [access, again] {
        assert!(!page.contains(line), "{page}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn the_server_key_post_refuses_a_form_without_its_token() {
    let h = Harness::start().await;
    let (alice, csrf) = alice_with_grant(&h).await;
    let bob = h.web_session("bob").await;
    let (_, bob_csrf) = h.access(&bob).await;
    for (what, origin, token) in [
        ("none", Some(h.broker.url()), String::new()),
        ("bob's", Some(h.broker.url()), bob_csrf),
        (
            "foreign origin",
            Some("https://evil.example".to_owned()),
            csrf,
        ),
    ] {
        let before = h.broker.admin().counts().await.unwrap();
        let resp = post_device(
            &h,
            "/devices/server-keys",
            &alice,
            origin,
            device_fields(&token, "home", None),
        )
        .await;
        assert_eq!(resp.status(), 403, "{what}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("This form has expired"), "{what}: {html}");
        assert!(!html.contains("PrivateKey"), "{what}: {html}");
        assert_eq!(h.broker.admin().counts().await.unwrap(), before, "{what}");
    }
    // A stranger gets the bare redirect, and no lease.
    let resp = h
        .post_form(Post {
            path: "/devices/server-keys",
            cookie: None,
            origin: Some(h.broker.url()),
            fields: device_fields("x", "home", None),
        })
        .await;
    assert_eq!(resp.status(), 303);
    assert!(h
        .broker
        .admin()
        .leases()
        .list()
        .await
        .unwrap()
        .leases
        .is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn posts_that_prove_nothing_spend_nobodys_lease_budget() {
    // Two leases per address, and a clock that stands still so the bucket never refills:
    // any refused post that spent the budget would leave alice a 429.
    let clock = std::sync::Arc::new(grantwire_broker::clock::ManualClock::new());
    let h = Harness::with_config(move |c| {
        c.clock = clock;
        c.lease_rate = grantwire_broker::throttle::RateLimit {
            burst: 2,
            per_sec: 1,
        };
    })
    .await;
    let (alice, csrf) = alice_with_grant(&h).await;
    let public = keypair().public_key().to_base64();
    for _ in 0..3 {
        for (session, origin, token) in [
            (None, Some(h.broker.url()), csrf.clone()),
            (
                Some(&alice),
                Some("https://evil.example".to_owned()),
                csrf.clone(),
            ),
            (Some(&alice), Some(h.broker.url()), "x".to_owned()),
        ] {
            for path in ["/devices", "/devices/server-keys"] {
                let mut req =
                    h.http
                        .post(h.url(path))
                        .form(&device_fields(&token, "home", Some(&public)));
                if let Some(s) = session {
                    req = req.header("cookie", session_cookie(s));
                }
                if let Some(o) = &origin {
                    req = req.header("origin", o);
                }
                let status = req.send().await.unwrap().status().as_u16();
                assert!([303, 401, 403].contains(&status), "{path}: {status}");
            }
        }
    }
    let resp = post_device(
        &h,
        "/devices",
        &alice,
        Some(h.broker.url()),
        device_fields(&csrf, "home", Some(&public)),
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    h.shutdown().await;
}
/// Everything a stranger can tell from an answer: status, headers but the date, and body.
async fn answer(resp: reqwest::Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn assets_and_the_device_post_answer_a_stranger_as_a_missing_path_does() {
    let h = Harness::start().await;
    let missing = answer(h.get_page("/no/such/page", None).await).await;
    assert_eq!(missing.0, 401);
    let shaped_but_dead = "A".repeat(43);
    for path in ["/assets/app.js", "/assets/qr.js", "/assets/style.css"] {
        for cookie in [
            None,
            Some("__Host-gw_csrf=x".to_owned()),
            Some(format!("gw_session={shaped_but_dead}; other=1")),
        ] {
            let got = answer(h.get_page(path, cookie.as_deref()).await).await;
            assert_eq!(got, missing, "{path} {cookie:?}");
        }
        // Each of the pages' cookies is what a page's own request for it carries.
        for name in ["__Host-gw_csrf", "__Host-gw_enrol", "__Host-gw_session"] {
            let cookie = format!("{name}={shaped_but_dead}");
            let resp = h.get_page(path, Some(&cookie)).await;
            assert_eq!(resp.status(), 200, "{path} {name}");
        }
    }

    // The page script's post, from someone without a session (none, or one that has ended):
    // the same answer as a post to a path that does not exist, and nothing done.
    let (_, csrf) = alice_with_grant(&h).await;
    let before = h.broker.admin().counts().await.unwrap();
    let post = |path: &'static str, cookie: Option<String>| Post {
        path,
        cookie,
        origin: Some(h.broker.url()),
        fields: vec![
            ("csrf", csrf.clone()),
            ("edge", "home".into()),
            ("public_key", keypair().public_key().to_base64()),
        ],
    };
    let missing = answer(h.post_form(post("/no/such/page", None)).await).await;
    assert_eq!(missing.0, 401);
    for cookie in [None, Some(format!("__Host-gw_session={shaped_but_dead}"))] {
        let got = answer(h.post_form(post("/devices", cookie.clone())).await).await;
        assert_eq!(got, missing, "{cookie:?}");
    }
    assert_eq!(h.broker.admin().counts().await.unwrap(), before);
    h.shutdown().await;
}
