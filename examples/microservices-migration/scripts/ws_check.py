"""The seed's "WebSocket conectado (punto verde)" and "precios deben
actualizarse cada segundo": connects to the WebSocket server as the frontend
does (RFC 6455 handshake, accept key checked), reads two frames and checks the
scanner's snapshot moved on between them.

usage: python3 scripts/ws_check.py 127.0.0.1:9000
"""

import base64
import hashlib
import json
import os
import socket
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)


def frame(sock):
    head = recv(sock, 2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(recv(sock, 2), "big")
    return json.loads(recv(sock, n))


def recv(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


try:
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(
        f"GET /prices HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv(sock, 1)
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    if b" 101 " not in head.split(b"\r\n")[0] or f"Sec-WebSocket-Accept: {want}".encode() not in head:
        raise ConnectionError(f"no WebSocket handshake: {head!r}")
    start = time.monotonic()
    ticks = []
    # A frame a second, and a new snapshot a second: within three frames it moves on.
    for _ in range(3):
        ticks.append((frame(sock).get("snapshot") or {}).get("tick"))
        if len(ticks) > 1 and None not in ticks and ticks[-1] > ticks[0]:
            break
    took = time.monotonic() - start
    if None in ticks or ticks[-1] <= ticks[0]:
        raise ValueError(f"the snapshot did not move on: ticks {ticks}")
    print(f"connected (green dot): scanner tick {ticks[0]} -> {ticks[-1]} in {took:.1f}s")
except (OSError, ValueError) as e:
    print(f"not connected: {type(e).__name__}: {e}")
    sys.exit(1)
