//! The UniFFI bindings generator, built from the same uniffi version as the library so the
//! generated Kotlin, Swift and Python match its scaffolding. `scripts/mobile/bindings.sh`
//! runs it in library mode on the built cdylib.

fn main() {
    uniffi::uniffi_bindgen_main()
}
