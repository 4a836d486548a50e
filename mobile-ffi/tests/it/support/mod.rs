//! What the integration tests share: the built library, the host checks of the client's
//! interface tests, and a real `wireguard-go` interface to load a profile into.

// Each test crate uses some of these helpers.
#![allow(dead_code)]

#[path = "../../../../crates/client/tests/it/common/host.rs"]
pub mod host;
pub mod wg;
#[path = "../../../../crates/client/tests/it/common/wg.rs"]
pub mod wgdev;

use std::path::PathBuf;

/// `libgrantwire_mobile.so`, built by cargo beside the test binaries: a test depending on the
/// lib target builds all of its crate types.
pub fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    [deps, deps.parent().expect("profile dir")]
        .iter()
        .map(|d| d.join("libgrantwire_mobile.so"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no libgrantwire_mobile.so near {}: run `cargo build -p grantwire-mobile --lib`",
                exe.display()
            )
        })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `path` with mode 0600: it holds a private key, and wg-quick warns about a
/// readable one.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create private file");
    f.write_all(text.as_bytes()).expect("write private file");
}
