"""Socket plumbing for the emulator: one accepted connection, plain or TLS, and HTTP/1.1 parsing.

A :class:`Wire` is read by exactly one thread and written by any number of threads. Plain TCP
allows a reader and a writer at the same time. OpenSSL does not allow concurrent ``SSL_read`` and
``SSL_write`` on one ``SSL`` object (STYLE.md, websocket-client limitation 1), so over TLS the
socket is non-blocking, every SSL call runs under one I/O lock, and nobody waits for readiness
while holding it.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Dict, List, Optional, Sequence, Tuple, Union, cast
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HttpError", "Request", "Wire", "read_request"]

RECV_SIZE = 256 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024

_POLL_ERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


class Wire:
    """A connected socket shared by one reader thread and several writer threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tls = isinstance(sock, ssl.SSLSocket)
        # Writers hold this for a whole message so frames never interleave.
        self._write_lock = threading.Lock()
        # TLS only: guards the SSL object; never held while waiting for readiness.
        self._io_lock = threading.Lock()
        self._closed = False
        if self.tls:
            sock.setblocking(False)

    # -- reading (one thread only) --

    def recv(self, size: int = RECV_SIZE) -> bytes:
        """Read up to ``size`` bytes; ``b""`` at EOF. Raises OSError on a broken connection."""
        if not self.tls:
            return self.sock.recv(size)
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        while True:
            if not sock.pending():
                self._wait(select.POLLIN)
            with self._io_lock:
                if self._closed:
                    return b""
                try:
                    return sock.recv(size)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                except ssl.SSLZeroReturnError:
                    return b""

    # -- writing (any thread) --

    def sendall(self, data: Union[bytes, memoryview]) -> None:
        """Send all of ``data`` as one uninterrupted unit. Raises OSError if the peer is gone."""
        with self._write_lock:
            if not self.tls:
                self.sock.sendall(data)
                return
            view = memoryview(data)
            while view:
                with self._io_lock:
                    if self._closed:
                        raise BrokenPipeError("connection closed")
                    try:
                        sent = self.sock.send(view)
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        sent = 0
                if sent:
                    view = view[sent:]
                else:
                    self._wait(select.POLLOUT)

    def _wait(self, events: int) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), events | _POLL_ERR)
        poller.poll()

    # -- ending --

    def shutdown_write(self) -> None:
        """Send EOF to the peer (a TLS close_notify first) but keep reading."""
        try:
            if self.tls:
                with self._write_lock, self._io_lock:
                    try:
                        cast(ssl.SSLSocket, self.sock).unwrap()
                    except (ssl.SSLError, OSError, ValueError):
                        pass  # close_notify went out; the peer's reply is not awaited
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            pass

    def abort(self) -> None:
        """Wake any thread blocked on this connection; its calls then fail or see EOF.

        Calls the base-class shutdown so that ``SSLSocket`` does not drop its SSL object under a
        reader that is still using it.
        """
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        with self._io_lock:
            self._closed = True
        self.abort()
        try:
            self.sock.close()
        except OSError:
            pass


class HttpError(Exception):
    """A request that cannot be parsed; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    """One parsed HTTP/1.1 request head (bodies are read and ignored)."""

    method: str
    target: str
    version: str
    headers: List[Tuple[str, str]]
    path: str = ""
    raw_query: str = ""
    query: Dict[str, List[str]] = field(default_factory=dict)

    def header(self, name: str) -> Optional[str]:
        """The first header line with this name, like Go's ``Header.Get``."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def header_values(self, name: str) -> List[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    def header_tokens(self, name: str) -> List[str]:
        """Comma-separated tokens over every line of a header, lower-cased."""
        return [
            token.strip().lower()
            for value in self.header_values(name)
            for token in value.split(",")
            if token.strip()
        ]

    @property
    def keep_alive(self) -> bool:
        tokens = self.header_tokens("Connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def read_request(wire: Wire, buffer: bytearray) -> Optional[Request]:
    """Read one request from ``wire``; ``buffer`` carries bytes across calls (keep-alive, upgrades).

    Returns:
        The request, or ``None`` if the peer closed the connection between requests.

    Raises:
        HttpError: malformed or oversized request.
        OSError: the connection broke.
    """
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buffer) > MAX_HEADER_BYTES:
            raise HttpError(431, "request header fields too large")
        chunk = wire.recv()
        if not chunk:
            if buffer.strip():
                raise HttpError(400, "connection closed in the middle of a request")
            return None
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    del buffer[: end + 4]
    lines = head.split("\r\n")
    while lines and not lines[0]:
        lines.pop(0)  # RFC 7230 3.5: ignore empty lines before the request line
    if not lines:
        raise HttpError(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        headers.append((name, value.strip()))
    request = Request(method=method, target=target, version=version, headers=headers)
    split = urlsplit(target)
    request.path = unquote(split.path)
    request.raw_query = split.query
    request.query = parse_qs(split.query, keep_blank_values=True)
    _discard_body(wire, buffer, request)
    return request


def _discard_body(wire: Wire, buffer: bytearray, request: Request) -> None:
    if request.header("Transfer-Encoding"):
        raise HttpError(501, "chunked request bodies are not supported")
    length_text = request.header("Content-Length")
    if not length_text:
        return
    if not length_text.isdigit():
        raise HttpError(400, "invalid Content-Length")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise HttpError(413, "request body too large")
    while len(buffer) < length:
        chunk = wire.recv()
        if not chunk:
            raise HttpError(400, "connection closed in the middle of a request body")
        buffer += chunk
    del buffer[:length]


_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def format_response(
    status: int, headers: Sequence[Tuple[str, str]], body: bytes = b"", *, length: bool = True
) -> bytes:
    """A complete HTTP/1.1 response as Go's net/http writes it (Date, Content-Length)."""
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("Date: " + formatdate(usegmt=True))
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
