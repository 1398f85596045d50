"""Port-forward: a socket-like object for one connection to a pod port, and a kubectl-style
forwarder that listens locally.

Two protocols (PROTOCOL.md sections 9 and 10):

* ``"tunnel"``: SPDY/3.1 inside a WebSocket, what kubectl uses since 1.31. One WebSocket
  carries any number of connections, each with a real half-close (``shutdown(SHUT_WR)``).
* ``"websocket"``: the legacy channel protocol, one WebSocket per connection, no half-close.

``"auto"`` (the default) tries the tunnel and falls back to the legacy protocol when the
server refuses the tunnel upgrade, as client-go does.

Back-pressure: each connection buffers at most 1 MiB of received data; a reader that falls
behind stops the WebSocket's reader, which on a tunnel pauses every connection sharing it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import select
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _channel
from ._pipe import Pipe
from ._portforward import (
    LEGACY_PROTOCOLS,
    TUNNEL_PROTOCOL,
    LegacyPortForward,
    PortData,
    PortEOF,
    PortError,
    PortReset,
    SessionEnded,
    TunnelSession,
)
from ._request import pod_path
from ._transport import WebSocketConnection, connection_tag
from .errors import (
    ApiError,
    ConfigError,
    K8sStreamError,
    LocalProtocolError,
    PortForwardError,
    RemoteProtocolError,
    StreamClosedError,
    StreamTimeout,
)

__all__ = ["ForwardedSocket", "PortForwarder", "create_connection", "port_forward"]

logger = logging.getLogger("k8sstream.portforward")

_SEND_CHUNK = 64 * 1024
# Copiers read more than one frame's worth: several queued frames then cost one syscall.
_COPY_CHUNK = 256 * 1024
_PROTOCOLS = ("auto", "tunnel", "websocket")


class _Channel:
    """What a ForwardedSocket needs from the protocol underneath it."""

    pipe: Pipe

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def shutdown_write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _SocketSink:
    """Where a forwarded connection's data goes when a local socket is waiting for it.

    It stands in for the channel's :class:`Pipe` on the producer side, so the tunnel's reader
    thread writes pod data straight into the local socket: no copier thread and no hand-off
    per chunk. A local socket that stops reading blocks the reader, as a full pipe would.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.done = threading.Event()
        self.error: Optional[BaseException] = None

    def feed(self, data: bytes) -> None:
        if self.done.is_set():
            return
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.fail(exc)

    def close(self) -> None:
        if not self.done.is_set():
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            # Wake the local side's copier, which may be blocked reading the local socket.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self.done.set()

    def discard(self) -> None:
        self.done.set()


