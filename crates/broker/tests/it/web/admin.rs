//! The admin pages over real HTTPS: what each form does (checked through the broker, not the
//! page that answers), that secrets shown once stay off every later page, and the refusals:
//! non-admins, strangers, missing tokens, foreign origins and sessions not signed in recently.

use std::sync::Arc;
use std::time::Duration;

use grantwire_broker::alerts::Webhook;
use grantwire_broker::clock::{Clock as _, ManualClock};
use grantwire_proto::{EnrolResponse, UserAddRequest, UserInviteResponse, UserNameRequest};
use serde_json::json;

use crate::common::*;
use crate::web::support::*;
use crate::web::welcome::{between, code_at, decode_qr, NEW_PASSWORD};

/// Every admin page a GET reaches.
const PAGES: [&str; 7] = [
    "/admin",
    "/admin/users",
    "/admin/edges",
    "/admin/grants",
    "/admin/leases",
    "/admin/audit",
    "/admin/alerts",
];

/// A broker with a manual clock and a signed-in admin `root`.
struct Admin {
    h: Harness,
    clock: Arc<ManualClock>,
    session: String,
    csrf: String,
}

impl Admin {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With alerts sent to `webhook`.
    async fn start_with(webhook: Option<Webhook>) -> Self {
        let clock = Arc::new(ManualClock::new());
        let c = clock.clone();
        let h = Harness::with_config(move |config| {
            config.clock = c;
            config.session_ttl = Duration::from_secs(3600);
            config.alert_webhook = webhook;
        })
        .await;
        let secret = add_user(&h, "root", true).await;
        let session = sign_in(&h, &clock, "root", &secret).await;
        let csrf = csrf_field(&page(&h, "/admin", &session).await);
        Self {
            h,
            clock,
            session,
            csrf,
        }
    }

    async fn page(&self, path: &str) -> String {
        page(&self.h, path, &self.session).await
    }

