//! The web pages as a user meets them, in headless Chromium against a real broker on loopback:
//! signing in with a code from the authenticator, seeing and revoking a lease the CLI made,
//! signing out; a wrong code; forms posted without their CSRF token; the sign-in by keyboard
//! alone on a phone-sized screen; an invited friend setting up password and authenticator from
//! the QR code the browser shows; a browser without X25519 getting the broker's key once on
//! "New device"; and an admin, on a phone, inviting a friend and granting an edge on the admin
//! pages, after which the friend sets up, sees the grant and signs in again. Every step leaves a
//! screenshot under `<target>/browser-artifacts/browser_pages/<test>/`, and every test ends by
//! checking that no chromedriver or Chromium process outlived it. (The tunnel made in the
//! browser and brought up to Plex is `browser_tunnel.rs`, in the namespace lab.)
//!
//! The lease comes from the real `grantwire` CLI on the same host, so it is pinned to
//! 127.0.0.1, the address the browser comes from too. No edge runs: an edge only has to be
//! enrolled for the broker to hand out leases on it, which a `curl` through the broker's key pin
//! does with a fresh X25519 key.

use std::path::Path;
use std::time::{Duration, Instant};

use grantwire_e2e::harness::browser::running_after;
use grantwire_e2e::{
    bins, conf_keys, host_exec, require_browser, totp, unix_now, Browser, BrowserOpts,
    Chromedriver, KeyPair, LoopbackBroker, UserInfo,
};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";
const EDGE: &str = "home";
const CMD: Duration = Duration::from_secs(30);
const FORM_EXPIRED: &str = "This form has expired. Reload the page and try again.";

#[test]
fn a_user_signs_in_with_a_generated_code_and_sees_their_lease() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    let alice = broker.add_user("alice", PASSWORD, false);
    let lease_id = granted_lease(&broker, &alice, &dir.path().join("cli"));
    let driver = Chromedriver::start();
    let opts = BrowserOpts::desktop().pinned(broker.spki_pin());
    let mut b = Browser::new(&driver, "browser_pages/sign-in-and-lease", opts);

    sign_in(&mut b, &broker, &alice, &alice.totp_at(unix_now()));
    assert_eq!(
        b.text("#current-user"),
        "alice",
        "the header names the user"
    );
    assert_eq!(b.text("#whoami-user"), "alice", "the page names the user");
    assert_eq!(
        b.text("code#source-ip"),
        "127.0.0.1",
        "the browser's address"
    );

    let row = format!("tr[data-lease-id=\"{lease_id}\"]");
    assert!(
        b.exists(&row),
        "the CLI's lease {lease_id} is listed:\n{}",
        b.body_text()
    );
    assert_eq!(b.text(&format!("{row} td.edge")), EDGE);
    let pin = b.text(&format!("{row} td.pin"));
    assert!(pin.starts_with("127.0.0.1/32"), "the pin: {pin:?}");
    assert!(
        b.exists(&format!("{row} td.pin span.pinned-here")),
        "pinned here: {pin:?}"
    );
    assert!(!b.exists(&format!("{row} td.pin span.pinned-elsewhere")));
    // A grant's leases live 8 h unless `grant add --lease-ttl` says otherwise; app.js rewrites
    // the server's text on load, the same way.
    let left = b.text(&format!("{row} .expires span.countdown[data-expires]"));
    assert!(
        ["in 7 h 59 min", "in 8 h 0 min"].contains(&left.as_str()),
        "the countdown: {left:?}"
    );
    assert!(
        b.attr(&format!("{row} .expires time"), "datetime")
            .is_some_and(|d| d.ends_with('Z')),
        "the expiry as a machine-readable UTC time"
    );
    assert_eq!(
        b.attr(
            &format!("ul#grants > li[data-edge=\"{EDGE}\"]"),
            "data-edge"
        )
        .as_deref(),
        Some(EDGE),
        "the grant on {EDGE} is listed"
    );
    assert!(!b.exists("#no-grants"));
    b.screenshot("access-with-lease");

    b.click(&format!("{row} form.revoke button[type=submit]"));
    b.wait_for("p#notice, p#message");
    assert!(
        b.exists("p#notice"),
        "revoked, with a notice: {}\n{}\nrefused forms: {:?}",
        b.current_url(),
        b.body_text(),
        form_refusals(&broker)
    );
    assert_eq!(b.text("p#notice"), "Lease revoked.");
    assert!(b.exists("#no-leases"), "no lease left:\n{}", b.body_text());
    assert!(!b.exists("tr[data-lease-id]"));
    assert!(
        b.current_url().ends_with("/access?done=revoked"),
        "{}",
        b.current_url()
    );
    b.screenshot("lease-revoked");
    let live = live_leases(&broker);
    assert!(
        live.is_empty(),
        "the broker still has live leases: {live:?}"
    );

    b.click("#logout-submit");
    b.wait_for("form#login, p#message");
    assert!(
        b.current_url().ends_with("/login"),
        "signed out: {}\n{}\nrefused forms: {:?}",
        b.current_url(),
        b.body_text(),
        form_refusals(&broker)
    );
    assert!(
        !b.exists("#current-user"),
        "signed out, no name in the header"
    );
    b.screenshot("signed-out");
    assert_access_leads_to_sign_in(&b, &broker, "/access after sign-out");
    b.screenshot("access-after-sign-out");

    end_without_leftovers(driver, vec![b]);
    eprintln!("sign-in and lease: {} ms", t0.elapsed().as_millis());
}

