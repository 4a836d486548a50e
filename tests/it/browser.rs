//! The browser harness tested on its own, against a real broker on loopback before any page
//! exists: TLS trusted through the SPKI pin (and refused without it), text read from a page,
//! a QR code read back from a screenshot of the browser's own rendering, screenshots kept, and
//! no chromedriver or Chromium process left behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use grantwire_e2e::harness::browser::{
    encode_qr_png, pgid_of, png_to_luma, running_after, spki_pin_of_pem,
};
use grantwire_e2e::{require_browser, Browser, BrowserOpts, Chromedriver, LoopbackBroker};
use serde_json::Value;

/// A WireGuard profile of the size the broker hands out: the QR code has as many modules as a
/// real one (version 10 or so), so the module size on screen is realistic.
const PROFILE: &str = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
                       Address = 10.77.0.2/32\n\n[Peer]\n\
                       PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
                       PresharedKey = 3DfVhVHn8Gz3Yb8Bq0yK1m1nH2ZkF0jvVbJXq1o0zDo=\n\
                       Endpoint = 192.0.2.1:51820\nAllowedIPs = 10.77.0.1/32\n\
                       PersistentKeepalive = 25\n";

#[test]
fn browser_pins_the_broker_reads_pages_and_qr_codes_and_cleans_up() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = LoopbackBroker::start(&dir.path().join("broker"));
    // The page tests sign in as users made through the admin socket, as here.
    let t_user = Instant::now();
    let alice = broker.add_user("alice", "correct horse battery staple", false);
    assert_eq!(alice.totp_at(0).len(), 6, "a TOTP secret to log in with");
    let user_ms = t_user.elapsed().as_millis();
    let driver = Chromedriver::start();
    let driver_pid = driver.pid().expect("chromedriver pid");

    let t_browser = Instant::now();
    let mut pinned = Browser::new(
        &driver,
        "browser-selftest/pinned",
        BrowserOpts::desktop().pinned(broker.spki_pin()),
    );
    let startup = t_browser.elapsed();
    let mut shots: Vec<PathBuf> = Vec::new();
    let pids = pinned.chromium_pids();
    assert!(
        !pids.is_empty(),
        "the browser's Chromium processes are found by profile"
    );
    // Unauthenticated, the API answers 401 with a JSON error body; the browser shows it as text.
    let api = format!("{}/v1/openapi.json", broker.url);
    pinned.goto(&api);
    let text = pinned.body_text();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the pinned browser should show the JSON body ({e}):\n{text}"));
    assert!(
        body["error"]["code"].is_string(),
        "an error body as DESIGN.md words it: {body}"
    );
    shots.push(pinned.screenshot("broker-json-through-pin"));

    qr_from_screen(&mut pinned, &mut shots);
    form_by_keyboard_and_script(&mut pinned, &mut shots);

    // Without the pin the very same URL is a certificate error, and the JSON never shows.
    let mut unpinned = Browser::new(&driver, "browser-selftest/unpinned", BrowserOpts::phone());
    // A phone's screen; pages without `<meta name=viewport>` lay out 980 pixels wide on it.
    let screen = unpinned.execute("return [screen.width, screen.height];", vec![]);
    assert_eq!(screen, serde_json::json!([390, 844]), "the phone's screen");
    let shot = assert_certificate_error(&mut unpinned, &api, "without-pin");
    let (w, h, _) = png_to_luma(&std::fs::read(&shot).expect("screenshot")).expect("PNG");
    shots.push(shot);
    assert_eq!(
        (w, h),
        (390, 844),
        "a phone screenshot is the phone's viewport"
    );

    // A pin names one key: another key's pin trusts nothing of the broker's.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("rcgen");
    let opts = BrowserOpts::desktop().pinned(spki_pin_of_pem(&other.cert.pem()));
    let mut wrong = Browser::new(&driver, "browser-selftest/wrong-pin", opts);
    shots.push(assert_certificate_error(
        &mut wrong,
        &api,
        "another-keys-pin",
    ));

    for shot in &shots {
        let png = std::fs::read(shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{} is a real PNG",
            shot.display()
        );
    }

    // Renderers come and go with pages: the processes are counted at the end.
    let mut pids: Vec<u32> = [&pinned, &unpinned, &wrong]
        .iter()
        .flat_map(|b| b.chromium_pids())
        .collect();
    pids.extend(driver.helper_pids());
    pids.sort_unstable();
    pids.dedup();
    // Chromium runs in chromedriver's process group, so stopping the driver's group reaches a
    // browser whose own clean-up never ran (its crash handler is the driver's to find).
    for pid in [&pinned, &unpinned, &wrong]
        .iter()
        .flat_map(|b| b.chromium_pids())
    {
        assert_eq!(pgid_of(pid), Some(driver_pid), "Chromium pid {pid}'s group");
    }
    drop(wrong);
    drop(unpinned);
    drop(pinned);
    drop(driver);
    let processes = pids.len();
    pids.push(driver_pid);
    let left = running_after(&pids, Duration::from_secs(3));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    eprintln!(
        "browser self-test: user add {user_ms} ms, first Chromium session in {} ms ({} \
         processes), whole test {} ms; screenshots in {}",
        startup.as_millis(),
        processes,
        t0.elapsed().as_millis(),
        shots[0]
            .parent()
            .and_then(|p| p.parent())
            .unwrap_or(&shots[0])
            .display()
    );
    drop(broker);
}

