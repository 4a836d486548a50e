//! The broker's certificates from a real ACME CA (issue 17): Debian's Pebble with its test DNS
//! in the "other" namespace, the broker in home with `--acme-domain broker.grantwire.test`.
//!
//! One timeline, with Pebble issuing one-minute certificates (renewed with 20 s left):
//! - the broker that ran self-signed is restarted with ACME and keeps its TLS key; Pebble
//!   validates it over TLS-ALPN-01 on port 8443 and the certificate curl sees at the broker's
//!   name verifies with Pebble's root as the only trust, and names no other host;
//! - Chromium, given Pebble's root as its one added trust, loads `/welcome` by the broker's
//!   name with no certificate error;
//! - the edge and the CLI pin what the broker announced (its key); after a renewal the broker
//!   presents a different certificate for the same key, and the CLI gets a new lease with the
//!   stored pin and a restarted edge connects with its stored pin, and the tunnel loads Plex;
//! - Pebble stopped: the renewal fails, is audited as `tls_renewal_failed` with an alert, and the
//!   broker keeps serving its current certificate (the CLI still works); Pebble back (a new
//!   root, no memory of the account): the broker makes a new account and renews;
//! - the TLS key replaced (a different key under the same name, CA-signed like the real one):
//!   the CLI refuses it with exit code 3 and the pin mismatch, though any browser would trust it.

use std::path::Path;
use std::time::{Duration, Instant};

use grantwire_e2e::harness::acme::Pebble;
use grantwire_e2e::harness::browser::pem_to_der;
use grantwire_e2e::harness::grantwire::Broker;
use grantwire_e2e::{
    require_browser, require_env, wait_for, Browser, BrowserOpts, Chromedriver, Edge, Lab, Netns,
};

const NAME: &str = "broker.grantwire.test";
const HOME_OTHER_IP: &str = "198.51.100.1";
const CA_IP: &str = "198.51.100.2";
const BROKER_PORT: u16 = 8443;
const VALIDITY: Duration = Duration::from_secs(60);
/// A renewal is due 40 s into a 60 s certificate; this covers it and a few retries.
const RENEWAL: Duration = Duration::from_secs(60);