#[test]
fn a_wrong_code_is_refused_in_the_browser() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    let alice = broker.add_user("alice", PASSWORD, false);
    let driver = Chromedriver::start();
    let opts = BrowserOpts::desktop().pinned(broker.spki_pin());
    let mut b = Browser::new(&driver, "browser_pages/wrong-code", opts);

    b.goto(&format!("{}/login", broker.url));
    b.fill("#user", &alice.name);
    b.fill("#password", &alice.password);
    b.fill("#code", &totp::wrong_code(&alice.totp_secret, unix_now()));
    b.screenshot("wrong-code-typed");
    b.click("#submit");
    b.wait_for("p#error, p#message");
    assert!(
        b.exists("p#error[role=alert]"),
        "refused for the code: {}\n{}\nrefused forms: {:?}",
        b.current_url(),
        b.body_text(),
        form_refusals(&broker)
    );
    assert_eq!(b.text("p#error"), "wrong user name, password or code");
    assert!(b.current_url().ends_with("/login"), "{}", b.current_url());
    assert_eq!(
        b.attr("#user", "value").as_deref(),
        Some("alice"),
        "the user name is kept"
    );
    assert!(!b.exists("#current-user"), "not signed in");
    b.screenshot("refused");
    // The session cookie is HttpOnly, out of a script's sight: judge by where /access leads.
    assert_access_leads_to_sign_in(&b, &broker, "no session after a wrong code");
    b.screenshot("access-refused");

    end_without_leftovers(driver, vec![b]);
    eprintln!("wrong code: {} ms", t0.elapsed().as_millis());
}

