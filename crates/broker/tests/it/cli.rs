//! The real binary: `serve` in a child process, admin commands through its admin socket, a
//! lease over HTTPS, exit codes, and a graceful stop on SIGTERM.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::binary::{run, run_json, serve, wait_timeout, BIN};
use crate::common::keypair;
use grantwire_proto::{
    EdgeAddResponse, GrantInfo, GrantRevokeResponse, LeaseListResponse, LeaseResponse,
    UserAddResponse,
};
use serde_json::json;

#[tokio::test]
async fn binary_serves_and_admin_commands_use_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = serve(&data, &[]);

    let user: UserAddResponse = run_json(
        &data,
        &["user", "add", "alice", "--password-stdin", "--json"],
        Some("long enough pw\n"),
    );
    assert_eq!(user.name, "alice");
    assert!(user.otpauth_uri.contains(&user.totp_secret));

    let short = run(
        &data,
        &["user", "add", "bob", "--password-stdin"],
        Some("short\n"),
    );
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));
    // Nothing was written: the name is still free.
    let _: UserAddResponse = run_json(
        &data,
        &["user", "add", "bob", "--password-stdin", "--json"],
        Some("long enough pw\n"),
    );

    let edge: EdgeAddResponse = run_json(
        &data,
        &[
            "edge",
            "add",
            "home",
            "--endpoint",
            "127.0.0.1:51820",
            "--json",
        ],
        None,
    );
    assert_eq!(edge.tunnel_address.to_string(), "10.77.0.1");
    let grant: GrantInfo = run_json(
        &data,
        &[
            "grant",
            "add",
            "alice",
            "home",
            "--lease-ttl",
            "5s",
            "--json",
        ],
        None,
    );
    assert_eq!(grant.lease_ttl_secs, 5);
    let missing = run(&data, &["grant", "add", "alice", "nowhere"], None);
    assert_eq!(missing.status.code(), Some(1));
    let duplicate = run(
        &data,
        &["user", "add", "alice", "--password-stdin"],
        Some("long enough pw\n"),
    );
    assert_eq!(duplicate.status.code(), Some(1));

    // Usage errors exit 2 and write nothing: the names stay free for the corrected command.
    for args in [
        &["edge", "add", "Bad Name", "--endpoint", "h:1"][..],
        &["edge", "add", "cabin", "--endpoint", "no-port"],
        &["edge", "add", "cabin", "--endpoint", "h:0"],
        &[
            "edge",
            "add",
            "cabin",
            "--endpoint",
            "h:1",
            "--subnet",
            "10.0.0.0/8",
        ],
        &[
            "edge",
            "add",
            "cabin",
            "--endpoint",
            "h:1",
            "--subnet",
            "10.9.0.0/30",
        ],
        &["grant", "add", "bob", "home", "--lease-ttl", "0s"],
        &["grant", "add", "Bob", "home"],
        &["grant", "revoke", "alice", "Home"],
    ] {
        let out = run(&data, args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    }
    let bad_user = run(
        &data,
        &["user", "add", "Carol", "--password-stdin"],
        Some("long enough pw\n"),
    );
    assert_eq!(bad_user.status.code(), Some(2));
    let _: EdgeAddResponse = run_json(
        &data,
        &["edge", "add", "cabin", "--endpoint", "h:1", "--json"],
        None,
    );
    let _: GrantInfo = run_json(&data, &["grant", "add", "bob", "home", "--json"], None);

    // Enrol the edge, log in and take a lease over HTTPS.
    let http = served.http();
    served.enrol(&http, &edge.enrolment_token).await;
    let token = served
        .login(&http, "alice", "long enough pw", &user.totp_secret)
        .await;
    let body = json!({"edge": "home", "public_key": keypair().public_key()});
    let resp = http
        .post(format!("{}/v1/leases", served.url))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let profile = resp.json::<LeaseResponse>().await.unwrap().profile;

    let list: LeaseListResponse = run_json(&data, &["lease", "list", "--json"], None);
    assert_eq!(list.leases.len(), 1);
    assert_eq!(list.leases[0].id, profile.lease_id);
    assert_eq!(list.leases[0].expires_at - list.leases[0].created_at, 5);
    let human = run(&data, &["lease", "list"], None);
    assert!(String::from_utf8_lossy(&human.stdout).contains(profile.lease_id.as_str()));

    let revoked: GrantRevokeResponse =
        run_json(&data, &["grant", "revoke", "alice", "home", "--json"], None);
    assert_eq!(revoked.revoked_leases, 1);

    let usage = run(&data, &["grant", "add", "alice"], None);
    assert_eq!(usage.status.code(), Some(2));

    // SIGTERM stops it cleanly.
    let pid = served.child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = wait_timeout(&mut served.child.0, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");

    let down = run(&data, &["lease", "list"], None);
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains("cannot reach the broker's admin socket"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is `grantwire-broker serve` running?"),
        "{stderr}"
    );
}

/// An admin command from a user the broker does not serve exits 3 and says why, whether the
/// socket cannot be opened or the broker hangs up on the uid. Running as another uid needs
/// root; without it only the unopenable socket can be shown (a directory with mode 0000).
#[tokio::test]
async fn admin_commands_from_another_user_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = serve(&data, &[]);
    let socket = data.join("admin.sock");
    let is_root = std::fs::metadata(&data).map(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    });
    let is_root = is_root.unwrap();
    // The build tree may sit under a directory only root can enter (a fresh clone in a 0700
    // mktemp dir, say), so the other user runs a copy of the binary from an open directory.
    let open_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = open_dir.path().join("grantwire-broker");
    std::fs::copy(BIN, &bin).unwrap();
    let as_other = |args: &[&str]| -> Output {
        let mut cmd = Command::new(&bin);
        cmd.args(args).arg("--data-dir").arg(&data);
        if is_root {
            cmd.uid(65534).gid(65534);
        }
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    let expect_denied = |out: Output| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        let want = format!(
            "permission denied on the admin socket {}: run as root or as the broker's user",
            socket.display()
        );
        assert!(stderr.contains(&want), "{stderr}");
        assert!(
            !stderr.contains("is `grantwire-broker serve` running?"),
            "{stderr}"
        );
    };
    let set_mode = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    if is_root {
        // The path is reachable but the data directory is not: connect fails with EACCES.
        set_mode(dir.path(), 0o755);
        expect_denied(as_other(&["lease", "list"]));
        // Everything is open, so only the broker's peer uid check stands in the way.
        set_mode(&data, 0o755);
        set_mode(&socket, 0o666);
        expect_denied(as_other(&["lease", "list"]));
        set_mode(&socket, 0o600);
        set_mode(&data, 0o700);
    } else {
        set_mode(&data, 0o000);
        expect_denied(as_other(&["lease", "list"]));
        set_mode(&data, 0o700);
    }
    // The owner is still served.
    let list: LeaseListResponse = run_json(&data, &["lease", "list", "--json"], None);
    assert!(list.leases.is_empty());

    let _ = served.child.0.kill();
    let _ = served.child.0.wait();
}

