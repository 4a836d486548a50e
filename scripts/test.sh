#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, formatting, lints, unit and property
# tests, broker API tests against a real HTTPS broker and SQLite file, and the end-to-end tests
# in network namespaces with a real WireGuard client. The end-to-end tests need root; under
# CI=true they fail (never skip) when root or a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the real binaries, so build them before the test binaries start.
cargo build --workspace --bins --locked
cargo test --workspace --locked