#[test]
fn a_form_without_its_csrf_token_is_refused() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    let alice = broker.add_user("alice", PASSWORD, false);
    let lease_id = granted_lease(&broker, &alice, &dir.path().join("cli"));
    let driver = Chromedriver::start();
    let opts = BrowserOpts::desktop().pinned(broker.spki_pin());
    let mut b = Browser::new(&driver, "browser_pages/csrf", opts);

    // The sign-in form first, with right credentials: refused before they are looked at.
    let code = alice.totp_at(unix_now());
    b.goto(&format!("{}/login", broker.url));
    b.fill("#user", &alice.name);
    b.fill("#password", &alice.password);
    b.fill("#code", &code);
    assert_eq!(remove_csrf(&b, "form#login"), 1);
    b.click("#submit");
    b.wait_for("p#message[role=alert]");
    assert_eq!(b.text("p#message"), FORM_EXPIRED);
    assert_eq!(
        form_refusals(&broker),
        ["form=login reason=bad form token"],
        "refused for the missing token, and audited"
    );
    b.screenshot("sign-in-without-csrf");
    b.goto(&format!("{}/access", broker.url));
    assert!(
        b.current_url().ends_with("/login"),
        "not signed in after a refused form: {}",
        b.current_url()
    );
    // The refusal came before the code was checked, so the same code still signs in.
    sign_in(&mut b, &broker, &alice, &code);

    let row = format!("tr[data-lease-id=\"{lease_id}\"]");
    assert!(b.exists(&row), "the lease is listed:\n{}", b.body_text());
    assert_eq!(remove_csrf(&b, &format!("{row} form.revoke")), 1);
    b.click(&format!("{row} form.revoke button[type=submit]"));
    b.wait_for("p#message[role=alert]");
    assert_eq!(b.text("p#message"), FORM_EXPIRED);
    let mut refusals = form_refusals(&broker);
    refusals.sort();
    assert_eq!(
        refusals,
        [
            "form=login reason=bad form token",
            "form=revoke reason=bad form token"
        ],
        "refused for the missing token, and audited"
    );
    b.screenshot("revoke-without-csrf");
    let live = live_leases(&broker);
    assert_eq!(
        live.iter().map(|l| l["id"].as_str()).collect::<Vec<_>>(),
        vec![Some(lease_id.as_str())],
        "the lease is still live: {live:?}"
    );
    // Still signed in, and the page still shows the lease.
    b.goto(&format!("{}/access", broker.url));
    assert!(b.exists(&row), "{}", b.body_text());
    b.screenshot("lease-still-there");

    end_without_leftovers(driver, vec![b]);
    eprintln!("csrf: {} ms", t0.elapsed().as_millis());
}

#[test]
fn signing_in_works_with_the_keyboard_alone_on_a_phone_sized_screen() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    let alice = broker.add_user("alice", PASSWORD, false);
    // A lease, so the widest thing the access page shows (its table) is on it.
    let lease_id = granted_lease(&broker, &alice, &dir.path().join("cli"));
    let driver = Chromedriver::start();
    let opts = BrowserOpts::phone().pinned(broker.spki_pin());
    let mut b = Browser::new(&driver, "browser_pages/phone-keyboard", opts);

    b.goto(&format!("{}/login", broker.url));
    b.wait_for("form#login");
    assert_no_sideways_scroll(&b, "the sign-in page");
    b.screenshot("sign-in-page");
    assert_eq!(b.tab_to("#user", 3), 1, "the user name takes the first Tab");
    b.press(&alice.name);
    assert_eq!(b.tab_to("#password", 1), 1, "the password comes next");
    b.press(&alice.password);
    assert_eq!(b.tab_to("#code", 1), 1, "then the code");
    b.press(&alice.totp_at(unix_now()));
    assert_eq!(b.tab_to("#submit", 1), 1, "then the button");
    assert_eq!(b.focused(), "button#submit \"Sign in\"");
    b.screenshot("typed-by-keyboard");
    b.enter();
    b.wait_for("#whoami-user, p#error, p#message");
    assert!(
        b.current_url().ends_with("/access"),
        "signed in by keyboard: {}\n{}\nrefused forms: {:?}",
        b.current_url(),
        b.body_text(),
        form_refusals(&broker)
    );
    assert_eq!(b.text("#whoami-user"), "alice");
    assert!(
        b.exists(&format!("tr[data-lease-id=\"{lease_id}\"]")),
        "{}",
        b.body_text()
    );
    assert_no_sideways_scroll(&b, "the access page with a lease");
    b.screenshot("access-on-phone");

    end_without_leftovers(driver, vec![b]);
    eprintln!("phone keyboard: {} ms", t0.elapsed().as_millis());
}

