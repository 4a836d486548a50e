//! Drivers for the three binaries, written against DESIGN.md's command-line contract only:
//! flags, the one JSON object `--json` prints on stdout, files the broker writes, exit codes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use super::bins::bins;
use super::metrics::Metrics;
use super::netns::Netns;
use super::plex::http_get;
use super::proc::{host_exec, Output, Proc};
use super::totp;

/// Exit code of a refused request (authentication, grant, pin).
pub const EXIT_REFUSED: i32 = 3;

pub const BROKER_PORT: u16 = 8443;
pub const EDGE_WG_PORT: u16 = 51820;
pub const METRICS_ADDR: &str = "127.0.0.1:9586";

const READY: Duration = Duration::from_secs(20);
const CMD: Duration = Duration::from_secs(30);

/// The time zone every daemon runs in: UTC+13:45 (the Chatham Islands' summer offset), as a
/// POSIX TZ string so it needs no tzdata. A time computed in local time anywhere in the broker
/// or the edge would move expiries by hours, and (5) and (8) would see it.
pub const DAEMON_TZ: &str = "XST-13:45";

/// Environment for the daemons: plain logs (no colour codes) at INFO unless the caller set
/// `RUST_LOG`, backtraces, so a failure's logs say something, and a time zone far from UTC.
fn daemon_env() -> Vec<(&'static str, String)> {
    vec![
        ("TZ", DAEMON_TZ.to_owned()),
        ("NO_COLOR", "1".to_owned()),
        (
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        ),
        ("RUST_BACKTRACE", "1".to_owned()),
    ]
}

fn spawn_daemon(ns: &Netns, label: &str, argv: &[&str]) -> Proc {
    let env = daemon_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ns.spawn_env(label, argv, &env)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn json_str(v: &Value, field: &str, out: &Output) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("JSON output lacks string field {field:?}:\n{out}"))
        .to_owned()
}

/// `grantwire-broker serve` in a namespace, plus its admin commands (which act through the
/// running broker's admin socket in the data directory).
pub struct Broker {
    pub data_dir: PathBuf,
    /// SHA-256 of the TLS certificate exactly as the broker wrote it to `tls-cert.sha256`.
    pub fingerprint: String,
    ns_name: String,
    proc: Proc,
}

/// What `user add --json` printed.
#[derive(Debug, Clone)]
pub struct UserInfo {
    pub name: String,
    pub totp_secret: Vec<u8>,
    pub otpauth_uri: String,
    pub password: String,
}

impl UserInfo {
    /// The code an authenticator shows at `unix_secs`.
    pub fn totp_at(&self, unix_secs: u64) -> String {
        totp::code_at(&self.totp_secret, unix_secs)
    }
}

/// What `edge add --json` printed.
#[derive(Debug, Clone)]
pub struct EdgeInfo {
    pub name: String,
    pub endpoint: String,
    pub subnet: String,
    /// The edge's address inside the tunnel, without a prefix length (`10.77.0.1`).
    pub tunnel_ip: String,
    pub enrolment_token: String,
}

impl Broker {
    /// Starts `grantwire-broker serve --data-dir D` (listening on its default, `[::]:8443`:
    /// both families) and waits until it
    /// has written its fingerprint, opened its admin socket and answers HTTPS on the port.
    pub fn start(ns: &Netns, data_dir: &Path) -> Broker {
        Self::start_wrapped(ns, data_dir, &[])
    }

    /// [`Broker::start`] under `wrapper` (for example `prlimit --nofile=1024:1024`), which must
    /// exec the broker so its pid is the broker's.
    pub fn start_wrapped(ns: &Netns, data_dir: &Path, wrapper: &[&str]) -> Broker {
        Self::start_full(ns, data_dir, wrapper, &[])
    }

    /// [`Broker::start`] with `serve` flags added (`--acme-domain`, say). With ACME the broker
    /// is ready once its first certificate is in service, and what it announces and writes to
    /// `tls-cert.sha256` is its key's fingerprint.
    pub fn start_with_flags(ns: &Netns, data_dir: &Path, flags: &[&str]) -> Broker {
        Self::start_full(ns, data_dir, &[], flags)
    }

