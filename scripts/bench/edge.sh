#!/usr/bin/env bash
# Side-by-side benchmark of WireGuard servers behind the same client, in one run:
# grantwire-edge (release build), boringtun-cli (crates.io, the boringtun crate's own device
# loop) and wireguard-go as a server. The client is Debian's wireguard-go + wireguard-tools in
# a network namespace of its own; the server under test runs in a second namespace, reached over
# a veth pair (198.51.100.1 <-> 198.51.100.2). iperf3 runs through the tunnel to TCP 32400 on the
# server's tunnel address (10.77.0.1), the port a grant admits, so grantwire-edge is measured
# with its admission and inner filter on, as Plex would be served.
#
# For each server, a download (server -> client, as Plex streams: iperf3 -R) and an upload:
#   - throughput (Mbit/s, iperf3's receiver side);
#   - efficiency: bytes moved per CPU-second of the server process (utime+stime from
#     /proc/PID/stat over the transfer), the figure that depends least on the client and on the
#     machine's noise;
#   - the ratios grantwire/boringtun-cli and grantwire/wireguard-go.
# Then, for grantwire-edge and boringtun-cli, two floods from an address no lease is pinned to
# (198.51.100.3, a second address in the client's namespace): (a) random datagrams, (b)
# handshake initiations carrying a valid MAC1 for the server's public key (what anyone holding
# an old profile can make). For each: server CPU per flood datagram, bytes sent back to the
# flooding address (an nftables counter there), grantwire-edge's Diffie-Hellman counter
# (handshake_dh_total), and whether the pinned client, brought up afresh during the flood,
# completes its handshake and moves data.
# Prints a Markdown report on stdout; progress and build output go to stderr.
#
#   sudo scripts/bench/edge.sh               # 10 s per transfer
#   sudo BENCH_SECS=30 scripts/bench/edge.sh
#   sudo EDGE_STEPS="none tun udp" scripts/bench/edge.sh   # also each batching step alone
#   sudo EDGE_BASELINE=/path/to/grantwire-edge scripts/bench/edge.sh
#       # also another build of the edge (say, a release build of an earlier revision), in the
#       # same run, as grantwire-edge[baseline]: same broker, lease, client and machine load
#
# Needs root (namespaces, TUN, nftables). Installs iperf3 and the WireGuard tools if missing,
# and boringtun-cli into target/bench-tools with cargo. Traffic stays inside the two namespaces
# it creates; both are removed on exit, and only processes this script started are stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
    echo "edge.sh: run as root (network namespaces, TUN devices, nftables)" >&2
    exit 1
fi

secs=${BENCH_SECS:-10}
boringtun_version=0.7.1
target=${CARGO_TARGET_DIR:-$PWD/target}
tools=$target/bench-tools

scripts/install-deps.sh iperf3 jq
cargo build --release --locked -p grantwire-broker -p grantwire-edge -p grantwire --bins >&2
if ! "$tools/bin/boringtun-cli" --version 2>/dev/null | grep -qF "$boringtun_version"; then
    echo "edge.sh: installing boringtun-cli $boringtun_version into $tools" >&2
    cargo install --locked --quiet --root "$tools" --version "$boringtun_version" boringtun-cli >&2
fi
bin=$target/release
# wireguard-go refuses to start where the kernel has WireGuard unless told this; the benchmark
# wants the userspace implementation on both ends, as Debian ships it.
export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1

