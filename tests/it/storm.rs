//! The broker killed with SIGKILL during a lease storm, with an edge connected (issue 16's
//! restarts). A user asks for leases as fast as one HTTPS connection can, each for a fresh key;
//! after the first 60 answers the broker is killed (nothing flushed on the way out) and started
//! again on the same data.
//!
//! - Every lease the broker answered before it died is in `lease list` afterwards, and at most
//!   one more (the request in flight when it died may have been committed without its answer).
//! - None is half-written: each listed lease has exactly one `lease_issued` audit row, and no
//!   audit row names a lease that is not listed.
//! - The edge, reconnected, holds exactly the leases the broker lists (alice's and the storm's).
//! - alice, whose lease was issued before the storm, loads the page through the tunnel after.
//!
//! And the client's side of an issuance whose answer is lost (H2's retry): a relay in the
//! client's namespace (`tests/harness/tcp_relay.py`) lets `grantwire profile`'s request through
//! and drops the broker's answer once the lease is committed, then breaks the connection. The
//! command fails and writes nothing; asked again, it sends the same key, and the broker
//! replaces that lease: one lease, for the key in the profile, which the edge holds alone and
//! whose tunnel loads the page.

use std::collections::HashSet;
use std::time::Duration;

use grantwire_e2e::harness::lab::{FIRST_LOAD, HOME_OUTSIDE_IP};
use grantwire_e2e::{require_env, unix_now, Broker, Lab, WgClient};

const TCP_RELAY_PY: &str = include_str!("../harness/tcp_relay.py");
const RELAY_PORT: &str = "18443";

/// Asks for leases on edge "home" one after another on one HTTPS connection until the broker
/// stops answering; prints each answered lease id on its own line as it comes.
const STORM_PY: &str = r#"import base64, http.client, json, os, ssl, sys
user = sys.argv[1]
password, code = sys.stdin.read().split("\n")[:2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", 8443, context=ctx, timeout=10)
def call(path, body, token=None):
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    c.request("POST", path, body=json.dumps(body), headers=h)
    r = c.getresponse()
    text = r.read().decode()
    if r.status != 200:
        sys.exit(f"{path}: {r.status} {text}")
    return json.loads(text)
token = call("/v1/login", {"user": user, "password": password, "code": code})["token"]
print("ready", flush=True)
try:
    while True:
        key = base64.b64encode(os.urandom(32)).decode()
        lease = call("/v1/leases", {"edge": "home", "public_key": key}, token)
        print(lease["profile"]["lease_id"], flush=True)
except (OSError, http.client.HTTPException) as e:
    print(f"broken: {e}", flush=True)
"#;

/// The ids of `lease list --json`, by user.
fn listed(lab: &Lab) -> Vec<(String, String)> {
    lab.broker
        .leases(&lab.home)
        .iter()
        .map(|l| {
            (
                l["user"].as_str().unwrap_or_default().to_owned(),
                l["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_broker_killed_in_a_lease_storm_keeps_every_answered_lease_whole_and_the_edge_agrees() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("stm", false);
    let data = lab.dir.path().join("broker");
    let lifted = [
        "env",
        "GRANTWIRE_LEASE_BURST=100000",
        "GRANTWIRE_LEASE_PER_SEC=100000",
    ];
    lab.broker.stop();
    lab.broker = Broker::start_wrapped(&lab.home, &data, &lifted);
    let edge = lab.enrol_edge();
    let url = lab.plex_url(&edge);
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    let storm = lab.add_user("storm");
    lab.broker
        .admin(
            &lab.home,
            &[
                "grant",
                "add",
                "storm",
                "home",
                "--max-leases",
                "250",
                "--json",
            ],
            None,
        )
        .expect_ok("grant add storm");

    let script = lab.dir.path().join("storm.py");
    std::fs::write(&script, STORM_PY).expect("write storm.py");
    let stdin = format!("{}\n{}\n", storm.password, storm.totp_at(unix_now()));
    let stdin_file = lab.dir.path().join("storm.stdin");
    std::fs::write(&stdin_file, stdin).expect("write the storm's stdin");
    let mut storming = lab.home.spawn(
        "lease storm",
        &[
            "sh",
            "-c",
            &format!(
                "exec python3 {} storm < {}",
                script.display(),
                stdin_file.display()
            ),
        ],
    );
    let answered_before_kill =
        grantwire_e2e::wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
            storming.assert_running("the storm to get 60 answers");
            let n = storming
                .stdout()
                .lines()
                .filter(|l| l.starts_with("l-"))
                .count();
            (n >= 60).then_some(n)
        })
        .expect("the storm never got 60 leases");
    let pid = lab
        .broker
        .proc()
        .pid()
        .expect("the broker's pid")
        .to_string();
    lab.home.exec_ok(&["kill", "-KILL", &pid]);
    let ended = grantwire_e2e::wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        storming.exit_status()
    });
    assert!(
        ended.is_some(),
        "the storm did not notice the broker's death"
    );
    let out = storming.stdout();
    assert!(
        out.contains("broken:"),
        "the storm ended without the broker dying:\n{out}"
    );
    let answered: HashSet<String> = out
        .lines()
        .filter(|l| l.starts_with("l-"))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "{} leases answered ({answered_before_kill} when the kill was sent) before the broker died",
        answered.len()
    );

    lab.broker = Broker::start_wrapped(&lab.home, &data, &lifted);
    let leases = listed(&lab);
    let storm_listed: HashSet<String> = leases
        .iter()
        .filter(|(user, _)| user == "storm")
        .map(|(_, id)| id.clone())
        .collect();
    let lost: Vec<_> = answered.difference(&storm_listed).collect();
    assert!(
        lost.is_empty(),
        "answered leases lost in the crash: {lost:?}"
    );
    assert!(
        storm_listed.len() <= answered.len() + 1,
        "{} storm leases listed for {} answered: more than the one in flight",
        storm_listed.len(),
        answered.len()
    );
    let issued: Vec<String> = lab
        .broker
        .admin(
            &lab.home,
            &[
                "audit",
                "--kind",
                "lease_issued",
                "--user",
                "storm",
                "--json",
            ],
            None,
        )
        .expect_ok("audit --kind lease_issued")
        .json()["entries"]
        .as_array()
        .expect("audit entries")
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .filter_map(|d| d.split_whitespace().next())
        .filter_map(|lease| lease.strip_prefix("lease="))
        .map(str::to_owned)
        .collect();
    let issued_set: HashSet<String> = issued.iter().cloned().collect();
    assert_eq!(
        issued.len(),
        issued_set.len(),
        "a lease has two lease_issued rows"
    );
    assert_eq!(
        issued_set, storm_listed,
        "audit rows and listed leases differ: something was half-written"
    );

    // The edge, reconnected to the new broker, holds exactly what it lists.
    let total = leases.len() as f64;
    let agreed =
        grantwire_e2e::wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
            let m = lab.edge().metrics(&lab.home);
            (m.require("grantwire_edge_broker_connected") == 1.0
                && m.require("grantwire_edge_leases") == total)
                .then_some(())
        });
    assert!(
        agreed.is_some(),
        "the edge does not hold the broker's {total} leases after the restart:\n{}",
        lab.edge().metrics(&lab.home).text
    );
    lab.wait_page(&lab.client, &url, FIRST_LOAD)
        .unwrap_or_else(|last| panic!("alice's tunnel failed after the crash: {last:?}"));
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}

