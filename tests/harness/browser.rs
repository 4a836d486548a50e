//! A real browser for the web pages' end-to-end tests: Debian's headless Chromium driven through
//! `chromedriver` with the `fantoccini` WebDriver client.
//!
//! [`Chromedriver::start`] runs one driver per test on a loopback port it picks itself;
//! [`Browser::new`] opens a session in a fresh profile. The API is synchronous, like the rest of
//! the harness: a [`Browser`] owns a small tokio runtime and blocks on each command, so page tests
//! are plain `#[test]` functions (never call it from inside another runtime).
//!
//! The broker's self-signed certificate is trusted by pinning its public key
//! ([`BrowserOpts::pin_spki`], from [`spki_pin_of_pem`]), never by ignoring certificate errors,
//! so a test still sees any other certificate. No host name resolves in the browser
//! (`--host-resolver-rules`): pages are reached by IP literal on loopback, and a page that
//! pulls something from the Internet breaks in the test instead of leaking a request.
//!
//! Screenshots go to `<target>/browser-artifacts/<name>/<NN>-<step>.png`, where `<target>` is
//! the directory above the test executable's profile directory (`target/` for
//! `target/debug/deps/browser-*`, so `CARGO_TARGET_DIR` is followed) unless
//! `GRANTWIRE_BROWSER_ARTIFACTS` names another root. `<name>` is cleared when a browser of that
//! name starts, so the directory shows the last run only.
//!
//! Nothing outlives the test: chromedriver runs in its own process group, stopped on drop;
//! each browser's Chromium processes are found by their unique `--user-data-dir`, the session is
//! closed on drop and any straggler is killed by PID.
//!
//! A page test, in outline (field names are the pages' to choose):
//!
//! ```no_run
//! use grantwire_e2e::{require_browser, unix_now, Browser, BrowserOpts, Chromedriver, LoopbackBroker};
//!
//! if !require_browser() {
//!     return;
//! }
//! let dir = tempfile::tempdir().expect("tempdir");
//! let broker = LoopbackBroker::start(&dir.path().join("broker"));
//! let alice = broker.add_user("alice", "correct horse battery staple", false);
//! let driver = Chromedriver::start();
//! let opts = BrowserOpts::desktop().pinned(broker.spki_pin());
//! let mut browser = Browser::new(&driver, "login_with_totp", opts);
//! browser.goto(&format!("{}/login", broker.url));
//! browser.fill("input[name=user]", &alice.name);
//! browser.fill("input[name=password]", &alice.password);
//! browser.fill("input[name=totp]", &alice.totp_at(unix_now()));
//! browser.screenshot("filled");
//! browser.click("button[type=submit]");
//! browser.wait_for("h1");
//! assert!(browser.body_text().contains("My access"));
//! let (_shot, codes) = browser.qr_codes("new-device");
//! ```

pub mod qr;
pub mod relay;
pub mod spki;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use super::env::{is_root, must_run, which};
use super::netns::Netns;
use super::proc::Proc;

pub use qr::{decode_qr, decode_qr_detailed, encode_qr_png, png_to_luma};
pub use relay::NsRelay;
pub use spki::{pem_to_der, spki_der, spki_pin, spki_pin_of_pem};

/// Debian's paths (`chromium`, `chromium-driver`), found on PATH when elsewhere.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One WebDriver command, a page load included. Loopback pages answer in milliseconds; this
/// only bounds a hung browser so the test fails instead of waiting forever.
const COMMAND: Duration = Duration::from_secs(30);
const DRIVER_READY: Duration = Duration::from_secs(10);
/// How long [`Browser::wait_for`] waits for an element to appear.
pub const WAIT: Duration = Duration::from_secs(10);

/// Returns true when Chromium and chromedriver are installed. Otherwise: under `CI=true` or
/// `GRANTWIRE_E2E_REQUIRED=1` it panics (CI must never pass by skipping); elsewhere it prints
/// `skipping: ...` and returns false.
pub fn require_browser() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| find_tool(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "the browser tests need {} (Debian's `chromium` and `chromium-driver`; \
         scripts/install-deps.sh installs them)",
        missing.join(" and ")
    );
    if must_run() {
        panic!("the browser tests are required here (CI=true or GRANTWIRE_E2E_REQUIRED=1) and {reason}");
    }
    eprintln!("skipping: {reason}");
    false
}

