//! Plex's ports are filtered from outside, on both families (scenario I1). Plex listens on every
//! interface; the edge's guard drops its ports on every interface but the tunnel and loopback.
//!
//! In the Plex host (home), a listener stands on each of Plex's other ports (TCP 32469 and
//! 8324; UDP 1900, 5353 and 32410 to 32414) beside the stand-in on 32400, on all addresses of
//! both families. From the other namespace, over IPv4 (198.51.100.1) and IPv6
//! (2001:db8:2::1): every TCP connect times out (no answer, not even a reset) and no UDP
//! datagram reaches a listener; from loopback in home, the same listeners answer (the negative
//! control: they were up and would have counted).

use std::time::Duration;

use grantwire_e2e::harness::lab::{HOME_OTHER_IP6, OTHER_IP, OTHER_IP6};
use grantwire_e2e::{require_env, Lab};

const TCP_PORTS: [u16; 3] = [32400, 32469, 8324];
const UDP_PORTS: [u16; 7] = [1900, 5353, 32410, 32411, 32412, 32413, 32414];

/// Listens on TCP `sys.argv[1]` and UDP `sys.argv[2]` (comma-separated ports) on `::` for both
/// families; prints "ready", and on SIGTERM one JSON object: the peers that connected or sent.
const LISTENER_PY: &str = r#"import json, selectors, signal, socket, sys
tcp_ports = [int(p) for p in sys.argv[1].split(",")]
udp_ports = [int(p) for p in sys.argv[2].split(",")]
sel = selectors.DefaultSelector()
def bind(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, (kind, port))
for p in tcp_ports:
    bind(socket.SOCK_STREAM, p)
for p in udp_ports:
    bind(socket.SOCK_DGRAM, p)
seen = []
def report(*_):
    print(json.dumps(seen), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, report)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        kind, port = key.data
        if kind == socket.SOCK_STREAM:
            conn, peer = key.fileobj.accept()
            seen.append(["tcp", port, peer[0]])
            conn.close()
        else:
            _, peer = key.fileobj.recvfrom(2048)
            seen.append(["udp", port, peer[0]])
"#;

/// Connects to each TCP port and sends to each UDP port of `host`; prints the TCP probes that
/// did not time out.
const PROBE_PY: &str = r#"import json, socket, sys
host, tcp_ports, udp_ports = sys.argv[1], sys.argv[2], sys.argv[3]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
answered = []
for p in [int(p) for p in tcp_ports.split(",")]:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1.5)
    try:
        s.connect((host, p))
        answered.append([p, "connected"])
    except socket.timeout:
        pass
    except OSError as e:
        answered.append([p, str(e)])
    s.close()
u = socket.socket(family, socket.SOCK_DGRAM)
for p in [int(p) for p in udp_ports.split(",")]:
    u.sendto(b"probe", (host, p))
print(json.dumps(answered))
"#;

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn plex_ports_are_silent_from_outside_on_both_families_and_open_on_loopback() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("wp", true);
    lab.add_ipv6();
    lab.enrol_edge_dual_stack();
    let dir = lab.dir.path();
    let (listener, probe) = (dir.join("listener.py"), dir.join("probe.py"));
    std::fs::write(&listener, LISTENER_PY).expect("write listener.py");
    std::fs::write(&probe, PROBE_PY).expect("write probe.py");
    let (listener, probe) = (
        listener.to_str().expect("UTF-8 path"),
        probe.to_str().expect("UTF-8 path"),
    );
    // The stand-in Plex holds 32400 already; the listener takes the others.
    let (tcp_others, udp) = (join(&TCP_PORTS[1..]), join(&UDP_PORTS));
    let mut listening = lab.home.spawn(
        "Plex's other ports",
        &["python3", listener, &tcp_others, &udp],
    );
    let ready = grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        listening.assert_running("the listener to bind");
        listening.stdout().contains("ready").then_some(())
    });
    assert!(
        ready.is_some(),
        "the listener never bound:\n{}",
        listening.logs()
    );

    let other = lab.other.as_ref().expect("the other namespace");
    let tcp = join(&TCP_PORTS);
    for host in ["198.51.100.1", HOME_OTHER_IP6] {
        let out = other.exec_with(
            &["python3", probe, host, &tcp, &udp],
            None,
            Duration::from_secs(60),
        );
        assert!(out.success(), "the probe of {host} failed:\n{out}");
        assert_eq!(
            out.stdout.trim(),
            "[]",
            "from outside, a Plex port at {host} answered (connected or refused) instead of \
             staying silent"
        );
    }
    // The control: from loopback in home the same ports answer.
    let local = lab.home.exec_with(
        &["python3", probe, "127.0.0.1", &tcp, &udp],
        None,
        Duration::from_secs(30),
    );
    assert!(local.success(), "the loopback probe failed:\n{local}");
    let connected: Vec<serde_json::Value> =
        serde_json::from_str(local.stdout.trim()).expect("the loopback probe's JSON");
    assert_eq!(
        connected.len(),
        TCP_PORTS.len(),
        "from loopback every Plex TCP port should connect: {connected:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    listening.stop(Duration::from_secs(2));
    let seen: Vec<(String, u16, String)> =
        serde_json::from_str(listening.stdout().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the listener's report ({e}):\n{}", listening.logs()));
    eprintln!("what reached Plex's other ports: {seen:?}");
    let from_outside: Vec<_> = seen
        .iter()
        .filter(|(_, _, peer)| peer.contains(OTHER_IP) || peer.contains(OTHER_IP6))
        .collect();
    assert!(
        from_outside.is_empty(),
        "from outside, these reached Plex's ports: {from_outside:?}"
    );
    let udp_local = seen.iter().filter(|(kind, _, _)| kind == "udp").count();
    assert_eq!(
        udp_local,
        UDP_PORTS.len(),
        "from loopback every UDP probe should arrive (the negative control): {seen:?}"
    );
    lab.assert_no_unexpected_warnings(&[]);
}
