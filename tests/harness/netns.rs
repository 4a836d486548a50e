//! Network namespaces and veth pairs, removed on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::proc::{host_exec, run, Output, Proc};

const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Every namespace's hosts file to begin with ([`Netns::set_hosts`] adds to it).
const DEFAULT_HOSTS: &str = "127.0.0.1 localhost\n::1 localhost\n";

/// A fresh name stem, unique among every live test process and every test thread in this one:
/// `gw` + a tag of at most 3 characters + the pid and a per-process counter in base 36. At most
/// 13 characters, so one more role character still fits an interface name (15).
pub fn unique_base(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let tag: String = tag
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(3)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("gw{tag}{}{}", base36(std::process::id()), base36(n))
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A network namespace with loopback up. On drop, any process still inside it (all of them
/// started by this test: nobody else knows the name) is killed and the namespace deleted.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let mut add = host_exec(&["ip", "netns", "add", name], None, EXEC_TIMEOUT);
        if !add.success() && add.stderr.contains("exists") {
            // Left by a crashed run of a process that had our pid; that process is gone.
            let _ = host_exec(&["ip", "netns", "del", name], None, EXEC_TIMEOUT);
            add = host_exec(&["ip", "netns", "add", name], None, EXEC_TIMEOUT);
        }
        add.expect_ok("ip netns add");
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        // `ip netns exec` mounts /etc/netns/NAME/* over /etc/*: names resolve from this
        // namespace's own hosts file, and a DNS query goes to its own loopback, where nothing
        // answers, never to a server outside the test.
        let etc = ns.etc_dir();
        std::fs::create_dir_all(&etc).expect("create /etc/netns/NAME");
        std::fs::write(etc.join("hosts"), DEFAULT_HOSTS).expect("write the namespace's hosts");
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("write the namespace's resolv.conf");
        // Host names from the files and DNS above only: not from a resolver daemon or mDNS
        // that the host's own nsswitch.conf may name (reached over sockets, outside the test).
        // The other databases (users, groups) stay as the host has them.
        let host_nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        let mut nss: Vec<&str> = host_nss
            .lines()
            .filter(|l| !l.trim_start().starts_with("hosts:"))
            .collect();
        nss.push("hosts: files dns");
        std::fs::write(etc.join("nsswitch.conf"), nss.join("\n") + "\n")
            .expect("write the namespace's nsswitch.conf");
        ns
    }

    fn etc_dir(&self) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(&self.name)
    }

    /// Panics unless `name` is in this namespace's hosts file with only test addresses: the
    /// only way a name resolves in a test namespace (see [`Netns::new`]).
    #[track_caller]
    pub fn assert_local_name(&self, name: &str) {
        let hosts = std::fs::read_to_string(self.etc_dir().join("hosts")).unwrap_or_default();
        let addrs: Vec<&str> = hosts
            .lines()
            .filter(|l| l.split_whitespace().skip(1).any(|n| n == name))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(
            !addrs.is_empty(),
            "refusing to use {name:?}: it is not in namespace {}'s hosts file",
            self.name
        );
        for addr in addrs {
            super::plex::assert_safe_host(addr);
        }
    }

    /// Adds `lines` (`ADDRESS NAME` each) to what the namespace's hosts file held at the start;
    /// processes already running see them at their next lookup. The file is rewritten in place,
    /// since the running processes see it through a bind mount of this very file.
    pub fn set_hosts(&self, lines: &str) {
        for line in lines.lines() {
            if let Some(addr) = line.split_whitespace().next() {
                super::plex::assert_safe_host(addr);
            }
        }
        std::fs::write(
            self.etc_dir().join("hosts"),
            format!("{DEFAULT_HOSTS}{lines}"),
        )
        .expect("rewrite the namespace's hosts");
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `argv` as a command that runs inside this namespace.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        cmd
    }

    /// Runs `argv` inside the namespace to completion (30 s at most).
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.exec_with(argv, None, EXEC_TIMEOUT)
    }

    /// Like [`Netns::exec`], panicking with the output unless it exits 0.
    #[track_caller]
    pub fn exec_ok(&self, argv: &[&str]) -> Output {
        self.exec(argv)
            .expect_ok(&format!("in netns {}", self.name))
    }

    pub fn exec_with(&self, argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Output {
        run(self.command(argv), self.cmdline(argv), stdin, timeout)
    }

    /// Starts a long-running process inside the namespace.
    pub fn spawn(&self, label: &str, argv: &[&str]) -> Proc {
        self.spawn_env(label, argv, &[])
    }

    pub fn spawn_env(&self, label: &str, argv: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = self.command(argv);
        cmd.envs(env.iter().copied());
        Proc::spawn(label, cmd, self.cmdline(argv))
    }

    pub fn add_addr(&self, cidr: &str, dev: &str) {
        self.exec_ok(&["ip", "addr", "add", cidr, "dev", dev]);
    }

    /// `ip route replace DEST via GW` (`dest` may be `default`).
    pub fn route_via(&self, dest: &str, gateway: &str) {
        self.exec_ok(&["ip", "route", "replace", dest, "via", gateway]);
    }

    pub fn route_dev(&self, dest: &str, dev: &str) {
        self.exec_ok(&["ip", "route", "replace", dest, "dev", dev]);
    }

    /// Sets a `net.*` sysctl of this namespace (`key` like `net.ipv4.ip_forward`), writing
    /// `/proc/sys` directly: procps's `sysctl` is not on every machine.
    pub fn sysctl(&self, key: &str, value: &str) {
        assert!(
            key.starts_with("net.")
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._".contains(c)),
            "only a namespace's own net.* sysctls: {key}"
        );
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec_ok(&["sh", "-c", "echo \"$1\" > \"$2\"", "sh", value, &path]);
    }

    fn cmdline(&self, argv: &[&str]) -> String {
        format!("[netns {}] {}", self.name, argv.join(" "))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let t = Duration::from_secs(10);
        // Normally empty: every Proc stops its own group first. This catches what escaped it.
        let pids = host_exec(&["ip", "netns", "pids", &self.name], None, t);
        for pid in pids.stdout.split_whitespace() {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                let _ = host_exec(&["kill", "-s", "KILL", pid], None, t);
            }
        }
        let del = host_exec(&["ip", "netns", "del", &self.name], None, t);
        if !del.success() {
            eprintln!("warning: could not delete netns {}:\n{del}", self.name);
        }
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// Joins two namespaces with a veth pair, addresses both ends (`a_cidr` like `192.0.2.1/24`)
/// and brings them up. Returns the interface names `(in a, in b)`. The pair is created directly
/// inside the namespaces, and vanishes with them.
pub fn veth_pair(a: &Netns, a_cidr: &str, b: &Netns, b_cidr: &str) -> (String, String) {
    let base = unique_base("v");
    let (a_if, b_if) = (format!("{base}a"), format!("{base}b"));
    host_exec(
        &[
            "ip",
            "link",
            "add",
            &a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            b.name(),
        ],
        None,
        EXEC_TIMEOUT,
    )
    .expect_ok("creating a veth pair");
    for (ns, ifname, cidr) in [(a, &a_if, a_cidr), (b, &b_if, b_cidr)] {
        super::plex::assert_safe_host(cidr.split('/').next().unwrap_or(cidr));
        ns.add_addr(cidr, ifname);
        ns.exec_ok(&["ip", "link", "set", ifname, "up"]);
    }
    (a_if, b_if)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_an_interface_name_with_a_role_suffix() {
        let a = unique_base("longtag");
        let b = unique_base("longtag");
        assert_ne!(a, b);
        assert!(a.starts_with("gwlon"));
        // The largest pid Linux hands out (2^22) and a large counter still fit.
        let worst = format!("gwabc{}{}", base36(1 << 22), base36(36 * 36 - 1));
        assert!(worst.len() < 15, "{worst}");
    }
}
