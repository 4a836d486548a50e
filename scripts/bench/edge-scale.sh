#!/usr/bin/env bash
# The edge core with many leases (default 10,000), measured in-process: parsing the lease set as
# it arrives, applying it, applying it with one lease gone (a revocation), the first admission
# check of a datagram from an unpinned source, resident memory per lease, and memory over ten
# add/remove cycles, releasing freed memory as grantwire-edge does (`--no-release`: without).
# Prints Markdown on stdout. No root, no network.
#
#   scripts/bench/edge-scale.sh [LEASES] [--no-release]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --locked -q -p grantwire-edge-core --example scale -- "${@:-10000}"
