//! A network namespace with a `wireguard-go` interface in it, for loading a profile the way
//! the client's interop test does (`crates/client/tests/interop.rs`).

use std::path::Path;

use super::host::run_ok;
use super::wgdev::WgInterface;

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
    let dev = WgInterface::up("gwffi");
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
