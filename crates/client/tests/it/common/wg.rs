//! A network namespace with a real `wireguard-go` interface in it, to load a profile into with
//! `wg setconf`. Shared by the client's interop test and the mobile library's Python test
//! (`mobile-ffi/tests/support`, through `#[path]`), so it needs only `super::host`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::host::{run, run_ok};

/// A network namespace with a `wireguard-go` interface; both gone on drop.
pub struct WgInterface {
    pub ns: String,
    pub ifname: String,
    child: Child,
}

impl WgInterface {
    /// `tag` keeps test binaries apart: the name must be unique machine-wide, because
    /// wireguard-go's socket dir is shared by every namespace.
    pub fn up(tag: &str) -> WgInterface {
        let ns = format!("{tag}{}", std::process::id() % 1_000_000);
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

    pub fn exec_ok(&self, argv: &[&str]) -> String {
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
