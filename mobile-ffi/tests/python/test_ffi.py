"""The grantwire-mobile bindings driven from Python against a real broker, as an app would:
trust, login, lease, renew, revoke, every error kind an app branches on, calls from many
threads, and a call that must not hold up the event loop.

Run by tests/it/python_ffi.rs, which starts the broker, generates the bindings next to the
library and passes (environment):
  GW_BROKER_URL, GW_FINGERPRINT     the broker and its certificate's SHA-256
  GW_USER, GW_PASSWORD              a user with a grant on GW_EDGE
  GW_TOTP_SECRET_HEX                that user's TOTP secret, for RFC 6238 codes
  GW_EDGE                           an edge the user holds a grant on
  GW_EDGE_NO_GRANT                  an enrolled edge the user holds no grant on
  GW_EDGE_V6_ONLY                   a granted edge with only an IPv6 endpoint
  GW_PROFILE_OUT                    where to write the renewed wg-quick profile (0600)

Only the standard library. Never prints a key, password, code or token: the harness checks
that the private key appears nowhere in this script's output.
"""

import asyncio
import hashlib
import hmac
import os
import socket
import struct
import sys
import threading
import time

import grantwire_mobile as gw

ENV = os.environ


def log(msg):
    print(f"test_ffi: {msg}", file=sys.stderr, flush=True)


