//! Where the three grantwire binaries are.
//!
//! `cargo test` builds binaries only for the package under test, and this package has none, so
//! the binaries come from `cargo build --workspace --bins` into the same target directory: the
//! test executable lives in `target/<profile>/deps/`, the binaries in `target/<profile>/`.
//! `GRANTWIRE_BIN_DIR` points elsewhere (a release build, an installed copy).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug)]
pub struct Bins {
    pub broker: PathBuf,
    pub edge: PathBuf,
    pub client: PathBuf,
}

/// The binaries; panics with what to run when one is missing.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = bin_dir();
        let find = |name: &str| {
            let p = dir.join(name);
            if !p.is_file() {
                panic!(
                    "{} not found: run `cargo build --workspace --bins` first \
                     (or set GRANTWIRE_BIN_DIR to the directory holding grantwire-broker, \
                     grantwire-edge and grantwire)",
                    p.display()
                );
            }
            p
        };
        Bins {
            broker: find("grantwire-broker"),
            edge: find("grantwire-edge"),
            client: find("grantwire"),
        }
    })
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GRANTWIRE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let parent = exe.parent().unwrap_or(Path::new("."));
    if parent.ends_with("deps") {
        parent.parent().unwrap_or(parent).to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

impl Bins {
    pub fn broker_str(&self) -> &str {
        path_str(&self.broker)
    }
    pub fn edge_str(&self) -> &str {
        path_str(&self.edge)
    }
    pub fn client_str(&self) -> &str {
        path_str(&self.client)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("binary path is UTF-8")
}