#[test]
fn acme_certificates_are_issued_renewed_and_keep_the_pin_of_every_edge_and_cli() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() || !require_browser() {
        return;
    }
    let mut lab = Lab::new("acme", true);
    let other = lab.other.take().expect("the lab's other namespace");
    let mut pebble = Pebble::start(
        &other,
        CA_IP,
        HOME_OTHER_IP,
        BROKER_PORT,
        VALIDITY,
        &lab.dir.path().join("pebble"),
    );

    // The self-signed broker becomes an ACME one, with the same data directory and key.
    let data_dir = lab.broker.data_dir.clone();
    let self_signed_key = std::fs::read(data_dir.join("tls-key.pem")).expect("tls-key.pem");
    lab.broker.stop();
    lab.broker = acme_broker(&lab.home, &data_dir, &pebble);
    assert_eq!(
        std::fs::read(data_dir.join("tls-key.pem")).expect("tls-key.pem"),
        self_signed_key,
        "the broker must keep its TLS key when it moves to ACME"
    );
    for file in ["tls-key.pem", "acme-cert.pem", "acme-account.json"] {
        assert_mode_0600(&data_dir.join(file));
    }
    let pin = lab.broker.fingerprint.clone();
    let root = lab.dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem(&other)).expect("write Pebble's root");
    let first = presented(&lab.client, &root);
    assert!(
        leaf_key_pin(&first) == pin,
        "the broker announced {pin}, the key of the certificate it serves is {}",
        leaf_key_pin(&first)
    );
    assert_audit(&lab, "tls_certificate_issued", 1);

    // A friend's browser: Pebble's root is its only added trust; no pin, no warning.
    welcome_in_chromium(&lab, &root);

    // The edge and a CLI, both pinning the announced key; a tunnel to Plex.
    let edge = lab.enrol_edge();
    let user = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let cli = lab.device("alice");
    lab.login(&cli, &user);
    let _ = lab.profile(&cli, "before.conf");

    // Renewal: a new certificate, the same key; the stored pins still hold.
    let renewed = wait_for(RENEWAL, Duration::from_millis(500), || {
        let now = presented(&lab.client, &root);
        (now.leaf_der != first.leaf_der).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "no renewal within {RENEWAL:?}\n{}",
            lab.broker.proc().logs()
        )
    });
    assert_eq!(leaf_key_pin(&renewed), pin, "a renewal must keep the key");
    assert_audit(&lab, "tls_certificate_issued", 2);
    // The CLI with its stored pin, on new connections to the renewed certificate: a new lease,
    // and a new login that names no fingerprint (the broker is known by its key).
    let after = lab.profile(&cli, "after.conf");
    let code = user.totp_at(grantwire_e2e::unix_now() + 30);
    cli.login_known(
        &lab.client,
        &lab.broker_url(),
        &user.name,
        &user.password,
        &code,
    )
    .expect_ok("grantwire login without --fingerprint after the renewal");
    // The edge, restarted so that it connects to the renewed certificate with its stored pin.
    restart_edge(&mut lab);
    let wg = grantwire_e2e::WgClient::up(&lab.client, &format!("{}c", lab.base), &after);
    lab.wait_page(
        &lab.client,
        &lab.plex_url(&edge),
        grantwire_e2e::harness::lab::FIRST_LOAD,
    )
    .unwrap_or_else(|last| panic!("no page through the tunnel after the renewal: {last:?}"));
    drop(wg);

    // The CA down at renewal time: audited, alerted, and the current certificate stays.
    pebble.stop();
    let down_since = Instant::now();
    let serving = presented(&lab.client, &root);
    let failed = wait_for(RENEWAL, Duration::from_millis(500), || {
        let rows = audit_rows(&lab, "tls_renewal_failed");
        (!rows.is_empty()).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "no tls_renewal_failed in the audit log {RENEWAL:?} after the CA stopped\n{}",
            lab.broker.proc().logs()
        )
    });
    eprintln!(
        "renewal failed {:?} after the CA stopped",
        down_since.elapsed()
    );
    let detail = failed[0]["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.contains(NAME),
        "the failure names the domain: {detail}"
    );
    // The alert row the audit trigger adds (what `--alert-webhook` delivers, and the admin
    // pages list), read from the database file.
    let alerts = lab.home.exec_ok(&[
        "python3",
        "-c",
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
         print([k for (k,) in c.execute('SELECT u.kind FROM alerts a JOIN audit u ON u.id = a.audit_id')])",
        data_dir.join("broker.db").to_str().expect("UTF-8 path"),
    ]);
    assert!(
        alerts.stdout.contains("tls_renewal_failed"),
        "a failed renewal raises an alert:\n{alerts}"
    );
    assert_eq!(
        presented(&lab.client, &root).leaf_der,
        serving.leaf_der,
        "the broker keeps serving its current certificate while the CA is down"
    );
    cli.status(&lab.client, "home", true)
        .expect_ok("grantwire status while the CA is down");

    // The CA back, with a new root and no memory of the account.
    pebble.restart(&other);
    std::fs::write(&root, pebble.root_pem(&other)).expect("write Pebble's new root");
    let back = wait_for(RENEWAL, Duration::from_millis(500), || {
        let now = try_presented(&lab.client, &root)?;
        (now.leaf_der != serving.leaf_der).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "no certificate from the restarted CA within {RENEWAL:?}\n{}",
            lab.broker.proc().logs()
        )
    });
    assert_eq!(leaf_key_pin(&back), pin);
    assert!(
        lab.broker
            .proc()
            .stderr()
            .contains("the ACME CA no longer knows the saved account"),
        "the broker must have replaced the account the restarted CA forgot\n{}",
        lab.broker.proc().logs()
    );
    let _ = lab.profile(&cli, "back.conf");

    // Another key under the same name, CA-signed as well: the pinned CLI refuses it.
    lab.broker.stop();
    for file in ["tls-key.pem", "acme-cert.pem"] {
        std::fs::remove_file(data_dir.join(file)).expect("remove the key and certificate");
    }
    lab.broker = acme_broker(&lab.home, &data_dir, &pebble);
    assert_ne!(lab.broker.fingerprint, pin, "a new key has a new pin");
    let out = cli.profile(&lab.client, "home", &lab.dir.path().join("refused.conf"));
    assert_eq!(
        out.code,
        Some(3),
        "a different key under the same name must be refused (exit 3):\n{out}"
    );
    assert!(
        out.stderr.contains(&pin) && out.stderr.contains(&lab.broker.fingerprint),
        "the refusal names the pinned key and the presented one:\n{out}"
    );
    assert!(!lab.dir.path().join("refused.conf").exists());
    lab.other = Some(other);
    // The broker answers only TLS-ALPN-01 (the one challenge it sets ready), so each of these
    // is a validation of its listener by Pebble (which reuses some authorizations).
    let logs = pebble.logs();
    assert!(
        logs.contains("set VALID by completed challenge"),
        "Pebble validated the broker's name:\n{logs}"
    );
}

fn acme_broker(ns: &Netns, data_dir: &Path, pebble: &Pebble) -> Broker {
    let directory = pebble.directory_url();
    let ca = pebble.directory_ca();
    Broker::start_with_flags(
        ns,
        data_dir,
        &[
            "--acme-domain",
            NAME,
            "--acme-email",
            "owner@grantwire.test",
            "--acme-directory",
            &directory,
            "--acme-directory-ca",
            ca.to_str().expect("UTF-8 path"),
        ],
    )
}

/// The certificate the broker presents at its name, checked by curl against `root` only.
struct Presented {
    leaf_der: Vec<u8>,
}

fn presented(ns: &Netns, root: &Path) -> Presented {
    try_presented(ns, root).unwrap_or_else(|| {
        panic!("the broker's certificate at {NAME} does not verify against Pebble's root")
    })
}

