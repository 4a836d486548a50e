#!/usr/bin/env python3
"""Lease churn through the broker's HTTPS API, for tests/it/churn.rs.

    churn.py BROKER_HOST BROKER_PORT USER EDGE ROUNDS BATCH METRICS_URL  < "PASSWORD\\nCODE\\n"

Logs in as USER (password and TOTP code on stdin, so they are not in the process list), then
ROUNDS times: asks for BATCH leases on EDGE, each for a fresh random public key, waits until the
edge's `grantwire_edge_leases` (read from METRICS_URL) shows them all, revokes them one by one,
and waits until the edge is back where it started. One keep-alive HTTPS connection. The
broker's certificate is not checked: this runs inside the test's own namespace against the
test's own broker, and certificate pinning has tests of its own.

Prints one JSON object: leases added and revoked, the edge's lease count at the start and at
each round's peak, and the seconds taken. Exits 1 with the broker's answer on any refusal.
"""
import base64
import http.client
import json
import os
import ssl
import sys
import time
import urllib.request


def main():
    host, port, user, edge, rounds, batch, metrics_url = sys.argv[1:8]
    rounds, batch = int(rounds), int(batch)
    password, code = sys.stdin.read().split("\n")[:2]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)

    def call(path, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else b""
        conn.request("POST", path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
        if resp.status != 200:
            sys.exit(f"churn.py: POST {path} answered {resp.status}: {text}")
        return json.loads(text)

    def edge_leases():
        with urllib.request.urlopen(metrics_url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("grantwire_edge_leases "):
                    return int(float(line.split()[1]))
        sys.exit("churn.py: no grantwire_edge_leases in the edge's metrics")

    def wait_edge(count, what):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if edge_leases() == count:
                return
            time.sleep(0.05)
        sys.exit(f"churn.py: {what}: the edge holds {edge_leases()} leases, not {count}, after 30 s")

    start = time.monotonic()
    token = call("/v1/login", {"user": user, "password": password, "code": code})["token"]
    base = edge_leases()
    added = revoked = 0
    peaks = []
    for r in range(rounds):
        ids = []
        for _ in range(batch):
            key = base64.b64encode(os.urandom(32)).decode()
            lease = call("/v1/leases", {"edge": edge, "public_key": key}, token)
            ids.append(lease["profile"]["lease_id"])
            added += 1
        wait_edge(base + batch, f"round {r + 1} after adding {batch}")
        peaks.append(edge_leases())
        for lease_id in ids:
            call(f"/v1/leases/{lease_id}/revoke", None, token)
            revoked += 1
        wait_edge(base, f"round {r + 1} after revoking {batch}")
    print(json.dumps({
        "added": added,
        "revoked": revoked,
        "base": base,
        "peaks": peaks,
        "seconds": round(time.monotonic() - start, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
