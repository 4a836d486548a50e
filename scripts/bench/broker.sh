#!/usr/bin/env bash
# Benchmark of a real grantwire-broker (release build) over HTTPS on 127.0.0.1, with its real
# SQLite file: lease issuance, login throughput under the argon2 bound, and a lone lease request
# while logins hammer the broker. Prints a Markdown report on stdout; build output and progress
# go to stderr. Arguments are passed to the load generator (see its --help), e.g.
#   scripts/bench/broker.sh --lease-concurrency 1,32 --lease-time 5s
# The broker's data lives in a fresh directory under $TMPDIR (default /tmp). SQLite fsyncs every
# commit there, so point TMPDIR at the disk a broker would use, not at a tmpfs.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p grantwire-broker --bins --examples >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/grantwire-bench.XXXXXX")
pidfile=$work/broker.pid

cleanup() {
    local status=$? pid
    if [[ -s $pidfile ]]; then
        pid=$(<"$pidfile")
        # Only the broker this run started: that PID, and only while it still serves our data
        # directory (a PID can be reused once the process is gone).
        if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$work/data"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    if [[ $status -ne 0 && -s $work/broker.log ]]; then
        echo "broker.sh: failed; the broker's last log lines:" >&2
        tail -n 20 "$work/broker.log" >&2
    fi
    rm -rf -- "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cmd="scripts/bench/broker.sh${*:+ $*}"
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then rev="$rev (with uncommitted changes)"; fi

echo "## grantwire-broker benchmark"
echo
echo "- Command: \`$cmd\`"
echo "- Revision: $rev"
fstype=$(findmnt -no FSTYPE -T "$work" 2>/dev/null || stat -f -c %T "$work")
echo "- Data directory on: $fstype ($(df --output=source "$work" | tail -n 1))"
"$target/release/examples/broker_bench" \
    --broker-bin "$target/release/grantwire-broker" \
    --work-dir "$work" \
    "$@"
