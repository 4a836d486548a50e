//! `grantwire up EDGE` / `grantwire down EDGE` against a real broker.
//!
//! Most tests put a stand-in `wg-quick` (a script logging its arguments) on PATH, or none at
//! all, so they run anywhere. `up_and_down_bring_a_real_interface_up_and_down` runs the real
//! Debian `wg-quick` with `wireguard-go` in a network namespace joined to the broker by a veth
//! pair: it needs root, `ip`, `wg`, `wg-quick`, `wireguard-go` and `/dev/net/tun`. Under
//! `CI=true` or `GRANTWIRE_E2E_REQUIRED=1` anything missing fails the test naming it; elsewhere
//! it says `skipping: ...` and passes, like `interop.rs`.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::host::*;
use crate::common::*;
use grantwire_broker::ServeConfig;
use grantwire_proto::{GrantAddRequest, UserAddRequest};

/// Runs `[prefix..] grantwire --config-dir CONFIG args..` off the runtime's threads with extra
/// environment, so the in-process broker keeps serving.
async fn gw_env(
    prefix: &[String],
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> Run {
    let mut argv: Vec<String> = prefix.to_vec();
    argv.push(env!("CARGO_BIN_EXE_grantwire").into());
    argv.push("--config-dir".into());
    argv.push(config.to_str().unwrap().into());
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let stdin = stdin.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env_remove("GRANTWIRE_WG_DIR")
            .env_remove("GRANTWIRE_CONFIG_DIR")
            .env_remove("GRANTWIRE_LOG")
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A directory holding only a `wg-quick` that appends its arguments to `log`.
fn fake_wg_quick(dir: &Path, log: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("wg-quick");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_writes_the_stored_profile_and_runs_wg_quick_then_down() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    let made = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let stored = std::fs::read_to_string(config.join("profiles/home.conf")).unwrap();

    let log = tmp.path().join("wg-quick.log");
    let bin = fake_wg_quick(&tmp.path().join("bin"), &log);
    let path_env = bin.to_str().unwrap();
    let wg_dir = tmp.path().join("wg");
    let wg = wg_dir.to_str().unwrap();
    let up = gw_env(
        &[],
        &config,
        &["up", "home", "--wg-dir", wg],
        &[("PATH", path_env)],
        "",
    )
    .await;
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    assert!(
        up.stdout.is_empty(),
        "stdout stays for scripts: {}",
        up.stdout
    );
    // A fresh 8-hour lease pinned here is used as it is.
    assert!(!up.stderr.contains("renewing"), "{}", up.stderr);
    let conf = wg_dir.join("gw-home.conf");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), stored);
    assert_eq!(mode(&conf), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&wg_dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");

    // The directory comes from the environment too.
    let down = gw_env(
        &[],
        &config,
        &["down", "home"],
        &[("PATH", path_env), ("GRANTWIRE_WG_DIR", wg)],
        "",
    )
    .await;
    assert_eq!(down.code, Some(0), "{}", down.stderr);
    let calls = std::fs::read_to_string(&log).unwrap();
    let c = conf.display();
    assert_eq!(calls, format!("up {c}\ndown {c}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_renews_a_lease_that_ends_within_ten_minutes() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, _) = broker_with_alice(&tmp.path().join("broker")).await;
    let admin = broker.admin();
    let user = admin
        .accounts()
        .add(UserAddRequest {
            name: "bob".into(),
            password: PASSWORD.into(),
            admin: false,
        })
        .await
        .unwrap();
    admin
        .grants()
        .add(GrantAddRequest {
            user: "bob".into(),
            edge: "home".into(),
            lease_ttl_secs: Some(300),
            ..Default::default()
        })
        .await
        .unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(user.totp_secret.as_bytes())
        .unwrap();
    let config = tmp.path().join("bob");
    login(&config, &broker, "bob", &secret).await;
    let made = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);

    let log = tmp.path().join("wg-quick.log");
    let bin = fake_wg_quick(&tmp.path().join("bin"), &log);
    let wg_dir = tmp.path().join("wg");
    let up = gw_env(
        &[],
        &config,
        &["up", "home", "--wg-dir", wg_dir.to_str().unwrap()],
        &[("PATH", bin.to_str().unwrap())],
        "",
    )
    .await;
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    assert!(
        up.stderr
            .contains("renewing the lease for home: the lease ends soon"),
        "{}",
        up.stderr
    );
    // The renewed text went to both the interface file and the profile kept in the config dir.
    let conf = std::fs::read_to_string(wg_dir.join("gw-home.conf")).unwrap();
    let kept = std::fs::read_to_string(config.join("profiles/home.conf")).unwrap();
    assert_eq!(conf, kept);
    assert!(std::fs::read_to_string(&log).unwrap().starts_with("up "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wg_quick_names_the_package_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    let made = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);

    let empty = tmp.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let wg_dir = tmp.path().join("wg");
    for cmd in ["up", "down"] {
        // down finds no file first; give it one so the wg-quick check is what fails.
        if cmd == "down" {
            std::fs::create_dir_all(&wg_dir).unwrap();
            std::fs::write(wg_dir.join("gw-home.conf"), "").unwrap();
        }
        let run = gw_env(
            &[],
            &config,
            &[cmd, "home", "--wg-dir", wg_dir.to_str().unwrap()],
            &[("PATH", empty.to_str().unwrap())],
            "",
        )
        .await;
        assert_eq!(run.code, Some(1), "{cmd}: {}", run.stderr);
        assert!(
            run.stderr.contains("wg-quick is not installed")
                && run.stderr.contains("wireguard-tools"),
            "{cmd}: {}",
            run.stderr
        );
        if cmd == "up" {
            assert!(!wg_dir.exists(), "up wrote nothing");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_missing_profile_and_missing_file_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("wg-quick.log");
    let bin = fake_wg_quick(&tmp.path().join("bin"), &log);
    let path_env = bin.to_str().unwrap();
    let config = tmp.path().join("nobody");
    let wg_dir = tmp.path().join("wg");
    let wg = wg_dir.to_str().unwrap();
    let env = [("PATH", path_env)];

    for bad in ["../etc", "a/b", ".hidden", ""] {
        for cmd in ["up", "down"] {
            let run = gw_env(&[], &config, &[cmd, bad, "--wg-dir", wg], &env, "").await;
            assert_eq!(run.code, Some(2), "{cmd} {bad:?}: {}", run.stderr);
            assert!(run.stderr.contains("interface"), "{}", run.stderr);
        }
    }
    let run = gw_env(
        &[],
        &config,
        &["up", "thirteen-char", "--wg-dir", wg],
        &env,
        "",
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("gw-thirteen-char") && run.stderr.contains("15"),
        "{}",
        run.stderr
    );

    let run = gw_env(&[], &config, &["up", "home", "--wg-dir", wg], &env, "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no profile for home: run `grantwire profile home`"),
        "{}",
        run.stderr
    );
    let run = gw_env(&[], &config, &["down", "home", "--wg-dir", wg], &env, "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("gw-home.conf") && run.stderr.contains("nothing to take down"),
        "{}",
        run.stderr
    );
    assert!(!wg_dir.exists() && !log.exists(), "nothing written or run");
}

/// Every entry under `dir`, sorted (an absent directory has none).
fn entries(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_renders_from_the_kept_profile_not_from_a_file_a_user_could_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    let made = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let user_file = config.join("profiles/home.conf");
    let clean = std::fs::read_to_string(&user_file).unwrap();
    // The profile file lives where the user (or anything running as the user) can write.
    std::fs::write(&user_file, format!("{clean}PostUp = touch /tmp/pwned\n")).unwrap();

    let log = tmp.path().join("wg-quick.log");
    let bin = fake_wg_quick(&tmp.path().join("bin"), &log);
    let wg_dir = tmp.path().join("wg");
    let up = gw_env(
        &[],
        &config,
        &["up", "home", "--wg-dir", wg_dir.to_str().unwrap()],
        &[("PATH", bin.to_str().unwrap())],
        "",
    )
    .await;
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    assert!(!up.stderr.contains("renewing"), "{}", up.stderr);
    let conf = std::fs::read_to_string(wg_dir.join("gw-home.conf")).unwrap();
    assert_eq!(conf, clean);
    assert_eq!(mode(&wg_dir), 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_refuse_a_directory_or_file_others_could_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("alice");
    login(&config, &broker, "alice", &secret).await;
    let made = grantwire(&config, &["profile", "home"], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let kept = std::fs::read(config.join("profiles/home.json")).unwrap();
    let log = tmp.path().join("wg-quick.log");
    let bin = fake_wg_quick(&tmp.path().join("bin"), &log);
    let env = [("PATH", bin.to_str().unwrap())];
    let nobody = 65534;

    // The directory itself writable by its group or others, or not root's; a directory above
    // it not root's (its owner could rename the directory away and put another in its place).
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o770)).unwrap();
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(nobody), Some(nobody)).unwrap();
    let above = tmp.path().join("above");
    std::fs::create_dir_all(above.join("wg")).unwrap();
    std::os::unix::fs::chown(&above, Some(nobody), Some(nobody)).unwrap();
    for (dir, says) in [
        (open.clone(), "writable by its group or others"),
        (theirs.clone(), "not root"),
        (above.join("wg"), "not root"),
        (above.join("new"), "not root"),
    ] {
        let wg = dir.to_str().unwrap();
        let run = gw_env(&[], &config, &["up", "home", "--wg-dir", wg], &env, "").await;
        assert_eq!(run.code, Some(1), "{wg}: {}", run.stderr);
        assert!(
            run.stderr.contains("refusing") && run.stderr.contains(says),
            "{wg}: {}",
            run.stderr
        );
        assert!(entries(&dir).is_empty(), "{wg}: nothing written");
    }
    assert!(!above.join("new").exists());
    assert!(!log.exists(), "wg-quick never ran");
    assert_eq!(
        std::fs::read(config.join("profiles/home.json")).unwrap(),
        kept
    );

    // A link planted at the file name is replaced, not written through.
    let wg_dir = tmp.path().join("wg");
    std::fs::create_dir(&wg_dir).unwrap();
    let target = tmp.path().join("elsewhere");
    std::fs::write(&target, "untouched").unwrap();
    std::os::unix::fs::symlink(&target, wg_dir.join("gw-home.conf")).unwrap();
    let wg = wg_dir.to_str().unwrap();
    let run = gw_env(&[], &config, &["up", "home", "--wg-dir", wg], &env, "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    let conf = wg_dir.join("gw-home.conf");
    assert!(std::fs::symlink_metadata(&conf).unwrap().is_file());
    assert_eq!(entries(&wg_dir), ["gw-home.conf"]);

    // `down` hands wg-quick the file too (it runs PreDown/PostDown): only root's will do.
    std::fs::remove_file(&log).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o620)).unwrap();
    let run = gw_env(&[], &config, &["down", "home", "--wg-dir", wg], &env, "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("refusing"), "{}", run.stderr);
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&conf, Some(nobody), None).unwrap();
    let run = gw_env(&[], &config, &["down", "home", "--wg-dir", wg], &env, "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(!log.exists(), "wg-quick never ran");
}

// --- the real thing: wg-quick and wireguard-go in a network namespace -------------------------

/// A namespace joined to this one by a veth pair (`10.231.N.1` here, `.2` there); on drop the
/// namespace (with the tunnel and veth end in it) is deleted.
struct Ns {
    name: String,
    host_if: String,
    host_ip: String,
}

impl Ns {
    fn new() -> Ns {
        let id = std::process::id() % 1_000_000;
        let (name, host_if, peer_if) = (
            format!("gwup{id}"),
            format!("gwuh{id}"),
            format!("gwun{id}"),
        );
        let net = 16 + id % 200;
        let host_ip = format!("10.231.{net}.1");
        let _ = run(&["ip", "netns", "del", &name]);
        let _ = run(&["ip", "link", "del", &host_if]);
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Ns {
            name,
            host_if,
            host_ip,
        };
        run_ok(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ]);
        run_ok(&["ip", "link", "set", &peer_if, "netns", &ns.name]);
        run_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        run_ok(&["ip", "link", "set", &ns.host_if, "up"]);
        let peer_cidr = format!("10.231.{net}.2/30");
        ns.exec_ok(&["ip", "addr", "add", &peer_cidr, "dev", &peer_if]);
        ns.exec_ok(&["ip", "link", "set", &peer_if, "up"]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(String::from)
            .to_vec()
    }

    fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run(&full)
    }

    #[track_caller]
    fn exec_ok(&self, argv: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run_ok(&full)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // A failed test may leave the tunnel up: deleting it ends its wireguard-go.
        let _ = self.exec(&["ip", "link", "del", "gw-home"]);
        let _ = run(&["ip", "netns", "del", &self.name]);
        let _ = run(&["ip", "link", "del", &self.host_if]);
    }
}

fn value_of<'a>(conf: &'a str, key: &str) -> &'a str {
    conf.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{conf}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_bring_a_real_interface_up_and_down() {
    if !require("the `grantwire up` test with real wg-quick", TOOLS, true) {
        return;
    }
    let ns = tokio::task::spawn_blocking(Ns::new).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::for_tests(tmp.path().join("broker"));
    config.listen = format!("{}:0", ns.host_ip).parse().unwrap();
    let (broker, secret) = broker_with_alice_at(config).await;

    // Everything the laptop does happens in the namespace, reaching the broker over the veth.
    let alice = tmp.path().join("alice");
    let code = grantwire_broker::totp::code_at(&secret, now());
    let login = gw_env(
        &ns.prefix(),
        &alice,
        &[
            "login",
            "--broker",
            &broker.url(),
            "--user",
            "alice",
            "--fingerprint",
            broker.fingerprint(),
            "--password-stdin",
            "--totp",
            &code,
        ],
        &[],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(login.code, Some(0), "{}", login.stderr);
    let made = gw_env(&ns.prefix(), &alice, &["profile", "home"], &[], "").await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let profile = std::fs::read_to_string(alice.join("profiles/home.conf")).unwrap();

    let wg_dir = tmp.path().join("wg");
    let wg = wg_dir.to_str().unwrap();
    let userspace = [
        ("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go"),
        ("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1"),
    ];
    let up = gw_env(
        &ns.prefix(),
        &alice,
        &["up", "home", "--wg-dir", wg],
        &userspace,
        "",
    )
    .await;
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    assert_eq!(mode(&wg_dir.join("gw-home.conf")), 0o600);

    let shown = ns.exec_ok(&["wg", "show", "gw-home"]);
    let peer = value_of(&profile, "PublicKey");
    let endpoint = value_of(&profile, "Endpoint");
    assert!(
        shown.contains(&format!("peer: {peer}")),
        "wg show:\n{shown}"
    );
    assert!(
        shown.contains(&format!("endpoint: {endpoint}")),
        "wg show:\n{shown}"
    );

    let down = gw_env(
        &ns.prefix(),
        &alice,
        &["down", "home", "--wg-dir", wg],
        &userspace,
        "",
    )
    .await;
    assert_eq!(down.code, Some(0), "{}", down.stderr);
    let gone = ns.exec(&["ip", "link", "show", "gw-home"]);
    assert!(!gone.status.success(), "gw-home is still there after down");
    drop(ns);
}
