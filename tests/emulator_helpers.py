"""Raw clients for testing the emulator: websocket-client, plain sockets, and frame helpers."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence, Tuple

import websocket

from k8sstream.testing import ApiServer

TIMEOUT = 10.0
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"


def stream_path(
    kind: str = "exec",
    *,
    pod: str = "demo",
    namespace: str = "default",
    command: Sequence[str] = (),
    container: Optional[str] = "main",
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
) -> str:
    query: List[Tuple[str, str]] = [("command", c) for c in command]
    if container is not None:
        query.append(("container", container))
    for name, value in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr), ("tty", tty)):
        if value:
            query.append((name, "true"))
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/{kind}?" + urllib.parse.urlencode(query)


def ws_url(server: ApiServer, path: str) -> str:
    return server.url.replace("http", "ws", 1) + path


def connect(
    server: ApiServer,
    path: str,
    protocols: Optional[Sequence[str]] = (V5,),
    *,
    header: Optional[Sequence[str]] = None,
    sslopt: Optional[Dict[str, Any]] = None,
) -> websocket.WebSocket:
    return websocket.create_connection(
        ws_url(server, path),
        subprotocols=list(protocols) if protocols else None,
        header=list(header or []),
        timeout=TIMEOUT,
        sslopt=sslopt,
        redirect_limit=0,
    )


class Transcript:
    """Everything a session delivered: messages per channel, status bytes, close code."""

    def __init__(self) -> None:
        self.messages: List[Tuple[int, bytes]] = []  # (opcode, raw payload)
        self.close_code: Optional[int] = None

    def channel(self, number: int, *, base64: bool = False) -> bytes:
        out = b""
        for opcode, data in self.messages:
            if opcode not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT):
                continue
            if base64:
                import base64 as b64

                if data[0] - 0x30 == number:
                    out += b64.b64decode(data[1:])
            elif data and data[0] == number:
                out += data[1:]
        return out

    @property
    def stdout(self) -> bytes:
        return self.channel(1)

    @property
    def stderr(self) -> bytes:
        return self.channel(2)

    @property
    def status(self) -> Dict[str, Any]:
        return json.loads(self.channel(3))

    @property
    def data_messages(self) -> List[bytes]:
        return [d for op, d in self.messages if op in (1, 2)]


def read_until_close(
    ws: websocket.WebSocket, transcript: Optional[Transcript] = None
) -> Transcript:
    """Read frames until the server's Close (or EOF); answers nothing, closes the socket."""
    t = transcript or Transcript()
    try:
        while True:
            try:
                frame = ws.recv_frame()
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                break
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(frame.data) >= 2:
                    t.close_code = struct.unpack("!H", frame.data[:2])[0]
                break
            t.messages.append((frame.opcode, frame.data))
    finally:
        ws.shutdown()
    return t


def send_channel(ws: websocket.WebSocket, channel: int, payload: bytes) -> None:
    ws.send_bytes(bytes((channel,)) + payload)


def raw_exchange(
    server: ApiServer,
    request: bytes,
    *,
    context: Optional[ssl.SSLContext] = None,
    read_until_eof: bool = True,
) -> bytes:
    """Send raw request bytes and return everything the server sent until it closed."""
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname=server.host)
    try:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if not read_until_eof and b"\r\n\r\n" in data:
                break
        return data
    finally:
        sock.close()


def upgrade_request(
    path: str,
    *,
    method: str = "GET",
    protocols: Optional[str] = V5,
    version: str = "13",
    extra: Sequence[str] = (),
    key: Optional[str] = "dGhlIHNhbXBsZSBub25jZQ==",
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def split_response(data: bytes) -> Tuple[str, Dict[str, str], bytes]:
    """Status line, headers (lower-cased names), body."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


class HttpResult:
    """A finished plain HTTP exchange (http.client, so nothing stays pooled or open)."""

    def __init__(self, status_code: int, headers: Dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


def http_request(
    server: ApiServer,
    path: str,
    *,
    method: str = "GET",
    headers: Optional[Dict[str, str]] = None,
    params: Optional[Dict[str, str]] = None,
    timeout: float = TIMEOUT,
) -> HttpResult:
    import http.client

    if params:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        content = response.read()
        return HttpResult(
            response.status, {k.lower(): v for k, v in response.getheaders()}, content
        )
    finally:
        conn.close()