class _Tunnel:
    """One SPDY session in one WebSocket, shared by many connections."""

    def __init__(self, client: Any, namespace: str, pod: str) -> None:
        ws, chosen = client.dial(pod_path(namespace, pod, "portforward"), [], [TUNNEL_PROTOCOL])
        if (chosen or "").lower() != TUNNEL_PROTOCOL.lower():
            ws.shutdown()
            raise RemoteProtocolError(
                f"the server chose subprotocol {chosen!r} instead of {TUNNEL_PROTOCOL}"
            )
        self.pod = pod
        self._session = TunnelSession()
        self._send_lock = threading.Lock()  # encode and send in one order: header compression
        self._state_lock = threading.Lock()
        self._channels: Dict[int, _TunnelChannel] = {}
        self.error: Optional[BaseException] = None
        self.closed = threading.Event()
        self._conn = WebSocketConnection(
            ws,
            self._on_message,
            self._on_close,
            tag=connection_tag(f"{namespace}/{pod}/portforward"),
        )
        self._conn.start()

    def open(self, port: int, sink: Optional[_SocketSink] = None) -> _TunnelChannel:
        if self.closed.is_set():
            raise StreamClosedError(f"the port-forward connection to pod {self.pod} is closed")
        channel = _TunnelChannel(self, port, sink)
        with self._send_lock:
            with self._state_lock:
                conn_id, wire = self._session.open(port)
                channel.connection = conn_id
                self._channels[conn_id] = channel
            self._conn.send_message(False, wire)
        return channel

    def send(self, conn_id: int, data: bytes) -> None:
        with self._send_lock:
            with self._state_lock:
                wire = self._session.send(conn_id, data)
            self._conn.send_message(False, wire)

    def shutdown_write(self, conn_id: int) -> None:
        with self._send_lock:
            with self._state_lock:
                wire = self._session.close_write(conn_id)
            if wire:
                self._conn.send_message(False, wire)

    def close_connection(self, conn_id: int) -> None:
        with self._state_lock:
            self._channels.pop(conn_id, None)
            wire = self._session.reset(conn_id)
        if wire and not self.closed.is_set():
            try:
                with self._send_lock:
                    self._conn.send_message(False, wire)
            except K8sStreamError:
                pass  # the tunnel is gone, and the connection with it

    def close(self) -> None:
        if self.closed.is_set():
            return
        try:
            with self._send_lock:
                self._conn.send_message(False, self._session.goaway())
        except K8sStreamError:
            pass
        self._conn.close()
        self._conn.wait_finished(5)

    def _on_message(self, is_text: bool, data: bytes) -> None:
        if is_text:
            raise RemoteProtocolError("text message in the port-forward tunnel")
        with self._state_lock:
            events, _ = self._session.receive(data)
        for event in events:
            if isinstance(event, SessionEnded):
                continue
            channel = self._channels.get(event.connection)
            if channel is None:
                continue
            if isinstance(event, PortData):
                channel.pipe.feed(event.data)
            elif isinstance(event, PortEOF):
                channel.pipe.close()
            elif isinstance(event, PortError):
                channel.pipe.fail(PortForwardError(event.message))
            elif isinstance(event, PortReset):
                channel.pipe.fail(
                    StreamClosedError(f"the server reset the connection (status {event.status})")
                )

    def _on_close(self, code: Optional[int], reason: str, error: Optional[BaseException]) -> None:
        self.error = error
        lost = error or StreamClosedError(f"lost connection to pod {self.pod}", code, reason)
        with self._state_lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            channel.pipe.fail(lost)
        self.closed.set()


class _TunnelChannel(_Channel):
    def __init__(self, tunnel: _Tunnel, port: int, sink: Optional[_SocketSink] = None) -> None:
        self.tunnel = tunnel
        self.port = port
        self.connection = -1
        self.pipe = sink or Pipe()  # type: ignore[assignment]

    def send(self, data: bytes) -> None:
        self.tunnel.send(self.connection, data)

    def shutdown_write(self) -> None:
        self.tunnel.shutdown_write(self.connection)

    def close(self) -> None:
        self.tunnel.close_connection(self.connection)
        self.pipe.discard()


class _LegacyChannel(_Channel):
    """One legacy port-forward WebSocket for one connection to one port."""

    def __init__(self, client: Any, namespace: str, pod: str, port: int) -> None:
        path = pod_path(namespace, pod, "portforward")
        ws, chosen = client.dial(path, [("ports", str(port))], list(LEGACY_PROTOCOLS))
        try:
            protocol = _channel.negotiated_protocol(LEGACY_PROTOCOLS, chosen)
        except K8sStreamError:
            ws.shutdown()
            raise
        self._codec = LegacyPortForward(protocol, [port])
        self.pipe = Pipe()
        self._conn = WebSocketConnection(
            ws,
            self._on_message,
            self._on_close,
            tag=connection_tag(f"{namespace}/{pod}/portforward"),
        )
        self._conn.start()

    def _on_message(self, is_text: bool, data: bytes) -> None:
        event = self._codec.receive(is_text, data)
        if isinstance(event, PortData):
            self.pipe.feed(event.data)
        elif isinstance(event, PortError):
            self.pipe.fail(PortForwardError(event.message))

    def _on_close(self, code: Optional[int], reason: str, error: Optional[BaseException]) -> None:
        if error is not None:
            self.pipe.fail(error)
        else:
            self.pipe.close()  # the remote end closed: that is this protocol's only EOF

    def send(self, data: bytes) -> None:
        for is_text, message in self._codec.data_messages(0, data):
            self._conn.send_message(is_text, message)

    def shutdown_write(self) -> None:
        raise LocalProtocolError(
            "the legacy WebSocket port-forward protocol cannot half-close a connection; "
            "use the SPDY tunnel (protocol='tunnel', Kubernetes 1.30+)"
        )

    def close(self) -> None:
        self.pipe.discard()
        self._conn.close()
        self._conn.wait_finished(5)


