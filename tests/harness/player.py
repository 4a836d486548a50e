"""A stand-in video player: reads one HTTP response the way a player does and says how it went.

    python3 player.py HOST PORT PATH RATE_BPS

RATE_BPS is the film's bit rate: the player takes data no faster than that (0: as fast as it
comes). Its receive buffer is small (256 KiB, a tenth of a second at 20 Mbit/s), so a stall of
the stream shows up as a wait here instead of hiding in kernel buffers. Prints one JSON object:
bytes, seconds, the longest single wait for data, how many waits passed 1 s, and the SHA-256 of
the body.
"""

import hashlib
import json
import socket
import sys
import time

host, port, path, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
sock.settimeout(30)
sock.connect((host, port))
sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())

head = b""
while b"\r\n\r\n" not in head:
    piece = sock.recv(4096)
    if not piece:
        sys.exit("the connection closed before the response's head")
    head += piece
head, body = head.split(b"\r\n\r\n", 1)
status = head.split(b"\r\n")[0].decode()
length = None
for line in head.split(b"\r\n")[1:]:
    name, _, value = line.decode().partition(":")
    if name.strip().lower() == "content-length":
        length = int(value)
if " 200 " not in status + " " or length is None:
    sys.exit(f"unexpected response: {status}")

digest = hashlib.sha256(body)
got = len(body)
start = time.monotonic()
longest = 0.0
long_waits = 0
while got < length:
    asked = time.monotonic()
    piece = sock.recv(min(65536, length - got))
    waited = time.monotonic() - asked
    if not piece:
        break
    longest = max(longest, waited)
    long_waits += waited > 1.0
    digest.update(piece)
    got += len(piece)
    if rate > 0:
        ahead = got * 8 / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
sock.close()
print(
    json.dumps(
        {
            "bytes": got,
            "expected": length,
            "seconds": time.monotonic() - start,
            "longest_wait": longest,
            "waits_over_1s": long_waits,
            "sha256": digest.hexdigest(),
        }
    )
)
