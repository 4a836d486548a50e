#!/usr/bin/env bash
# Builds the grantwire-mobile library for this host and generates its Kotlin, Swift and Python
# bindings with the crate's own uniffi-bindgen, in library mode (the bindings are read from the
# built library, so they always match it).
#
#   scripts/mobile/bindings.sh [--release] [OUT_DIR]      default OUT_DIR: target/mobile-bindings
#
# Writes OUT_DIR/kotlin/uniffi/grantwire_mobile/grantwire_mobile.kt,
# OUT_DIR/swift/{grantwire_mobile.swift, grantwire_mobileFFI.h, grantwire_mobileFFI.modulemap}
# and OUT_DIR/python/grantwire_mobile.py with the host library beside it (so
# `PYTHONPATH=OUT_DIR/python python3 -c 'import grantwire_mobile'` works).
#
# Environment: GRANTWIRE_MOBILE_LIB=PATH and UNIFFI_BINDGEN=PATH use a library and a generator
# already built (the crate's tests do) instead of running cargo. Android and iOS builds of the
# library need their cross toolchains (cargo-ndk, Xcode); see mobile-ffi/README.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
profile=debug
cargo_flags=()
out=""
for arg in "$@"; do
    case "$arg" in
        --release) profile=release; cargo_flags+=(--release) ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "bindings.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
        *)
            if [[ -n "$out" ]]; then
                echo "bindings.sh: one OUT_DIR only (got $out and $arg)" >&2; exit 2
            fi
            out=$arg ;;
    esac
done
out=${out:-$root/target/mobile-bindings}

case "$(uname -s)" in
    Darwin) libname=libgrantwire_mobile.dylib ;;
    *) libname=libgrantwire_mobile.so ;;
esac

lib=${GRANTWIRE_MOBILE_LIB:-}
bindgen=${UNIFFI_BINDGEN:-}
if [[ -z "$lib" || -z "$bindgen" ]]; then
    command -v cargo >/dev/null || { echo "bindings.sh: cargo is not on PATH" >&2; exit 1; }
    echo "bindings.sh: building grantwire-mobile ($profile)" >&2
    (cd "$root" && cargo build -p grantwire-mobile --lib --bin uniffi-bindgen --locked "${cargo_flags[@]}")
    target_dir=${CARGO_TARGET_DIR:-$root/target}
    lib=${lib:-$target_dir/$profile/$libname}
    bindgen=${bindgen:-$target_dir/$profile/uniffi-bindgen}
fi
[[ -f "$lib" ]] || { echo "bindings.sh: no library at $lib" >&2; exit 1; }
[[ -x "$bindgen" ]] || { echo "bindings.sh: no uniffi-bindgen at $bindgen" >&2; exit 1; }

mkdir -p "$out"
for language in kotlin swift python; do
    rm -rf "${out:?}/$language"
    # --no-format: ktlint and swiftformat are not needed to generate, only to prettify.
    # cargo metadata (for the crate's uniffi.toml, if any) runs in the workspace.
    (cd "$root" && "$bindgen" generate --library "$lib" --language "$language" \
        --out-dir "$out/$language" --no-format --metadata-no-deps) \
        || { echo "bindings.sh: generating the $language bindings failed" >&2; exit 1; }
done
cp "$lib" "$out/python/"

echo "bindings.sh: bindings for $lib in $out:" >&2
(cd "$out" && find . -type f | sort) >&2