#[tokio::test]
async fn user_commands_print_one_json_object_or_text() {
    use grantwire_proto::{UserChangeResponse, UserListResponse};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = serve(&data, &[]);
    let pw = Some("long enough pw\n");
    let _: UserAddResponse = run_json(
        &data,
        &["user", "add", "alice", "--password-stdin", "--json"],
        pw,
    );
    let _: UserAddResponse = run_json(
        &data,
        &["user", "add", "bob", "--password-stdin", "--json"],
        pw,
    );

    let list: UserListResponse = run_json(&data, &["user", "list", "--json"], None);
    let names: Vec<_> = list.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(list.users.iter().all(|u| !u.disabled));

    let off: UserChangeResponse = run_json(&data, &["user", "disable", "bob", "--json"], None);
    assert!(off.disabled);
    let human = run(&data, &["user", "list"], None);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("bob") && l.contains("disabled")),
        "{text}"
    );
    let on = run(&data, &["user", "enable", "bob"], None);
    assert!(on.status.success());
    assert!(String::from_utf8_lossy(&on.stdout).contains("Enabled user bob"));

    let short = run(
        &data,
        &["user", "reset-password", "bob", "--password-stdin"],
        Some("short\n"),
    );
    assert_eq!(short.status.code(), Some(2));
    let common = run(
        &data,
        &["user", "reset-password", "bob", "--password-stdin"],
        Some("qwerty123456\n"),
    );
    assert_eq!(common.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&common.stderr).contains("most common"));
    let reset: UserChangeResponse = run_json(
        &data,
        &[
            "user",
            "reset-password",
            "bob",
            "--password-stdin",
            "--json",
        ],
        Some("another long passphrase\n"),
    );
    assert_eq!(reset.name, "bob");

    let totp: UserAddResponse = run_json(&data, &["user", "reset-totp", "bob", "--json"], None);
    assert!(totp.otpauth_uri.contains(&totp.totp_secret));
    let human = run(&data, &["user", "reset-totp", "bob"], None);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("New TOTP secret for bob"), "{text}");
    assert!(text.contains("otpauth://totp/grantwire:bob"), "{text}");

    let missing = run(&data, &["user", "disable", "nobody", "--json"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());
    let _ = served.child.0.kill();
    let _ = served.child.0.wait();
}