fn find_tool(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.is_file() {
        return Some(p.to_owned());
    }
    which(p.file_name()?.to_str()?)
}

/// A `chromedriver` on a loopback port of its own choosing (`--port=0`; it prints the port, so
/// two tests never race for one). Stopped with its process group on drop.
pub struct Chromedriver {
    proc: Proc,
    url: String,
    /// HOME of the driver and its browsers: Chromium keeps things outside its profile
    /// (`~/.pki/nssdb`, `~/.cache`), and none of it belongs in the user's home.
    home: tempfile::TempDir,
    /// For a driver inside a test namespace, the relay the test reaches it through.
    _relay: Option<NsRelay>,
}

impl Chromedriver {
    pub fn start() -> Chromedriver {
        Self::start_with(None)
    }

    /// A driver, and so its browsers, inside `ns`: the pages see the namespace's address. The
    /// test talks to it through an [`NsRelay`] on its own loopback.
    pub fn start_in(ns: &Netns) -> Chromedriver {
        Self::start_with(Some(ns))
    }

    fn start_with(ns: Option<&Netns>) -> Chromedriver {
        let bin = find_tool(CHROMEDRIVER).expect("chromedriver: call require_browser() first");
        let home = tempfile::Builder::new()
            .prefix("grantwire-chromedriver")
            .tempdir()
            .expect("chromedriver home");
        let bin_text = bin.display().to_string();
        // chromedriver accepts connections from loopback only unless told otherwise.
        let argv = [bin_text.as_str(), "--port=0"];
        let mut cmd = match ns {
            Some(ns) => ns.command(&argv),
            None => {
                let mut cmd = Command::new(&bin);
                cmd.arg("--port=0");
                cmd
            }
        };
        cmd.env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("XDG_CACHE_HOME", home.path().join(".cache"));
        let mut proc = Proc::spawn("chromedriver", cmd, format!("{bin_text} --port=0"));
        let port = crate::wait_for(DRIVER_READY, Duration::from_millis(20), || {
            proc.assert_running("chromedriver to print its port");
            let out = proc.stdout();
            let line = out
                .lines()
                .find(|l| l.contains("started successfully on port"))?;
            line.trim_end_matches('.')
                .rsplit(' ')
                .next()?
                .parse::<u16>()
                .ok()
        })
        .unwrap_or_else(|| panic!("chromedriver did not start\n{}", proc.logs()));
        let relay = ns.map(|ns| NsRelay::start(ns, port));
        let port = relay.as_ref().map_or(port, NsRelay::port);
        let ready = crate::wait_for(DRIVER_READY, Duration::from_millis(20), || {
            status_ready(port).then_some(())
        });
        if ready.is_none() {
            panic!("chromedriver's /status never said ready\n{}", proc.logs());
        }
        Chromedriver {
            proc,
            url: format!("http://127.0.0.1:{port}"),
            home,
            _relay: relay,
        }
    }

    /// Adds the CA certificate `pem` as a trusted root to the NSS store in the driver's HOME,
    /// where Chromium on Linux keeps the user's own trust (`~/.pki/nssdb`), as a person adds a
    /// private CA. Call before starting a browser. Needs `certutil` (Debian's libnss3-tools).
    pub fn trust_root(&self, pem: &Path, nickname: &str) {
        let certutil = which("certutil").unwrap_or_else(|| {
            panic!("certutil (Debian's libnss3-tools) is needed to add a root to Chromium's trust")
        });
        let db = self.home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&db).expect("nssdb dir");
        let db_arg = format!("sql:{}", db.display());
        let run = |args: &[&str]| {
            let out = Command::new(&certutil)
                .args(args)
                .output()
                .expect("run certutil");
            assert!(
                out.status.success(),
                "certutil {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if !db.join("cert9.db").exists() {
            run(&["-N", "-d", &db_arg, "--empty-password"]);
        }
        let pem = pem.to_str().expect("UTF-8 path");
        run(&["-A", "-d", &db_arg, "-n", nickname, "-t", "C,,", "-i", pem]);
    }

    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Processes outside the driver's process group that belong to its browsers: Chromium's
    /// crash handler starts in a session of its own (found by its database under the driver's
    /// HOME). They end with their browser; [`Drop`] kills any that has not.
    pub fn helper_pids(&self) -> Vec<u32> {
        pids_mentioning(self.home.path())
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(3));
        let gone = crate::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
            self.helper_pids().is_empty().then_some(())
        });
        if gone.is_none() {
            kill_pids(&self.helper_pids());
        }
    }
}