/// Navigates to `url`, which must end in a certificate error page: the broker's body never
/// shows. Returns the screenshot of the error.
fn assert_certificate_error(browser: &mut Browser, url: &str, step: &str) -> PathBuf {
    let nav = browser.try_goto(url);
    let source = browser.source();
    let shot = browser.screenshot(&format!("certificate-error-{step}"));
    let cert_error = match &nav {
        Err(e) => e.contains("ERR_CERT"),
        Ok(()) => source.contains("ERR_CERT"),
    };
    assert!(
        cert_error,
        "{step}: the browser must hit a certificate error: navigation {nav:?}, page:\n{source}"
    );
    assert!(
        !browser.body_text().contains("unauthorized"),
        "{step}: the broker's body must not show past a certificate error"
    );
    shot
}

/// A form like the login page's, driven first by keyboard only (Tab, typing, Enter), then by
/// `fill` and `click` after a script removed its CSRF field, as the page tests will do.
fn form_by_keyboard_and_script(browser: &mut Browser, shots: &mut Vec<PathBuf>) {
    let html = "<!doctype html><title>form</title><form id=f>\
        <input type=hidden name=csrf value=t0k>\
        <label>User <input id=user name=user></label>\
        <label>Code <input id=code name=code inputmode=numeric></label>\
        <button id=go>Sign in</button></form><pre id=out></pre>\
        <script>f.addEventListener('submit', e => { e.preventDefault();\
        out.textContent = new URLSearchParams(new FormData(f)).toString(); });</script>";
    let url = format!(
        "data:text/html;base64,{}",
        data_encoding::BASE64.encode(html.as_bytes())
    );
    browser.goto(&url);
    assert_eq!(
        browser.tab_to("#user", 3),
        1,
        "the first field takes the first Tab"
    );
    browser.press("alice");
    browser.tab();
    browser.press("123456");
    assert_eq!(
        browser.tab_to("#go", 1),
        1,
        "the button follows the code field"
    );
    assert_eq!(browser.focused(), "button#go \"Sign in\"");
    browser.enter();
    assert_eq!(browser.text("#out"), "csrf=t0k&user=alice&code=123456");
    shots.push(browser.screenshot("form-sent-by-keyboard"));

    browser.fill("#code", "654321");
    let removed = browser.execute(
        "const c = document.querySelector('input[name=csrf]'); c.remove(); return c.value;",
        vec![],
    );
    assert_eq!(removed, "t0k");
    browser.click("#go");
    assert_eq!(browser.text("#out"), "user=alice&code=654321");
    shots.push(browser.screenshot("form-sent-without-csrf"));
}

/// Shows a profile's QR code the way a page would (an `<img>` scaled by CSS, not at whole pixels
/// per module) and reads it back from a screenshot of the window.
fn qr_from_screen(browser: &mut Browser, shots: &mut Vec<PathBuf>) {
    let png = encode_qr_png(PROFILE, 8, [17, 24, 39]);
    let b64 = |b: &[u8]| data_encoding::BASE64.encode(b);
    let html = format!(
        "<!doctype html><title>qr</title><body style=\"margin:2em;font-family:sans-serif\">\
         <p>Scan this with the WireGuard app</p>\
         <img alt=\"profile\" style=\"width:300px\" src=\"data:image/png;base64,{}\"></body>",
        b64(&png)
    );
    browser.goto(&format!("data:text/html;base64,{}", b64(html.as_bytes())));
    browser.wait_for("img[alt=profile]");
    assert_eq!(browser.text("p"), "Scan this with the WireGuard app");
    let (shot, codes) = browser.qr_codes("qr-code-on-screen");
    shots.push(shot);
    assert_eq!(codes, vec![PROFILE.to_owned()], "the one code on screen");
}