#[test]
fn an_invited_friend_sets_up_their_account_on_a_phone_from_the_qr_code() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    let invited = broker
        .admin(&["user", "invite", "bob", "--json"], None)
        .expect_ok("grantwire-broker user invite bob")
        .json();
    let temporary = invited["temporary_password"]
        .as_str()
        .expect("a temporary password")
        .to_owned();
    let driver = Chromedriver::start();
    let opts = BrowserOpts::phone().pinned(broker.spki_pin());
    let mut b = Browser::new(&driver, "browser_pages/invitation", opts);

    set_up_invited(&mut b, &broker, "bob", &temporary);
    assert!(b.exists("#no-grants"), "{}", b.body_text());
    b.screenshot("signed-in-after-setup");
    let users = broker
        .admin(&["user", "list", "--json"], None)
        .expect_ok("user list")
        .json();
    assert_eq!(users["users"][0]["name"], "bob");
    assert!(
        users["users"][0]["invited_until"].is_null(),
        "enrolled, no longer invited: {users}"
    );

    end_without_leftovers(driver, vec![b]);
    eprintln!("invitation: {} ms", t0.elapsed().as_millis());
}

#[test]
fn a_phone_without_browser_keys_gets_the_brokers_key_once_as_qr_and_download() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    let alice = broker.add_user("alice", PASSWORD, false);
    enrol_edge(&broker, EDGE);
    broker
        .admin(&["grant", "add", &alice.name, EDGE, "--json"], None)
        .expect_ok("grantwire-broker grant add");
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let driver = Chromedriver::start();
    let opts = BrowserOpts::phone()
        .pinned(broker.spki_pin())
        .downloads_to(&downloads);
    let mut b = Browser::new(&driver, "browser_pages/server-key", opts);
    sign_in(&mut b, &broker, &alice, &alice.totp_at(unix_now()));

    b.click("#new-device-link");
    b.wait_for("form#new-device");
    // This Chromium has X25519; once its script has found so, the page is made to behave as
    // in a browser without it, where the form posts as it is.
    b.wait_for("form#new-device[data-keys=browser]");
    b.execute(
        "document.getElementById('new-device').setAttribute('data-keys', 'server');",
        vec![],
    );
    b.screenshot("new-device");
    // By keyboard alone: Tab to the server list, then to the button, and Enter.
    b.tab_to("#edge", 20);
    b.tab_to("#make-device", 3);
    b.enter();
    b.wait_for("#server-key-note, p#message");
    assert!(b.exists("#server-key-note"), "{}", b.body_text());
    assert_no_sideways_scroll(&b, "the server-key page");
    let (shot, codes) = b.qr_codes("server-key-qr");
    assert_eq!(codes.len(), 1, "one QR code in {}", shot.display());
    let shown = b
        .execute(
            "return document.getElementById('device-conf').textContent;",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(codes[0], shown, "the QR code and the file shown differ");
    b.click("#conf-download");
    let path = downloads.join("gw-home.conf");
    let saved = grantwire_e2e::wait_for(CMD, Duration::from_millis(100), || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| !t.is_empty())
    })
    .unwrap_or_else(|| panic!("no {} downloaded", path.display()));
    assert_eq!(saved, shown, "the download and the file shown differ");

    // The lease is on that key's public half, and the page never shows the key again.
    let KeyPair { private, public } = conf_keys(&shown);
    let live = live_leases(&broker);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["public_key"], public.as_str(), "{live:?}");
    b.goto(&format!("{}/devices/new", broker.url));
    b.wait_for("form#new-device");
    assert!(!b.source().contains(&private), "the key on a later page");
    end_without_leftovers(driver, vec![b]);
}

