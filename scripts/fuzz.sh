#!/usr/bin/env bash
# Runs each cargo-fuzz target for FUZZ_SECS seconds (default 30) over its committed corpus in
# fuzz/corpus/, without sanitizers (`-s none`: the edge crates deny unsafe code, and a stable
# toolchain has no sanitizer runtime). New inputs go to a scratch directory, so a run never
# changes the repository; a crash fails the run and leaves its input under fuzz/artifacts/.
# Installs cargo-fuzz into target/bench-tools if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECS:-30}
cargo_fuzz_version=0.13.2
tools=${CARGO_TARGET_DIR:-$PWD/target}/bench-tools
export PATH=$tools/bin:$PATH
if ! cargo fuzz --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
    echo "fuzz.sh: installing cargo-fuzz $cargo_fuzz_version into $tools" >&2
    cargo install --locked --quiet --root "$tools" --version "$cargo_fuzz_version" cargo-fuzz
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd fuzz
for target in ${FUZZ_TARGETS:-datagram inner_packet}; do
    mkdir -p "$scratch/$target"
    echo "fuzz.sh: $target for ${secs}s over fuzz/corpus/$target ($(ls "corpus/$target" | wc -l) inputs)" >&2
    status=0
    cargo fuzz run --sanitizer none "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$scratch/$target.log" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units)' "$scratch/$target.log" >&2 || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$scratch/$target.log" >&2
        echo "fuzz.sh: $target failed (exit $status); the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