    fn start_full(ns: &Netns, data_dir: &Path, wrapper: &[&str], flags: &[&str]) -> Broker {
        // The broker refuses a data dir that others can read (it holds the TLS key).
        std::fs::create_dir_all(data_dir).expect("broker data dir");
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .expect("broker data dir mode 0700");
        let mut argv = wrapper.to_vec();
        argv.extend([
            bins().broker_str(),
            "serve",
            "--data-dir",
            path_str(data_dir),
        ]);
        argv.extend_from_slice(flags);
        let mut proc = spawn_daemon(ns, "grantwire-broker serve", &argv);
        let fp_file = data_dir.join("tls-cert.sha256");
        let sock = data_dir.join("admin.sock");
        let url = format!("https://127.0.0.1:{BROKER_PORT}/");
        let fingerprint = crate::wait_for(READY, Duration::from_millis(50), || {
            proc.assert_running("the broker to be ready");
            let fp = std::fs::read_to_string(&fp_file).ok()?.trim().to_owned();
            if fp.is_empty() || !sock.exists() {
                return None;
            }
            // Any HTTP response at all (a 404 included) means the TLS listener is up.
            let probe = ns.exec_with(
                &[
                    "curl",
                    "-sSk",
                    "--noproxy",
                    "*",
                    "--max-time",
                    "1",
                    "-o",
                    "/dev/null",
                    &url,
                ],
                None,
                Duration::from_secs(5),
            );
            probe.success().then_some(fp)
        })
        .unwrap_or_else(|| {
            panic!(
                "the broker did not become ready within {READY:?} (expected {} , {} and HTTPS on \
                 port {BROKER_PORT})\n{}",
                fp_file.display(),
                sock.display(),
                proc.logs()
            )
        });
        let hex: String = fingerprint
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        let line = if flags.contains(&"--acme-domain") {
            "TLS key SHA-256 fingerprint:"
        } else {
            "TLS certificate SHA-256 fingerprint:"
        };
        let announced = proc.stderr().lines().any(|l| {
            l.contains(line) && l.to_ascii_lowercase().contains(&hex.to_ascii_lowercase())
        });
        assert!(
            announced,
            "the broker's stderr must announce `grantwire-broker: {line} {fingerprint}` (the \
             value in {})\n{}",
            fp_file.display(),
            proc.logs()
        );
        Broker {
            data_dir: data_dir.to_owned(),
            fingerprint,
            ns_name: ns.name().to_owned(),
            proc,
        }
    }

    /// `grantwire-broker ARGS --data-dir D` in the broker's namespace.
    pub fn admin(&self, ns: &Netns, args: &[&str], stdin: Option<&[u8]>) -> Output {
        assert_eq!(
            ns.name(),
            self.ns_name,
            "admin commands run beside the broker"
        );
        let mut argv = vec![bins().broker_str()];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--data-dir", path_str(&self.data_dir)]);
        ns.exec_with(&argv, stdin, CMD)
    }

    pub fn add_user(&self, ns: &Netns, name: &str, password: &str) -> UserInfo {
        let out = self
            .admin(
                ns,
                &["user", "add", name, "--password-stdin", "--json"],
                Some(format!("{password}\n").as_bytes()),
            )
            .expect_ok(&format!("grantwire-broker user add {name}"));
        let v = out.json();
        let secret = json_str(&v, "totp_secret", &out);
        assert!(
            !secret.contains('='),
            "totp_secret must be base32 without padding:\n{out}"
        );
        assert_eq!(json_str(&v, "name", &out), name, "{out}");
        UserInfo {
            name: name.to_owned(),
            totp_secret: totp::decode_secret(&secret),
            otpauth_uri: json_str(&v, "otpauth_uri", &out),
            password: password.to_owned(),
        }
    }

    pub fn add_edge(&self, ns: &Netns, name: &str, endpoint: &str) -> EdgeInfo {
        self.add_edge_at(ns, name, &[endpoint])
    }

    /// `edge add NAME --endpoint E1 [--endpoint E2] --json`: one endpoint per address family.
    pub fn add_edge_at(&self, ns: &Netns, name: &str, endpoints: &[&str]) -> EdgeInfo {
        let mut args = vec!["edge", "add", name];
        for endpoint in endpoints {
            args.extend(["--endpoint", endpoint]);
        }
        args.push("--json");
        let out = self
            .admin(ns, &args, None)
            .expect_ok(&format!("grantwire-broker edge add {name}"));
        let v = out.json();
        let tunnel = json_str(&v, "tunnel_address", &out);
        EdgeInfo {
            name: json_str(&v, "name", &out),
            endpoint: json_str(&v, "endpoint", &out),
            subnet: json_str(&v, "subnet", &out),
            tunnel_ip: tunnel.split('/').next().unwrap_or(&tunnel).to_owned(),
            enrolment_token: json_str(&v, "enrolment_token", &out),
        }
    }