#[test]
fn an_admin_invites_a_friend_and_grants_an_edge_and_the_friend_signs_in() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    let admin = broker.add_user("admin", PASSWORD, true);
    enrol_edge(&broker, EDGE);
    let driver = Chromedriver::start();
    // The admin on a phone-sized screen: the admin pages must work there too.
    let opts = BrowserOpts::phone().pinned(broker.spki_pin());
    let mut a = Browser::new(&driver, "browser_pages/admin", opts);
    sign_in(&mut a, &broker, &admin, &admin.totp_at(unix_now()));

    // Users: invite bob; the temporary password is on the answer to the form, once.
    a.click("#admin-link");
    a.wait_for("#admin-sections");
    a.click("#admin-sections a[href=\"/admin/users\"]");
    a.wait_for("form#invite");
    assert_no_sideways_scroll(&a, "the users page");
    a.fill("#invite-name", "bob");
    a.screenshot("invite-filled");
    a.click("#invite-submit");
    a.wait_for("#temporary-password, p#message");
    assert_no_sideways_scroll(&a, "the invitation's answer");
    assert!(a.exists("#temporary-password"), "{}", a.body_text());
    let temporary = a.text("#temporary-password");
    assert!(
        a.text("#welcome-url").ends_with("/welcome"),
        "{}",
        a.text("#welcome-url")
    );
    a.screenshot("invited");

    // Grants: bob on home.
    a.goto(&format!("{}/admin/grants", broker.url));
    a.wait_for("form#grant-add");
    assert_no_sideways_scroll(&a, "the grants page");
    a.execute(
        "document.getElementById('grant-user').value = 'bob';\
         document.getElementById('grant-edge').value = arguments[0];",
        vec![Value::from(EDGE)],
    );
    a.click("#grant-add-submit");
    a.wait_for("#notice, p#message");
    assert!(a.exists("#notice"), "{}", a.body_text());
    assert_no_sideways_scroll(&a, "the grants page with a grant");
    a.screenshot("granted");
    let grants = broker
        .admin(&["grant", "list", "--json"], None)
        .expect_ok("grant list")
        .json();
    let grants = grants["grants"].as_array().cloned().unwrap_or_default();
    assert!(
        grants
            .iter()
            .any(|g| g["user"] == "bob" && g["edge"] == EDGE),
        "{grants:?}"
    );

    // Bob, on his laptop: sets up, sees the grant, signs out and in again with a later code.
    let opts = BrowserOpts::desktop().pinned(broker.spki_pin());
    let mut b = Browser::new(&driver, "browser_pages/admin/friend", opts);
    let secret = set_up_invited(&mut b, &broker, "bob", &temporary);
    assert!(
        b.exists(&format!("ul#grants > li[data-edge=\"{EDGE}\"]")),
        "{}",
        b.body_text()
    );
    b.click("#logout-submit");
    b.wait_for("form#login");
    let bob = UserInfo {
        name: "bob".into(),
        password: "bob's own long password".into(),
        totp_secret: secret.clone(),
        otpauth_uri: String::new(),
    };
    // The set-up spent this moment's code; the next step's is within the allowed skew.
    sign_in(
        &mut b,
        &broker,
        &bob,
        &totp::code_at(&secret, unix_now() + 30),
    );
    assert!(b.exists(&format!("ul#grants > li[data-edge=\"{EDGE}\"]")));
    b.screenshot("friend-signed-in");
    end_without_leftovers(driver, vec![a, b]);
}

