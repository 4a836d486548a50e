//! From the browser to Plex: a user signs in in headless Chromium, makes a tunnel on "New
//! device" (the key pair made by the browser's WebCrypto), reads the QR code off a screenshot
//! and downloads the `.conf`; the two are the same profile; `wireguard-go` comes up from the
//! download and the stand-in Plex loads through it at the URL the page names; the user revokes
//! the lease on "My access" and the page stops loading.
//!
//! Chromium runs in the client namespace (its chromedriver started there, reached through a
//! relay), so it reaches the broker from 192.0.2.2 like the WireGuard client beside it: the
//! lease the browser gets is pinned to the address the tunnel then comes from. Topology in
//! `harness/lab.rs`. Screenshots: `<target>/browser-artifacts/browser_tunnel/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grantwire_e2e::harness::browser::spki_pin_of_pem;
use grantwire_e2e::harness::lab::{CLIENT_IP, HOME_OUTSIDE_IP};
use grantwire_e2e::harness::loopback::CERT_FILE;
use grantwire_e2e::{
    conf_keys, require_browser, require_env, unix_now, Browser, BrowserOpts, Chromedriver, KeyPair,
    Lab, WgClient,
};

/// A first page load: handshake plus one TCP exchange, with room for a loaded CI machine.
const FIRST_LOAD: Duration = Duration::from_secs(15);
/// The revocation reaching the edge (pushed at once) with room to spare.
const AFTER_REVOKE: Duration = Duration::from_secs(10);
const DOWNLOAD: Duration = Duration::from_secs(10);

#[test]
fn a_tunnel_made_in_the_browser_loads_plex_until_it_is_revoked() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() || !require_browser() {
        return;
    }
    let mut lab = Lab::new("bt", false);
    lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let downloads = lab.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let cert = std::fs::read_to_string(lab.broker.data_dir.join(CERT_FILE)).expect("cert");
    let driver = Chromedriver::start_in(&lab.client);
    let opts = BrowserOpts::desktop()
        .pinned(spki_pin_of_pem(&cert))
        .reaching(HOME_OUTSIDE_IP)
        .downloads_to(&downloads);
    let mut b = Browser::new(&driver, "browser_tunnel/browser-key", opts);

    // Sign in with the authenticator's code of this moment.
    let base = lab.broker_url();
    b.goto(&format!("{base}/login"));
    b.wait_for("form#login");
    b.fill("#user", &alice.name);
    b.fill("#password", &alice.password);
    b.fill("#code", &alice.totp_at(unix_now()));
    b.click("#submit");
    b.wait_for("#whoami-user, p#error");
    assert_eq!(b.text("#source-ip"), CLIENT_IP, "{}", b.body_text());
    b.screenshot("signed-in");

    // New device: the page's script has made a test key, so the key is made here.
    b.click("#new-device-link");
    b.wait_for("form#new-device[data-keys=browser]");
    assert_eq!(b.text("#source-ip"), CLIENT_IP);
    assert!(b.text("#key-origin").contains("made in this browser"));
    b.screenshot("new-device");
    b.click("#make-device");
    b.wait_for("#device-result:not([hidden]), #device-error:not([hidden])");
    assert!(
        !b.exists("#device-error:not([hidden])"),
        "{}",
        b.text("#device-error")
    );
    let lease_id = b
        .attr("#device-result", "data-lease-id")
        .expect("the result names its lease");
    let plex_url = b.text("#plex-url");
    assert_eq!(b.text("#device-pin"), format!("{CLIENT_IP}/32"));

    // The QR code, read off the screen, and the download are the same file.
    let (shot, codes) = b.qr_codes("tunnel-qr");
    assert_eq!(codes.len(), 1, "one QR code in {}", shot.display());
    b.click("#conf-download");
    let conf_path = wait_download(&downloads, "gw-home.conf");
    let conf = std::fs::read_to_string(&conf_path).expect("read the download");
    assert_eq!(codes[0], conf, "the QR code and the download differ");
    assert!(conf.contains(&format!("# Plex: {plex_url}\n")), "{conf}");
    assert!(
        conf.contains(&format!("Works only from {CLIENT_IP}/32 ")),
        "{conf}"
    );

    // Its key pair is the lease's, and the private half never reached the broker.
    let KeyPair { private, public } = conf_keys(&conf);
    let leases = lab.broker.leases(&lab.home);
    let lease = leases
        .iter()
        .find(|l| l["id"] == lease_id.as_str())
        .unwrap_or_else(|| panic!("lease {lease_id} not in {leases:?}"));
    assert_eq!(lease["public_key"], public.as_str(), "{lease}");
    assert_eq!(lease["pin"], format!("{CLIENT_IP}/32").as_str(), "{lease}");
    assert_not_in_files(&lab.broker.data_dir, &private);
    assert!(
        !lab.broker.proc().logs().contains(&private),
        "the private key is in the broker's log"
    );

    // The tunnel from the download loads Plex at the URL the page gave.
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &conf_path);
    lab.wait_page(&lab.client, &plex_url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("Plex never loaded through the browser's tunnel: {last:?}"));

    // Revoked on "My access", it stops.
    b.goto(&format!("{base}/access"));
    let row = format!("tr[data-lease-id=\"{lease_id}\"]");
    b.wait_for(&row);
    b.screenshot("access-with-lease");
    b.click(&format!("{row} form.revoke button"));
    b.wait_for("#notice");
    assert!(!b.exists(&row), "the revoked lease is still listed");
    b.screenshot("revoked");
    let start = Instant::now();
    while lab.page_loads(&lab.client, &plex_url, Duration::from_secs(1)) {
        assert!(
            start.elapsed() < AFTER_REVOKE,
            "Plex still loads {AFTER_REVOKE:?} after the revocation"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !lab.page_loads(&lab.client, &plex_url, Duration::from_secs(2)),
        "Plex loads again after the revocation"
    );
    drop(wg);
    b.close();
    drop(driver);
    lab.assert_no_unexpected_warnings(&[]);
}

/// Waits for Chromium to finish saving `name` into `dir` (it writes `*.crdownload` first).
fn wait_download(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let done = grantwire_e2e::wait_for(DOWNLOAD, Duration::from_millis(100), || {
        let partial = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "crdownload"))
            })
            .unwrap_or(true);
        (path.is_file() && !partial).then_some(())
    });
    if done.is_none() {
        let found: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!(
            "no download {name} within {DOWNLOAD:?}; {} holds {found:?}",
            dir.display()
        );
    }
    path
}

/// Panics if `text` is in any file under `dir`.
fn assert_not_in_files(dir: &Path, text: &str) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_not_in_files(&path, text);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
                "the private key is in {}",
                path.display()
            );
        }
    }
}
