#!/usr/bin/env python3
"""A UDP flood at a WireGuard server, for scripts/bench/edge.sh, tests/it/flood.rs and tests/it/spoof.rs.

    flood.py KIND SECS SERVER_PUBLIC_KEY --from IP --to IP:PORT [--count N] [--rate N] [--ports N]

An IPv6 destination is written [ADDR]:PORT.

KIND is `random` (148 random bytes each), `data` (148 bytes with a transport data header,
type 4, and a random receiver index and counter: what guessing at live sessions looks like), or
`initiation`: a WireGuard handshake initiation
(type 1, 148 bytes) with garbage ephemeral, static and timestamp, and a MAC1 the server accepts,
which is what anyone holding an old profile can make. MAC1 is BLAKE2s-128 keyed with
BLAKE2s-256("mac1----" || server public key), over the first 116 bytes (the WireGuard paper,
section 5.4.4); MAC2 stays zero (no cookie). A pool of 1024 datagrams is sent round-robin from
--from for SECS seconds, or until --count datagrams were sent, as fast as one socket can or
at --rate datagrams a second (sent in bursts every 10 ms), from one source port or round-robin
from --ports sockets (each its own port).
Send errors (a full queue) are ignored. On exit, SIGTERM included, it prints
`sent N datagrams in S s` on stdout.
"""
import argparse
import base64
import hashlib
import os
import signal
import socket
import sys
import time


def initiation(mac1_key):
    body = bytes([1, 0, 0, 0]) + os.urandom(4 + 32 + 48 + 28)
    return body + hashlib.blake2s(body, digest_size=16, key=mac1_key).digest() + bytes(16)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["random", "data", "initiation"])
    p.add_argument("secs", type=float)
    p.add_argument("server_public_key", help="base64, as in a profile's [Peer] PublicKey")
    p.add_argument("--from", dest="src", required=True, help="source address to bind")
    p.add_argument("--to", dest="dst", required=True, help="server IP:PORT")
    p.add_argument("--count", type=int, default=0, help="stop after N datagrams (0: no limit)")
    p.add_argument("--rate", type=int, default=0, help="datagrams a second (0: as fast as it can)")
    p.add_argument("--ports", type=int, default=1, help="source ports to spread the flood over")
    a = p.parse_args()

    if a.kind == "random":
        pool = [os.urandom(148) for _ in range(1024)]
    elif a.kind == "data":
        pool = [bytes([4, 0, 0, 0]) + os.urandom(144) for _ in range(1024)]
    else:
        server = base64.b64decode(a.server_public_key)
        if len(server) != 32:
            sys.exit("flood.py: the server public key must be 32 bytes of base64")
        key = hashlib.blake2s(b"mac1----" + server).digest()
        pool = [initiation(key) for _ in range(1024)]

    host, port = a.dst.rsplit(":", 1)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    for _ in range(max(1, a.ports)):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((a.src, 0))
        s.connect((host, int(port)))
        socks.append(s)

    # SIGTERM ends the loop through SystemExit, so the count is printed either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sent, start = 0, time.monotonic()
    end = start + a.secs
    # With --rate, bursts every 10 ms keep the total at rate * elapsed.
    burst = max(1, a.rate // 100) if a.rate else len(pool)
    try:
        while time.monotonic() < end and (a.count == 0 or sent < a.count):
            if a.rate:
                due = start + sent / a.rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
            todo = burst if a.count == 0 else min(burst, a.count - sent)
            for i in range(todo):
                try:
                    socks[(sent + i) % len(socks)].send(pool[(sent + i) % len(pool)])
                except OSError:
                    pass
            sent += todo
    finally:
        print(f"sent {sent} datagrams in {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
