//! The harness tested on its own, without any grantwire binary: two namespaces on a veth, a
//! wireguard-go "server" configured with `wg set`, a client brought up from a wg-quick file by
//! [`WgClient::up`], and the stand-in Plex answering through the tunnel. Then: nothing is left
//! behind, also when the test body panics.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grantwire_e2e::harness::grantwire::DAEMON_TZ;
use grantwire_e2e::{
    genkey, host_exec, http_get, require_env, unique_base, veth_pair, wait_for, Netns, StandInPlex,
    WgClient, WgDevice,
};

const PLEX_IN_TUNNEL: &str = "http://10.77.0.1:32400/";

/// Everything one self-test makes; fields drop in order, processes before namespaces.
struct Pair {
    client_wg: WgClient,
    plex: StandInPlex,
    server_wg: WgDevice,
    client: Netns,
    server: Netns,
    _dir: tempfile::TempDir,
}

fn write_secret(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

fn build_pair(tag: &str) -> Pair {
    let base = unique_base(tag);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Netns::new(&format!("{base}-srv"));
    let client = Netns::new(&format!("{base}-cli"));
    veth_pair(&server, "192.0.2.1/24", &client, "192.0.2.2/24");

    let (server_keys, client_keys) = (genkey(), genkey());
    let server_wg = WgDevice::spawn(&server, &format!("{base}s"));
    let key_file = write_secret(
        dir.path(),
        "server.key",
        &format!("{}\n", server_keys.private),
    );
    server.exec_ok(&[
        "wg",
        "set",
        server_wg.ifname(),
        "listen-port",
        "51820",
        "private-key",
        key_file.to_str().expect("UTF-8"),
        "peer",
        &client_keys.public,
        "allowed-ips",
        "10.77.0.2/32",
    ]);
    server.add_addr("10.77.0.1/24", server_wg.ifname());
    server.exec_ok(&["ip", "link", "set", server_wg.ifname(), "up"]);
    let plex = StandInPlex::start(&server);

    // What a grantwire profile looks like, plus a DNS line: `wg setconf` rejects wg-quick's
    // Address and DNS lines, so this only works if `wg-quick strip` ran.
    let conf = format!(
        "# self-test profile\n[Interface]\nPrivateKey = {}\nAddress = 10.77.0.2/32\n\
         DNS = 192.0.2.53\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.77.0.1/32\n\
         Endpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n",
        client_keys.private, server_keys.public
    );
    let conf_path = write_secret(dir.path(), "profile.conf", &conf);
    let client_wg = WgClient::up(&client, &format!("{base}c"), &conf_path);
    Pair {
        client_wg,
        plex,
        server_wg,
        client,
        server,
        _dir: dir,
    }
}

fn netns_list() -> String {
    host_exec(&["ip", "netns", "list"], None, Duration::from_secs(10))
        .expect_ok("ip netns list")
        .stdout
}

#[test]
fn stand_in_plex_answers_through_a_wireguard_go_tunnel() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let pair = build_pair("st");

    let page = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let got = http_get(&pair.client, PLEX_IN_TUNNEL, Duration::from_secs(1));
        got.has(pair.plex.marker()).then_some(got)
    });
    assert!(
        page.is_some(),
        "the stand-in page did not load through the tunnel\nclient: {}\nserver: {}",
        pair.client_wg.dev.logs(),
        pair.server_wg.logs()
    );
    assert!(
        pair.client_wg.dev.rx_bytes() > 0,
        "wg show transfer: no bytes received"
    );
    assert!(
        pair.client_wg.dev.latest_handshake() > 0,
        "wg show: no handshake"
    );
    assert_eq!(pair.client_wg.addresses, ["10.77.0.2/32"]);

    // The route to 10.77.0.1 really goes through the wireguard-go interface.
    let route = pair
        .client
        .exec_ok(&["ip", "route", "get", "10.77.0.1"])
        .stdout;
    assert!(route.contains(pair.client_wg.ifname()), "{route}");

    // The server's own address on the veth also serves the page: the stand-in binds 0.0.0.0,
    // exactly the exposure grantwire-edge's guard must close.
    let outside = http_get(
        &pair.client,
        "http://192.0.2.1:32400/",
        Duration::from_secs(2),
    );
    assert!(outside.has(pair.plex.marker()), "{outside:?}");
}

#[test]
fn nothing_is_left_after_drop_even_on_panic() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    // A clean drop.
    let pair = build_pair("cl");
    let names = [pair.server.name().to_owned(), pair.client.name().to_owned()];
    let socks = [
        format!("/var/run/wireguard/{}.sock", pair.server_wg.ifname()),
        format!("/var/run/wireguard/{}.sock", pair.client_wg.ifname()),
    ];
    let pids = [
        pair.server_wg.pid(),
        pair.client_wg.dev.pid(),
        pair.plex.pid(),
    ];
    let listed = netns_list();
    for n in &names {
        assert!(
            listed.contains(n.as_str()),
            "{n} missing from `ip netns list`:\n{listed}"
        );
    }
    for s in &socks {
        assert!(Path::new(s).exists(), "{s} missing while running");
    }
    drop(pair);
    assert_gone(&names, &socks);
    for pid in pids.into_iter().flatten() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still running after drop"
        );
    }

    // A panicking test body: unwinding runs the same guards.
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::spawn(move || {
        let pair = build_pair("pa");
        tx.send((
            [pair.server.name().to_owned(), pair.client.name().to_owned()],
            [
                format!("/var/run/wireguard/{}.sock", pair.server_wg.ifname()),
                format!("/var/run/wireguard/{}.sock", pair.client_wg.ifname()),
            ],
        ))
        .expect("send names");
        panic!("deliberate panic with namespaces, wireguard-go and the stand-in Plex running");
    })
    .join();
    assert!(joined.is_err(), "the thread was meant to panic");
    let (names, socks) = rx.recv().expect("names from the panicking thread");
    assert_gone(&names, &socks);
}

fn assert_gone(names: &[String], socks: &[String]) {
    let listed = netns_list();
    for n in names {
        let present = listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(n.as_str()));
        assert!(!present, "{n} still in `ip netns list`:\n{listed}");
    }
    for s in socks {
        assert!(!Path::new(s).exists(), "{s} left behind");
    }
}

/// The daemons' time zone is honoured by the C library without tzdata: were it not, the
/// scenarios would silently run in UTC and prove nothing about local time.
#[test]
fn the_daemons_time_zone_is_far_from_utc() {
    let _alone = crate::one_module_at_a_time(module_path!());
    let out = std::process::Command::new("date")
        .arg("+%z")
        .env("TZ", DAEMON_TZ)
        .output()
        .expect("date");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "+1345");
}