/// An invited user's set-up in `b`, from the sign-in page's link to being signed in on
/// "My access": temporary password, the authenticator's QR code read off the screen, a password
/// of their own and the app's code. Returns the authenticator secret.
fn set_up_invited(
    b: &mut Browser,
    broker: &LoopbackBroker,
    name: &str,
    temporary: &str,
) -> Vec<u8> {
    // From the sign-in page, as the invitation says.
    b.goto(&format!("{}/login", broker.url));
    b.wait_for("a#welcome-link");
    b.click("a#welcome-link");
    b.wait_for("form#enrol-start");
    assert_no_sideways_scroll(b, "the welcome page");
    b.fill("#user", name);
    b.fill("#temporary-password", temporary);
    b.screenshot("temporary-password");
    b.click("#submit");
    b.wait_for("img#totp-qr, p#error, p#message");
    assert!(
        b.current_url().ends_with("/welcome/app"),
        "{}\n{}\nrefused forms: {:?}",
        b.current_url(),
        b.body_text(),
        form_refusals(broker)
    );
    assert_no_sideways_scroll(b, "the authenticator page");

    // What the phone's camera would read: the QR code as the browser drew it.
    let (shot, codes) = b.qr_codes("authenticator-qr");
    assert_eq!(
        codes.len(),
        1,
        "one QR code in {}: {codes:?}",
        shot.display()
    );
    let uri = &codes[0];
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret_b32 = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("no secret in {uri}"));
    assert_eq!(
        b.text("code#totp-secret").replace(' ', ""),
        secret_b32,
        "the key typed by hand is the one in the QR code"
    );
    let secret = totp::decode_secret(secret_b32);
    // The user name kept for password managers is in the form but not on the screen.
    let shown = b.execute(
        "return getComputedStyle(document.getElementById('enrol-username')).display",
        Vec::new(),
    );
    assert_eq!(shown, "none", "the hidden user-name field is drawn");

    // A password of their own, and the code the authenticator app now shows.
    let own = format!("{name}'s own long password");
    b.fill("#new-password", &own);
    b.fill("#new-password-again", &own);
    b.fill("#code", &totp::code_at(&secret, unix_now()));
    b.screenshot("new-password-and-code");
    b.click("#submit");
    b.wait_for("#whoami-user, p#error, p#message");
    assert!(
        b.current_url().ends_with("/access"),
        "enrolled and signed in: {}\n{}\nrefused forms: {:?}",
        b.current_url(),
        b.body_text(),
        form_refusals(broker)
    );
    assert_eq!(b.text("#whoami-user"), name);
    secret
}

/// Opens /access and checks it sent the browser to the sign-in page: no live session.
#[track_caller]
fn assert_access_leads_to_sign_in(b: &Browser, broker: &LoopbackBroker, what: &str) {
    b.goto(&format!("{}/access", broker.url));
    assert!(
        b.current_url().ends_with("/login") && b.exists("form#login"),
        "{what}: {}",
        b.current_url()
    );
}

/// Signs in at /login with `code` and waits for the access page.
#[track_caller]
fn sign_in(b: &mut Browser, broker: &LoopbackBroker, user: &UserInfo, code: &str) {
    b.goto(&format!("{}/login", broker.url));
    b.wait_for("form#login");
    b.fill("#user", &user.name);
    b.fill("#password", &user.password);
    b.fill("#code", code);
    b.screenshot("sign-in-filled");
    b.click("#submit");
    b.wait_for("#whoami-user, p#error, p#message");
    assert!(
        b.current_url().ends_with("/access") && b.exists("#whoami-user"),
        "signed in, on /access: {}\n{}\nrefused forms: {:?}",
        b.current_url(),
        b.body_text(),
        form_refusals(broker)
    );
    b.screenshot("signed-in");
}

/// Removes the hidden `csrf` field of the form matching `form`; returns how many it removed.
fn remove_csrf(b: &Browser, form: &str) -> u64 {
    let js = "const f = document.querySelector(arguments[0]);\
              const c = f.querySelectorAll('input[name=csrf]');\
              c.forEach(e => e.remove()); return c.length;";
    b.execute(js, vec![Value::from(form)])
        .as_u64()
        .unwrap_or_default()
}

#[track_caller]
fn assert_no_sideways_scroll(b: &Browser, what: &str) {
    let js = "return [document.documentElement.scrollWidth, window.innerWidth];";
    let v = b.execute(js, vec![]);
    let (scroll, inner) = (v[0].as_u64(), v[1].as_u64());
    assert!(
        scroll.is_some() && scroll <= inner,
        "{what} scrolls sideways: scrollWidth {scroll:?} > innerWidth {inner:?}"
    );
}