class ForwardedSocket:
    """A connection to a port of a pod, with the vocabulary of :class:`socket.socket`.

    ``recv`` returns ``b""`` at end of stream, timeouts raise :class:`socket.timeout`
    (:class:`~k8sstream.StreamTimeout`), a port the server could not reach raises
    :class:`~k8sstream.PortForwardError` (a :class:`ConnectionRefusedError`) from ``recv``
    once the server has said so. ``fileno()`` switches the object to a local socket pair
    bridged by two threads, so that ``select`` and anything that needs a descriptor work.
    """

    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = 0

    def __init__(
        self, channel: _Channel, pod: str, port: int, owned_tunnel: Optional[_Tunnel] = None
    ) -> None:
        self._channel = channel
        self._owned_tunnel = owned_tunnel
        self.pod = pod
        self.port = port
        self._timeout: Optional[float] = socket.getdefaulttimeout()
        self._closed = False
        self._io_refs = 0
        self._bridge: Optional[socket.socket] = None
        self._bridge_peer: Optional[socket.socket] = None
        self._bridge_threads: List[threading.Thread] = []
        self._bridge_running = 0
        self._detached = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ForwardedSocket pod={self.pod} port={self.port} {state}>"

    # --- timeouts ---

    def settimeout(self, value: Optional[float]) -> None:
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = value
        if self._bridge is not None:
            self._bridge.settimeout(value)

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    # --- data ---

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._check_open()
        if self._bridge is not None:
            return self._bridge.recv(bufsize, flags)
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        data = self._channel.pipe.read(bufsize, deadline)
        if data is None:
            if self._timeout == 0:
                raise BlockingIOError(11, "Resource temporarily unavailable")
            raise StreamTimeout("timed out")
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    def send(self, data: Any, flags: int = 0) -> int:
        self._check_open()
        if self._bridge is not None:
            return self._bridge.send(data, flags)
        chunk = bytes(memoryview(data)[:_SEND_CHUNK])
        try:
            self._channel.send(chunk)
        except StreamClosedError:
            # A refused pod port is reported just before the server closes: a send that lost
            # the race must still raise the refusal (ConnectionRefusedError), as recv does.
            if isinstance(self._channel.pipe.error, PortForwardError):
                raise self._channel.pipe.error from None
            raise
        return len(chunk)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._check_open()
        if self._bridge is not None:
            self._bridge.sendall(data, flags)
            return
        view = memoryview(data)
        while view:
            view = view[self.send(view) :]

    def shutdown(self, how: int) -> None:
        self._check_open()
        if self._bridge is not None:
            self._bridge.shutdown(how)
            return
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._channel.pipe.discard()
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self._channel.shutdown_write()

    def makefile(
        self,
        mode: str = "r",
        buffering: Optional[int] = None,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
    ) -> Any:
        """A file object over the connection, built as :meth:`socket.socket.makefile` builds it."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = socket.SocketIO(self, rawmode)  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: Any
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self._really_close()

    # --- descriptor bridge ---

    def fileno(self) -> int:
        """A real descriptor: from now on data flows through a local socket pair."""
        self._check_open()
        with self._lock:
            if self._bridge is None:
                mine, theirs = socket.socketpair()
                mine.settimeout(self._timeout)
                theirs.setblocking(True)
                self._bridge, self._bridge_peer = mine, theirs
                self._bridge_threads = [
                    threading.Thread(
                        target=self._bridge_in, args=(theirs,), name="k8sstream-pf-in", daemon=True
                    ),
                    threading.Thread(
                        target=self._bridge_out,
                        args=(theirs,),
                        name="k8sstream-pf-out",
                        daemon=True,
                    ),
                ]
                self._bridge_running = len(self._bridge_threads)
                for thread in self._bridge_threads:
                    thread.start()
            return self._bridge.fileno()

    def getsockopt(self, *args: Any) -> Any:
        """Answered by the local socket pair (this creates it): ``ssl`` asks for ``SO_TYPE``."""
        self.fileno()
        assert self._bridge is not None
        return self._bridge.getsockopt(*args)

    def detach(self) -> int:
        """Hand the bridged descriptor to the caller, as :meth:`socket.socket.detach` does.

        This is what :meth:`ssl.SSLContext.wrap_socket` calls, so TLS can run over a pod port.
        The copier threads keep the descriptor connected to the pod until it is closed.
        """
        self.fileno()
        with self._lock:
            assert self._bridge is not None
            fd = self._bridge.detach()
            self._bridge = None
            self._detached = True
            self._closed = True
        return fd

    def _bridge_in(self, theirs: socket.socket) -> None:
        try:
            _pump(self._channel.pipe.read, theirs.sendall, lambda: theirs.shutdown(socket.SHUT_WR))
        except (OSError, K8sStreamError):
            with contextlib.suppress(OSError):
                theirs.shutdown(socket.SHUT_WR)
        self._bridge_thread_done()

    def _bridge_out(self, theirs: socket.socket) -> None:
        with contextlib.suppress(OSError, K8sStreamError):
            _pump(theirs.recv, self._channel.send, self._channel.shutdown_write)
        self._wait_for_hangup(theirs)
        self._bridge_thread_done()

    def _wait_for_hangup(self, theirs: socket.socket) -> None:
        # A detached descriptor has no close() of ours: when its owner closes it (not just
        # shuts down writing), stop waiting for the pod's side too.
        poller = select.poll()
        poller.register(theirs, select.POLLHUP)
        while self._detached and self._bridge_running > 1:
            if any(event & select.POLLHUP for _, event in poller.poll(500)):
                self._channel.pipe.discard()
                return

    def _bridge_thread_done(self) -> None:
        # After detach() nobody will call close(): the last copier to finish cleans up.
        with self._lock:
            self._bridge_running -= 1
            last = self._bridge_running == 0 and self._detached
        if last:
            self._release(join=False)

    # --- closing ---

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(9, "Bad file descriptor")

    def close(self) -> None:
        """Close the connection (after every file object from ``makefile`` is closed)."""
        if self._closed:
            return
        self._closed = True
        if self._io_refs <= 0:
            self._really_close()

    def _really_close(self) -> None:
        if self._detached:
            return  # the copier threads release everything when the descriptor closes
        self._release(join=True)

    def _release(self, join: bool) -> None:
        with self._lock:
            bridge, self._bridge = self._bridge, None
        if bridge is not None:
            bridge.close()  # the copier reading from the pair sees EOF
        self._channel.close()  # the copier reading from the pod sees EOF
        if join:
            for thread in self._bridge_threads:
                thread.join(5)
        if self._bridge_peer is not None:
            self._bridge_peer.close()
        if self._owned_tunnel is not None:
            self._owned_tunnel.close()

    def __enter__(self) -> ForwardedSocket:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def getpeername(self) -> Tuple[str, int]:
        return (self.pod, self.port)


def _pump(
    read: Callable[[int], Optional[bytes]],
    write: Callable[[bytes], Any],
    close_write: Callable[[], Any],
) -> None:
    """Copy until end of stream, then half-close the destination; errors propagate."""
    while True:
        data = read(_COPY_CHUNK)
        if not data:
            close_write()
            return
        write(data)


def _open_tunnel_or_none(client: Any, namespace: str, pod: str, protocol: str) -> Optional[_Tunnel]:
    if protocol not in _PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(_PROTOCOLS)}, not {protocol!r}")
    if protocol == "websocket":
        return None
    try:
        return _Tunnel(client, namespace, pod)
    except (ApiError, RemoteProtocolError) as exc:
        # client-go falls back on any upgrade failure; so do we, unless told not to.
        if protocol == "tunnel":
            raise
        logger.info("port-forward tunnel refused (%s); using the legacy WebSocket protocol", exc)
        return None


def port_forward(
    pod: str,
    port: int,
    *,
    namespace: Optional[str] = None,
    client: Any = None,
    protocol: str = "auto",
    timeout: Optional[float] = None,
) -> ForwardedSocket:
    """Open one connection to ``port`` of ``pod``; returns a :class:`ForwardedSocket`.

    Args:
        protocol: ``"auto"``, ``"tunnel"`` (SPDY over WebSocket) or ``"websocket"`` (legacy).
        timeout: the socket timeout to set, as :func:`socket.create_connection` does.

    Raises:
        ApiError: the server refused (pod not found, forbidden ...).
        PodStateError: the pod is not running.
    """
    from .client import default_client

    client = client or default_client()
    namespace = namespace or client.namespace
    _check_running(client, pod, namespace)
    tunnel = _open_tunnel_or_none(client, namespace, pod, protocol)
    channel: _Channel = (
        tunnel.open(port) if tunnel is not None else _LegacyChannel(client, namespace, pod, port)
    )
    sock = ForwardedSocket(channel, pod, port, owned_tunnel=tunnel)
    sock.settimeout(timeout)
    return sock


def create_connection(
    address: Tuple[str, int],
    timeout: Optional[float] = None,
    source_address: Any = None,
    **kwargs: Any,
) -> ForwardedSocket:
    """:func:`socket.create_connection` for a pod: ``address`` is ``(pod, port)``.

    Keyword arguments go to :func:`port_forward` (``namespace``, ``client``, ``protocol``).
    """
    pod, port = address
    return port_forward(pod, int(port), timeout=timeout, **kwargs)


def _check_running(client: Any, pod: str, namespace: str) -> None:
    from .errors import PodStateError

    phase = (client.get_pod(pod, namespace).get("status") or {}).get("phase")
    if phase != "Running":
        raise PodStateError(
            f"unable to forward port because pod is not running. Current status={phase}"
        )


def _parse_port_spec(spec: Union[str, int]) -> Tuple[int, int]:
    text = str(spec)
    local, _, remote = text.rpartition(":") if ":" in text else (text, ":", text)
    try:
        local_port = int(local) if local else 0
        remote_port = int(remote)
    except ValueError:
        raise ConfigError(
            f"invalid port specification {spec!r} (use PORT, LOCAL:REMOTE or :REMOTE)"
        ) from None
    if not (0 <= local_port < 65536 and 0 < remote_port < 65536):
        raise ConfigError(f"port out of range in {spec!r}")
    return local_port, remote_port


class PortForwarder:
    """Listen on local ports and forward every connection to a pod, like ``kubectl port-forward``.

    Args:
        pod: the pod name.
        ports: specifications as kubectl takes them: ``"8080:80"``, ``":80"`` (a free local
            port), ``"80"`` (the same port locally), or an int.
        address: local addresses to listen on (default ``["127.0.0.1", "::1"]``, kubectl's
            ``localhost``; an address that cannot be bound is skipped unless it is the only one).

    With the tunnel protocol all local connections share one WebSocket. If that connection
    to the pod is lost, the forwarder stops as kubectl does ("lost connection to pod"):
    listeners close, open connections fail, and :meth:`wait` raises the error.
    """

    def __init__(
        self,
        pod: str,
        ports: Sequence[Union[str, int]],
        *,
        namespace: Optional[str] = None,
        address: Iterable[str] = ("127.0.0.1", "::1"),
        client: Any = None,
        protocol: str = "auto",
    ) -> None:
        from .client import default_client

        self.pod = pod
        self.client = client or default_client()
        self.namespace = namespace or self.client.namespace
        self.protocol = protocol
        self._specs = [_parse_port_spec(p) for p in ports]
        self._addresses = list(address)
        self._listeners: List[Tuple[socket.socket, int]] = []
        self._threads: List[threading.Thread] = []
        self._sockets: List[Tuple[socket.socket, ForwardedSocket]] = []
        self._pending: Dict[int, int] = {}  # copier threads still running per local socket
        self._lock = threading.Lock()
        self._tunnel: Optional[_Tunnel] = None
        self._stopped = threading.Event()
        self.ports: List[Tuple[int, int]] = []
        self.error: Optional[BaseException] = None

    def start(self) -> PortForwarder:
        _check_running(self.client, self.pod, self.namespace)
        self._tunnel = _open_tunnel_or_none(self.client, self.namespace, self.pod, self.protocol)
        try:
            for local, remote in self._specs:
                bound = self._bind(local)
                self.ports.append((bound[0][1], remote))
                for listener, _ in bound:
                    self._listeners.append((listener, remote))
        except BaseException:
            self.stop()
            raise
        for listener, remote in self._listeners:
            self._spawn(self._accept_loop, listener, remote, name="accept")
        if self._tunnel is not None:
            self._spawn(self._watch_tunnel, self._tunnel, name="watch")
        return self

    def _bind(self, port: int) -> List[Tuple[socket.socket, int]]:
        bound: List[Tuple[socket.socket, int]] = []
        errors = []
        for host in self._addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port or (bound[0][1] if bound else 0)))
                sock.listen(128)
            except OSError as exc:
                sock.close()
                errors.append(f"{host}: {exc.strerror}")
                continue
            bound.append((sock, sock.getsockname()[1]))
        if not bound:
            raise OSError(f"unable to listen on port {port}: {'; '.join(errors)}")
        return bound

    def _spawn(self, target: Any, *args: Any, name: str) -> None:
        thread = threading.Thread(
            target=target, args=args, name=f"k8sstream-pf-{name}-{self.pod}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket, remote: int) -> None:
        while not self._stopped.is_set():
            try:
                local, _ = listener.accept()
            except OSError:
                return
            sink: Optional[_SocketSink] = None
            try:
                if self._tunnel is not None:
                    sink = _SocketSink(local)
                    remote_sock = ForwardedSocket(self._tunnel.open(remote, sink), self.pod, remote)
                else:
                    remote_sock = ForwardedSocket(
                        _LegacyChannel(self.client, self.namespace, self.pod, remote),
                        self.pod,
                        remote,
                    )
            except K8sStreamError as exc:
                logger.warning("port-forward to %s:%d failed: %s", self.pod, remote, exc)
                local.close()
                continue
            with self._lock:
                self._sockets.append((local, remote_sock))
                self._pending[id(local)] = 1 if sink is not None else 2
            self._spawn(self._copy_out, local, remote_sock, sink, name="out")
            if sink is None:
                self._spawn(self._copy_in, local, remote_sock, name="in")

    def _copy_out(
        self, local: socket.socket, remote: ForwardedSocket, sink: Optional[_SocketSink] = None
    ) -> None:
        with contextlib.suppress(OSError, K8sStreamError):
            _pump(local.recv, remote.sendall, lambda: remote.shutdown(socket.SHUT_WR))
        if sink is not None:
            # The tunnel's reader delivers the pod's side; the pair ends when that is done too.
            while not sink.done.wait(0.5) and not self._stopped.is_set():
                pass
            if isinstance(sink.error, PortForwardError):
                logger.warning(
                    "an error occurred forwarding -> %s:%d: %s", self.pod, remote.port, sink.error
                )
        self._finish(local, remote)

    def _copy_in(self, local: socket.socket, remote: ForwardedSocket) -> None:
        try:
            _pump(remote.recv, local.sendall, lambda: local.shutdown(socket.SHUT_WR))
        except PortForwardError as exc:
            logger.warning("an error occurred forwarding -> %s:%d: %s", self.pod, remote.port, exc)
            self._abort_pair(local)
        except (OSError, K8sStreamError):
            self._abort_pair(local)
        self._finish(local, remote)

    @staticmethod
    def _abort_pair(local: socket.socket) -> None:
        # The remote side failed: wake the other copier, which may be blocked reading locally.
        try:
            local.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _finish(self, local: socket.socket, remote: ForwardedSocket) -> None:
        """Called by each copier as it ends; the second one closes the pair."""
        with self._lock:
            key = id(local)
            remaining = self._pending.get(key, 2) - 1
            if remaining:
                self._pending[key] = remaining
                return
            self._pending.pop(key, None)
            if (local, remote) in self._sockets:
                self._sockets.remove((local, remote))
        local.close()
        remote.close()

    def _watch_tunnel(self, tunnel: _Tunnel) -> None:
        while not self._stopped.is_set():
            if tunnel.closed.wait(0.2):
                if not self._stopped.is_set():
                    self.error = tunnel.error or StreamClosedError(
                        f"lost connection to pod {self.pod}"
                    )
                    logger.error("%s", self.error)
                    self._shutdown_listeners()
                    self._stopped.set()
                return

    def _shutdown_listeners(self) -> None:
        for listener, _ in self._listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()

    def stop(self) -> None:
        """Stop listening, close every forwarded connection and the tunnel."""
        self._stopped.set()
        self._shutdown_listeners()
        with self._lock:
            pairs, self._sockets = self._sockets, []
        for local, remote in pairs:
            # shutdown() first: it wakes a thread blocked sending to or reading from it.
            with contextlib.suppress(OSError):
                local.shutdown(socket.SHUT_RDWR)
            local.close()
            remote.close()
        if self._tunnel is not None:
            self._tunnel.close()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(5)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until the forwarder stops; raises the error if the pod connection was lost."""
        self._stopped.wait(timeout)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> PortForwarder:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
