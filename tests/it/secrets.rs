//! Logs at TRACE hold no secret (scenario J1). The broker and the edge run with
//! `RUST_LOG=trace` and the client with `GRANTWIRE_LOG=trace`; alice logs in with her password
//! and TOTP code, takes a profile and loads the stand-in Plex through the tunnel, and the edge
//! enrols with its one-time token and syncs with its credential. Then every log (the broker's,
//! the edge's, and the client's stderr of each command) is searched for every secret that
//! passed through: the password, the TOTP secret and the code, the session token, the
//! profile's private and preshared keys, the edge's enrolment token and credential. None may
//! appear. The logs are shown to be TRACE (they hold trace lines), or this would show nothing.
//! Then the files that hold those secrets, on the client, the edge and the broker, are checked
//! to be the owner's alone (scenario J2).

use std::path::Path;
use std::time::Duration;

use grantwire_e2e::harness::grantwire::{Broker, EdgeArgs};
use grantwire_e2e::harness::lab::FIRST_LOAD;
use grantwire_e2e::{bins, require_env, unix_now, Lab, WgClient};

/// The string value of the first `key` in a wg-quick file.
fn conf_value(text: &str, key: &str) -> String {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} in the profile"))
}

/// The string field `field` of a JSON file.
fn json_field(path: &Path, field: &str) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{field}` in {}", path.display()))
        .to_owned()
}

#[test]
fn trace_logs_of_broker_edge_and_client_hold_no_secret() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("sec", false);
    let data = lab.dir.path().join("broker");
    lab.broker.stop();
    lab.broker = Broker::start_wrapped(&lab.home, &data, &["env", "RUST_LOG=trace"]);
    let edge = lab.enrol_edge_with(EdgeArgs {
        prefix: &["env", "RUST_LOG=trace"],
        ..EdgeArgs::default()
    });
    let alice = lab.add_user("alice");
    lab.broker.grant(&lab.home, "alice", "home", None);

    // The client's commands, run as `grantwire` with GRANTWIRE_LOG=trace.
    // Not made here: the client makes it, as it would on a friend's laptop.
    let config = lab.dir.path().join("device-alice");
    let client = |args: &[&str], stdin: Option<&[u8]>| {
        let mut argv = vec![
            "env",
            "GRANTWIRE_LOG=trace",
            bins().client_str(),
            "--config-dir",
            config.to_str().expect("UTF-8 path"),
        ];
        argv.extend_from_slice(args);
        lab.client
            .exec_with(&argv, stdin, Duration::from_secs(30))
            .expect_ok(&format!("grantwire {}", args.join(" ")))
    };
    let code = alice.totp_at(unix_now());
    let login = client(
        &[
            "login",
            "--broker",
            &lab.broker_url(),
            "--user",
            "alice",
            "--fingerprint",
            &lab.broker.fingerprint,
            "--password-stdin",
            "--totp",
            &code,
        ],
        Some(format!("{}\n", alice.password).as_bytes()),
    );
    let profile = lab.dir.path().join("alice-home.conf");
    let taken = client(
        &[
            "profile",
            "home",
            "--out",
            profile.to_str().expect("UTF-8 path"),
        ],
        None,
    );
    let wg = WgClient::up(&lab.client, &format!("{}c", lab.base), &profile);
    lab.wait_page(&lab.client, &lab.plex_url(&edge), FIRST_LOAD)
        .unwrap_or_else(|last| panic!("alice's page did not load: {last:?}"));
    let status = client(&["status", "home"], None);

    let conf = std::fs::read_to_string(&profile).expect("the profile");
    let totp_secret = alice
        .otpauth_uri
        .split("secret=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("the otpauth URI's secret")
        .to_owned();
    let mut secrets: Vec<(String, String)> = vec![
        ("alice's password".into(), alice.password.clone()),
        ("the TOTP secret".into(), totp_secret),
        ("the TOTP code".into(), code.clone()),
        (
            "the profile's private key".into(),
            conf_value(&conf, "PrivateKey"),
        ),
        (
            "the profile's preshared key".into(),
            conf_value(&conf, "PresharedKey"),
        ),
        (
            "the edge's enrolment token".into(),
            edge.enrolment_token.clone(),
        ),
    ];
    secrets.push((
        "the session token".into(),
        json_field(&config.join("session.json"), "token"),
    ));
    let credential = lab.dir.path().join("edge-state").join("credential");
    let credential = std::fs::read_to_string(&credential)
        .unwrap_or_else(|e| panic!("reading {}: {e}", credential.display()));
    secrets.push(("the edge's credential".into(), credential.trim().to_owned()));

    let logs = [
        ("the broker's log", lab.broker.proc().logs()),
        ("the edge's log", lab.edge().proc().logs()),
        ("grantwire login's stderr", login.stderr.clone()),
        ("grantwire profile's stderr", taken.stderr.clone()),
        ("grantwire status's stderr", status.stderr.clone()),
    ];
    for (what, log) in &logs[..2] {
        assert!(
            log.contains("TRACE"),
            "{what} has no TRACE line: this test would show nothing"
        );
    }
    assert!(
        logs[2..]
            .iter()
            .any(|(_, log)| log.contains("TRACE") || log.contains("DEBUG")),
        "the client's stderr has no TRACE or DEBUG line: GRANTWIRE_LOG=trace did not take"
    );
    let sizes: Vec<String> = logs
        .iter()
        .map(|(what, log)| format!("{what}: {} lines", log.lines().count()))
        .collect();
    eprintln!("searched {} secrets in {}", secrets.len(), sizes.join(", "));
    for (what, log) in &logs {
        for (name, secret) in &secrets {
            // The code is 6 digits: too short to search alone; it is checked as `code` fields.
            if name == "the TOTP code" {
                assert!(
                    !log.contains(&format!("\"{secret}\""))
                        && !log.contains(&format!("code={secret}")),
                    "{what} holds {name}"
                );
                continue;
            }
            assert!(!log.contains(secret.as_str()), "{what} holds {name}");
        }
    }

    // The files that hold those secrets are the owner's alone (scenario J2): the client's
    // config dir 0700, its session.json and the profile 0600; the edge's state dir 0700 and its
    // credential 0600; the broker's data dir 0700 and every file in it 0600 but the certificate
    // and its fingerprint.
    let mode = |path: &Path| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .permissions(),
        ) & 0o777
    };
    let edge_state = lab.dir.path().join("edge-state");
    let mut expected = vec![
        (config.clone(), 0o700),
        (config.join("session.json"), 0o600),
        (profile.clone(), 0o600),
        (edge_state.clone(), 0o700),
        (edge_state.join("credential"), 0o600),
        (data.clone(), 0o700),
    ];
    for entry in std::fs::read_dir(&data)
        .expect("the broker's data dir")
        .flatten()
    {
        // The certificate and its fingerprint are public.
        let path = entry.path();
        let public = entry.file_name().to_string_lossy().starts_with("tls-cert");
        if path.is_file() && !public {
            expected.push((path, 0o600));
        }
    }
    for (path, want) in &expected {
        assert_eq!(
            mode(path),
            *want,
            "{} is mode {:o}, not {want:o}",
            path.display(),
            mode(path)
        );
    }
    eprintln!(
        "{} files and directories have their owner-only modes",
        expected.len()
    );
    drop(wg);
}