# Unique names per run: two runs (or a test) on one machine never share a namespace or an
# interface name (wireguard-go's and boringtun's control sockets, /var/run/wireguard/NAME.sock,
# are not per namespace).
tag=gwb$$
srv=$tag-srv
cli=$tag-cli
wgc=${tag}c
wgs=${tag}s
work=$(mktemp -d "${TMPDIR:-/tmp}/grantwire-edge-bench.XXXXXX")
pids=()

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    # Deleting a namespace removes its veth end, TUN devices and nftables tables with it.
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "edge.sh: failed; logs:" >&2
        for f in "$work"/*.log; do
            [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
        done
    fi
    rm -rf -- "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_srv() { ip netns exec "$srv" "$@"; }
in_cli() { ip netns exec "$cli" "$@"; }

# Starts "$@" in the background with its output in $work/LOG.log; its PID is left in $spawned
# and recorded for cleanup. (Not called as $(spawn ...): a subshell would lose the record.)
spawned=
spawn() {
    local log=$1
    shift
    "$@" >"$work/$log.log" 2>&1 &
    spawned=$!
    pids+=("$spawned")
}

# utime+stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

wait_until() {
    local what=$1 tries=$2
    shift 2
    for _ in $(seq "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "edge.sh: timed out waiting for $what" >&2
    return 1
}

ip netns add "$srv"
ip netns add "$cli"
in_srv ip link set lo up
in_cli ip link set lo up
ip link add "$tag-s" netns "$srv" type veth peer name "$tag-c" netns "$cli"
in_srv ip addr add 198.51.100.1/24 dev "$tag-s"
in_cli ip addr add 198.51.100.2/24 dev "$tag-c"
in_srv ip link set "$tag-s" up
in_cli ip link set "$tag-c" up
# The flooding address, and a counter of what the server sends back to it.
in_cli ip addr add 198.51.100.3/24 dev "$tag-c"
in_cli nft -f - <<'NFT'
table inet gwbench_flood {
    counter back {}
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr 198.51.100.3 counter name back
    }
}
NFT

# The flood generator (scripts/bench/flood.py, shared with tests/it/flood.rs) sends from
# 198.51.100.3 to the server's WireGuard port.

spawn iperf3 ip netns exec "$srv" iperf3 --server --port 32400

# The client: one wireguard-go interface per server, configured from a wg(8) file.
client_pid=
client_up() {
    local conf=$1 address=$2
    spawn client-wg ip netns exec "$cli" wireguard-go --foreground "$wgc"
    client_pid=$spawned
    wait_until "the client's interface" 100 in_cli wg show "$wgc"
    in_cli wg setconf "$wgc" "$conf"
    in_cli ip addr add "$address" dev "$wgc"
    in_cli ip link set "$wgc" up
    in_cli ip route add 10.77.0.1/32 dev "$wgc"
}

client_down() {
    stop_pid "$client_pid"
}

# One transfer; prints "bytes bits_per_second cpu_seconds" for the server process $1.
transfer() {
    local pid=$1 direction=$2 flags=() before after out
    [ "$direction" = download ] && flags=(-R)
    before=$(cpu_ticks "$pid")
    out=$(in_cli iperf3 --client 10.77.0.1 --port 32400 --time "$secs" --json "${flags[@]}")
    after=$(cpu_ticks "$pid")
    jq -r --arg ticks "$((after - before))" --arg hz "$(getconf CLK_TCK)" \
        '"\(.end.sum_received.bytes) \(.end.sum_received.bits_per_second) \(($ticks|tonumber) / ($hz|tonumber))"' \
        <<<"$out"
}

results=$work/results
floods=$work/floods
measure() {
    local name=$1 pid=$2
    # Through the tunnel only TCP 32400 is admitted by grantwire-edge (no ping), so a short
    # iperf3 run is the check; it also completes the handshake before the measured transfer.
    wait_until "$name to carry traffic" 20 \
        in_cli iperf3 --client 10.77.0.1 --port 32400 --time 1 --connect-timeout 1000
    for direction in download upload; do
        echo "edge.sh: $name $direction, ${secs}s" >&2
        echo "$name $direction $(transfer "$pid" "$direction")" >>"$results"
    done
}

# Server key pair and client key pair for the two plain WireGuard servers.
(umask 077 && wg genkey >"$work/server.key" && wg genkey >"$work/client.key")
wg pubkey <"$work/server.key" >"$work/server.pub"
wg pubkey <"$work/client.key" >"$work/client.pub"
cat >"$work/client-plain.conf" <<EOF
[Interface]
PrivateKey = $(cat "$work/client.key")

[Peer]
PublicKey = $(cat "$work/server.pub")
Endpoint = 198.51.100.1:51820
AllowedIPs = 10.77.0.1/32
PersistentKeepalive = 25
EOF

plain_server() {
    local name=$1 pid=$2
    wait_until "$name's interface" 100 in_srv wg show "$wgs"
    in_srv wg set "$wgs" private-key "$work/server.key" listen-port 51820 \
        peer "$(cat "$work/client.pub")" allowed-ips 10.77.0.2/32
    in_srv ip addr add 10.77.0.1/24 dev "$wgs"
    in_srv ip link set "$wgs" up
    client_up "$work/client-plain.conf" 10.77.0.2/32
    measure "$name" "$pid"
    if [ "$name" = boringtun-cli ]; then
        flood "$name" "$pid" "$(cat "$work/server.pub")" "$work/client-plain.conf" 10.77.0.2/32
    fi
    client_down
    stop_pid "$pid"
}

srv_rx_packets() { in_srv cat "/sys/class/net/$tag-s/statistics/rx_packets"; }
# The server namespace's UDP counters: datagrams delivered to a socket, and datagrams dropped
# because the socket's receive buffer was full (the server did not read them in time).
# The machine's softirq time (ticks), where the kernel's receive path and nftables run.
softirq_ticks() { awk '$1 == "cpu" { print $8 }' /proc/stat; }
udp_snmp() {
    in_srv awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ { print $2, $6 }' /proc/net/snmp
}
bytes_back() { in_cli nft -j list counter inet gwbench_flood back | jq '.nftables[1].counter.bytes'; }
edge_dh() {
    in_srv curl -s http://127.0.0.1:9851/metrics |
        awk '$1 == "grantwire_edge_handshake_dh_total" { print $2 }'
}

# Floods the server (PID $2, public key $3) from the unpinned address, kind (a) then (b). The
# pinned client is brought up afresh mid-flood: client_up's arguments follow. edge_dh prints
# nothing for a server without grantwire-edge's metrics.
flood() {
    local name=$1 pid=$2 pub=$3 conf=$4 address=$5 kind fpid rx0 rx1 cpu0 cpu1 back0 back1 dh0 dh1
    local served hz in0 in1 full0 full1 sirq0 sirq1
    hz=$(getconf CLK_TCK)
    for kind in random initiation; do
        echo "edge.sh: $name, flood of $kind datagrams, ${secs}s" >&2
        client_down
        spawn "flood-$kind" ip netns exec "$cli" python3 scripts/bench/flood.py "$kind" "$((secs + 10))" \
            "$pub" --from 198.51.100.3 --to 198.51.100.1:51820
        fpid=$spawned
        sleep 1
        rx0=$(srv_rx_packets) cpu0=$(cpu_ticks "$pid") back0=$(bytes_back) dh0=$(edge_dh || true)
        read -r in0 full0 < <(udp_snmp)
        sirq0=$(softirq_ticks)
        sleep "$secs"
        sirq1=$(softirq_ticks)
        rx1=$(srv_rx_packets) cpu1=$(cpu_ticks "$pid") back1=$(bytes_back) dh1=$(edge_dh || true)
        read -r in1 full1 < <(udp_snmp)
        # The pinned client, during the same flood: a new handshake, then data through it.
        served=no
        client_up "$conf" "$address"
        if in_cli iperf3 --client 10.77.0.1 --port 32400 --time 1 --connect-timeout 3000 \
            >/dev/null 2>&1; then
            served=yes
        fi
        stop_pid "$fpid"
        echo "$name $kind $((rx1 - rx0)) $((in1 - in0)) $((full1 - full0))" \
            "$(((cpu1 - cpu0) * 1000000 / hz)) $(((sirq1 - sirq0) * 1000000 / hz))" \
            "$((back1 - back0)) ${dh0:-na} ${dh1:-na} $served" >>"$floods"
    done
}

# 1. grantwire-edge, with its broker, a user, a grant and a lease asked for from the client.
echo "edge.sh: grantwire-edge" >&2
data=$work/broker
mkdir -m 700 "$data"
spawn broker ip netns exec "$srv" "$bin/grantwire-broker" serve \
    --data-dir "$data" --listen 0.0.0.0:8443
broker_pid=$spawned
wait_until "the broker" 100 test -s "$data/tls-cert.sha256"
wait_until "the broker's admin socket" 100 test -S "$data/admin.sock"
fp=$(cat "$data/tls-cert.sha256")
password="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
user=$(printf '%s\n' "$password" |
    "$bin/grantwire-broker" user add bench --password-stdin --data-dir "$data" --json)
secret=$(jq -r .totp_secret <<<"$user")
"$bin/grantwire-broker" edge add home --endpoint 198.51.100.1:51820 --data-dir "$data" --json |
    (umask 077 && jq -r .enrolment_token >"$work/edge.token")
"$bin/grantwire-broker" grant add bench home --data-dir "$data" --json >/dev/null
# Starts grantwire-edge with the batching named by $1 (GRANTWIRE_EDGE_OFFLOAD; see
# crates/edge/src/dataplane.rs): all, none, tun or udp; $2, if given, is the binary to run.
start_edge() {
    local edge_bin=${2:-$bin/grantwire-edge}
    spawn "edge-$1" ip netns exec "$srv" env GRANTWIRE_EDGE_OFFLOAD="$1" "$edge_bin" run \
        --broker https://127.0.0.1:8443 --broker-fingerprint "$fp" --token-file "$work/edge.token" \
        --state-dir "$work/edge-state" --listen 0.0.0.0:51820 --tun-name "$wgs" \
        --metrics-listen 127.0.0.1:9851
    edge_pid=$spawned
    wait_until "the edge's guard" 100 in_srv nft list table inet grantwire
}
start_edge all
code=$(python3 - "$secret" <<'EOF'
import base64, hmac, struct, sys, time
secret = sys.argv[1].upper()
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), "sha1").digest()
o = mac[-1] & 15
print("%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000))
EOF
)
export GRANTWIRE_CONFIG_DIR=$work/client
printf '%s\n' "$password" | in_cli "$bin/grantwire" login --broker https://198.51.100.1:8443 \
    --user bench --fingerprint "$fp" --password-stdin --totp "$code" >&2
in_cli "$bin/grantwire" profile home --out "$work/gw.conf" >&2
wg-quick strip "$work/gw.conf" >"$work/gw.wg"
client_up "$work/gw.wg" "$(sed -n 's/^Address *= *//p' "$work/gw.conf")"
measure grantwire-edge "$edge_pid"
# Each batching step on its own (EDGE_STEPS="none tun udp"), against the same client and lease:
# the edge restarts, the client's wireguard-go handshakes again, and the transfer is repeated.
for step in ${EDGE_STEPS:-}; do
    stop_pid "$edge_pid"
    start_edge "$step"
    measure "grantwire-edge[$step]" "$edge_pid"