def totp(secret, at):
    """RFC 6238: HMAC-SHA1 over the 30 s step, dynamic truncation, 6 digits."""
    digest = hmac.new(secret, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def other_code(code):
    """A code that is not `code` (nor, but for a 1e-6 chance, a neighbouring step's)."""
    return f"{(int(code) + 500_000) % 1_000_000:06d}"


async def expect(kind, coro, what):
    """Awaits `coro` and checks it raised exactly the GrantwireError variant `kind`."""
    try:
        await coro
    except kind as e:
        log(f"{what}: {type(e).__name__} as expected")
        return e
    except gw.GrantwireError as e:
        raise AssertionError(f"{what}: wanted {kind.__name__}, got {type(e).__name__}: {e}")
    raise AssertionError(f"{what}: wanted {kind.__name__}, the call succeeded")


async def trust_and_login(client):
    url, fp = ENV["GW_BROKER_URL"], ENV["GW_FINGERPRINT"]
    user, password = ENV["GW_USER"], ENV["GW_PASSWORD"]
    secret = bytes.fromhex(ENV["GW_TOTP_SECRET_HEX"])

    trust = await client.probe(url)
    assert trust.fingerprint == fp, f"probe saw {trust.fingerprint}, broker printed {fp}"
    assert trust.ca_signed is False

    wrong_fp = "".join("0" if c != "0" else "1" for c in fp)
    code = totp(secret, time.time())
    await expect(gw.GrantwireError.Trust,
                 client.login(url, wrong_fp, user, password, code), "wrong fingerprint")
    await expect(gw.GrantwireError.Auth,
                 client.login(url, fp, user, password + "x", other_code(code)), "wrong password")
    await expect(gw.GrantwireError.Auth,
                 client.login(url, fp, user, password, other_code(code)), "wrong TOTP code")
    await expect(gw.GrantwireError.Usage,
                 client.login("http://" + url.split("://", 1)[1], fp, user, password, code),
                 "plain http")

    session = await client.login(url, fp, user, password, totp(secret, time.time()))
    assert session.user == user and session.token, "a session with a token"
    assert session.fingerprint == fp
    assert session.expires_at > time.time()
    # What an app stored in its keychain and reads back later.
    return gw.Session(broker_url=session.broker_url, fingerprint=session.fingerprint,
                      user=session.user, token=session.token, expires_at=session.expires_at)


async def lease_and_renew(client, session):
    keys = client.generate_keypair()
    who = await client.whoami(session)
    assert who.user == ENV["GW_USER"]
    assert who.source_ip == "127.0.0.1", who.source_ip

    profile = await client.request_lease(session, ENV["GW_EDGE"], keys.public_key)
    assert profile.edge == ENV["GW_EDGE"] and profile.lease_id.startswith("l-")
    assert profile.pin == "127.0.0.1/32", profile.pin
    text = client.render_wg_quick(profile, keys.private_key)
    assert f"PrivateKey = {keys.private_key}" in text, "the profile carries the device's key"
    assert f"PublicKey = {profile.edge_public_key}" in text
    assert f"Address = {profile.address}/32" in text
    svg = client.render_qr_svg(text)
    assert "<svg" in svg

    who = await client.whoami(session)
    mine = [l for l in who.leases if l.id == profile.lease_id]
    assert len(mine) == 1 and mine[0].pinned_here, who.leases
    now = int(time.time())
    kept = client.renewal(mine[0], now, None)
    assert not kept.renew and kept.reason is None, kept
    assert 0 < kept.due_in_secs <= mine[0].expires_at - now, kept
    gone = client.renewal(None, now, None)
    assert gone.renew and gone.reason, gone

    await asyncio.sleep(1.1)  # expiry is in whole seconds: let it move
    renewed = await client.renew(session, profile.lease_id)
    assert renewed.lease_id == profile.lease_id
    assert renewed.address == profile.address, "a renewal keeps the tunnel address"
    assert renewed.edge_public_key == profile.edge_public_key
    # A second later, the expiry moved (the grant puts no end on it here).
    assert renewed.expires_at > profile.expires_at, (renewed.expires_at, profile.expires_at)
    renewed_text = client.render_wg_quick(renewed, keys.private_key)
    fd = os.open(ENV["GW_PROFILE_OUT"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(renewed_text)
    return renewed


async def refusals(client, session, lease_id):
    keys = client.generate_keypair()
    await expect(gw.GrantwireError.Grant,
                 client.request_lease(session, ENV["GW_EDGE_NO_GRANT"], keys.public_key),
                 "edge without a grant")
    await expect(gw.GrantwireError.Pin,
                 client.request_lease(session, ENV["GW_EDGE_V6_ONLY"], keys.public_key),
                 "edge with no endpoint of the device's address family")
    await expect(gw.GrantwireError.NotFound,
                 client.request_lease(session, "no-such-edge", keys.public_key), "unknown edge")
    await expect(gw.GrantwireError.Usage,
                 client.request_lease(session, ENV["GW_EDGE"], "not a key"), "bad public key")

    await client.revoke(session, lease_id)
    who = await client.whoami(session)
    assert all(l.id != lease_id for l in who.leases), "a revoked lease is not live"
    await expect(gw.GrantwireError.Expired, client.renew(session, lease_id), "renew after revoke")

    stale = gw.Session(broker_url=session.broker_url, fingerprint=session.fingerprint,
                       user=session.user, token="not-the-token", expires_at=session.expires_at)
    await expect(gw.GrantwireError.Expired, client.whoami(stale), "session the broker refuses")


def from_many_threads(client, session):
    """One client shared by threads, each with its own event loop, calling at once."""
    n = 8
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            keys = client.generate_keypair()
            who = asyncio.run(client.whoami(session))
            results.append((who.user, keys.public_key))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == n, results
    assert {user for user, _ in results} == {ENV["GW_USER"]}
    assert len({key for _, key in results}) == n, "every thread got its own keypair"
    log(f"{n} threads called at once")


async def loop_stays_free(client):
    """A call to a broker that never answers must leave the event loop running: cancelling it
    after 0.5 s works only if the call did not block the thread that polls it."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections queue but are never accepted: the handshake hangs
    port = silent.getsockname()[1]
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        await asyncio.wait_for(client.probe(f"https://127.0.0.1:{port}"), 0.5)
        raise AssertionError("a broker that never answers answered")
    except asyncio.TimeoutError:
        pass
    finally:
        tick.cancel()
        silent.close()
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the call held the loop for {elapsed:.1f} s"
    assert ticks >= 10, f"the loop ran {ticks} ticks while the call was pending"
    log(f"loop ran {ticks} ticks during a hanging call")


async def main():
    client = gw.GrantwireClient()
    session = await trust_and_login(client)
    profile = await lease_and_renew(client, session)
    await asyncio.get_running_loop().run_in_executor(None, from_many_threads, client, session)
    await loop_stays_free(client)
    await refusals(client, session, profile.lease_id)
    log("all passed")


if __name__ == "__main__":
    asyncio.run(main())
