//! `grantwire-broker serve` on the host's loopback, for the browser tests: the pages need no
//! namespace, root or WireGuard, only a broker the browser can reach on 127.0.0.1.
//!
//! It listens on `127.0.0.1:0` and reads the port from its `listening on https://...` line, so
//! parallel tests never compete for a port and nothing is exposed beyond loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::bins::bins;
use super::browser::spki_pin_of_pem;
use super::grantwire::{UserInfo, DAEMON_TZ};
use super::proc::{host_exec, Output, Proc};
use super::totp;

const READY: Duration = Duration::from_secs(20);
const CMD: Duration = Duration::from_secs(30);

/// The broker writes its self-signed certificate here, in its data directory.
pub const CERT_FILE: &str = "tls-cert.pem";

pub struct LoopbackBroker {
    pub data_dir: PathBuf,
    /// `https://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// SHA-256 of the TLS certificate as the broker wrote it to `tls-cert.sha256`.
    pub fingerprint: String,
    proc: Proc,
}

impl LoopbackBroker {
    /// Starts the broker with `data_dir` (made 0700) and waits until it announces its URL, has
    /// written its certificate and answers TCP on the port.
    pub fn start(data_dir: &Path) -> LoopbackBroker {
        std::fs::create_dir_all(data_dir).expect("broker data dir");
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .expect("broker data dir mode 0700");
        let bin = bins().broker_str();
        let data = data_dir.to_str().expect("UTF-8 data dir");
        let argv = [bin, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"];
        let mut cmd = Command::new(bin);
        cmd.args(&argv[1..])
            .env("TZ", DAEMON_TZ)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            );
        let mut proc = Proc::spawn("grantwire-broker serve", cmd, argv.join(" "));
        let url = crate::wait_for(READY, Duration::from_millis(50), || {
            proc.assert_running("the broker to announce its URL");
            let err = proc.stderr();
            let line = err.lines().find(|l| l.contains("listening on https://"))?;
            let url = line[line.find("https://")?..].trim().to_owned();
            let addr = url.trim_start_matches("https://");
            std::net::TcpStream::connect(addr).ok()?;
            data_dir.join(CERT_FILE).is_file().then_some(url)
        })
        .unwrap_or_else(|| panic!("the broker did not become ready\n{}", proc.logs()));
        let fingerprint = std::fs::read_to_string(data_dir.join("tls-cert.sha256"))
            .expect("tls-cert.sha256")
            .trim()
            .to_owned();
        LoopbackBroker {
            data_dir: data_dir.to_owned(),
            url,
            fingerprint,
            proc,
        }
    }

    /// The certificate the broker serves, as it wrote it.
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(CERT_FILE)).expect("broker certificate")
    }

    /// The value for [`super::browser::BrowserOpts::pinned`].
    pub fn spki_pin(&self) -> String {
        spki_pin_of_pem(&self.cert_pem())
    }

    /// `grantwire-broker ARGS --data-dir D`, through the running broker's admin socket.
    pub fn admin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut argv = vec![bins().broker_str()];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--data-dir", self.data_dir.to_str().expect("UTF-8")]);
        host_exec(&argv, stdin, CMD)
    }

    /// `user add NAME [--admin] --password-stdin --json`.
    pub fn add_user(&self, name: &str, password: &str, admin: bool) -> UserInfo {
        let mut args = vec!["user", "add", name, "--password-stdin", "--json"];
        if admin {
            args.push("--admin");
        }
        let out = self
            .admin(&args, Some(format!("{password}\n").as_bytes()))
            .expect_ok(&format!("grantwire-broker user add {name}"));
        let v = out.json();
        let field = |f: &str| {
            v.get(f)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("user add --json lacks {f:?}:\n{out}"))
                .to_owned()
        };
        UserInfo {
            name: name.to_owned(),
            totp_secret: totp::decode_secret(&field("totp_secret")),
            otpauth_uri: field("otpauth_uri"),
            password: password.to_owned(),
        }
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}