/// GET /status over a plain socket: `"ready":true` once the driver takes sessions. The driver
/// keeps the connection open, so the answer is judged as it arrives, not at end of stream.
fn status_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
        if got.windows(12).any(|w| w == b"\"ready\":true") {
            return true;
        }
    }
    false
}

/// How a browser is started.
#[derive(Debug, Clone)]
pub struct BrowserOpts {
    /// base64 SHA-256 of a SubjectPublicKeyInfo whose certificate is trusted ([`spki_pin`]).
    pub pin_spki: Option<String>,
    /// Viewport size in CSS pixels, at device scale 1 (screenshots have exactly this size).
    pub window: (u32, u32),
    /// Emulate a phone: touch, and `<meta name="viewport">` honoured as a mobile browser does.
    pub mobile: bool,
    /// Where downloads are saved, without asking (none: Chromium's default).
    pub downloads: Option<PathBuf>,
    /// Hosts (IP literals) the browser may reach besides 127.0.0.1: a test namespace's
    /// broker. Every other name or address is unreachable.
    pub reach: Vec<String>,
    /// Names the browser resolves, each to an address in `reach`: (name, address).
    pub names: Vec<(String, String)>,
}

impl BrowserOpts {
    /// A laptop screen.
    pub fn desktop() -> BrowserOpts {
        BrowserOpts {
            pin_spki: None,
            window: (1280, 800),
            mobile: false,
            downloads: None,
            reach: Vec::new(),
            names: Vec::new(),
        }
    }

