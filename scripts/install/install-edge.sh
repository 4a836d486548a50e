#!/usr/bin/env bash
# Installs grantwire-edge as a hardened systemd service (scripts/install/grantwire-edge.service):
# the system user grantwire-edge, its state directory /var/lib/grantwire-edge (0700), the binary
# in /usr/local/bin, the unit, and /etc/grantwire/edge.env to fill in. Safe to run again: it
# upgrades the binary and the unit and leaves the user, the state and edge.env as they are.
#
#   cargo build --release --locked -p grantwire-edge
#   sudo scripts/install/install-edge.sh [path/to/grantwire-edge]
#
# It does not start the service: README.md "Install the edge as a service" has the next steps.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../target/release/grantwire-edge}
user=grantwire-edge
state=/var/lib/grantwire-edge
etc=/etc/grantwire

die() { echo "install-edge: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
[ -x "$bin" ] || die "no binary at $bin; build it: cargo build --release --locked -p grantwire-edge"
command -v nft >/dev/null || die "nft not found; install the nftables package (the edge's guard)"

if ! getent passwd "$user" >/dev/null; then
    useradd --system --user-group --home-dir "$state" --no-create-home \
        --shell /usr/sbin/nologin --comment "grantwire edge" "$user"
fi
# systemd's StateDirectory= makes it too; made here so the first start finds it right.
install -d -m 0700 -o "$user" -g "$user" "$state"
# The token file lives here, readable by the group; edge.env is root's (systemd reads it).
install -d -m 0750 -o root -g "$user" "$etc"
install -m 0755 "$bin" /usr/local/bin/grantwire-edge
install -m 0644 "$here/grantwire-edge.service" /etc/systemd/system/grantwire-edge.service

if [ ! -e "$etc/edge.env" ]; then
    (umask 077 && cat >"$etc/edge.env") <<'ENV'
# grantwire-edge's settings (see `grantwire-edge run --help`). The state directory is set by
# the unit.
GRANTWIRE_EDGE_BROKER=https://broker.example.org:8443
# SHA-256 of the broker's certificate, as `grantwire-broker serve` prints it; omit for a
# certificate from a public CA.
GRANTWIRE_EDGE_BROKER_FINGERPRINT=
# The one-time token from `grantwire-broker edge add`, needed until the edge has enrolled.
GRANTWIRE_EDGE_TOKEN_FILE=/etc/grantwire/edge.token
#GRANTWIRE_EDGE_LISTEN=0.0.0.0:51820
#GRANTWIRE_EDGE_ALLOW_LAN=192.168.1.0/24
#GRANTWIRE_EDGE_METRICS_LISTEN=127.0.0.1:9851
ENV
    echo "install-edge: wrote $etc/edge.env; fill in the broker URL and fingerprint" >&2
fi

# The unit gives the edge no CAP_DAC_OVERRIDE, so the TUN device must be open to all, as udev's
# default rule makes it.
if [ -e /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    echo "install-edge: warning: /dev/net/tun is mode $(stat -c %a /dev/net/tun), not 666;" \
        "the service cannot open it (udev's default rule makes it 666)" >&2
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "install-edge: installed; next: the token in $etc/edge.token, then" \
    "systemctl enable --now grantwire-edge" >&2
