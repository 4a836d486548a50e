//! Helpers for running the `grantwire` binary against a real broker, started in-process on an
//! ephemeral port with a temporary SQLite file and its own self-signed certificate.

// Each test crate uses some of these helpers.
#![allow(dead_code)]

pub mod host;
pub mod wg;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use grantwire_broker::{start, RunningBroker, ServeConfig};
use grantwire_proto::{EdgeAddRequest, EnrolRequest, GrantAddRequest, PrivateKey, UserAddRequest};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary off the runtime's threads, so the in-process broker keeps serving.
pub async fn grantwire<S: AsRef<str>>(config_dir: &Path, args: &[S], stdin: &str) -> Run {
    let config_dir = config_dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let stdin = stdin.to_owned();
    let out = tokio::task::spawn_blocking(move || run_blocking(&config_dir, &args, &stdin))
        .await
        .expect("runner thread");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run_blocking(config_dir: &Path, args: &[String], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_grantwire"))
        .arg("--config-dir")
        .arg(config_dir)
        .args(args)
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
    // A command refused early can end before it reads stdin; its exit code is what counts.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("wait for grantwire")
}

/// A broker with user alice (whose TOTP secret is returned), an enrolled edge `home` and a
/// grant for alice on it.
pub async fn broker_with_alice(data_dir: &Path) -> (RunningBroker, Vec<u8>) {
    broker_with_alice_at(ServeConfig::for_tests(data_dir)).await
}

/// [`broker_with_alice`] with the broker's configuration given, e.g. to listen where another
/// broker listened before.
pub async fn broker_with_alice_at(config: ServeConfig) -> (RunningBroker, Vec<u8>) {
    let broker = start(config).await.unwrap();
    let admin = broker.admin();
    let user = admin
        .accounts()
        .add(UserAddRequest {
            name: "alice".into(),
            password: PASSWORD.into(),
            admin: false,
        })
        .await
        .unwrap();
    let edge = admin
        .edges()
        .add(EdgeAddRequest {
            name: "home".into(),
            endpoint: "192.0.2.1:51820".into(),
            subnet: None,
            ..Default::default()
        })
        .await
        .unwrap();
    let edge_key = PrivateKey::from_random_bytes([9; 32]).public_key();
    admin
        .edges()
        .enrol(
            EnrolRequest {
                token: edge.enrolment_token,
                public_key: edge_key,
            },
            "127.0.0.1".parse().unwrap(),
        )
        .await
        .unwrap();
    admin
        .grants()
        .add(GrantAddRequest {
            user: "alice".into(),
            edge: "home".into(),
            lease_ttl_secs: None,
            ..Default::default()
        })
        .await
        .unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(user.totp_secret.as_bytes())
        .unwrap();
    (broker, secret)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Adds user `name` with a grant on `home`; returns its raw TOTP secret.
pub async fn add_user_with_grant(broker: &RunningBroker, name: &str) -> Vec<u8> {
    add_user_with_grant_ttl(broker, name, None).await
}

/// [`add_user_with_grant`] with the grant's lease lifetime given (`None`: the default).
pub async fn add_user_with_grant_ttl(
    broker: &RunningBroker,
    name: &str,
    lease_ttl_secs: Option<u64>,
) -> Vec<u8> {
    let admin = broker.admin();
    let user = admin
        .accounts()
        .add(UserAddRequest {
            name: name.into(),
            password: PASSWORD.into(),
            admin: false,
        })
        .await
        .unwrap();
    admin
        .grants()
        .add(GrantAddRequest {
            user: name.into(),
            edge: "home".into(),
            lease_ttl_secs,
            ..Default::default()
        })
        .await
        .unwrap();
    data_encoding::BASE32_NOPAD
        .decode(user.totp_secret.as_bytes())
        .unwrap()
}

/// `grantwire login` for `user` at `broker`, pinned by its fingerprint, the password on stdin
/// and `code` as the TOTP code.
pub fn login_args(broker: &RunningBroker, user: &str, code: &str) -> Vec<String> {
    [
        "login",
        "--broker",
        &broker.url(),
        "--user",
        user,
        "--fingerprint",
        broker.fingerprint(),
        "--password-stdin",
        "--totp",
        code,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Logs `user` in with config dir `config`, pinning the broker by its fingerprint.
pub async fn login(config: &Path, broker: &RunningBroker, user: &str, secret: &[u8]) {
    let code = grantwire_broker::totp::code_at(secret, now());
    let args = login_args(broker, user, &code);
    let run = grantwire(config, &args, &format!("{PASSWORD}\n")).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// The private key in the wg-quick text `conf` (its `PrivateKey = ` line).
pub fn private_key_in(conf: &str) -> grantwire_proto::PrivateKey {
    conf.lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .expect("a PrivateKey line")
        .parse()
        .expect("a private key")
}