#[test]
fn a_profile_retried_after_its_answer_was_lost_leaves_one_lease_that_tunnels() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("rty", false);
    let edge = lab.enrol_edge();
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);
    let dir = lab.dir.path().to_owned();
    let script = dir.join("tcp_relay.py");
    std::fs::write(&script, TCP_RELAY_PY).expect("write the relay");
    let control = dir.join("relay");
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
    let mut relay = lab.client.spawn(
        "tcp relay",
        &[
            "python3",
            &path(&script),
            RELAY_PORT,
            HOME_OUTSIDE_IP,
            "8443",
            &path(&control),
        ],
    );
    let ready = grantwire_e2e::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        relay.assert_running("the relay to listen");
        relay.stdout().contains("ready").then_some(())
    });
    assert!(
        ready.is_some(),
        "the relay did not start:\n{}",
        relay.logs()
    );
    let phone = lab.device("alice-phone");
    lab.login_at(&phone, &alice, &format!("https://127.0.0.1:{RELAY_PORT}"));
    let out = dir.join("alice-home.conf");

    // The answer is lost once the broker has committed the lease.
    std::fs::write(dir.join("relay.lose"), b"").expect("lose mode");
    let lost = std::thread::scope(|s| {
        let asking = s.spawn(|| phone.profile(&lab.client, "home", &out));
        let committed =
            grantwire_e2e::wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
                (lab.broker.leases(&lab.home).len() == 1).then_some(())
            });
        std::fs::write(dir.join("relay.release"), b"").expect("release");
        assert!(
            committed.is_some(),
            "the broker never committed the first lease"
        );
        asking.join().expect("the profile thread")
    });
    assert_eq!(
        lost.code,
        Some(1),
        "a lost answer is a runtime failure:\n{lost}"
    );
    assert!(
        relay.stdout().contains("lost"),
        "the relay lost no answer:\n{}",
        relay.logs()
    );
    assert!(
        !out.exists(),
        "no answer arrived, yet {} was written",
        out.display()
    );
    let first_key = lab.broker.leases(&lab.home)[0]["public_key"].clone();

    std::fs::remove_file(dir.join("relay.lose")).expect("pass mode");
    let retry = phone.profile(&lab.client, "home", &out);
    assert_eq!(retry.code, Some(0), "the retry failed:\n{retry}");
    let leases = lab.broker.leases(&lab.home);
    let text = std::fs::read_to_string(&out).expect("the profile");
    let key = grantwire_e2e::conf_keys(&text).public;
    assert_eq!(
        leases.len(),
        1,
        "after the retry alice must hold one lease, not one per attempt: {leases:?}"
    );
    assert_eq!(leases[0]["public_key"], key.as_str(), "{leases:?}");
    assert_eq!(
        first_key,
        key.as_str(),
        "the retry must send the first attempt's key"
    );
    let synced =
        grantwire_e2e::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            (lab.edge()
                .metrics(&lab.home)
                .require("grantwire_edge_leases")
                == 1.0)
                .then_some(())
        });
    assert!(synced.is_some(), "the edge should hold alice's one lease");
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &out);
    lab.wait_page(&lab.client, &lab.plex_url(&edge), FIRST_LOAD)
        .unwrap_or_else(|last| panic!("the retried profile's tunnel did not load: {last:?}"));
    drop(wg);
    lab.assert_no_unexpected_warnings(&[]);
}
