//! A network namespace with a `wireguard-go` interface in it, for loading a profile the way
//! the client's interop test does (`crates/client/tests/interop.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::host::{run, run_ok};

/// `wg-quick strip`s the profile at `path` (named `<interface>.conf`, as wg-quick requires),
/// `wg setconf`s the result into a fresh interface and returns its `wg showconf`.
pub fn load_into_wireguard_go(path: &Path) -> String {
    let stripped = run_ok(&["wg-quick", "strip", path.to_str().expect("UTF-8 path")]);
    assert!(
        !stripped.contains("Address"),
        "wg-quick strip keeps only wg(8) keys:\n{stripped}"
    );
    let stripped_path = path.with_extension("stripped");
    super::write_private(&stripped_path, &stripped);
    let dev = WgInterface::up();
    let conf = stripped_path.to_str().expect("UTF-8 path");
    dev.exec_ok(&["wg", "setconf", &dev.ifname, conf]);
    dev.exec_ok(&["wg", "showconf", &dev.ifname])
}

/// The value of the first `key = value` line of a wg config.
pub fn value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// A network namespace with a `wireguard-go` interface; both gone on drop.
struct WgInterface {
    ns: String,
    ifname: String,
    child: Child,
}

impl WgInterface {
    fn up() -> WgInterface {
        // Unique machine-wide: wireguard-go's socket dir is shared by every namespace, and the
        // client's interop test uses `gwci<pid>`.
        let ns = format!("gwffi{}", std::process::id() % 1_000_000);
        let ifname = format!("{ns}w");
        let _ = run(&["ip", "netns", "del", &ns]);
        run_ok(&["ip", "netns", "add", &ns]);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "wireguard-go", "-f", &ifname])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wireguard-go");
        let mut dev = WgInterface { ns, ifname, child };
        let sock = PathBuf::from(format!("/var/run/wireguard/{}.sock", dev.ifname));
        let start = Instant::now();
        while !sock.exists() {
            if let Some(status) = dev.child.try_wait().expect("wireguard-go status") {
                panic!("wireguard-go {} ended early: {status}", dev.ifname);
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "wireguard-go made no {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        dev
    }

    fn exec_ok(&self, argv: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(argv);
        run_ok(&full)
    }
}

impl Drop for WgInterface {
    fn drop(&mut self) {
        // Ends wireguard-go (this test's own child), which removes its TUN and socket.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.ifname));
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}