done
if [ -n "${EDGE_BASELINE:-}" ]; then
    stop_pid "$edge_pid"
    start_edge all "$EDGE_BASELINE"
    measure "grantwire-edge[baseline]" "$edge_pid"
fi
if [ -n "${EDGE_STEPS:-}${EDGE_BASELINE:-}" ]; then
    stop_pid "$edge_pid"
    start_edge all
fi
flood grantwire-edge "$edge_pid" "$(sed -n 's/^PublicKey *= *//p' "$work/gw.conf")" \
    "$work/gw.wg" "$(sed -n 's/^Address *= *//p' "$work/gw.conf")"
client_down
stop_pid "$edge_pid"
stop_pid "$broker_pid"

# 2. boringtun-cli: the same crate grantwire-edge uses for the protocol, with its own device loop.
echo "edge.sh: boringtun-cli" >&2
spawn boringtun ip netns exec "$srv" "$tools/bin/boringtun-cli" --foreground \
    --disable-drop-privileges --log "$work/boringtun.out" "$wgs"
bt_pid=$spawned
plain_server boringtun-cli "$bt_pid"

# 3. wireguard-go as a server.
echo "edge.sh: wireguard-go" >&2
spawn wireguard-go ip netns exec "$srv" wireguard-go --foreground "$wgs"
wgo_pid=$spawned
plain_server wireguard-go "$wgo_pid"

rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then rev="$rev (with uncommitted changes)"; fi
echo "## Edge benchmark: grantwire-edge, boringtun-cli and wireguard-go behind one client"
echo
echo "- Command: \`scripts/bench/edge.sh\` (BENCH_SECS=$secs)"
echo "- Revision: $rev"
echo "- Machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)"
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Client: Debian wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go) in its own namespace; iperf3 $(iperf3 --version | head -n 1 | cut -d' ' -f2), one TCP stream to 10.77.0.1:32400 through the tunnel, ${secs} s per transfer"
echo "- Servers: grantwire-edge (release, revision above, lease admitted by its broker), boringtun-cli $boringtun_version (default threads), Debian wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go); all on the same veth, one at a time"
echo "- grantwire-edge[STEP]: the edge with only that batching (GRANTWIRE_EDGE_OFFLOAD=STEP: none, tun = TUN TSO/GRO, udp = UDP GSO); plain grantwire-edge has all of it (EDGE_STEPS=\"${EDGE_STEPS:-}\")"
if [ -n "${EDGE_BASELINE:-}" ]; then
    echo "- grantwire-edge[baseline]: \`$EDGE_BASELINE\` (sha256 $(sha256sum "$EDGE_BASELINE" | cut -c1-12)), measured right after grantwire-edge with the same broker, lease and client"
