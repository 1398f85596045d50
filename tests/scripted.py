"""A scripted raw-socket WebSocket peer for transport tests (urllib3's SocketDummyServer idea).

Each test hands in a function that receives the accepted socket and plays the server's part
byte by byte, so the client's reaction to exact, possibly broken, server behaviour is tested.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import Callable, Dict, Optional, Tuple

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_request(sock: socket.socket) -> Tuple[str, Dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("client closed before sending a request")
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def accept_upgrade(
    sock: socket.socket, protocol: Optional[str] = "v5.channel.k8s.io"
) -> Dict[str, str]:
    _, headers = read_request(sock)
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest())
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept.decode()}\r\n"
    )
    if protocol is not None:
        response += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    sock.sendall((response + "\r\n").encode())
    return headers


def frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = False) -> bytes:
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return header + key + payload
    return header + payload


def binary(payload: bytes) -> bytes:
    return frame(0x2, payload)


def close_frame(code: Optional[int] = 1000, reason: bytes = b"") -> bytes:
    return frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> Tuple[int, bytes]:
    """Read one masked client frame; returns (opcode, unmasked payload)."""
    b1, b2 = recv_exact(sock, 2)
    length = b2 & 0x7F
    if length == 126:
        length = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", recv_exact(sock, 8))[0]
    key = recv_exact(sock, 4) if b2 & 0x80 else b"\0\0\0\0"
    payload = recv_exact(sock, length)
    return b1 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class ScriptedServer:
    """Accepts connections on 127.0.0.1 and runs ``script(sock)`` for each in a thread."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.errors: list = []
        self._threads: list = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/namespaces/default/pods/p/exec"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            try:
                self.script(sock)
            except Exception as exc:  # recorded for the test to inspect
                self.errors.append(exc)

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
        self._accept_thread.join(2)
        for t in self._threads:
            t.join(5)
