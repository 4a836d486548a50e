#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, formatting, lints, unit and property
# tests, broker API tests against a real HTTPS broker and SQLite file, the end-to-end tests in
# network namespaces with a real WireGuard client, and the fuzz targets (30 s each). The
# end-to-end tests need root and are required here: they fail, never skip, when root or a tool
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the real binaries, so build them before the test binaries start.
cargo build --workspace --bins --locked

export GRANTWIRE_E2E_REQUIRED=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# The fuzz targets (not workspace members), each for a bounded time over its committed corpus.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
scripts/fuzz.sh || status=$?
# cargo prints one "test result" line per test binary, the last often a crate's empty doc
# tests; one total at the end says what the whole suite ran, failed or not.
awk '/^test result:/ { p += $4; f += $6 }
     END { printf "grantwire: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
