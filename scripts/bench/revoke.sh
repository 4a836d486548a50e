#!/usr/bin/env bash
# Issue 4's revocation latency, end to end: a real grantwire-broker (release build, HTTPS on
# 127.0.0.1, its SQLite file) and a real grantwire-edge (TUN and nftables guard) in a network
# namespace of their own, 10,000 leases on the edge (each from its own loopback address, so each
# has its own /32 pin), 100 of them on grants of their own with live synthetic WireGuard clients
# that probe the edge's tunnel address on port 32400 through the tunnel. Each of the 100 grants
# is revoked with `grantwire-broker grant revoke USER EDGE` and timed from the command's start
# to the first probe the edge drops; then the edge's memory as the other leases go and come
# back. Prints Markdown on stdout; build output and progress go to stderr. Needs root.
#
#   scripts/bench/revoke.sh [--leases N] [--revocations N] [--memory-cycles N] ...
#
# (see `revoke_bench --help` for every option). With BROKER_BASELINE=PATH (another
# grantwire-broker binary), each of BENCH_ROUNDS rounds (default 1) measures this revision's
# broker and then the baseline (same edge, fresh data and namespace state), in one run. All traffic stays on the namespace's loopback;
# the namespace, and with it the TUN device and the guard's nftables table, goes at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) -ne 0 ]]; then
    echo "revoke.sh: needs root (a network namespace, a TUN device, nftables)" >&2
    exit 2
fi
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p grantwire-broker -p grantwire-edge --bins >&2
cargo build --release --locked -p grantwire-broker --example revoke_bench >&2

ns=gwrv$$
tun=gwrv$$t
work=$(mktemp -d "${TMPDIR:-/tmp}/grantwire-revoke.XXXXXX")

cleanup() {
    local status=$? pidfile pid
    for pidfile in "$work"/*/broker.pid "$work"/*/edge.pid; do
        [[ -s $pidfile ]] || continue
        pid=$(<"$pidfile")
        # Only a daemon this run started: that PID, while it still names our work directory.
        if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$work"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    ip netns del "$ns" 2>/dev/null || true
    if [[ $status -ne 0 && -n ${run_dir:-} ]]; then
        for log in "$run_dir"/broker.log "$run_dir"/edge-*.log; do
            [[ -s $log ]] || continue
            echo "revoke.sh: failed; last lines of $(basename "$log"):" >&2
            tail -n 15 "$log" >&2
        done
    fi
    rm -rf -- "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$ns"
ip -n "$ns" link set lo up

cmd="scripts/bench/revoke.sh${*:+ $*}"
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then rev="$rev (with uncommitted changes)"; fi
echo "- Command: \`$cmd\`"
echo "- Revision: $rev"
echo
brokers=("this revision=$target/release/grantwire-broker")
if [[ -n ${BROKER_BASELINE:-} ]]; then
    [[ -x $BROKER_BASELINE ]] || { echo "revoke.sh: BROKER_BASELINE=$BROKER_BASELINE is not an executable" >&2; exit 2; }
    brokers+=("baseline=$BROKER_BASELINE")
    echo "- Baseline broker: \`$BROKER_BASELINE\`, measured after this revision in each of ${BENCH_ROUNDS:-1} round(s)"
fi
for round in $(seq "${BENCH_ROUNDS:-1}"); do
    for entry in "${brokers[@]}"; do
        label=${entry%%=*}
        run_dir=$work/run-$round-${label// /-}
        mkdir -p "$run_dir"
        if [[ ${#brokers[@]} -gt 1 ]]; then
            echo
            echo "### $label, round $round"
        fi
        ip netns exec "$ns" "$target/release/examples/revoke_bench" \
            --broker-bin "${entry#*=}" \
            --edge-bin "$target/release/grantwire-edge" \
            --work-dir "$run_dir" \
            --tun-name "$tun" \
            "$@"
    done
done
