"""Small TCP services to stand behind an emulated pod port (tests, benchmarks, the demo)."""

from __future__ import annotations

import functools
import itertools
import os
import socket
import threading
from typing import Optional, Set, Tuple, TypeVar

from ._runtime import accept_connections, spawn_thread

__all__ = ["EchoServer", "SinkServer"]

_CHUNK = 64 * 1024
_JOIN_SECONDS = 5.0
_service_ids = itertools.count(1)
_S = TypeVar("_S", bound="_TcpService")


class _TcpService:
    """A threaded TCP server on 127.0.0.1: one daemon thread per connection, bounded in number.

    A connection beyond ``max_connections`` is accepted and closed at once, so a runaway
    client cannot make the service start unbounded threads.
    """

    kind = "tcp"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, max_connections: int = 256
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self.port = port
        self.max_connections = max_connections
        #: How many connections were served (the refused ones not counted).
        self.connections = 0
        self._id = next(_service_ids)
        self._lock = threading.Lock()
        self._socks: Set[socket.socket] = set()
        self._threads: Set[threading.Thread] = set()
        self._listener: Optional[socket.socket] = None
        self._accept_thread: Optional[threading.Thread] = None
        self._wake_r = self._wake_w = -1
        self._stopping = threading.Event()
        self._conn_ids = itertools.count(1)

    @property
    def address(self) -> Tuple[str, int]:
        return (self.host, self.port)

    def start(self: _S) -> _S:
        """Listen and serve in the background; returns ``self`` once listening."""
        if self._listener is not None:
            raise RuntimeError("the service is already running")
        self._stopping.clear()
        listener = socket.create_server((self.host, self.port), backlog=128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        self._accept_thread = spawn_thread(f"{self.kind}-accept-{self._id}", self._accept_loop)
        return self

    def stop(self) -> None:
        """Stop listening, end every connection, and wait for the threads (bounded)."""
        if self._listener is None:
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(_JOIN_SECONDS)
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(_JOIN_SECONDS)
        self._listener.close()
        self._listener = None
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        for sock in accept_connections(self._listener, self._wake_r, self._stopping):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._threads = {t for t in self._threads if t.is_alive()}
                if len(self._threads) >= self.max_connections or self._stopping.is_set():
                    sock.close()
                    continue
                self.connections += 1
                self._socks.add(sock)
                name = f"{self.kind}-{self._id}-{next(self._conn_ids)}"
                self._threads.add(spawn_thread(name, functools.partial(self._run, sock)))

    def _run(self, sock: socket.socket) -> None:
        try:
            self.handle(sock)
        except OSError:
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
            sock.close()

    def handle(self, sock: socket.socket) -> None:
        raise NotImplementedError


class EchoServer(_TcpService):
    """Sends back everything it receives; after the client's EOF it half-closes too.

    Usable as a context manager::

        with EchoServer() as echo, ApiServer(with_demo_pod=False) as api:
            api.add_pod(Pod("demo", ports={7: echo.port}))
    """

    kind = "echo"

    def handle(self, sock: socket.socket) -> None:
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while True:
            n = sock.recv_into(view)
            if not n:
                break
            sock.sendall(view[:n])
        sock.shutdown(socket.SHUT_WR)


class SinkServer(_TcpService):
    """A discard service that can also be a source.

    Each connection first sends ``source_bytes`` bytes (a repeating pattern, see
    :meth:`pattern`), reading and discarding input all the while; after the client's EOF it
    reports the number of bytes it received as ASCII digits and a newline, then closes.
    ``received`` is the total over all connections.
    """

    kind = "sink"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        source_bytes: int = 0,
        max_connections: int = 256,
    ) -> None:
        super().__init__(host, port, max_connections=max_connections)
        if source_bytes < 0:
            raise ValueError("source_bytes must not be negative")
        self.source_bytes = source_bytes
        self.received = 0

    @staticmethod
    def pattern(size: int) -> bytes:
        """The first ``size`` bytes the source sends on each connection."""
        block = bytes(range(256)) * (_CHUNK // 256)
        return (block * (size // len(block) + 1))[:size]

    def handle(self, sock: socket.socket) -> None:
        sender = None
        if self.source_bytes:
            sender = spawn_thread(f"{self.kind}-src-{self._id}", lambda: self._source(sock))
        count = 0
        buffer = bytearray(_CHUNK)
        try:
            while True:
                n = sock.recv_into(buffer)
                if not n:
                    break
                count += n
        finally:
            with self._lock:
                self.received += count
            if sender is not None:
                sender.join()
        sock.sendall(b"%d\n" % count)
        sock.shutdown(socket.SHUT_WR)

    def _source(self, sock: socket.socket) -> None:
        block = self.pattern(_CHUNK)
        left = self.source_bytes
        try:
            while left > 0:
                n = min(left, len(block))
                sock.sendall(block[:n] if n < len(block) else block)
                left -= n
        except OSError:
            pass
