//! Local control interfaces need authentication even on loopback (scenario I3), on a running
//! broker and edge with a live lease:
//!
//! - the broker's HTTPS API on 127.0.0.1 answers every route without a credential, or with a
//!   made-up one, with the same 401 and body as from anywhere else;
//! - its admin socket refuses a user other than root (`nobody`, through `setpriv`): the command
//!   fails and changes nothing;
//! - the edge's metrics on 127.0.0.1:9586, its only local listener, are read-only (GET
//!   /metrics; any other method or path is refused) and hold no secret: they are not a control
//!   interface, and carry no authentication by design;
//! - none of these is reachable through the tunnel (`lateral.rs` probes 8443 and 9586 on the
//!   edge's tunnel address).

use std::time::Duration;

use grantwire_e2e::harness::grantwire::METRICS_ADDR;
use grantwire_e2e::{bins, require_env, Lab};

/// `curl -sk --http1.1` in home; (status code, body). HTTP/1.1 because over HTTP/2 curl 7.88
/// sometimes (1 in 10 here) gets a stream error and no status for an unauthenticated POST with
/// a body: the broker answers 401 before reading the body and resets the stream (noted on
/// issue 16; the refusal holds either way).
fn curl(lab: &Lab, args: &[&str]) -> (String, String) {
    let mut argv = vec![
        "curl",
        "-sk",
        "--http1.1",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
    ];
    argv.extend_from_slice(args);
    let out = lab.home.exec_with(&argv, None, Duration::from_secs(10));
    let (body, code) = out
        .stdout
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl printed no status:\n{out}"));
    assert_ne!(code, "000", "curl got no answer:\n{out}");
    (code.to_owned(), body.to_owned())
}

#[test]
fn on_loopback_the_api_wants_credentials_the_admin_socket_wants_root_and_metrics_only_read() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("loc", false);
    let edge = lab.enrol_edge();
    let (wg, profile) = lab.tunnel_up(&edge, "alice");

    // The API on loopback: the same 401 for every route, without or with a made-up token.
    let base = "https://127.0.0.1:8443";
    let mut answers = Vec::new();
    for (method, path) in [
        ("GET", "/v1/leases"),
        ("POST", "/v1/leases"),
        ("GET", "/v1/whoami"),
        ("POST", "/v1/logout"),
        ("POST", "/v1/leases/l-0000000000000000/revoke"),
        ("GET", "/v1/edge/sync"),
        ("POST", "/v1/edge/report"),
    ] {
        let url = format!("{base}{path}");
        for auth in [None, Some("Authorization: Bearer made-up-token")] {
            let mut args = vec!["-X", method];
            if let Some(header) = auth {
                args.extend_from_slice(&["-H", header]);
            }
            if method == "POST" {
                args.extend_from_slice(&["-H", "Content-Type: application/json", "-d", "{}"]);
            }
            args.push(&url);
            let (code, body) = curl(&lab, &args);
            assert_eq!(
                code, "401",
                "{method} {path} ({auth:?}) on loopback: {code} {body}"
            );
            answers.push(body);
        }
    }
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "every unauthenticated answer on loopback must be the same: {answers:?}"
    );

    // The admin socket as `nobody`: refused, nothing changed.
    let data = lab.broker.data_dir.to_str().expect("UTF-8 path").to_owned();
    let refused = lab.home.exec_with(
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            bins().broker_str(),
            "user",
            "add",
            "eve",
            "--password-stdin",
            "--data-dir",
            &data,
        ],
        Some(b"a long enough password\n"),
        Duration::from_secs(30),
    );
    assert!(
        !refused.success(),
        "a user other than root ran an admin command:\n{refused}"
    );
    let users = lab
        .broker
        .admin(&lab.home, &["user", "list", "--json"], None)
        .expect_ok("user list");
    assert!(
        !users.stdout.contains("\"eve\""),
        "the refused command added a user:\n{users}"
    );
    eprintln!(
        "admin command as nobody refused: {}",
        refused.stderr.lines().next().unwrap_or_default()
    );

    // The edge's metrics: read, nothing else.
    let metrics = format!("http://{METRICS_ADDR}/metrics");
    let (code, body) = curl(&lab, &[&metrics]);
    assert_eq!(code, "200", "GET /metrics: {code}");
    assert!(body.contains("grantwire_edge_leases 1"), "{body}");
    for (args, what) in [
        (
            vec!["-X", "POST", "-d", "x", metrics.as_str()],
            "POST /metrics",
        ),
        (
            vec!["-X", "PUT", "-d", "x", metrics.as_str()],
            "PUT /metrics",
        ),
        (vec!["-X", "DELETE", metrics.as_str()], "DELETE /metrics"),
    ] {
        let (code, _) = curl(&lab, &args);
        assert_ne!(code, "200", "{what} was accepted");
    }
    let (code, _) = curl(&lab, &[&format!("http://{METRICS_ADDR}/leases")]);
    assert_eq!(code, "404", "GET /leases on the metrics port");
    // No secret in them: neither the lease's preshared key nor the client's private key.
    let conf = std::fs::read_to_string(&profile).expect("the profile");
    for key in ["PresharedKey", "PrivateKey"] {
        let value = conf
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key} in the profile"));
        assert!(
            !body.contains(&value),
            "the metrics hold the profile's {key}"
        );
    }
    lab.assert_no_unexpected_warnings(&[]);
    drop(wg);
}
