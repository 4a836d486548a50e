//! The pin is the TCP peer's address, whatever headers say (scenario H4). From the client
//! namespace (192.0.2.2), alice logs in, asks who she is and asks for a lease over the broker's
//! real HTTPS listener, every request carrying `X-Forwarded-For`, `Forwarded` and `X-Real-IP`
//! that name another address (198.51.100.2). The broker has no `--trusted-proxy`, so it ignores
//! them: `whoami` reports 192.0.2.2, the lease is pinned to 192.0.2.2/32, and the edge's pin set
//! holds that and not the named address.

use std::time::Duration;

use grantwire_e2e::harness::lab::CLIENT_IP;
use grantwire_e2e::{require_env, unix_now, Lab};

const FORGED: &str = "198.51.100.2";

/// Logs in as `argv[1]` (password and code on stdin), then `GET /v1/whoami` and `POST
/// /v1/leases` for edge "home", every request with forwarding headers naming `argv[2]`; prints
/// `{"whoami": ..., "lease": ...}`.
const CLIENT_PY: &str = r#"import base64, http.client, json, os, ssl, sys
user, forged = sys.argv[1], sys.argv[2]
password, code = sys.stdin.read().split("\n")[:2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("192.0.2.1", 8443, context=ctx, timeout=30)
headers = {
    "Content-Type": "application/json",
    "X-Forwarded-For": forged,
    "Forwarded": f"for={forged};proto=https",
    "X-Real-IP": forged,
}
def call(method, path, body=None, token=None):
    h = dict(headers)
    if token:
        h["Authorization"] = f"Bearer {token}"
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    text = r.read().decode()
    if r.status != 200:
        sys.exit(f"{method} {path}: {r.status} {text}")
    return json.loads(text)
token = call("POST", "/v1/login", {"user": user, "password": password, "code": code})["token"]
whoami = call("GET", "/v1/whoami", token=token)
key = base64.b64encode(os.urandom(32)).decode()
lease = call("POST", "/v1/leases", {"edge": "home", "public_key": key}, token)
print(json.dumps({"whoami": whoami, "lease": lease}))
"#;

#[test]
fn forwarding_headers_from_the_client_move_neither_the_address_seen_nor_the_pin() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("fwd", false);
    lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let script = lab.dir.path().join("client.py");
    std::fs::write(&script, CLIENT_PY).expect("write client.py");
    let stdin = format!("{}\n{}\n", alice.password, alice.totp_at(unix_now()));
    let out = lab.client.exec_with(
        &[
            "python3",
            script.to_str().expect("UTF-8 path"),
            "alice",
            FORGED,
        ],
        Some(stdin.as_bytes()),
        Duration::from_secs(60),
    );
    assert!(out.success(), "the client's requests failed:\n{out}");
    let answers = out.json();
    // Not the whole answer: it holds the lease's preshared key.
    eprintln!(
        "with headers naming {FORGED}: whoami {}, lease pin {}",
        answers["whoami"]["source_ip"], answers["lease"]["profile"]["pin"]
    );
    assert_eq!(
        answers["whoami"]["source_ip"], CLIENT_IP,
        "the broker took a forwarding header for the client's address"
    );
    let pin = format!("{CLIENT_IP}/32");
    assert_eq!(
        answers["lease"]["profile"]["pin"], pin,
        "the lease was pinned by a forwarding header"
    );
    let pins = grantwire_e2e::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let set = lab
            .home
            .exec_ok(&["nft", "list", "set", "inet", "grantwire", "pins4"]);
        set.stdout.contains(CLIENT_IP).then_some(set.stdout)
    })
    .expect("the guard's pins4 never held the lease's pin");
    assert!(
        !pins.contains(FORGED),
        "the guard's pin set holds the address the headers named:\n{pins}"
    );
    lab.assert_no_unexpected_warnings(&[]);
}
