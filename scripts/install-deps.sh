#!/usr/bin/env bash
# Installs the Debian packages grantwire's tests and run script use: a real WireGuard client
# (wireguard-go + wireguard-tools) for the end-to-end tests, nftables for the edge's guard,
# iproute2 for network namespaces, curl and python3 for the stand-in Plex and its checks (and
# python3 for the mobile library's Python bindings test), util-linux for setpriv (the
# end-to-end test that starts the edge as its systemd unit does), tcpdump for the packet
# captures the silence and NAT scenarios assert on, faketime (libfaketime) to step the edge's
# wall clock, iperf3 for the end-to-end throughput scenario (tests/it/throughput.rs, and
# scripts/bench/edge.sh), nmap for the port scans of the silent-host scenario
# (tests/it/silent_host.rs), pebble (Let's Encrypt's test ACME CA, with pebble-challtestsrv for
# its DNS) and libnss3-tools (certutil, to add Pebble's root to a test browser's trust) for the
# ACME scenario (tests/it/acme.rs), chromium and chromium-driver
# for the web pages' browser tests (tests/harness/browser.rs drives /usr/bin/chromedriver), with
# fonts-liberation, only a Recommends of chromium, so the screenshots kept as test artifacts
# show legible text.
# Installs only what is missing, so a warm machine skips apt entirely. Arguments name further
# packages a caller needs.
set -euo pipefail

packages=(wireguard-go wireguard-tools nftables iproute2 curl python3 ca-certificates util-linux tcpdump faketime iperf3 nmap pebble libnss3-tools chromium chromium-driver fonts-liberation "$@")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
else
    SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
