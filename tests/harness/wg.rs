//! A real WireGuard client: `wireguard-go` in the foreground inside a namespace, configured from
//! a wg-quick file the way a user's machine would import it.
//!
//! wireguard-go's control socket is `/var/run/wireguard/IFNAME.sock`, shared by every namespace,
//! so interface names must be unique machine-wide ([`super::netns::unique_base`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::netns::Netns;
use super::plex::assert_safe_host;
use super::proc::{host_exec, Proc};

const T: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

/// A keypair from `wg genkey` / `wg pubkey`.
pub fn genkey() -> KeyPair {
    let private = host_exec(&["wg", "genkey"], None, T)
        .expect_ok("wg genkey")
        .stdout
        .trim()
        .to_owned();
    let public = pubkey(&private);
    KeyPair { private, public }
}

/// `wg pubkey` of a base64 private key.
pub fn pubkey(private: &str) -> String {
    host_exec(
        &["wg", "pubkey"],
        Some(format!("{private}\n").as_bytes()),
        T,
    )
    .expect_ok("wg pubkey")
    .stdout
    .trim()
    .to_owned()
}

/// The key pair of a wg-quick file: its `PrivateKey` and `wg pubkey` of it.
#[track_caller]
pub fn conf_keys(conf: &str) -> KeyPair {
    let private = conf
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .unwrap_or_else(|| panic!("no PrivateKey line in\n{conf}"))
        .to_owned();
    let public = pubkey(&private);
    KeyPair { private, public }
}

/// Counters for one peer from `wg show IFNAME transfer` / `latest-handshakes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub public_key: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Unix seconds of the last completed handshake; 0 when there never was one.
    pub latest_handshake: u64,
}

/// A running `wireguard-go -f IFNAME`, stopped on drop (which removes its TUN and socket).
pub struct WgDevice {
    ifname: String,
    ns_name: String,
    proc: Proc,
}

impl WgDevice {
    pub fn spawn(ns: &Netns, ifname: &str) -> WgDevice {
        assert!(ifname.len() <= 15, "interface name {ifname:?} is too long");
        let sock = socket_path(ifname);
        if sock.exists() {
            panic!(
                "{} exists: another wireguard-go owns {ifname}",
                sock.display()
            );
        }
        let mut proc = ns.spawn_env(
            &format!("wireguard-go {ifname} in {}", ns.name()),
            &["wireguard-go", "-f", ifname],
            &[
                ("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1"),
                ("LOG_LEVEL", "verbose"),
            ],
        );
        let ready = crate::wait_for(T, Duration::from_millis(20), || {
            proc.assert_running("its control socket");
            sock.exists().then_some(())
        });
        if ready.is_none() {
            panic!("wireguard-go made no {}\n{}", sock.display(), proc.logs());
        }
        WgDevice {
            ifname: ifname.to_owned(),
            ns_name: ns.name().to_owned(),
            proc,
        }
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Per-peer counters. `wg` finds a userspace interface by its socket, from any namespace.
    pub fn peers(&self) -> Vec<PeerStats> {
        let transfer = host_exec(&["wg", "show", &self.ifname, "transfer"], None, T)
            .expect_ok("wg show transfer");
        let handshakes = host_exec(&["wg", "show", &self.ifname, "latest-handshakes"], None, T)
            .expect_ok("wg show latest-handshakes");
        parse_peers(&transfer.stdout, &handshakes.stdout)
    }

    /// Bytes received from all peers.
    pub fn rx_bytes(&self) -> u64 {
        self.peers().iter().map(|p| p.rx_bytes).sum()
    }

    /// The newest handshake with any peer (0: none ever completed).
    pub fn latest_handshake(&self) -> u64 {
        self.peers()
            .iter()
            .map(|p| p.latest_handshake)
            .max()
            .unwrap_or(0)
    }

    pub fn namespace(&self) -> &str {
        &self.ns_name
    }
}

impl Drop for WgDevice {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(3));
        // wireguard-go removes its socket on SIGTERM; after a SIGKILL the name is ours to clear.
        let _ = std::fs::remove_file(socket_path(&self.ifname));
    }
}

fn socket_path(ifname: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"))
}

/// A WireGuard client brought up from a wg-quick file: `wg-quick strip` → `wg setconf`, then
/// the `Address` lines, link up, and a route to each `AllowedIPs` entry, as wg-quick would.
pub struct WgClient {
    pub dev: WgDevice,
    pub addresses: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub endpoint: Option<String>,
    _conf_dir: tempfile::TempDir,
}

