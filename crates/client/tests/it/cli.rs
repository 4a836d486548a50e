//! The built `grantwire` binary: exit codes and messages for the failures a user meets first.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn grantwire(config_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_grantwire"))
        .arg("--config-dir")
        .arg(config_dir)
        .args(args)
        // The caller's environment must not fill in flags.
        .env_remove("GRANTWIRE_CONFIG_DIR")
        .env_remove("GRANTWIRE_BROKER")
        .env_remove("GRANTWIRE_USER")
        .env_remove("GRANTWIRE_FINGERPRINT")
        .env_remove("GRANTWIRE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start grantwire");
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes());
    // A usage error can end the process before it reads stdin; its exit code is what counts.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("wait for grantwire")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn profile_without_a_session_says_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = grantwire(dir.path(), &["profile", "home"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "grantwire: not logged in: run `grantwire login`\n"
    );
    assert!(out.stdout.is_empty());
    // Nothing was written on the way.
    assert!(!dir.path().join("profiles").exists());
}

#[test]
fn expired_session_is_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("session.json"),
        r#"{"broker_url":"https://127.0.0.1:1/","fingerprint":null,"user":"alice","token":"t","expires_at":1000}"#,
    )
    .unwrap();
    let out = grantwire(dir.path(), &["profile", "home", "--json"], "");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn login_to_a_closed_port_fails_readably() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = format!("https://127.0.0.1:{port}");
    let fp = "ab".repeat(32);
    let args = [
        "login",
        "--broker",
        &broker,
        "--user",
        "alice",
        "--fingerprint",
        &fp,
        "--password-stdin",
        "--totp",
        "123456",
    ];
    let out = grantwire(dir.path(), &args, "hunter2\n");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("grantwire: cannot reach the broker at {broker}/")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!err.contains("reqwest::"), "debug dump: {err}");
    assert!(!dir.path().join("session.json").exists());
}

#[test]
fn bad_fingerprint_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "login",
        "--broker",
        "https://127.0.0.1:1",
        "--user",
        "alice",
        "--fingerprint",
        "not-a-fingerprint",
        "--password-stdin",
    ];
    let out = grantwire(dir.path(), &args, "pw\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--fingerprint"), "{}", stderr(&out));
}

#[test]
fn empty_password_on_stdin_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let fingerprint = "ab".repeat(32);
    let args = [
        "login",
        "--broker",
        "https://127.0.0.1:1",
        "--user",
        "alice",
        // Trust is settled before the password is read, as SSH does; a pinned broker needs no
        // connection for that.
        "--fingerprint",
        &fingerprint,
        "--password-stdin",
        "--totp",
        "123456",
    ];
    let out = grantwire(dir.path(), &args, "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("grantwire: --password-stdin"));
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = grantwire(dir.path(), &["profile", "--help"], "");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("3  refused"),
        "{help}"
    );
}

const SUBCOMMANDS: [&str; 13] = [
    "login",
    "profile",
    "whoami",
    "renew",
    "status",
    "watch",
    "logout",
    "leases",
    "revoke",
    "up",
    "down",
    "completions",
    "man",
];

#[test]
fn completions_name_every_command_and_bash_parses_its_script() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = grantwire(dir.path(), &["completions", shell], "");
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.len() > 500, "{shell}: {script}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        if shell == "bash" {
            let path = dir.path().join("grantwire.bash");
            std::fs::write(&path, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
            assert!(check.status.success(), "bash -n: {}", stderr(&check));
        }
    }
    // Flags complete too, not only commands.
    let out = grantwire(dir.path(), &["completions", "bash"], "");
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("--qr-png") && script.contains("--fingerprint"));
    assert!(script.contains("--every"), "watch's flag completes");
    let out = grantwire(dir.path(), &["completions", "tcsh"], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn man_page_names_every_command_and_writes_one_page_each() {
    let dir = tempfile::tempdir().unwrap();
    let out = grantwire(dir.path(), &["man"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH grantwire"),
        "{page}"
    );
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
    assert!(page.contains("Exit codes"), "{page}");

    let pages = dir.path().join("man/man1");
    let out = grantwire(dir.path(), &["man", "--out", pages.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for sub in SUBCOMMANDS {
        let sub_page = std::fs::read_to_string(pages.join(format!("grantwire-{sub}.1"))).unwrap();
        assert!(sub_page.contains(".TH"), "{sub}");
    }
    let profile = std::fs::read_to_string(pages.join("grantwire-profile.1")).unwrap();
    assert!(profile.contains("qr\\-png"), "{profile}");
    assert!(pages.join("grantwire.1").exists());
}