    /// `grant add USER EDGE [--lease-ttl TTL] --json`.
    pub fn grant(&self, ns: &Netns, user: &str, edge: &str, lease_ttl: Option<&str>) -> Value {
        let mut args = vec!["grant", "add", user, edge, "--json"];
        if let Some(ttl) = lease_ttl {
            args.extend_from_slice(&["--lease-ttl", ttl]);
        }
        self.admin(ns, &args, None)
            .expect_ok(&format!("grantwire-broker grant add {user} {edge}"))
            .json()
    }

    pub fn revoke(&self, ns: &Netns, user: &str, edge: &str) -> Output {
        self.admin(ns, &["grant", "revoke", user, edge], None)
            .expect_ok(&format!("grantwire-broker grant revoke {user} {edge}"))
    }

    /// The `leases` array of `lease list --json`.
    pub fn leases(&self, ns: &Netns) -> Vec<Value> {
        let out = self
            .admin(ns, &["lease", "list", "--json"], None)
            .expect_ok("grantwire-broker lease list");
        let v = out.json();
        v.get("leases")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("lease list --json has no `leases` array:\n{out}"))
            .clone()
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// The `entries` of `audit --json`.
    pub fn audit(&self, ns: &Netns) -> Vec<Value> {
        let out = self
            .admin(ns, &["audit", "--json"], None)
            .expect_ok("grantwire-broker audit");
        let v = out.json();
        v.get("entries")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("audit --json has no `entries` array:\n{out}"))
            .clone()
    }

    /// Stops the broker (to show the edge enforces expiry on its own).
    pub fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(1));
    }
}

/// The WARN line of an edge that runs as root without `--user`, as most scenarios start it.
pub const EDGE_ROOT_WARNING: &str = "running as root throughout: give --user";

/// What a scenario adds to the edge's command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeArgs<'a> {
    /// A command that execs the rest (`env FAKETIME=…`, say); only for [`EdgeStart::Root`].
    pub prefix: &'a [&'a str],
    /// Flags after the harness's own (`--listen 0.0.0.0:51820`, say: the harness leaves every
    /// flag a user would not type at its default).
    pub flags: &'a [&'a str],
}