impl WgClient {
    pub fn up(ns: &Netns, ifname: &str, conf_path: &Path) -> WgClient {
        let conf = std::fs::read_to_string(conf_path)
            .unwrap_or_else(|e| panic!("reading wg-quick file {}: {e}", conf_path.display()));
        let parsed = parse_wg_quick(&conf);
        if let Some(ep) = &parsed.endpoint {
            let host = ep.rsplit_once(':').map_or(ep.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.parse::<std::net::IpAddr>().is_ok() {
                assert_safe_host(host);
            } else {
                ns.assert_local_name(host);
            }
        }
        for a in &parsed.allowed_ips {
            assert_safe_host(a.split('/').next().unwrap_or(a));
        }
        let dir = tempfile::Builder::new()
            .prefix("grantwire-e2e-wg")
            .tempdir()
            .expect("conf dir");
        // wg-quick takes a path only when its file name is `<valid ifname>.conf`, and warns
        // about a world-readable file holding a private key.
        let named = dir.path().join(format!("{ifname}.conf"));
        std::fs::write(&named, &conf).expect("copy wg-quick file");
        std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o600))
            .expect("chmod wg-quick file");
        let stripped = host_exec(&["wg-quick", "strip", path_str(&named)], None, T)
            .expect_ok("wg-quick strip");
        let stripped_path = dir.path().join("stripped.conf");
        std::fs::write(&stripped_path, stripped.stdout).expect("write stripped conf");
        std::fs::set_permissions(&stripped_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod stripped conf");

        let dev = WgDevice::spawn(ns, ifname);
        ns.exec_ok(&["wg", "setconf", ifname, path_str(&stripped_path)]);
        for addr in &parsed.addresses {
            ns.add_addr(addr, ifname);
        }
        ns.exec_ok(&["ip", "link", "set", ifname, "up"]);
        for allowed in &parsed.allowed_ips {
            ns.route_dev(allowed, ifname);
        }
        WgClient {
            dev,
            addresses: parsed.addresses,
            allowed_ips: parsed.allowed_ips,
            endpoint: parsed.endpoint,
            _conf_dir: dir,
        }
    }

    pub fn ifname(&self) -> &str {
        self.dev.ifname()
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct WgQuick {
    pub addresses: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub endpoint: Option<String>,
}

/// The wg-quick lines the harness applies itself (wg-quick's own parsing: `Key = a, b`, keys
/// case-insensitive, `#` comments).
pub(crate) fn parse_wg_quick(conf: &str) -> WgQuick {
    let mut out = WgQuick::default();
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let values = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "address" => out.addresses.extend(values()),
            "allowedips" => out.allowed_ips.extend(values()),
            "endpoint" => out.endpoint = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    out
}

fn parse_peers(transfer: &str, handshakes: &str) -> Vec<PeerStats> {
    let mut peers: Vec<PeerStats> = transfer
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [key, rx, tx] => Some(PeerStats {
                    public_key: (*key).to_owned(),
                    rx_bytes: rx.parse().ok()?,
                    tx_bytes: tx.parse().ok()?,
                    latest_handshake: 0,
                }),
                _ => None,
            }
        })
        .collect();
    for l in handshakes.lines() {
        if let [key, ts] = l.split_whitespace().collect::<Vec<_>>().as_slice() {
            if let Some(p) = peers.iter_mut().find(|p| p.public_key == *key) {
                p.latest_handshake = ts.parse().unwrap_or(0);
            }
        }
    }
    peers
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The profile's `[Peer] PublicKey`: the edge's public key.
pub fn profile_peer_key(profile: &Path) -> String {
    let text = std::fs::read_to_string(profile).expect("read the profile");
    let mut in_peer = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_peer = line.eq_ignore_ascii_case("[peer]");
        } else if let Some((key, value)) = line.split_once('=') {
            if in_peer && key.trim().eq_ignore_ascii_case("publickey") {
                // Base64 ends in `=`: split_once took only the first one.
                return value.trim().to_owned();
            }
        }
    }
    panic!("no [Peer] PublicKey in the profile:\n{text}");
}

/// Tells WireGuard interface `ifname` in `ns` (one peer, the edge) to send to `endpoint`, as
/// the WireGuard apps do on a network change (wireguard-go otherwise keeps the source address
/// it had).
pub fn set_peer_endpoint(ns: &Netns, ifname: &str, endpoint: &str) {
    let peers = ns.exec_ok(&["wg", "show", ifname, "peers"]);
    let edge_key = peers.stdout.trim().to_owned();
    ns.exec_ok(&["wg", "set", ifname, "peer", &edge_key, "endpoint", endpoint]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_grantwire_profile() {
        let conf = "# grantwire lease l-1 for edge home\n\
                    # Plex: http://10.77.0.1:32400/web\n\
                    [Interface]\nPrivateKey = abc=\naddress = 10.77.0.2/32\n\n\
                    [Peer]\nPublicKey = def=\nAllowedIPs = 10.77.0.1/32, 10.77.0.3/32\n\
                    Endpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n";
        let p = parse_wg_quick(conf);
        assert_eq!(p.addresses, ["10.77.0.2/32"]);
        assert_eq!(p.allowed_ips, ["10.77.0.1/32", "10.77.0.3/32"]);
        assert_eq!(p.endpoint.as_deref(), Some("192.0.2.1:51820"));
    }

    #[test]
    fn parses_wg_show_output() {
        let peers = parse_peers("K1=\t100\t200\nK2=\t0\t92\n", "K1=\t1700000000\nK2=\t0\n");
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].rx_bytes, 100);
        assert_eq!(peers[0].tx_bytes, 200);
        assert_eq!(peers[0].latest_handshake, 1_700_000_000);
        assert_eq!(peers[1].latest_handshake, 0);
    }
}
