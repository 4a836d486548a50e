//! The helper as a person runs it: with no `--config-dir`, its files land in the platform's
//! config directory (XDG on Linux), private; and the question that trusts a broker with a
//! self-signed certificate is asked and answered on a real terminal (a pseudo-terminal made by
//! util-linux's `script`), so "yes" remembers the fingerprint and "no" sends nothing.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_grantwire");

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `grantwire ARGS` with no `--config-dir`, HOME and XDG_CONFIG_HOME as given.
fn run_at_home(home: &Path, xdg: Option<&Path>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("GRANTWIRE_CONFIG_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(xdg) = xdg {
        cmd.env("XDG_CONFIG_HOME", xdg);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_config_dir_files_go_to_the_platform_config_dir_privately() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let home = tmp.path().join("home");
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(&home).unwrap();
    // XDG_CONFIG_HOME when set, else ~/.config: each login a different TOTP step.
    for (step, xdg, dir) in [
        (0, Some(xdg.as_path()), xdg.join("grantwire")),
        (1, None, home.join(".config/grantwire")),
    ] {
        let code = grantwire_broker::totp::code_at(&secret, now() + 30 * step);
        let url = broker.url();
        let login = [
            "login",
            "--broker",
            &url,
            "--user",
            "alice",
            "--fingerprint",
            broker.fingerprint(),
            "--password-stdin",
            "--totp",
            &code,
        ];
        let (home, stdin) = (home.as_path(), format!("{PASSWORD}\n"));
        let out = tokio::task::spawn_blocking({
            let login: Vec<String> = login.iter().map(|s| s.to_string()).collect();
            let (home, xdg) = (home.to_path_buf(), xdg.map(Path::to_path_buf));
            move || {
                let login: Vec<&str> = login.iter().map(String::as_str).collect();
                let first = run_at_home(&home, xdg.as_deref(), &login, &stdin);
                let second = run_at_home(&home, xdg.as_deref(), &["profile", "home"], "");
                (first, second)
            }
        })
        .await
        .unwrap();
        for out in [&out.0, &out.1] {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{dir:?}: {err}");
        }
        assert_eq!(mode(&dir), 0o700, "{dir:?}");
        for file in [
            "session.json",
            "known_brokers.json",
            "profiles/home.conf",
            "profiles/home.json",
        ] {
            let path = dir.join(file);
            assert!(path.is_file(), "{path:?} missing");
            assert_eq!(mode(&path), 0o600, "{path:?}");
        }
        // Nothing was written to the working directory or next to the binary's arguments.
        assert!(!Path::new("session.json").exists());
    }
}

/// One `grantwire login` inside a pseudo-terminal; `answer` is typed once the trust question
/// shows, then the password. Returns the exit code and all the terminal showed.
fn login_on_a_terminal(config: &Path, url: &str, code: &str, answer: &str) -> (i32, String) {
    let command = format!(
        "'{BIN}' --config-dir '{}' login --broker '{url}' --user alice --password-stdin \
         --totp {code}",
        config.display()
    );
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("GRANTWIRE_FINGERPRINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs (Debian package bsdutils)");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&shown).contains("[yes/no]") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => shown.extend(chunk),
            Err(_) => panic!(
                "no trust question within 30 s; the terminal showed:\n{}",
                String::from_utf8_lossy(&shown)
            ),
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{answer}\n{PASSWORD}\n").as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    shown.extend(rx.try_iter().flatten());
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&shown).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_question_on_a_real_terminal_no_sends_nothing_yes_remembers() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("client");
    let url = broker.url();
    let fingerprint = broker.fingerprint().to_owned();

    let code = grantwire_broker::totp::code_at(&secret, now());
    let (code_no, shown) = tokio::task::spawn_blocking({
        let (config, url, code) = (config.clone(), url.clone(), code.clone());
        move || login_on_a_terminal(&config, &url, &code, "no")
    })
    .await
    .unwrap();
    assert!(shown.contains(&fingerprint), "{shown}");
    assert_eq!(code_no, 3, "{shown}");
    assert!(shown.contains("not trusted: nothing was sent"), "{shown}");
    assert!(!config.join("known_brokers.json").exists());
    assert!(!config.join("session.json").exists());

    // The code was never sent, so the same one still logs in after "yes".
    let (code_yes, shown) = tokio::task::spawn_blocking({
        let (config, url) = (config.clone(), url.clone());
        move || login_on_a_terminal(&config, &url, &code, "yes")
    })
    .await
    .unwrap();
    assert_eq!(code_yes, 0, "{shown}");
    assert!(shown.contains("is now trusted by fingerprint"), "{shown}");
    assert!(shown.contains("logged in as alice"), "{shown}");
    let known: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.join("known_brokers.json")).unwrap()).unwrap();
    assert_eq!(known["brokers"][format!("{url}/")], fingerprint.as_str());
    assert_eq!(mode(&config.join("known_brokers.json")), 0o600);

    // Remembered: the next login, still off any terminal, needs no question.
    let run = grantwire(&config, &["whoami", "--json"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}
