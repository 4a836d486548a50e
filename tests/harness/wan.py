"""A bad stretch of internet for one WireGuard client: a UDP relay that delays, drops and
reorders.

    python3 wan.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS LOSS_PERCENT [REORDER_PERCENT HOLD_MS]

The client's WireGuard sends to 127.0.0.1:LISTEN_PORT; the relay forwards each datagram to
TARGET from the namespace's own address (so the edge sees the client's real address, and its
pin holds), and each answer back to the client. Every datagram, either way, waits DELAY_MS and
is dropped with probability LOSS_PERCENT / 100: a round trip gains twice DELAY_MS. With
REORDER_PERCENT, that share of the datagrams not dropped is held HOLD_MS longer, so the ones
sent after it overtake it (netem's reordering). (The kernel here has no netem qdisc, which would
do this in the kernel.) SIGUSR1 cuts the line (every datagram dropped, counted as "cut") and
SIGUSR2 mends it. Prints "ready" once listening, and on SIGTERM the datagrams it forwarded,
dropped, held back and cut each way.
"""

import asyncio
import json
import random
import signal
import socket
import sys

listen_port, target_host, target_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
delay = float(sys.argv[4]) / 1000
loss = float(sys.argv[5]) / 100
reorder = float(sys.argv[6]) / 100 if len(sys.argv) > 6 else 0.0
hold = float(sys.argv[7]) / 1000 if len(sys.argv) > 7 else 0.0
counts = {"up": 0, "up_dropped": 0, "up_held": 0, "up_cut": 0,
          "down": 0, "down_dropped": 0, "down_held": 0, "down_cut": 0}
line = {"cut": False}


async def main():
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", listen_port))
    client.setblocking(False)
    family = socket.AF_INET6 if ":" in target_host else socket.AF_INET
    wan = socket.socket(family, socket.SOCK_DGRAM)
    wan.connect((target_host, target_port))
    wan.setblocking(False)
    peer = {}

    def later(send, data, way):
        if line["cut"]:
            counts[way + "_cut"] += 1
            return
        if random.random() < loss:
            counts[way + "_dropped"] += 1
            return
        counts[way] += 1
        if random.random() < reorder:
            counts[way + "_held"] += 1
            loop.call_later(delay + hold, send, data)
        else:
            loop.call_later(delay, send, data)

    def send_up(data):
        try:
            wan.send(data)
        except OSError:
            pass

    def send_down(data):
        if "addr" in peer:
            try:
                client.sendto(data, peer["addr"])
            except OSError:
                pass

    def from_client():
        while True:
            try:
                data, addr = client.recvfrom(65535)
            except BlockingIOError:
                return
            peer["addr"] = addr
            later(send_up, data, "up")

    def from_wan():
        while True:
            try:
                data = wan.recv(65535)
            except BlockingIOError:
                return
            except OSError:
                continue
            later(send_down, data, "down")

    loop.add_reader(client.fileno(), from_client)
    loop.add_reader(wan.fileno(), from_wan)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: line.update(cut=True))
    loop.add_signal_handler(signal.SIGUSR2, lambda: line.update(cut=False))
    print("ready", flush=True)
    await stop.wait()
    print(json.dumps(counts), flush=True)


asyncio.run(main())
