//! `scripts/mobile/bindings.sh` generates the Kotlin and Swift (and Python) bindings an app
//! needs. Kotlin and Swift cannot be compiled on this machine, so this checks the files are
//! there and declare the API the README's sketches use: the client object, its suspend / async
//! `renew`, and the error type.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn script_generates_kotlin_swift_and_python_for_the_built_library() {
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mobile/bindings.sh");
    let run = Command::new("bash")
        .arg(&script)
        .arg(out.path())
        .env("GRANTWIRE_MOBILE_LIB", crate::support::cdylib())
        .env("UNIFFI_BINDGEN", env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bindings.sh failed: {stderr}");
    assert!(
        !stderr.contains("building"),
        "cargo ran despite a given library:\n{stderr}"
    );

    let read = |rel: &str| {
        std::fs::read_to_string(out.path().join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}\nbindings.sh said:\n{stderr}"))
    };
    let kotlin = read("kotlin/uniffi/grantwire_mobile/grantwire_mobile.kt");
    for want in [
        "open class GrantwireClient",
        "suspend fun `renew`(`session`: Session, `leaseId`: kotlin.String): Profile",
        "sealed class GrantwireException",
        "fun `renewal`(`lease`: LeaseStatus?, `now`: kotlin.Long, `lifetimeSecs`: kotlin.Long?): Renewal",
    ] {
        assert!(kotlin.contains(want), "Kotlin lacks {want:?}");
    }
    let swift = read("swift/grantwire_mobile.swift");
    for want in [
        "open class GrantwireClient",
        "func renew(session: Session, leaseId: String) async throws",
        "public enum GrantwireError: Swift.Error",
        "func renewal(lease: LeaseStatus?, now: Int64, lifetimeSecs: Int64?) throws  -> Renewal",
    ] {
        assert!(swift.contains(want), "Swift lacks {want:?}");
    }
    assert!(read("swift/grantwire_mobileFFI.h").contains("uniffi_grantwire_mobile_fn_"));
    assert!(read("swift/grantwire_mobileFFI.modulemap").contains("grantwire_mobileFFI"));
    assert!(read("python/grantwire_mobile.py").contains("class GrantwireClient"));
    assert!(out.path().join("python/libgrantwire_mobile.so").is_file());
}

#[test]
fn script_refuses_unknown_options_and_two_out_dirs() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mobile/bindings.sh");
    for args in [&["--bogus"][..], &["a", "b"][..]] {
        let run = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2), "{args:?}");
        assert!(!run.stderr.is_empty(), "{args:?} says why");
    }
}