fi
echo "- Efficiency: bytes moved per CPU-second of the server process (utime+stime from /proc/PID/stat during the transfer), shown as Gbit per CPU-second"
echo
python3 - "$results" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, direction, nbytes, bps, cpu = line.split()
    rows[(name, direction)] = (float(nbytes), float(bps), float(cpu))
names = ["grantwire-edge", "boringtun-cli", "wireguard-go"]
steps = sorted({n for n, _ in rows if n.startswith("grantwire-edge[")})

def eff(r):
    return r[0] * 8 / 1e9 / r[2] if r[2] > 0 else float("inf")

print("| server | direction | Mbit/s | server CPU-s | Gbit per CPU-s |")
print("| --- | --- | ---: | ---: | ---: |")
for d in ["download", "upload"]:
    for n in steps + names:
        r = rows[(n, d)]
        print(f"| {n} | {d} | {r[1] / 1e6:.0f} | {r[2]:.2f} | {eff(r):.2f} |")
print()
print("| direction | throughput grantwire/boringtun-cli | grantwire/wireguard-go | efficiency grantwire/boringtun-cli | grantwire/wireguard-go |")
print("| --- | ---: | ---: | ---: | ---: |")
edges = [n for n in ["grantwire-edge", "grantwire-edge[baseline]"] if (n, "download") in rows]
for d in ["download", "upload"]:
    b, w = rows[("boringtun-cli", d)], rows[("wireguard-go", d)]
    for e in edges:
        g = rows[(e, d)]
        label = d if e == "grantwire-edge" else f"{d}, {e}"
        print(f"| {label} | {g[1] / b[1]:.2f} | {g[1] / w[1]:.2f} | {eff(g) / eff(b):.2f} | {eff(g) / eff(w):.2f} |")
EOF
echo
echo "Floods from 198.51.100.3, an address no lease is pinned to, ${secs} s each. During each flood the pinned client is brought up afresh and must complete a handshake and a 1 s iperf3 transfer."
echo
python3 - "$floods" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, kind, wire, read, full, cpu_us, sirq_us, back, dh0, dh1, served = line.split()
    rows[(name, kind)] = dict(wire=int(wire), read=int(read), full=int(full), cpu=int(cpu_us),
                              sirq=int(sirq_us), back=int(back), dh0=dh0, dh1=dh1, served=served)
label = {"random": "(a) random datagrams", "initiation": "(b) initiations with a valid MAC1"}
print("| server | flood | datagrams arriving | read by the server | dropped, socket buffer full | server process CPU, ns per arriving datagram | machine softirq CPU, ns per arriving datagram | bytes sent back | Diffie-Hellman work during the flood | pinned client served |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
per = lambda r, key: 1000 * r[key] / max(r["wire"], 1)
for kind in ["random", "initiation"]:
    for name in ["grantwire-edge", "boringtun-cli"]:
        r = rows[(name, kind)]
        dh = f"{int(float(r['dh1'])) - int(float(r['dh0']))} (handshake_dh_total)" if r["dh0"] != "na" else "not exported"
        print(f"| {name} | {label[kind]} | {r['wire']} | {r['read']} | {r['full']} | {per(r, 'cpu'):.1f} | {per(r, 'sirq'):.1f} | {r['back']} | {dh} | {r['served']} |")
print()
print("| flood | server process CPU per arriving datagram, grantwire-edge / boringtun-cli | with the machine's softirq time added |")
print("| --- | ---: | ---: |")
for kind in ["random", "initiation"]:
    g, b = rows[("grantwire-edge", kind)], rows[("boringtun-cli", kind)]
    both = lambda r: per(r, "cpu") + per(r, "sirq")
    print(f"| {label[kind]} | {per(g, 'cpu') / max(per(b, 'cpu'), 1e-9):.3f} | {both(g) / max(both(b), 1e-9):.3f} |")
PY