/// How an edge is started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EdgeStart<'a> {
    /// As root, without `--user`.
    #[default]
    Root,
    /// As root with `--user USER`: the edge drops root itself once it is set up.
    DropTo(&'a str),
    /// Already as USER, with CAP_NET_ADMIN its only capability (ambient, and the bounding set)
    /// and no_new_privs, through `setpriv`: what scripts/install/grantwire-edge.service gives
    /// it. Its state directory is made beforehand, USER's and 0700, as the unit's
    /// `StateDirectory=` does.
    AsUnit(&'a str),
}

/// `grantwire-edge run` in the home namespace, with its metrics endpoint.
pub struct Edge {
    proc: Proc,
    pub tun_name: String,
    /// Its `--state-dir`.
    pub state_dir: PathBuf,
    pub start: EdgeStart<'static>,
    /// The state directory's parent when the edge runs as another user (after `proc`: it goes
    /// once the edge has stopped).
    _state_parent: Option<tempfile::TempDir>,
}

impl Edge {
    /// Writes the enrolment token to a 0600 file and starts the edge as root, with its state in
    /// `dir/edge-state`; waits until its metrics answer and its nftables guard (`table inet
    /// grantwire`) is in place.
    pub fn start(ns: &Netns, broker: &Broker, token: &str, dir: &Path, tun_name: &str) -> Edge {
        Edge::start_with(ns, broker, token, dir, tun_name, EdgeStart::Root)
    }

    /// Like [`Edge::start`], started as `how` says. For any start but [`EdgeStart::Root`] the
    /// state directory (and for [`EdgeStart::AsUnit`] the token file) is in a fresh directory
    /// under the system's temporary directory instead of `dir`, which is root's and 0700: the
    /// user must reach them.
    pub fn start_with(
        ns: &Netns,
        broker: &Broker,
        token: &str,
        dir: &Path,
        tun_name: &str,
        how: EdgeStart<'static>,
    ) -> Edge {
        Edge::start_with_args(ns, broker, token, dir, tun_name, how, EdgeArgs::default())
    }

    /// Like [`Edge::start_with`], with `args` around the harness's own command line.
    pub fn start_with_args(
        ns: &Netns,
        broker: &Broker,
        token: &str,
        dir: &Path,
        tun_name: &str,
        how: EdgeStart<'static>,
        args: EdgeArgs<'_>,
    ) -> Edge {
        let state_parent = (how != EdgeStart::Root).then(|| {
            let parent = tempfile::Builder::new()
                .prefix("grantwire-e2e-edge")
                .tempdir()
                .expect("edge state parent");
            // Passage only, no listing.
            std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o711))
                .expect("chmod edge state parent");
            parent
        });
        let state = state_parent
            .as_ref()
            .map_or(dir, |p| p.path())
            .join("edge-state");
        let token_dir = match how {
            EdgeStart::AsUnit(_) => state_parent.as_ref().map_or(dir, |p| p.path()),
            _ => dir,
        };
        let token_file = token_dir.join("edge-token");
        std::fs::write(&token_file, format!("{token}\n")).expect("token file");
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod token file");
        let group = match how {
            EdgeStart::AsUnit(user) => user_group(user),
            _ => String::new(),
        };
        let tun_node = token_dir.join("tun");
        let mut argv: Vec<&str> = Vec::new();
        if let EdgeStart::AsUnit(user) = how {
            let (uid, gid) = user_ids(user);
            std::fs::create_dir(&state).expect("edge state dir");
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))
                .expect("chmod edge state dir");
            for path in [&state, &token_file] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to the user");
            }
            // udev makes /dev/net/tun 0666 on a systemd host, and the unit relies on it (it
            // gives no CAP_DAC_OVERRIDE); a container without udev may have it 0600. So the edge
            // gets a 0666 node of the same device, bound over /dev/net/tun in the private mount
            // namespace `ip netns exec` gives it: nothing changes outside that process.
            host_exec(
                &["mknod", "-m", "0666", path_str(&tun_node), "c", "10", "200"],
                None,
                CMD,
            )
            .expect_ok("mknod a 0666 /dev/net/tun");
            argv.extend_from_slice(&[
                "sh",
                "-c",
                "mount --bind \"$1\" /dev/net/tun && shift && exec \"$@\"",
                "sh",
                path_str(&tun_node),
                "setpriv",
                "--reuid",
                user,
                "--regid",
                &group,
                "--init-groups",
                "--inh-caps=-all,+net_admin",
                "--ambient-caps=-all,+net_admin",
                "--bounding-set=-all,+net_admin",
                "--no-new-privs",
                "--",
            ]);
        }
        assert!(
            args.prefix.is_empty() || how == EdgeStart::Root,
            "a command prefix is only for an edge started as root"
        );
        argv.extend_from_slice(args.prefix);
        let broker_url = format!("https://127.0.0.1:{BROKER_PORT}");
        // No --listen: the default, [::]:51820, takes both families.
        argv.extend_from_slice(&[
            bins().edge_str(),
            "run",
            "--broker",
            &broker_url,
            "--token-file",
            path_str(&token_file),
            "--broker-fingerprint",
            &broker.fingerprint,
            "--state-dir",
            path_str(&state),
            "--tun-name",
            tun_name,
            "--metrics-listen",
            METRICS_ADDR,
            // Lease figures reach the broker within a second, so tests need not wait long.
            "--report-secs",
            "1",
        ]);
        if let EdgeStart::DropTo(user) = how {
            argv.extend_from_slice(&["--user", user]);
        }
        argv.extend_from_slice(args.flags);
        let mut proc = spawn_daemon(ns, "grantwire-edge run", &argv);
        let url = format!("http://{METRICS_ADDR}/metrics");
        let ready = crate::wait_for(READY, Duration::from_millis(100), || {
            proc.assert_running("the edge to be ready");
            let metrics = http_get(ns, &url, Duration::from_secs(1));
            let guard = ns.exec(&["nft", "list", "table", "inet", "grantwire"]);
            (metrics.ok() && guard.success()).then_some(())
        });
        if ready.is_none() {
            panic!(
                "the edge did not become ready within {READY:?} (expected metrics on {url} and \
                 nftables table `inet grantwire`)\n{}",
                proc.logs()
            );
        }
        Edge {
            proc,
            tun_name: tun_name.to_owned(),
            state_dir: state,
            start: how,
            _state_parent: state_parent,
        }
    }

    /// Stops the edge as systemd would (SIGTERM, SIGKILL after `grace`); its exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.proc.stop(grace);
        self.proc.exit_status()
    }

    pub fn metrics(&self, ns: &Netns) -> Metrics {
        let url = format!("http://{METRICS_ADDR}/metrics");
        let got = http_get(ns, &url, Duration::from_secs(2));
        assert!(got.ok(), "GET {url} failed: {got:?}\n{}", self.proc.logs());
        Metrics::parse(&got.body)
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// `Some(status)` once the edge process has exited (a test killed it, say).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.exit_status()
    }

    /// Panics with the logs if the edge has exited.
    #[track_caller]
    pub fn assert_running(&mut self, waiting_for: &str) {
        self.proc.assert_running(waiting_for);
    }
}