fn try_presented(ns: &Netns, root: &Path) -> Option<Presented> {
    let resolve = format!(
        "{NAME}:{BROKER_PORT}:{}",
        grantwire_e2e::harness::lab::HOME_OUTSIDE_IP
    );
    let url = format!("https://{NAME}:{BROKER_PORT}/welcome");
    let out = ns.exec_with(
        &[
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "5",
            "--cacert",
            root.to_str().expect("UTF-8 path"),
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n%{certs}",
            &url,
        ],
        None,
        Duration::from_secs(10),
    );
    if !out.success() {
        eprintln!("curl at {NAME}: {}", out.stderr.trim());
        return None;
    }
    let (code, certs) = out.stdout.split_once('\n')?;
    assert_eq!(code, "200", "/welcome at {NAME}: {out}");
    let leaf_der = pem_to_der(certs, "CERTIFICATE")
        .unwrap_or_else(|e| panic!("curl's %{{certs}}: {e}\n{certs}"));
    Some(Presented { leaf_der })
}

/// SHA-256 of the leaf's SubjectPublicKeyInfo, as the broker prints its pin.
fn leaf_key_pin(p: &Presented) -> String {
    let spki = grantwire_e2e::harness::browser::spki_der(&p.leaf_der).expect("the leaf's SPKI");
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn audit_rows(lab: &Lab, kind: &str) -> Vec<serde_json::Value> {
    lab.broker
        .audit(&lab.home)
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

fn assert_audit(lab: &Lab, kind: &str, at_least: usize) {
    let rows = wait_for(Duration::from_secs(5), Duration::from_millis(200), || {
        let rows = audit_rows(lab, kind);
        (rows.len() >= at_least).then_some(rows)
    });
    assert!(
        rows.is_some(),
        "the audit log must hold {at_least} `{kind}` rows:\n{:#?}",
        lab.broker.audit(&lab.home)
    );
}

fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{} must be 0600", path.display());
}

fn restart_edge(lab: &mut Lab) {
    let mut old = lab.edge.take().expect("an enrolled edge");
    old.stop(Duration::from_secs(2));
    drop(old);
    lab.edge = Some(Edge::start(
        &lab.home,
        &lab.broker,
        "spent",
        lab.dir.path(),
        &format!("{}t", lab.base),
    ));
    let back = wait_for(Duration::from_secs(25), Duration::from_millis(200), || {
        let out = lab
            .broker
            .admin(&lab.home, &["edge", "list", "--json"], None)
            .expect_ok("grantwire-broker edge list");
        let edges = out.json()["edges"].as_array().cloned().unwrap_or_default();
        edges
            .iter()
            .any(|e| e["name"] == "home" && e["connected"] == true)
            .then_some(())
    });
    assert!(
        back.is_some(),
        "the restarted edge did not connect to the renewed certificate with its pin\n{}",
        lab.edge().proc().logs()
    );
}

/// Chromium in the client namespace, Pebble's root added to its NSS store and the broker's name
/// mapped to its address: `/welcome` loads over HTTPS with no certificate error.
fn welcome_in_chromium(lab: &Lab, root: &Path) {
    let host = grantwire_e2e::harness::lab::HOME_OUTSIDE_IP;
    let url = format!("https://{NAME}:{BROKER_PORT}/welcome");
    // The control: without Pebble's root the same page is Chromium's certificate warning, so
    // what passes below passes by that root.
    {
        let driver = Chromedriver::start_in(&lab.client);
        let opts = BrowserOpts::phone().resolving(NAME, host);
        let mut browser = Browser::new(&driver, "acme/untrusted", opts);
        let _ = browser.try_goto(&url);
        let warned = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
            browser
                .body_text()
                .contains("ERR_CERT_AUTHORITY_INVALID")
                .then_some(())
        });
        browser.screenshot("welcome-untrusted");
        assert!(
            warned.is_some(),
            "without Pebble's root Chromium must refuse the certificate; the page said:\n{}",
            browser.body_text()
        );
        browser.close();
    }
    let driver = Chromedriver::start_in(&lab.client);
    driver.trust_root(root, "Pebble test root");
    let opts = BrowserOpts::phone().resolving(NAME, host);
    let mut browser = Browser::new(&driver, "acme/welcome", opts);
    browser
        .try_goto(&url)
        .unwrap_or_else(|e| panic!("Chromium could not load {url}: {e}"));
    let loaded = browser.current_url();
    assert_eq!(loaded, url, "Chromium stayed on the page (no interstitial)");
    let title = browser.title();
    assert!(
        !title.to_ascii_lowercase().contains("privacy error"),
        "Chromium showed its certificate warning: {title}"
    );
    browser.wait_for("main");
    let secure = browser.execute("return window.isSecureContext;", vec![]);
    assert_eq!(
        secure,
        serde_json::json!(true),
        "the page is a secure context"
    );
    browser.screenshot("welcome-trusted-certificate");
    browser.close();
}