    /// A phone's viewport (an iPhone 12-15's 390x844): the pages' small-screen layout.
    pub fn phone() -> BrowserOpts {
        BrowserOpts {
            pin_spki: None,
            window: (390, 844),
            mobile: true,
            downloads: None,
            reach: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Lets the browser reach `host` (an address inside a namespace the test made).
    pub fn reaching(mut self, host: &str) -> BrowserOpts {
        crate::assert_safe_host(host);
        self.reach.push(host.to_owned());
        self
    }

    /// Lets the browser reach `host` (an address inside a namespace the test made) by the
    /// name `name`, as DNS would give it: for pages whose certificate names the host.
    pub fn resolving(mut self, name: &str, host: &str) -> BrowserOpts {
        crate::assert_safe_host(host);
        self.names.push((name.to_owned(), host.to_owned()));
        self.reaching(host)
    }

    /// Saves downloads into `dir` without a prompt.
    pub fn downloads_to(mut self, dir: &Path) -> BrowserOpts {
        self.downloads = Some(dir.to_owned());
        self
    }

    /// Trusts the certificate whose SPKI pin is `pin` (see [`spki_pin_of_pem`]).
    pub fn pinned(mut self, pin: impl Into<String>) -> BrowserOpts {
        self.pin_spki = Some(pin.into());
        self
    }
}

/// A headless Chromium session in its own temporary profile.
pub struct Browser {
    client: Option<Client>,
    rt: tokio::runtime::Runtime,
    profile: tempfile::TempDir,
    artifacts: PathBuf,
    step: u32,
}

impl Browser {
    /// Starts Chromium through `driver`. `name` names the screenshot directory (a test name;
    /// one per browser, `a/b` nests).
    pub fn new(driver: &Chromedriver, name: &str, opts: BrowserOpts) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("grantwire-chromium")
            .tempdir()
            .expect("chromium profile dir");
        let artifacts = artifacts_root().join(name);
        // Only PNGs of an earlier run go; the directory itself may hold a nested browser's.
        let _ = std::fs::create_dir_all(&artifacts);
        if let Ok(entries) = std::fs::read_dir(&artifacts) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "png") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let caps = capabilities(&chromium_args(profile.path(), &opts), &opts);
        let connect = async {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(driver.url())
                .await
        };
        let client = match rt.block_on(async { tokio::time::timeout(COMMAND, connect).await }) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("no WebDriver session: {e}\n{}", driver.proc().logs()),
            Err(_) => panic!(
                "no WebDriver session within {COMMAND:?}\n{}",
                driver.proc().logs()
            ),
        };
        Browser {
            client: Some(client),
            rt,
            profile,
            artifacts,
            step: 0,
        }
    }

    /// Navigates to `url` and waits for the load; panics on failure.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        if let Err(e) = self.try_goto(url) {
            panic!("navigating to {url}: {e}");
        }
    }

    /// Navigates to `url`; `Err` with chromedriver's message when the load failed outright (a
    /// refused connection, a name that does not resolve). A certificate error is not one:
    /// Chromium shows its warning page, whose source holds `ERR_CERT_...`.
    pub fn try_goto(&self, url: &str) -> Result<(), String> {
        self.run(|c| async move { c.goto(url).await })
    }

    /// Waits up to [`WAIT`] for an element matching `css`; panics if none appears.
    #[track_caller]
    pub fn wait_for(&self, css: &str) {
        let found = self.run(|c| async move {
            c.wait()
                .at_most(WAIT)
                .for_element(Locator::Css(css))
                .await
                .map(drop)
        });
        if let Err(e) = found {
            panic!("no `{css}` on {} within {WAIT:?}: {e}", self.current_url());
        }
    }

    /// Whether an element matching `css` is on the page now.
    pub fn exists(&self, css: &str) -> bool {
        self.run(|c| async move { c.find_all(Locator::Css(css)).await.map(|v| !v.is_empty()) })
            .unwrap_or(false)
    }

    /// Clears the field matching `css` and types `text` into it.
    #[track_caller]
    pub fn fill(&self, css: &str, text: &str) {
        let r = self.run(|c| async move {
            let el = c.find(Locator::Css(css)).await?;
            el.clear().await?;
            el.send_keys(text).await
        });
        self.expect(r, &format!("filling `{css}`"));
    }

    #[track_caller]
    pub fn click(&self, css: &str) {
        let r = self.run(|c| async move { c.find(Locator::Css(css)).await?.click().await });
        self.expect(r, &format!("clicking `{css}`"));
    }

    /// The rendered text of the element matching `css`.
    #[track_caller]
    pub fn text(&self, css: &str) -> String {
        let r = self.run(|c| async move { c.find(Locator::Css(css)).await?.text().await });
        self.expect(r, &format!("text of `{css}`"))
    }

    /// An attribute of the element matching `css` (`None` when it has none).
    #[track_caller]
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let r = self.run(|c| async move { c.find(Locator::Css(css)).await?.attr(name).await });
        self.expect(r, &format!("attribute {name} of `{css}`"))
    }

    /// The visible text of the whole page. WebDriver reports no HTTP status: tests judge a
    /// page by what it shows.
    #[track_caller]
    pub fn body_text(&self) -> String {
        self.text("body")
    }

    /// The page's HTML as the browser holds it now (the DOM, serialised).
    #[track_caller]
    pub fn source(&self) -> String {
        let r = self.run(|c| async move { c.source().await });
        self.expect(r, "page source")
    }

    pub fn current_url(&self) -> String {
        self.run(|c| async move { c.current_url().await })
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("(unknown URL: {e})"))
    }

    pub fn title(&self) -> String {
        self.run(|c| async move { c.title().await })
            .unwrap_or_else(|e| format!("(unknown title: {e})"))
    }

    /// Runs `js` as a function body with `args` as `arguments`; returns what it returns.
    /// E.g. `execute("document.querySelector('input[name=csrf]').remove()", vec![])`.
    #[track_caller]
    pub fn execute(&self, js: &str, args: Vec<Value>) -> Value {
        let r = self.run(|c| async move { c.execute(js, args).await });
        self.expect(r, "executing script")
    }

    /// Sends `keys` to the focused element (the page body when nothing has focus), as a
    /// keyboard would: [`fantoccini::key::Key`] values convert with `char::from(Key::Tab)`.
    #[track_caller]
    pub fn press(&self, keys: &str) {
        let r = self.run(|c| async move { c.active_element().await?.send_keys(keys).await });
        self.expect(r, "pressing keys");
    }

    pub fn tab(&self) {
        self.press(&char::from(fantoccini::key::Key::Tab).to_string());
    }

    pub fn enter(&self) {
        self.press(&char::from(fantoccini::key::Key::Enter).to_string());
    }

    /// What has keyboard focus, as `tag#id[name=..] "text"`, for keyboard navigation tests.
    pub fn focused(&self) -> String {
        let js = "const e = document.activeElement; if (!e) return '';\
                  let d = e.tagName.toLowerCase(); if (e.id) d += '#' + e.id;\
                  const n = e.getAttribute('name'); if (n) d += '[name=' + n + ']';\
                  const t = (e.innerText || e.value || '').trim().slice(0, 40);\
                  return t ? d + ' \"' + t + '\"' : d;";
        self.execute(js, vec![])
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Presses Tab until the focused element matches `css`, at most `max` times; returns the
    /// number of presses. Panics with the focus path when it never gets there.
    #[track_caller]
    pub fn tab_to(&self, css: &str, max: usize) -> usize {
        let js = "return document.activeElement !== null && document.activeElement.matches(arguments[0]);";
        let mut path = Vec::new();
        for presses in 1..=max {
            self.tab();
            path.push(self.focused());
            if self.execute(js, vec![json!(css)]) == json!(true) {
                return presses;
            }
        }
        panic!("`{css}` not reached in {max} Tab presses; focus went: {path:?}");
    }

    /// Saves a PNG of the viewport as `<artifacts>/<NN>-<step>.png` and returns its path.
    #[track_caller]
    pub fn screenshot(&mut self, step: &str) -> PathBuf {
        let png = self.expect(
            self.run(|c| async move { c.screenshot().await }),
            "screenshot",
        );
        self.step += 1;
        let safe: String = step
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.artifacts.join(format!("{:02}-{safe}.png", self.step));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Takes a screenshot named `step` and decodes every QR code in it; returns the
    /// screenshot's path and the codes' payloads.
    #[track_caller]
    pub fn qr_codes(&mut self, step: &str) -> (PathBuf, Vec<String>) {
        let path = self.screenshot(step);
        let png = std::fs::read(&path).expect("read screenshot back");
        let codes = decode_qr(&png);
        (path, codes)
    }

    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts
    }

    /// The PIDs of this browser's Chromium processes (those using its profile directory).
    pub fn chromium_pids(&self) -> Vec<u32> {
        pids_mentioning(self.profile.path())
    }

    /// Ends the session and waits for Chromium to exit (also done on drop).
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Known before the session ends: once Chromium's main process exits, a child it
        // leaves is reparented and may name no profile path, so a fresh look would miss it.
        let known = self.chromium_pids();
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        let gone = crate::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            (self.chromium_pids().is_empty() && still_running(&known).is_empty()).then_some(())
        });
        if gone.is_none() {
            let mut left = self.chromium_pids();
            left.extend(still_running(&known));
            kill_pids(&left);
        }
    }

    fn run<'a, T, E, F, Fut>(&'a self, f: F) -> Result<T, String>
    where
        F: FnOnce(&'a Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>> + 'a,
        E: std::fmt::Display,
    {
        let client = self.client.as_ref().ok_or("the session is closed")?;
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND, f(client)).await })
        {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {COMMAND:?}")),
        }
    }

    #[track_caller]
    fn expect<T>(&self, r: Result<T, String>, what: &str) -> T {
        r.unwrap_or_else(|e| panic!("{what} on {}: {e}", self.current_url()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where screenshots go (see the module documentation).
pub fn artifacts_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("GRANTWIRE_BROWSER_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe.parent().unwrap_or(Path::new("."));
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    dir.parent().unwrap_or(dir).join("browser-artifacts")
}

fn chromium_args(profile: &Path, opts: &BrowserOpts) -> Vec<String> {
    let (w, h) = opts.window;
    let mut args = vec![
        "--headless=new".to_owned(),
        "--disable-gpu".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={w},{h}"),
        // /dev/shm is 64 MiB in a default container, too small for Chromium's shared memory.
        "--disable-dev-shm-usage".to_owned(),
        // The safety rule: the browser talks to the broker on loopback and to nothing else
        // (no update checks, sync, metrics, or name look-ups at all).
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        host_rules(&opts.names, &opts.reach),
    ];
    if is_root() {
        // Chromium refuses to start as root with its sandbox on (the sandbox relies on
        // dropping privileges root would keep); CI and the netns tests run as root.
        args.push("--no-sandbox".to_owned());
    }
    if let Some(pin) = &opts.pin_spki {
        // Honoured only with --user-data-dir set, which every session here has.
        args.push(format!("--ignore-certificate-errors-spki-list={pin}"));
    }
    args
}

/// Every host unresolvable (IP literals too) except 127.0.0.1, `reach`, and the `names`
/// (each mapped to its address; the first matching rule applies).
fn host_rules(names: &[(String, String)], reach: &[String]) -> String {
    let mut rules = "--host-resolver-rules=".to_owned();
    for (name, host) in names {
        rules.push_str(&format!("MAP {name} {host}, "));
    }
    rules.push_str("MAP * ~NOTFOUND, EXCLUDE 127.0.0.1");
    for host in reach {
        rules.push_str(", EXCLUDE ");
        rules.push_str(host);
    }
    rules
}

fn capabilities(args: &[String], opts: &BrowserOpts) -> serde_json::Map<String, Value> {
    let binary = find_tool(CHROMIUM).expect("chromium: call require_browser() first");
    let (width, height) = opts.window;
    // The viewport is set by device emulation: --window-size sizes a window whose viewport is
    // smaller by the emulated browser frame, and never narrower than 500 pixels.
    let metrics = json!({
        "width": width, "height": height, "pixelRatio": 1.0,
        "mobile": opts.mobile, "touch": opts.mobile,
    });
    let mut chrome = json!({
        "binary": binary,
        "args": args,
        "mobileEmulation": { "deviceMetrics": metrics },
    });
    if let Some(dir) = &opts.downloads {
        chrome["prefs"] = json!({
            "download.default_directory": dir,
            "download.prompt_for_download": false,
        });
    }
    let caps = json!({
        "browserName": "chrome",
        // Explicit: a certificate is trusted only through the SPKI pin.
        "acceptInsecureCerts": false,
        "timeouts": { "pageLoad": COMMAND.as_millis() as u64, "script": 10_000, "implicit": 0 },
        "goog:chromeOptions": chrome,
    });
    match caps {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

/// The processes with `dir` (or a path inside it) in an argument, and all their descendants
/// (zygotes, renderers and helpers do not all repeat `--user-data-dir`). Every `dir` here is a
/// fresh temporary directory, so only this browser's or this driver's processes match.
fn pids_mentioning(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    let inside = format!("{dir}/");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let procs: Vec<(u32, Option<u32>, bool)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid_alive(pid))
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let own = cmdline.split(|&b| b == 0).any(|arg| {
                let arg = String::from_utf8_lossy(arg);
                arg.ends_with(&dir) || arg.contains(&inside)
            });
            (pid, stat_field(pid, 1), own)
        })
        .collect();
    let mut found: Vec<u32> = procs.iter().filter(|p| p.2).map(|p| p.0).collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (pid, ppid, _) in &procs {
            if *ppid == Some(parent) && !found.contains(pid) {
                found.push(*pid);
            }
        }
        i += 1;
    }
    found
}

/// SIGKILL to each of `pids`, all found by [`pids_mentioning`] one of our own directories.
fn kill_pids(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill")
            .args(["-s", "KILL", &pid.to_string()])
            .status();
    }
}

/// The process group of `pid`, when it lives.
pub fn pgid_of(pid: u32) -> Option<u32> {
    stat_field(pid, 2)
}

/// Field `n` of `/proc/PID/stat` after the command name (0: state, 1: ppid, 2: pgrp).
fn stat_field(pid: u32, n: usize) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is parenthesised and may itself hold spaces or parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
}

/// Those of `pids` that are still live processes.
fn still_running(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|&p| pid_alive(p)).collect()
}

/// Waits up to `limit` for every one of `pids` to exit and returns those still running then.
/// A process that is leaving (its memory already released, not yet a zombie) is caught by
/// this wait; one that was left behind is still running at the end.
pub fn running_after(pids: &[u32], limit: Duration) -> Vec<u32> {
    crate::wait_for(limit, Duration::from_millis(50), || {
        still_running(pids).is_empty().then_some(())
    });
    still_running(pids)
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the parenthesised command name, which may itself hold spaces.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}