/// `user`'s uid and primary gid, from `id`.
pub fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        host_exec(&["id", flag, user], None, CMD)
            .expect_ok(&format!("id {flag} {user}"))
            .stdout
            .trim()
            .parse::<u32>()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// The name of `user`'s primary group (`nogroup` for Debian's `nobody`).
fn user_group(user: &str) -> String {
    let out = host_exec(&["id", "-gn", user], None, CMD).expect_ok(&format!("id -gn {user}"));
    out.stdout.trim().to_owned()
}

/// The `grantwire` CLI with its own config directory (one per simulated device).
pub struct ClientCli {
    pub config_dir: PathBuf,
}

impl ClientCli {
    pub fn new(config_dir: &Path) -> ClientCli {
        std::fs::create_dir_all(config_dir).expect("client config dir");
        ClientCli {
            config_dir: config_dir.to_owned(),
        }
    }

    fn run(&self, ns: &Netns, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut argv = vec![
            bins().client_str(),
            "--config-dir",
            path_str(&self.config_dir),
        ];
        argv.extend_from_slice(args);
        ns.exec_with(&argv, stdin, CMD)
    }

    /// `grantwire login --broker URL --user NAME --fingerprint FP --password-stdin --totp CODE`.
    pub fn login(
        &self,
        ns: &Netns,
        broker_url: &str,
        user: &str,
        password: &str,
        fingerprint: &str,
        code: &str,
    ) -> Output {
        super::plex::assert_safe_host(super::plex::url_host(broker_url));
        self.run(
            ns,
            &[
                "login",
                "--broker",
                broker_url,
                "--user",
                user,
                "--fingerprint",
                fingerprint,
                "--password-stdin",
                "--totp",
                code,
            ],
            Some(format!("{password}\n").as_bytes()),
        )
    }

    /// `grantwire login --broker URL --user NAME --password-stdin --totp CODE`, without
    /// `--fingerprint`: the broker must be known from an earlier login.
    pub fn login_known(
        &self,
        ns: &Netns,
        broker_url: &str,
        user: &str,
        password: &str,
        code: &str,
    ) -> Output {
        super::plex::assert_safe_host(super::plex::url_host(broker_url));
        self.run(
            ns,
            &[
                "login",
                "--broker",
                broker_url,
                "--user",
                user,
                "--password-stdin",
                "--totp",
                code,
            ],
            Some(format!("{password}\n").as_bytes()),
        )
    }

    /// `grantwire renew EDGE --out FILE`: the lease moved to the address the broker sees now.
    pub fn renew(&self, ns: &Netns, edge: &str, out: &Path) -> Output {
        self.run(ns, &["renew", edge, "--out", path_str(out)], None)
    }

    /// `grantwire revoke LEASE --json`: one of the user's own leases ended at once.
    pub fn revoke(&self, ns: &Netns, lease: &str) -> Output {
        self.run(ns, &["revoke", lease, "--json"], None)
    }

    /// `grantwire profile EDGE --out FILE`: a new lease, written as a wg-quick file.
    pub fn profile(&self, ns: &Netns, edge: &str, out: &Path) -> Output {
        self.run(ns, &["profile", edge, "--out", path_str(out)], None)
    }

    /// `grantwire status EDGE [--json]`: exit 0 when the lease works from here, 3 when its pin
    /// moved or it expired.
    pub fn status(&self, ns: &Netns, edge: &str, json: bool) -> Output {
        let mut args = vec!["status", edge];
        if json {
            args.push("--json");
        }
        self.run(ns, &args, None)
    }

    /// `grantwire watch EDGE --every EVERY` running in `ns` until stopped (SIGTERM to its own
    /// process group on drop, or by [`Proc::stop`]).
    pub fn watch(&self, ns: &Netns, edge: &str, every: &str) -> Proc {
        ns.spawn(
            "grantwire watch",
            &[
                bins().client_str(),
                "--config-dir",
                path_str(&self.config_dir),
                "watch",
                edge,
                "--every",
                every,
            ],
        )
    }
}
