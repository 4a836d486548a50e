//! A real ACME CA for the broker's certificates: Debian's `pebble` (Let's Encrypt's test CA,
//! RFC 8555) with `pebble-challtestsrv` as the DNS it resolves names with, both inside a test
//! namespace.
//!
//! The DNS answers every A query with the broker's address (and no AAAA), so Pebble's
//! TLS-ALPN-01 validation of the broker's name connects to the broker's listener across the
//! lab's veth. Pebble serves its directory over HTTPS with a certificate made here by a test CA
//! of our own (the broker is given that CA with `--acme-directory-ca`); the roots Pebble signs
//! broker certificates with are new at every Pebble start and read from its management port.
//! Pebble keeps no state: a restarted Pebble has a new root and knows no account.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::netns::Netns;
use super::proc::Proc;

const DIRECTORY_PORT: u16 = 14000;
const MANAGEMENT_PORT: u16 = 15000;
const DNS_PORT: u16 = 8053;
const DNS_MANAGEMENT_PORT: u16 = 8055;
const READY: Duration = Duration::from_secs(15);

/// Pebble and its DNS, running in a namespace at `ip`.
pub struct Pebble {
    ns_name: String,
    ip: String,
    dir: PathBuf,
    /// Certificates Pebble issues are valid this long.
    pub validity: Duration,
    pebble: Option<Proc>,
    _dns: Proc,
}

impl Pebble {
    /// Starts the DNS (answering `broker_ip` for every name) and Pebble at `ip` in `ns`, with
    /// TLS-ALPN-01 validations sent to port `tls_port` and certificates valid for `validity`.
    /// Files go under `dir`.
    pub fn start(
        ns: &Netns,
        ip: &str,
        broker_ip: &str,
        tls_port: u16,
        validity: Duration,
        dir: &Path,
    ) -> Pebble {
        crate::assert_safe_host(ip);
        crate::assert_safe_host(broker_ip);
        std::fs::create_dir_all(dir).expect("pebble dir");
        let (ca_pem, cert_pem, key_pem) = directory_certificate(ip);
        std::fs::write(dir.join("directory-ca.pem"), ca_pem).expect("write directory CA");
        std::fs::write(dir.join("directory-cert.pem"), cert_pem).expect("write directory cert");
        std::fs::write(dir.join("directory-key.pem"), key_pem).expect("write directory key");
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("{ip}:{DIRECTORY_PORT}"),
                "managementListenAddress": format!("{ip}:{MANAGEMENT_PORT}"),
                "certificate": dir.join("directory-cert.pem"),
                "privateKey": dir.join("directory-key.pem"),
                "httpPort": 5002,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity.as_secs(),
            }
        });
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write pebble.json");
        let dns_listen = format!("{ip}:{DNS_PORT}");
        let dns_management = format!("{ip}:{DNS_MANAGEMENT_PORT}");
        let dns = ns.spawn(
            "pebble-challtestsrv",
            &[
                "pebble-challtestsrv",
                "-defaultIPv4",
                broker_ip,
                "-defaultIPv6",
                "",
                "-dns01",
                &dns_listen,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &dns_management,
            ],
        );
        let mut pebble = Pebble {
            ns_name: ns.name().to_owned(),
            ip: ip.to_owned(),
            dir: dir.to_owned(),
            validity,
            pebble: None,
            _dns: dns,
        };
        pebble.restart(ns);
        pebble
    }

    /// The directory URL to give `--acme-directory`.
    pub fn directory_url(&self) -> String {
        format!("https://{}:{DIRECTORY_PORT}/dir", self.ip)
    }

    /// The test CA Pebble's directory certificate is signed by (`--acme-directory-ca`).
    pub fn directory_ca(&self) -> PathBuf {
        self.dir.join("directory-ca.pem")
    }

    /// Stops Pebble (the DNS stays): the CA is down.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            p.stop(Duration::from_secs(2));
        }
    }

    /// Starts Pebble (again): a new root, no accounts.
    pub fn restart(&mut self, ns: &Netns) {
        assert_eq!(ns.name(), self.ns_name, "Pebble restarts where it ran");
        self.stop();
        let config = self.dir.join("pebble.json");
        let dns = format!("{}:{DNS_PORT}", self.ip);
        let mut proc = ns.spawn_env(
            "pebble",
            &[
                "pebble",
                "-config",
                config.to_str().expect("UTF-8 path"),
                "-dnsserver",
                &dns,
            ],
            // Validations at once, not after Pebble's default random sleep of up to 15 s.
            &[("PEBBLE_VA_NOSLEEP", "1")],
        );
        let ready = crate::wait_for(READY, Duration::from_millis(100), || {
            proc.assert_running("Pebble to listen");
            self.fetch(ns, "/roots/0").ok()
        });
        assert!(ready.is_some(), "Pebble did not start\n{}", proc.logs());
        self.pebble = Some(proc);
    }

    /// The root certificate (PEM) this Pebble signs certificates under.
    pub fn root_pem(&self, ns: &Netns) -> String {
        self.fetch(ns, "/roots/0")
            .unwrap_or_else(|e| panic!("reading Pebble's root: {e}"))
    }

    fn fetch(&self, ns: &Netns, path: &str) -> Result<String, String> {
        let url = format!("https://{}:{MANAGEMENT_PORT}{path}", self.ip);
        let ca = self.directory_ca();
        let out = ns.exec_with(
            &[
                "curl",
                "-sS",
                "--fail",
                "--noproxy",
                "*",
                "--max-time",
                "3",
                "--cacert",
                ca.to_str().expect("UTF-8 path"),
                &url,
            ],
            None,
            Duration::from_secs(10),
        );
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.stderr)
        }
    }

    /// Pebble's own logs (validations, issued orders).
    pub fn logs(&self) -> String {
        self.pebble.as_ref().map(Proc::logs).unwrap_or_default()
    }
}

/// A CA of our own and, signed by it, a certificate for `ip`: what Pebble's directory serves.
fn directory_certificate(ip: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "grantwire test: Pebble directory CA",
    );
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("directory key");
    let params = rcgen::CertificateParams::new(vec![ip.to_owned()]).expect("directory params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("directory certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