    /// A form post of the admin's, from the broker's own origin, with the session's token.
    async fn post(&self, path: &str, fields: &[(&'static str, &str)]) -> reqwest::Response {
        let mut fields: Vec<(&str, String)> =
            fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
        fields.push(("csrf", self.csrf.clone()));
        self.h
            .post_form(Post {
                path,
                cookie: Some(session_cookie(&self.session)),
                origin: Some(self.h.broker.url()),
                fields,
            })
            .await
    }

    /// A post that must redirect back to its section with `done`.
    async fn post_done(&self, path: &str, fields: &[(&'static str, &str)], to: &str) {
        let resp = self.post(path, fields).await;
        assert_eq!(resp.status(), 303, "{path}: {}", resp.text().await.unwrap());
        assert_eq!(resp.headers()["location"], to, "{path}");
        assert_eq!(resp.text().await.unwrap(), "");
    }

    /// A show-once result page: 200 with the page rules.
    async fn post_result(&self, path: &str, fields: &[(&'static str, &str)]) -> String {
        let resp = self.post(path, fields).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_page_headers(path, &resp);
        let html = resp.text().await.unwrap();
        assert_clean_markup(&html);
        html
    }

    /// Moves the clock past the current TOTP step, so a user may sign in again.
    fn next_step(&self) {
        self.clock.advance(Duration::from_secs(30));
    }

    /// Fails if `secret` shows on any page a GET loads, the admin's or the user's.
    async fn assert_on_no_page(&self, secret: &str) {
        assert!(
            secret.len() >= 16,
            "not a secret worth looking for: {secret}"
        );
        for path in PAGES.iter().copied().chain(["/access"]) {
            let html = self.page(path).await;
            assert!(!html.contains(secret), "{secret} on {path}");
        }
        let audit = self.page("/admin/audit?since=1h").await;
        assert!(!audit.contains(secret));
    }
}

async fn add_user(h: &Harness, name: &str, admin: bool) -> Vec<u8> {
    let req = UserAddRequest {
        name: name.into(),
        password: PASSWORD.into(),
        admin,
    };
    let added = h.broker.admin().accounts().add(req).await.unwrap();
    data_encoding::BASE32_NOPAD
        .decode(added.totp_secret.as_bytes())
        .unwrap()
}

fn code(secret: &[u8], clock: &ManualClock) -> String {
    code_at(&data_encoding::BASE32_NOPAD.encode(secret), clock)
}

async fn sign_in(h: &Harness, clock: &ManualClock, name: &str, secret: &[u8]) -> String {
    let resp = h.page_login(name, PASSWORD, &code(secret, clock)).await;
    assert_eq!(resp.status(), 303, "{name} could not sign in");
    cookie_value(&set_cookie(&resp, "__Host-gw_session").unwrap())
}

/// A page `session` may see: 200, the page headers and clean markup.
async fn page(h: &Harness, path: &str, session: &str) -> String {
    let resp = h.get_page(path, Some(&session_cookie(session))).await;
    assert_eq!(resp.status(), 200, "{path}");
    assert_page_headers(path, &resp);
    let html = resp.text().await.unwrap();
    assert_clean_markup(&html);
    html
}

/// Everything an admin form can change, to compare before and after a refused post.
async fn snapshot(h: &Harness) -> String {
    let b = h.broker.admin();
    let edges: Vec<_> = (b.edges().list().await.unwrap().edges.into_iter())
        .map(|e| (e.name, e.enrolled))
        .collect();
    let grants: Vec<_> = (b.grants().list().await.unwrap().grants.into_iter())
        .map(|g| (g.user, g.edge, g.ports, g.expires_at))
        .collect();
    let leases: Vec<_> = (b.leases().list().await.unwrap().leases.into_iter())
        .map(|l| l.id)
        .collect();
    format!(
        "{:?} {:?} {edges:?} {grants:?} {leases:?}",
        b.counts().await.unwrap(),
        b.accounts().list().await.unwrap().users,
    )
}

/// The audit kinds written since `from`.
async fn kinds_since(h: &Harness, from: usize) -> Vec<String> {
    h.audit_kinds().await[from..].to_vec()
}

/// Every `<input>` that is not hidden has a `<label for=` its id.
#[track_caller]
fn assert_inputs_labelled(html: &str) {
    for tag in html
        .split("<input ")
        .skip(1)
        .chain(html.split("<select ").skip(1))
    {
        let tag = &tag[..tag.find('>').unwrap()];
        if tag.contains(r#"type="hidden""#) || tag.contains(" hidden") {
            continue;
        }
        let id = between(tag, r#"id=""#, "\"");
        assert!(
            html.contains(&format!(r#"<label for="{id}">"#)),
            "no label for {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_page_meets_the_page_rules_and_the_header_links_admins_there() {
    let a = Admin::start().await;
    a.h.enrolled_edge("home").await;
    let secret = add_user(&a.h, "alice", false).await;
    a.h.grant("alice", "home").await;
    let alice = sign_in(&a.h, &a.clock, "alice", &secret).await;
    a.h.api_lease(&alice, "home").await;
    for path in PAGES {
        let html = a.page(path).await;
        assert!(html.contains(r#"<a id="admin-link" href="/admin">Admin</a>"#));
        assert!(html.contains(r#"<nav id="admin-nav" aria-label="Administration">"#));
        assert_inputs_labelled(&html);
        // Tables become labelled blocks on a narrow screen: every data cell has its label.
        for cell in html.split("<td ").skip(1) {
            let attrs = &cell[..cell.find('>').unwrap()];
            assert!(
                attrs.contains("data-label=") || attrs.contains(r#"class="actions""#),
                "{path}: <td {attrs}>"
            );
        }
    }
    let users = a.page("/admin/users").await;
    for needle in [
        r#"<tr data-user="alice">"#,
        r#"<td data-label="State" class="state">active</td>"#,
        r#"<form class="disable" method="post" action="/admin/users/alice/disable">"#,
        r#"<form id="invite" class="admin-form" method="post" action="/admin/users/invite">"#,
    ] {
        assert!(users.contains(needle), "{needle} not in {users}");
    }
    let leases = a.page("/admin/leases").await;
    assert!(leases.contains(r#"<td data-label="User" class="user">alice</td>"#));
    let edges = a.page("/admin/edges").await;
    assert!(edges.contains(r#"<td data-label="State" class="state">not connected</td>"#));
    // The name fields say no before a post, by the rule the broker parses names with.
    let name_field = |id: &str| {
        format!(
            r#"<input id="{id}" name="name" type="text" required maxlength="{}" pattern="{}""#,
            grantwire_proto::UserName::MAX_LEN,
            grantwire_proto::UserName::HTML_PATTERN
        )
    };
    assert!(users.contains(&name_field("invite-name")), "{users}");
    assert!(edges.contains(&name_field("edge-name-input")), "{edges}");
    // The header links an admin to the admin pages from their own access page too; nobody else.
    assert!(page(&a.h, "/access", &a.session)
        .await
        .contains(r#"href="/admin""#));
    assert!(!page(&a.h, "/access", &alice)
        .await
        .contains(r#"href="/admin""#));
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_invites_a_user_who_then_sets_up_their_account() {
    let a = Admin::start().await;
    let html = a
        .post_result("/admin/users/invite", &[("name", "bob"), ("hours", "48")])
        .await;
    let password = between(&html, r#"<code id="temporary-password">"#, "<").to_owned();
    let welcome = between(&html, r#"<code id="welcome-url">"#, "<").to_owned();
    assert_eq!(welcome, format!("{}/welcome", a.h.broker.url()));
    // A self-signed broker: the admin is told the friend's browser will warn, and by what
    // fingerprint the friend tells this broker's certificate apart.
    let note = between(&html, r#"<p id="certificate-note" class="notice">"#, "</p>");
    assert!(note.contains("will warn"), "{note}");
    let shown: String = between(&html, r#"<code id="certificate-fingerprint">"#, "<")
        .split_whitespace()
        .collect();
    assert_eq!(shown, a.h.broker.fingerprint());
    let users = a.h.broker.admin().accounts().list().await.unwrap().users;
    let bob = users.iter().find(|u| u.name == "bob").unwrap();
    assert!(!bob.admin);
    let until = bob.invited_until.unwrap();
    let hours = (until - a.clock.now_secs()) as f64 / 3600.0;
    assert!((47.9..=48.0).contains(&hours), "{hours}");
    let page = a.page("/admin/users").await;
    assert!(page.contains(r#"<td data-label="State" class="state">invited</td>"#));
    a.assert_on_no_page(&password).await;

    // Bob sets up with what the page showed.
    let invited = UserInviteResponse {
        name: "bob".into(),
        admin: false,
        temporary_password: password,
        expires_at: until,
    };
    let enrol = a.h.start_setup(&invited).await;
    let app = a.h.app_page(&enrol).await;
    let secret = between(&decode_qr(&app.html), "secret=", "&").to_owned();
    let resp =
        a.h.finish(
            &enrol,
            &app.csrf,
            [NEW_PASSWORD, NEW_PASSWORD, &code_at(&secret, &a.clock)],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/access");
    let page = a.page("/admin/users").await;
    let row = between(&page, r#"<tr data-user="bob">"#, "</tr>");
    assert!(row.contains(">active<"), "{row}");

    // An admin invitation makes an admin; a bad name is refused with the service's words.
    a.post_result(
        "/admin/users/invite",
        &[("name", "carol"), ("admin", "yes"), ("hours", "")],
    )
    .await;
    let users = a.h.broker.admin().accounts().list().await.unwrap().users;
    assert!(users.iter().any(|u| u.name == "carol" && u.admin));
    let resp = a.post("/admin/users/invite", &[("name", "Not OK")]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("user name must be"));
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_refuses_sign_in_and_enabling_allows_it_again() {
    let a = Admin::start().await;
    let secret = add_user(&a.h, "alice", false).await;
    let alice = sign_in(&a.h, &a.clock, "alice", &secret).await;
    a.post_done(
        "/admin/users/alice/disable",
        &[],
        "/admin/users?done=disabled",
    )
    .await;
    let users = a.page("/admin/users?done=disabled").await;
    assert!(users.contains(r#"<p id="notice" class="notice" role="status">User disabled"#));
    let row = between(&users, r#"<tr data-user="alice">"#, "</tr>");
    assert!(row.contains(">disabled<") && row.contains("/admin/users/alice/enable"));
    // Her session ended, and she cannot sign in.
    let resp = a.h.get_page("/access", Some(&session_cookie(&alice))).await;
    assert_eq!(resp.status(), 303);
    a.next_step();
    let resp =
        a.h.page_login("alice", PASSWORD, &code(&secret, &a.clock))
            .await;
    assert_eq!(resp.status(), 401);

    a.post_done(
        "/admin/users/alice/enable",
        &[],
        "/admin/users?done=enabled",
    )
    .await;
    a.next_step();
    sign_in(&a.h, &a.clock, "alice", &secret).await;
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_shows_a_new_password_once_and_ends_the_users_leases() {
    let a = Admin::start().await;
    let (secret, lease) = targets(&a).await;
    assert!(a.page("/admin/leases").await.contains(&lease));
    let html = a
        .post_result("/admin/users/alice/reset-password", &[])
        .await;
    let shown = between(&html, r#"<code id="new-password">"#, "<").to_owned();
    assert!(html.contains("their sessions and leases are ended"));
    assert!(
        !a.page("/admin/leases").await.contains(&lease),
        "her lease ended"
    );
    a.next_step();
    let resp =
        a.h.page_login("alice", PASSWORD, &code(&secret, &a.clock))
            .await;
    assert_eq!(resp.status(), 401, "the old password no longer works");
    a.next_step();
    let resp =
        a.h.page_login("alice", &shown, &code(&secret, &a.clock))
            .await;
    assert_eq!(
        resp.status(),
        303,
        "the shown password and her authenticator work"
    );
    a.assert_on_no_page(&shown).await;
    let log = a.h.broker.admin().audit_log().await.unwrap();
    assert!(log.iter().any(|r| r.kind == "user_password_reset"));
    assert!(!log
        .iter()
        .any(|r| r.detail.as_deref().unwrap_or("").contains(&shown)));
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_user_ends_their_leases_and_takes_them_off_the_list() {
    let a = Admin::start().await;
    let (secret, lease) = targets(&a).await;
    assert!(a.page("/admin/leases").await.contains(&lease));
    a.post_done(
        "/admin/users/alice/remove",
        &[],
        "/admin/users?done=removed",
    )
    .await;
    let users = a.page("/admin/users?done=removed").await;
    assert!(users.contains(r#"<p id="notice" class="notice" role="status">User removed"#));
    assert!(!users.contains(r#"<tr data-user="alice">"#));
    assert!(!a.page("/admin/leases").await.contains(&lease));
    assert!(!a.page("/admin/grants").await.contains("alice"));
    a.next_step();
    let resp =
        a.h.page_login("alice", PASSWORD, &code(&secret, &a.clock))
            .await;
    assert_eq!(resp.status(), 401);
    // Removing her again is a plain not-found, and changes nothing.
    let before = snapshot(&a.h).await;
    let resp = a.post("/admin/users/alice/remove", &[]).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(snapshot(&a.h).await, before);
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resetting_totp_shows_a_new_secret_once_and_the_old_codes_stop_working() {
    let a = Admin::start().await;
    let old = add_user(&a.h, "alice", false).await;
    let html = a.post_result("/admin/users/alice/reset-totp", &[]).await;
    let shown: String = between(&html, r#"<code id="totp-secret">"#, "<")
        .split(' ')
        .collect();
    let uri = decode_qr(&html);
    assert!(
        uri.starts_with("otpauth://totp/grantwire:alice?secret="),
        "{uri}"
    );
    assert_eq!(between(&uri, "secret=", "&"), shown);
    assert_ne!(shown, data_encoding::BASE32_NOPAD.encode(&old));

    let resp =
        a.h.page_login("alice", PASSWORD, &code(&old, &a.clock))
            .await;
    assert_eq!(resp.status(), 401);
    a.next_step();
    let resp =
        a.h.page_login("alice", PASSWORD, &code_at(&shown, &a.clock))
            .await;
    assert_eq!(resp.status(), 303);
    a.assert_on_no_page(&shown).await;
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_added_edge_enrols_with_the_token_shown_once_and_can_be_removed() {
    let a = Admin::start().await;
    let html = a
        .post_result(
            "/admin/edges",
            &[
                ("name", "cabin"),
                ("endpoint", "192.0.2.7:51820"),
                ("subnet", "10.78.0.0/24"),
            ],
        )
        .await;
    let token = between(&html, r#"<code id="enrolment-token">"#, "<").to_owned();
    let edges = a.h.broker.admin().edges().list().await.unwrap().edges;
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].subnet.to_string(), "10.78.0.0/24");
    assert_eq!(edges[0].endpoints, ["192.0.2.7:51820"]);
    // The page says until when the token works, as `edge list` does.
    let until = between(&html, r#"<time id="enrolment-expires" datetime=""#, "\"");
    let listed = edges[0].enrolment_expires_at.unwrap();
    let want = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(listed as u64),
    )
    .to_string();
    assert_eq!(until, want);
    a.assert_on_no_page(&token).await;

    let key = keypair().public_key();
    let body = json!({"token": token, "public_key": key});
    let resp = a.h.post("/v1/edge/enrol", None, &body).await;
    assert_eq!(resp.status(), 200);
    let _: EnrolResponse = resp.json().await.unwrap();
    let edges = a.page("/admin/edges").await;
    assert!(edges.contains(r#"<td data-label="State" class="state">not connected</td>"#));

    a.post_done(
        "/admin/edges/cabin/remove",
        &[],
        "/admin/edges?done=removed",
    )
    .await;
    assert!(a
        .h
        .broker
        .admin()
        .edges()
        .list()
        .await
        .unwrap()
        .edges
        .is_empty());
    assert!(a.page("/admin/edges").await.contains(r#"id="no-edges""#));
    // A bad endpoint is refused with the service's words, and nothing is added.
    let resp = a
        .post("/admin/edges", &[("name", "x"), ("endpoint", "nowhere")])
        .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("HOST:PORT"));
    assert!(a
        .h
        .broker
        .admin()
        .edges()
        .list()
        .await
        .unwrap()
        .edges
        .is_empty());
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_added_on_the_page_shows_on_the_users_access_until_revoked() {
    let a = Admin::start().await;
    a.h.enrolled_edge("home").await;
    let secret = add_user(&a.h, "alice", false).await;
    let alice = sign_in(&a.h, &a.clock, "alice", &secret).await;
    let (html, _) = a.h.access(&alice).await;
    assert!(html.contains(r#"id="no-grants""#));

    a.post_done(
        "/admin/grants",
        &[
            ("user", "alice"),
            ("edge", "home"),
            ("lease_hours", "2"),
            ("ends_hours", "24"),
            ("ports", "32400, 8080"),
            ("pin_prefix4", "24"),
            ("pin_prefix6", ""),
        ],
        "/admin/grants?done=added",
    )
    .await;
    let grants = a.h.broker.admin().grants().list().await.unwrap().grants;
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(
        (g.lease_ttl_secs, g.ports.clone()),
        (7200, vec![8080, 32400])
    );
    assert_eq!((g.pin_prefix4, g.pin_prefix6), (24, 64));
    let left = g.expires_at.unwrap() - now() as i64;
    assert!((24 * 3600 - 60..=24 * 3600).contains(&left), "{left}");
    // The audit names the admin who did it, and from where, right before the grant's row.
    let log = a.h.broker.admin().audit_log().await.unwrap();
    let at = log.iter().rposition(|r| r.kind == "grant_added").unwrap();
    let who = &log[at - 1];
    assert_eq!(who.kind, "web_admin_change");
    assert_eq!(who.actor.as_deref(), Some("root"));
    assert_eq!(who.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        who.detail.as_deref(),
        Some("form=admin_grant_add user=alice edge=home")
    );
    let (html, _) = a.h.access(&alice).await;
    assert!(html.contains(r#"<li data-edge="home">"#), "{html}");
    let page = a.page("/admin/grants").await;
    let row = between(&page, r#"<tr data-user="alice" data-edge="home">"#, "</tr>");
    assert!(
        row.contains(">8080, 32400<") && row.contains(">2 h<"),
        "{row}"
    );

    // A lease under it, then the grant revoked: both gone.
    a.h.api_lease(&alice, "home").await;
    a.post_done(
        "/admin/grants/alice/home/revoke",
        &[],
        "/admin/grants?done=revoked",
    )
    .await;
    assert!(a
        .h
        .broker
        .admin()
        .grants()
        .list()
        .await
        .unwrap()
        .grants
        .is_empty());
    assert!(a.h.api_leases(&alice).await.leases.is_empty());
    let (html, _) = a.h.access(&alice).await;
    assert!(html.contains(r#"id="no-grants""#));

    // Terms the service refuses come back as its words, nothing added.
    let resp = a
        .post(
            "/admin/grants",
            &[("user", "alice"), ("edge", "home"), ("pin_prefix4", "4")],
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert!(a
        .h
        .broker
        .admin()
        .grants()
        .list()
        .await
        .unwrap()
        .grants
        .is_empty());
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_list_shows_every_live_lease_and_revokes_one() {
    let a = Admin::start().await;
    a.h.enrolled_edge("home").await;
    let secret = add_user(&a.h, "alice", false).await;
    a.h.grant("alice", "home").await;
    let alice = sign_in(&a.h, &a.clock, "alice", &secret).await;
    let lease = a.h.api_lease(&alice, "home").await.profile;
    let html = a.page("/admin/leases").await;
    let row = between(
        &html,
        &format!(r#"<tr data-lease-id="{}">"#, lease.lease_id),
        "</tr>",
    );
    for needle in [
        ">alice<",
        ">home<",
        &format!("<code>{}</code>", lease.address),
        "<code>127.0.0.1/32</code>",
        r#"class="countdown""#,
        "none yet",
    ] {
        assert!(row.contains(needle), "{needle} not in {row}");
    }
    a.post_done(
        &format!("/admin/leases/{}/revoke", lease.lease_id),
        &[],
        "/admin/leases?done=revoked",
    )
    .await;
    assert!(a.h.api_leases(&alice).await.leases.is_empty());
    assert!(a.page("/admin/leases").await.contains(r#"id="no-leases""#));
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_filter_shows_only_matching_rows_newest_first() {
    let mut a = Admin::start().await;
    let secret = add_user(&a.h, "alice", false).await;
    a.h.page_login("alice", "wrong password", "000000").await;
    // Two hours on (root's session is gone by then), root and alice sign in, bob fails to.
    a.clock.advance(Duration::from_secs(2 * 3600));
    let root = add_user(&a.h, "root2", true).await;
    a.session = sign_in(&a.h, &a.clock, "root2", &root).await;
    sign_in(&a.h, &a.clock, "alice", &secret).await;
    a.h.page_login("bob", "wrong password", "000000").await;

    let rows = |html: &str| -> Vec<String> {
        html.split(r#"<tr data-kind=""#)
            .skip(1)
            .map(|r| r[..r.find('"').unwrap()].to_owned())
            .collect()
    };
    let all = a.page("/admin/audit").await;
    assert!(rows(&all).iter().any(|k| k == "user_added"));
    let failed = a.page("/admin/audit?kind=login_failed").await;
    assert_eq!(rows(&failed), ["login_failed", "login_failed"]);
    assert!(
        failed.contains(r#"<input id="audit-kind" name="kind" type="text" value="login_failed""#)
    );
    let alices = a.page("/admin/audit?user=alice&kind=login_failed").await;
    assert_eq!(rows(&alices), ["login_failed"]);
    assert!(alices.contains(r#"<td data-label="Actor" class="actor">alice</td>"#));
    let logins = a.page("/admin/audit?kind=login_ok").await;
    assert_eq!(rows(&logins), ["login_ok", "login_ok", "login_ok"]);
    // Newest first: alice's sign-in, then root2's, then root's two hours before.
    let actors: Vec<&str> = logins
        .split(r#"<td data-label="Actor" class="actor">"#)
        .skip(1)
        .map(|r| &r[..r.find('<').unwrap()])
        .collect();
    assert_eq!(actors, ["alice", "root2", "root"]);
    // The last hour leaves root's first sign-in out.
    let since = a.page("/admin/audit?kind=login_ok&since=1h").await;
    assert_eq!(rows(&since), ["login_ok", "login_ok"]);
    assert!(since.contains(r#"<option value="1h" selected>"#));
    let none = a.page("/admin/audit?kind=no_such_kind").await;
    assert!(none.contains(r#"id="no-entries""#));
    // A filter value that is no name or kind is refused, and not echoed raw.
    for query in ["user=%3Cscript%3Ex", "kind=%3Cscript%3Ex"] {
        let resp =
            a.h.get_page(
                &format!("/admin/audit?{query}"),
                Some(&session_cookie(&a.session)),
            )
            .await;
        assert_eq!(resp.status(), 400, "{query}");
        assert!(!resp.text().await.unwrap().contains("<script>x"));
    }
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alerts_page_shows_alerts_and_their_delivery_state() {
    let a = Admin::start().await;
    add_user(&a.h, "alice", false).await;
    for _ in 0..6 {
        a.h.page_login("alice", "wrong password", "000000").await;
    }
    let html = a.page("/admin/alerts").await;
    // No webhook in the harness: the alert waits.
    let row = between(
        &html,
        r#"<tr data-kind="account_locked" data-state="pending">"#,
        "</tr>",
    );
    assert!(row.contains(">alice<"), "{row}");
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_the_webhook_took_shows_as_sent() {
    // A webhook on loopback that takes every alert.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let a = Admin::start_with(Some(Webhook::parse(&url).unwrap())).await;
    add_user(&a.h, "alice", false).await;
    for _ in 0..6 {
        a.h.page_login("alice", "wrong password", "000000").await;
    }
    let sent = r#"<tr data-kind="account_locked" data-state="sent">"#;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let html = loop {
        let html = a.page("/admin/alerts").await;
        if html.contains(sent) || std::time::Instant::now() > end {
            break html;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let row = between(&html, sent, "</tr>");
    assert!(
        row.contains(r#"<td data-label="Attempts" class="attempts">1</td>"#),
        "{row}"
    );
    assert!(row.contains("<time datetime="), "no time sent: {row}");
    // The webhook's address is the operator's secret: not on the page.
    assert!(!html.contains(&url));
    a.h.shutdown().await;
}

/// Every admin post, with targets that exist: each would change something if it went through.
fn admin_posts(lease: &str) -> Vec<(String, Vec<(&'static str, String)>)> {
    vec![
        ("/admin/users/invite".into(), vec![("name", "carol".into())]),
        ("/admin/users/alice/disable".into(), vec![]),
        ("/admin/users/dave/enable".into(), vec![]),
        ("/admin/users/alice/reset-totp".into(), vec![]),
        ("/admin/users/alice/reset-password".into(), vec![]),
        ("/admin/users/alice/remove".into(), vec![]),
        (
            "/admin/edges".into(),
            vec![
                ("name", "cabin".into()),
                ("endpoint", "192.0.2.9:51820".into()),
            ],
        ),
        ("/admin/edges/home/remove".into(), vec![]),
        (
            "/admin/grants".into(),
            vec![("user", "dave".into()), ("edge", "home".into())],
        ),
        ("/admin/grants/alice/home/revoke".into(), vec![]),
        (format!("/admin/leases/{lease}/revoke"), vec![]),
    ]
}

/// alice with a grant and a lease on `home`, dave disabled: a target for every admin post.
/// Returns alice's secret and lease id.
async fn targets(a: &Admin) -> (Vec<u8>, String) {
    a.h.enrolled_edge("home").await;
    let secret = add_user(&a.h, "alice", false).await;
    add_user(&a.h, "dave", false).await;
    a.h.broker
        .admin()
        .accounts()
        .disable(UserNameRequest {
            name: "dave".into(),
        })
        .await
        .unwrap();
    a.h.grant("alice", "home").await;
    let alice = sign_in(&a.h, &a.clock, "alice", &secret).await;
    let lease = a.h.api_lease(&alice, "home").await.profile.lease_id;
    (secret, lease.to_string())
}

/// After refused posts: nothing changed, and alice's old TOTP secret still signs her in.
async fn assert_unchanged(a: &Admin, before: &str, secret: &[u8]) {
    assert_eq!(snapshot(&a.h).await, before);
    a.next_step();
    sign_in(&a.h, &a.clock, "alice", secret).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_posts_without_the_token_or_from_elsewhere_change_nothing_and_are_audited() {
    let a = Admin::start().await;
    let (secret, lease) = targets(&a).await;
    let before = snapshot(&a.h).await;
    let from = a.h.audit_kinds().await.len();
    let own = Some(a.h.broker.url());
    let mut refusals = 0;
    for (path, fields) in admin_posts(&lease) {
        let with_token = |token: &str| {
            let mut f = fields.clone();
            f.push(("csrf", token.to_owned()));
            f
        };
        let attempts = [
            (own.clone(), fields.clone()),
            (own.clone(), with_token("")),
            (own.clone(), with_token("not-the-token")),
            (Some("https://evil.example".to_owned()), with_token(&a.csrf)),
        ];
        for (origin, fields) in attempts {
            let what = format!("{path} {origin:?} {fields:?}");
            let resp =
                a.h.post_form(Post {
                    path: &path,
                    cookie: Some(session_cookie(&a.session)),
                    origin,
                    fields,
                })
                .await;
            assert_eq!(resp.status(), 403, "{what}");
            assert_page_headers(&what, &resp);
            assert!(resp.text().await.unwrap().contains("This form has expired"));
            refusals += 1;
        }
    }
    let kinds = kinds_since(&a.h, from).await;
    assert_eq!(kinds.len(), refusals, "{kinds:?}");
    assert!(kinds.iter().all(|k| k == "web_form_refused"), "{kinds:?}");
    // Each form under its own name.
    let log = a.h.broker.admin().audit_log().await.unwrap();
    for form in [
        "admin_invite",
        "admin_disable",
        "admin_enable",
        "admin_reset_totp",
        "admin_reset_password",
        "admin_remove_user",
        "admin_edge_add",
        "admin_edge_remove",
        "admin_grant_add",
        "admin_grant_revoke",
        "admin_lease_revoke",
    ] {
        let n = log
            .iter()
            .filter(|r| r.kind == "web_form_refused")
            .filter(|r| {
                r.detail
                    .as_deref()
                    .unwrap_or("")
                    .starts_with(&format!("form={form} "))
            })
            .count();
        assert_eq!(n, 4, "{form}");
    }
    assert_unchanged(&a, &before, &secret).await;
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_not_signed_in_recently_may_look_but_not_change() {
    let mut a = Admin::start().await;
    let (secret, lease) = targets(&a).await;
    let root = add_user(&a.h, "root2", true).await;
    let overview = a.page("/admin").await;
    assert!(
        overview.contains("this one allows them until"),
        "{overview}"
    );
    // Past the quarter hour since root signed in, well inside the session's life.
    a.clock.advance(Duration::from_secs(15 * 60 + 1));
    let overview = a.page("/admin").await;
    assert!(
        overview.contains("sign out and in again to make any."),
        "{overview}"
    );
    for path in PAGES {
        a.page(path).await;
    }
    let before = snapshot(&a.h).await;
    let from = a.h.audit_kinds().await.len();
    let posts = admin_posts(&lease);
    for (path, fields) in &posts {
        let mut fields = fields.clone();
        fields.push(("csrf", a.csrf.clone()));
        let resp =
            a.h.post_form(Post {
                path,
                cookie: Some(session_cookie(&a.session)),
                origin: Some(a.h.broker.url()),
                fields,
            })
            .await;
        assert_eq!(resp.status(), 403, "{path}");
        assert_page_headers(path, &resp);
        let html = resp.text().await.unwrap();
        assert_clean_markup(&html);
        assert!(html.contains("Sign in again to make changes."), "{html}");
        assert!(html.contains(r#"<a id="login-link" href="/login">"#));
        // Signed in, /login leads back to /access: the way there is signing out first.
        assert!(html.contains(r#"<form id="sign-in-again" method="post" action="/logout">"#));
        assert_eq!(csrf_field(&html), a.csrf);
    }
    let kinds = kinds_since(&a.h, from).await;
    assert_eq!(kinds.len(), posts.len(), "{kinds:?}");
    assert!(
        kinds.iter().all(|k| k == "web_admin_stale_session"),
        "{kinds:?}"
    );
    assert_unchanged(&a, &before, &secret).await;

    // A fresh sign-in may change things again.
    a.session = sign_in(&a.h, &a.clock, "root2", &root).await;
    a.csrf = csrf_field(&a.page("/admin").await);
    a.post_done(
        "/admin/users/alice/disable",
        &[],
        "/admin/users?done=disabled",
    )
    .await;
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_who_is_not_an_admin_finds_no_admin_page_and_changes_nothing() {
    let a = Admin::start().await;
    let (secret, lease) = targets(&a).await;
    let bob_secret = add_user(&a.h, "bob", false).await;
    let bob = sign_in(&a.h, &a.clock, "bob", &bob_secret).await;
    // An admin's session from the API (what a CLI saves to disk), put in the cookie: it opens
    // "My access" like any session, but no admin page.
    let root2_secret = add_user(&a.h, "root2", true).await;
    let resp =
        a.h.login_raw("root2", PASSWORD, &code(&root2_secret, &a.clock))
            .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let api_token = body["token"].as_str().unwrap().to_owned();
    for (who, session) in [("bob", bob), ("root2's API session", api_token)] {
        let (_, csrf) = a.h.access(&session).await;
        for path in PAGES.iter().copied().chain(["/admin/audit?kind=login_ok"]) {
            let resp = a.h.get_page(path, Some(&session_cookie(&session))).await;
            assert_eq!(resp.status(), 404, "{who} {path}");
            assert_page_headers(path, &resp);
            let html = resp.text().await.unwrap();
            assert_clean_markup(&html);
            assert!(html.contains("<h1>Not found</h1>"), "{html}");
            assert!(!html.contains("Admin"), "{html}");
        }
        let before = snapshot(&a.h).await;
        let from = a.h.audit_kinds().await.len();
        for (path, mut fields) in admin_posts(&lease) {
            fields.push(("csrf", csrf.clone()));
            let resp =
                a.h.post_form(Post {
                    path: &path,
                    cookie: Some(session_cookie(&session)),
                    origin: Some(a.h.broker.url()),
                    fields,
                })
                .await;
            assert_eq!(resp.status(), 404, "{who} {path}");
        }
        assert_eq!(kinds_since(&a.h, from).await, Vec::<String>::new(), "{who}");
        assert_unchanged(&a, &before, &secret).await;
    }
    a.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_is_sent_to_sign_in_from_every_admin_path() {
    let a = Admin::start().await;
    let (_, lease) = targets(&a).await;
    let before = snapshot(&a.h).await;
    for path in PAGES {
        for cookie in [None, Some("__Host-gw_session=not-a-session")] {
            let resp = a.h.get_page(path, cookie).await;
            assert_eq!(resp.status(), 303, "{path}");
            assert_eq!(resp.headers()["location"], "/login");
            assert_eq!(resp.text().await.unwrap(), "");
        }
    }
    for (path, mut fields) in admin_posts(&lease) {
        fields.push(("csrf", a.csrf.clone()));
        let resp =
            a.h.post_form(Post {
                path: &path,
                cookie: None,
                origin: Some(a.h.broker.url()),
                fields,
            })
            .await;
        assert_eq!(resp.status(), 303, "{path}");
        assert_eq!(resp.headers()["location"], "/login");
        assert_eq!(resp.text().await.unwrap(), "");
    }
    assert_eq!(snapshot(&a.h).await, before);
    a.h.shutdown().await;
}
