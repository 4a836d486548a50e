#!/usr/bin/env bash
# Benchmark of a real grantwire-broker (release build) over HTTPS on 127.0.0.1, with its real
# SQLite file: lease issuance, login throughput under the argon2 bound, and a lone lease request
# while logins hammer the broker. Prints a Markdown report on stdout; build output and progress
# go to stderr. Arguments are passed to the load generator (see its --help), e.g.
#   scripts/bench/broker.sh --lease-concurrency 1,32 --lease-time 5s
# With BROKER_BASELINE=PATH (another grantwire-broker binary, e.g. a release build of an older
# revision), each of BENCH_ROUNDS rounds (default 1) measures this revision's broker and then
# the baseline, each with a fresh data directory, so both are measured in one run on one machine.
# The broker's data lives in a fresh directory under $TMPDIR (default /tmp). SQLite fsyncs every
# commit there, so point TMPDIR at the disk a broker would use, not at a tmpfs.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p grantwire-broker --bins --examples >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/grantwire-bench.XXXXXX")

cleanup() {
    local status=$? pid pidfile
    for pidfile in "$work"/*/broker.pid; do
        [[ -s $pidfile ]] || continue
        pid=$(<"$pidfile")
        # Only a broker this run started: that PID, and only while it still serves our data
        # directory (a PID can be reused once the process is gone).
        if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$work/"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [[ $status -ne 0 && -n ${run_dir:-} && -s $run_dir/broker.log ]]; then
        echo "broker.sh: failed; the broker's last log lines:" >&2
        tail -n 20 "$run_dir/broker.log" >&2
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
brokers=("this revision=$target/release/grantwire-broker")
if [[ -n ${BROKER_BASELINE:-} ]]; then
    [[ -x $BROKER_BASELINE ]] || { echo "broker.sh: BROKER_BASELINE=$BROKER_BASELINE is not an executable" >&2; exit 2; }
    brokers+=("baseline=$BROKER_BASELINE")
    echo "- Baseline: \`$BROKER_BASELINE\`, measured after this revision in each of ${BENCH_ROUNDS:-1} round(s)"
fi
for round in $(seq "${BENCH_ROUNDS:-1}"); do
    for entry in "${brokers[@]}"; do
        label=${entry%%=*}
        bin=${entry#*=}
        run_dir=$work/run-$round-${label// /-}
        mkdir -p "$run_dir"
        if [[ ${#brokers[@]} -gt 1 ]]; then
            echo
            echo "### $label, round $round"
        fi
        "$target/release/examples/broker_bench" --broker-bin "$bin" --work-dir "$run_dir" "$@"
    done
done
