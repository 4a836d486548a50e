#!/usr/bin/env bash
# Brings up a grantwire broker and edge next to Plex on this host with the embedded defaults:
# SQLite and a self-signed TLS certificate under ./grantwire-data, the edge's state under
# ./grantwire-edge-state, WireGuard on UDP 51820, the tunnel 10.77.0.0/24 on interface gw0.
# Runs in the foreground; Ctrl-C stops both and removes the edge's firewall table.
#
#   sudo scripts/up.sh                      # endpoint: this host's first address
#   sudo GRANTWIRE_ENDPOINT=plex.example.org:51820 scripts/up.sh
#
# Needs root (TUN device and nftables) and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "up.sh: run as root (the edge creates a TUN device and nftables rules)" >&2
    exit 1
fi
scripts/install-deps.sh
cargo build --release --locked --bins
bin=target/release

data=${GRANTWIRE_DATA_DIR:-./grantwire-data}
state=${GRANTWIRE_EDGE_STATE_DIR:-./grantwire-edge-state}
edge_name=${GRANTWIRE_EDGE_NAME:-home}
endpoint=${GRANTWIRE_ENDPOINT:-$(hostname -I | awk '{print $1}'):51820}
logs=$data/logs
mkdir -p "$data" "$logs"
chmod 700 "$data"

pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

"$bin/grantwire-broker" serve --data-dir "$data" 2>"$logs/broker.log" &
pids+=($!)
for _ in $(seq 100); do
    [ -S "$data/admin.sock" ] && [ -s "$data/tls-cert.sha256" ] && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$logs/broker.log" >&2; exit 1; }
    sleep 0.1
done
fp=$(cat "$data/tls-cert.sha256")

if [ ! -s "$state/credential" ]; then
    token_file=$data/edge-$edge_name.token
    (umask 077 && "$bin/grantwire-broker" edge add "$edge_name" --endpoint "$endpoint" \
        --data-dir "$data" --json >"$token_file.json")
    (umask 077 && sed -n 's/.*"enrolment_token":"\([^"]*\)".*/\1/p' "$token_file.json" >"$token_file")
    rm -f "$token_file.json"
else
    token_file=/dev/null
fi

"$bin/grantwire-edge" run --broker https://127.0.0.1:8443 --broker-fingerprint "$fp" \
    --token-file "$token_file" --state-dir "$state" 2>"$logs/edge.log" &
pids+=($!)
sleep 1
kill -0 "${pids[1]}" 2>/dev/null || { cat "$logs/edge.log" >&2; exit 1; }

host=${endpoint%:*}
cat <<TXT

grantwire is up.
  broker      https://$host:8443   (logs: $logs/broker.log)
  fingerprint $fp
  edge        $edge_name, WireGuard on $endpoint, Plex inside the tunnel at http://10.77.0.1:32400/web
              (logs: $logs/edge.log)

Next, in another shell on this host:
  $bin/grantwire-broker user add alice --data-dir $data      # shows alice's TOTP QR
  $bin/grantwire-broker grant add alice $edge_name --data-dir $data

Then on alice's laptop:
  grantwire login --broker https://$host:8443 --user alice --fingerprint $fp
  grantwire profile $edge_name --qr       # scan with the WireGuard app, or --out gw-$edge_name.conf

Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
