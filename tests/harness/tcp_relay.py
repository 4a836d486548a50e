"""A TCP relay that can lose an answer, for a client retrying after a broken connection.

    python3 tcp_relay.py LISTEN_PORT TARGET_HOST TARGET_PORT CONTROL

Listens on 127.0.0.1:LISTEN_PORT and relays each connection to TARGET from the namespace's own
address. While the file CONTROL.lose exists, a new connection loses its answer: everything is
relayed until the client speaks after the target's first flight (TLS: the client's Finished
and its request), then what the target sends back is dropped, and the connection closes once
CONTROL.release exists. Prints "ready" once listening and "lost" when an answer is dropped.
"""

import os
import socket
import sys
import threading
import time

listen_port, host, port, control = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]


def handle(client):
    lose = os.path.exists(control + ".lose")
    server = socket.create_connection((host, port))
    state = {"heard": False, "cut": False}

    def up():
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                break
            if not data:
                break
            if lose and state["heard"]:
                state["cut"] = True
            try:
                server.sendall(data)
            except OSError:
                break

    threading.Thread(target=up, daemon=True).start()
    while True:
        try:
            data = server.recv(65536)
        except OSError:
            break
        if not data:
            break
        state["heard"] = True
        if state["cut"]:
            print("lost", flush=True)
            while not os.path.exists(control + ".release"):
                time.sleep(0.05)
            break
        try:
            client.sendall(data)
        except OSError:
            break
    # shutdown, not just close: the other thread's recv holds the socket open otherwise.
    for sock in (client, server):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(16)
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
