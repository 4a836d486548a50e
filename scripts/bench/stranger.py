#!/usr/bin/env python3
"""A stranger at the broker (issue 14): holds up to HOLD idle TLS connections (the handshake
done, then nothing sent) from SOURCES addresses, reopening whatever the broker closes, and offers RATE failed logins a
second from the same addresses, for SECONDS. Prints one JSON object with what it saw.

usage: stranger.py BROKER_IP PORT SOURCE_PREFIX SOURCES HOLD RATE SECONDS USER
(SOURCE_PREFIX "203.0.113." and SOURCES 100 use 203.0.113.1 .. 203.0.113.100.)"""
import http.client, json, resource, selectors, socket, ssl, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

ip, port, prefix, n_src, hold, rate, seconds, user = sys.argv[1:9]
port, n_src, hold, rate, seconds = int(port), int(n_src), int(hold), int(rate), float(seconds)
sources = [f"{prefix}{i}" for i in range(1, n_src + 1)]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
end = time.monotonic() + seconds
stats = {"opened": 0, "closed_by_broker": 0, "closed_before_tls": 0, "connect_failed": 0,
         "held_max": 0, "logins": {}}
lock = threading.Lock()


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def holder():
    tls = tls_context()
    sel = selectors.DefaultSelector()
    held = 0
    i = 0
    while time.monotonic() < end:
        # Top up to HOLD, at most 200 a round so the loop also notices closes.
        for _ in range(min(200, hold - held)):
            s = socket.socket()
            s.settimeout(1)
            try:
                s.bind((sources[i % n_src], 0))
                s.connect((ip, port))
            except OSError:
                s.close()
                stats["connect_failed"] += 1
                continue
            finally:
                i += 1
            try:
                s = tls.wrap_socket(s)
            except OSError:
                # Over a cap the broker closes the connection at accept, before TLS.
                s.close()
                stats["closed_before_tls"] += 1
                continue
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            held += 1
            stats["opened"] += 1
        stats["held_max"] = max(stats["held_max"], held)
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except ssl.SSLWantReadError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                held -= 1
                stats["closed_by_broker"] += 1
    stats["held_at_end"] = held


def login(n):
    if time.monotonic() >= end:
        return
    ctx = tls_context()
    src = sources[n % n_src]
    try:
        c = http.client.HTTPSConnection(ip, port, source_address=(src, 0), context=ctx, timeout=5)
        body = json.dumps({"user": user, "password": "not her password", "code": "000000"})
        c.request("POST", "/v1/login", body, {"Content-Type": "application/json"})
        status = str(c.getresponse().status)
        c.close()
    except (OSError, http.client.HTTPException) as e:
        status = type(e).__name__
    with lock:
        stats["logins"][status] = stats["logins"].get(status, 0) + 1


t = threading.Thread(target=holder)
t.start()
# More workers starve this process's own holder thread (the GIL) on a small machine.
pool = ThreadPoolExecutor(max_workers=32)
n = 0
start = time.monotonic()
while time.monotonic() < end:
    pool.submit(login, n)
    n += 1
    time.sleep(max(0, start + n / rate - time.monotonic()))
stats["logins_offered"] = n
pool.shutdown(wait=True, cancel_futures=True)
t.join()
print(json.dumps(stats), flush=True)
