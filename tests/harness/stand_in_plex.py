"""The stand-in Plex: an HTTP server the end-to-end tests reach through the tunnel.

    python3 stand_in_plex.py PORT MARKER

GET / and /web         a small page holding MARKER, so a page that loads is proven to come
                       from this server and no other test's
GET /wait?secs=N       the same page after N seconds (a long poll: the server speaks after a
                       silence, as Plex's notification stream does)
GET /film?bytes=N&seed=S
                       N bytes of a deterministic stream (a 1 MiB block from S, repeated),
                       sent as fast as the client takes them
GET /film.sha256?bytes=N&seed=S
                       the SHA-256 of that stream, to compare with what crossed the tunnel
GET /whoami            JSON: the address the request came from and its headers, as Plex would
                       see them (Plex trusts local addresses and its allowedNetworks)
"""

import hashlib
import http.server
import json
import random
import sys
import time
import urllib.parse

BLOCK = 1 << 20


def block(seed):
    return random.Random(seed).randbytes(BLOCK)


def film(n, seed):
    data = block(seed)
    left = n
    while left > 0:
        piece = data[: min(left, BLOCK)]
        left -= len(piece)
        yield piece


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            if url.path in ("/", "/web", "/index.html"):
                self.page()
            elif url.path == "/wait":
                time.sleep(float(query.get("secs", "0")))
                self.page()
            elif url.path == "/film":
                self.film(int(query["bytes"]), int(query.get("seed", "0")))
            elif url.path == "/whoami":
                seen = {"peer": self.client_address[0], "headers": dict(self.headers.items())}
                self.reply(json.dumps(seen).encode() + b"\n", "application/json")
            elif url.path == "/film.sha256":
                digest = hashlib.sha256()
                for piece in film(int(query["bytes"]), int(query.get("seed", "0"))):
                    digest.update(piece)
                self.reply(digest.hexdigest().encode() + b"\n", "text/plain")
            else:
                self.send_error(404)
        except (KeyError, ValueError):
            self.send_error(400)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def page(self):
        self.reply(f"<html><body>{MARKER}</body></html>\n".encode(), "text/html")

    def reply(self, body, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def film(self, n, seed):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        for piece in film(n, seed):
            self.wfile.write(piece)


if __name__ == "__main__":
    PORT, MARKER = int(sys.argv[1]), sys.argv[2]
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    print(f"stand-in Plex on 0.0.0.0:{PORT}", flush=True)
    server.serve_forever()