/// Enrols edge `home`, grants it to `user`, and has the CLI (config in `cli_dir`) log in and
/// take a lease on it; returns the lease id. The CLI's code is a step before the current one,
/// so the browser's sign-in with the current code is not a replay.
fn granted_lease(broker: &LoopbackBroker, user: &UserInfo, cli_dir: &Path) -> String {
    enrol_edge(broker, EDGE);
    broker
        .admin(&["grant", "add", &user.name, EDGE, "--json"], None)
        .expect_ok("grantwire-broker grant add");
    std::fs::create_dir_all(cli_dir).expect("cli config dir");
    let cli = |args: &[&str], stdin: Option<&[u8]>| {
        let mut argv = vec![
            bins().client_str(),
            "--config-dir",
            cli_dir.to_str().expect("UTF-8"),
        ];
        argv.extend_from_slice(args);
        host_exec(&argv, stdin, CMD)
    };
    let code = user.totp_at(unix_now().saturating_sub(30));
    cli(
        &[
            "login",
            "--broker",
            &broker.url,
            "--user",
            &user.name,
            "--fingerprint",
            &broker.fingerprint,
            "--password-stdin",
            "--totp",
            &code,
        ],
        Some(format!("{}\n", user.password).as_bytes()),
    )
    .expect_ok("grantwire login");
    let out = cli(&["profile", EDGE, "--json"], None).expect_ok("grantwire profile");
    let v = out.json();
    v["profile"]["lease_id"]
        .as_str()
        .unwrap_or_else(|| panic!("profile --json has no profile.lease_id:\n{out}"))
        .to_owned()
}

/// `edge add NAME`, then `POST /v1/edge/enrol` with its token and a fresh X25519 key, through
/// curl trusting the broker by its key pin only.
fn enrol_edge(broker: &LoopbackBroker, name: &str) {
    let out = broker
        .admin(
            &[
                "edge",
                "add",
                name,
                "--endpoint",
                "192.0.2.1:51820",
                "--json",
            ],
            None,
        )
        .expect_ok("grantwire-broker edge add");
    let token = out.json()["enrolment_token"]
        .as_str()
        .unwrap_or_else(|| panic!("edge add --json has no enrolment_token:\n{out}"))
        .to_owned();
    let rng = ring::rand::SystemRandom::new();
    let key = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng)
        .and_then(|k| k.compute_public_key())
        .expect("X25519 key");
    let body = serde_json::json!({
        "token": token,
        "public_key": data_encoding::BASE64.encode(key.as_ref()),
    })
    .to_string();
    let pin = format!("sha256//{}", broker.spki_pin());
    let url = format!("{}/v1/edge/enrol", broker.url);
    host_exec(
        &[
            "curl",
            "-sS",
            "--fail-with-body",
            "--noproxy",
            "*",
            // Not verified by a CA (there is none); trusted by the pinned key, checked anyway.
            "--insecure",
            "--pinnedpubkey",
            &pin,
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body,
            &url,
        ],
        None,
        CMD,
    )
    .expect_ok("POST /v1/edge/enrol");
}

/// The `leases` of `lease list --json` (live leases only).
fn live_leases(broker: &LoopbackBroker) -> Vec<Value> {
    let out = broker
        .admin(&["lease", "list", "--json"], None)
        .expect_ok("grantwire-broker lease list");
    out.json()["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("lease list --json has no leases array:\n{out}"))
        .clone()
}

/// The details of the `web_form_refused` audit rows (`form=NAME reason=WHY`).
fn form_refusals(broker: &LoopbackBroker) -> Vec<String> {
    let out = broker
        .admin(&["audit", "--json"], None)
        .expect_ok("grantwire-broker audit");
    let v = out.json();
    let entries = v["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("audit --json has no entries array:\n{out}"));
    entries
        .iter()
        .filter(|e| e["kind"] == "web_form_refused")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Closes the browsers and the driver, then checks that none of their processes is left.
fn end_without_leftovers(driver: Chromedriver, browsers: Vec<Browser>) {
    let mut pids: Vec<u32> = browsers.iter().flat_map(|b| b.chromium_pids()).collect();
    assert!(
        !pids.is_empty(),
        "the browsers' Chromium processes are found"
    );
    pids.extend(driver.helper_pids());
    pids.extend(driver.pid());
    for b in browsers {
        b.close();
    }
    drop(driver);
    let left = running_after(&pids, Duration::from_secs(3));
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
