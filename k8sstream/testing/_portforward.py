"""Port-forward in the emulator: the container runtime's side of both WebSocket protocols.

Path B (PROTOCOL.md 9): channel framing, one TCP connection per listed port per WebSocket, the
2-byte port preamble, no half-close. Path C (PROTOCOL.md 10): the WebSocket carries a SPDY/3.1
byte stream; the client opens an error and a data stream per connection, and the emulator,
playing the runtime (the API server never parses SPDY), pairs them and forwards.

Threads per session: the connection thread reads the WebSocket and writes client data straight
into the target socket, so a target that does not read stalls the whole session (bounded
back-pressure, as a full spdystream worker queue does); one pump thread per forwarded connection
copies target to client; Path C adds one thread that times out unpaired streams.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import struct
import threading
import time
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

from websocket import ABNF

from .._channel import V4, V4_BASE64, ChannelProtocol, decode_message, encode_message
from .._spdy import (
    DataFrame,
    Frame,
    FrameCodec,
    GoAwayFrame,
    PingFrame,
    RstStatus,
    RstStreamFrame,
    SynReplyFrame,
    SynStreamFrame,
    header_value,
)
from ..errors import RemoteProtocolError
from ._faults import Faults
from ._runtime import spawn_thread
from ._websocket import CLOSE_NORMAL, WebSocket

__all__ = [
    "LEGACY_PROTOCOLS",
    "TUNNEL_PROTOCOL",
    "LegacySession",
    "TunnelSession",
    "forward_error",
]

log = logging.getLogger("k8sstream.testing")

PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"
TUNNEL_PROTOCOL = TUNNEL_PREFIX + PORT_FORWARD_PROTOCOL
#: What the runtime's WebSocket port-forward server accepts (not plain channel.k8s.io).
LEGACY_PROTOCOLS: Tuple[str, ...] = ("", V4.name, V4_BASE64.name)
_FRAMING = {"": V4, V4.name: V4, V4_BASE64.name: V4_BASE64}

CONNECT_TIMEOUT = 5.0
# Client data that arrives on a data stream before its error stream (client-go never does
# this) is held until the pair is complete, up to this much; beyond it the stream is reset.
MAX_PENDING = 1 << 20
DRAIN_SECONDS = 2.0
_JOIN_SECONDS = 5.0
# Room for the largest WebSocket header of a message under 64 KiB.
_WS_HEADER_ROOM = 4

Dial = Callable[[int], socket.socket]
DescribeError = Callable[[int, OSError], str]


def forward_error(sandbox_id: str, netns: str, port: int, exc: OSError) -> str:
    """The runtime's error text for a failed forward, as containerd words a refused port.

    The CRI streaming server names the pod by its sandbox id and passes an empty uid.
    """
    if isinstance(exc, ConnectionRefusedError):
        reason = "connect: connection refused"
    elif isinstance(exc, socket.timeout):
        reason = "i/o timeout"
    else:
        reason = "connect: " + os.strerror(exc.errno or errno.EIO).lower()
    inner = (
        f'failed to execute portforward in network namespace "/var/run/netns/{netns}": '
        f'failed to connect to localhost:{port} inside namespace "{sandbox_id}", '
        f"IPv4: dial tcp4 127.0.0.1:{port}: {reason} IPv6 dial tcp6 [::1]:{port}: {reason} "
    )
    return f"error forwarding port {port} to pod {sandbox_id}, uid : {inner}"


def dial_local(address: Tuple[str, int]) -> socket.socket:
    """Connect to a pod port's local stand-in. Raises OSError."""
    sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _binary_header(length: int) -> bytes:
    if length < 126:
        return bytes((0x80 | ABNF.OPCODE_BINARY, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | ABNF.OPCODE_BINARY, 126, length)
    return struct.pack("!BBQ", 0x80 | ABNF.OPCODE_BINARY, 127, length)


class _Target:
    """The socket to the pod port, used by one writer (the reader thread) and one pump.

    It is closed only when both have let go: closing it under a thread that is still inside
    ``send``/``recv`` could hand the descriptor number to an unrelated socket. ``abort`` and
    ``shutdown_write`` are safe from any thread.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._holders = {"writer", "pump"}
        self._closed = False

    def release(self, holder: str) -> None:
        with self._lock:
            self._holders.discard(holder)
            if self._holders or self._closed:
                return
            self._closed = True
        self.sock.close()

    def shutdown_write(self) -> None:
        self._shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        self._shutdown(socket.SHUT_RDWR)

    def _shutdown(self, how: int) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self.sock.shutdown(how)
            except OSError:
                pass


class _WebSocketSession:
    """What both protocols share: the read loop, sending whole messages, and the close."""

    def __init__(self, ws: WebSocket, tag: str) -> None:
        self.ws = ws
        self.tag = tag
        self.reader_done = threading.Event()
        self._close_lock = threading.Lock()
        self._closing = False
        self.client_gone = False

    def send_bytes(self, data: Union[bytes, memoryview]) -> bool:
        """Send one complete, already framed message; False if the client is gone."""
        ws = self.ws
        if ws.broken:
            return False
        try:
            ws.wire.sendall(data)
        except OSError:
            ws.broken = True
            return False
        return True

    def read_loop(self, on_message: Callable[[int, bytes], bool]) -> None:
        """Read frames until the client leaves or ``on_message(opcode, data)`` returns False."""
        try:
            self._read_loop(on_message)
        finally:
            self.reader_done.set()

    def _read_loop(self, on_message: Callable[[int, bytes], bool]) -> None:
        self.ws.read_client_frames(self.tag, on_message, self._end_by_client, self._lost)

    def _lost(self) -> None:
        self.client_gone = True

    def _end_by_client(self, code: int) -> None:
        self.client_gone = True
        self.ws.send_close(code)

    def close(self, *, wait: bool) -> None:
        """End the session from the server side: Close 1000, then half-close TCP.

        With ``wait`` (not on the reader thread) give the reader a bounded time to see the
        client's Close, so the client's last frames do not meet a closed socket.
        """
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        if not self.client_gone:
            self.ws.send_close(CLOSE_NORMAL)
        self.ws.wire.shutdown_write()
        if wait and not self.reader_done.wait(DRAIN_SECONDS):
            self.ws.wire.abort()


# --- Path B: legacy WebSocket port-forward ---------------------------------------------------


class _LegacyPort:
    def __init__(self, index: int, port: int) -> None:
        self.index = index
        self.port = port
        self.ready = threading.Event()
        self.target: Optional[_Target] = None


class LegacySession(_WebSocketSession):
    """One legacy port-forward WebSocket: a connection per listed port (PROTOCOL.md 9)."""

    def __init__(
        self,
        ws: WebSocket,
        subprotocol: str,
        ports: List[int],
        *,
        dial: Dial,
        describe_error: DescribeError,
        tag: str,
        max_message_size: int,
    ) -> None:
        super().__init__(ws, tag)
        self.protocol: ChannelProtocol = _FRAMING[subprotocol]
        self.ports = [_LegacyPort(i, p) for i, p in enumerate(ports)]
        self._dial = dial
        self._describe_error = describe_error
        self._chunk = max_message_size
        self._lock = threading.Lock()
        self._remaining = len(ports)
        self._aborted = False

    def _send(self, channel: int, payload: bytes) -> None:
        is_text, data = encode_message(self.protocol, channel, payload)
        self.ws.send_message(is_text, data)

    def run(self) -> None:
        """Serve on the calling (connection) thread until the WebSocket ends."""
        for p in self.ports:
            preamble = struct.pack("<H", p.port)
            self._send(2 * p.index, preamble)
            self._send(2 * p.index + 1, preamble)
        pumps = [spawn_thread(f"pf{p.index}-{self.tag}", self._forward(p)) for p in self.ports]
        try:
            self.read_loop(self._on_message)
        finally:
            for p in self.ports:
                # The client left: the forwarder sees end of input, and no half-close exists.
                p.ready.wait(CONNECT_TIMEOUT + 1)
                if p.target is not None:
                    p.target.abort()
            for thread in pumps:
                thread.join(_JOIN_SECONDS)
            for p in self.ports:
                if p.target is not None:
                    p.target.release("writer")

    def abort(self) -> None:
        """Wake every thread of this session (server stop)."""
        self._aborted = True
        for p in self.ports:
            if p.target is not None:
                p.target.abort()
        self.ws.wire.abort()

    def _on_message(self, opcode: int, data: bytes) -> bool:
        if not data:
            return True
        try:
            channel, payload = decode_message(self.protocol, data)
        except RemoteProtocolError as exc:
            log.info("[%s] dropped a message: %s", self.tag, exc)
            return True
        index, is_error = divmod(channel, 2)
        if is_error or index >= len(self.ports) or not payload:
            return True  # error channels are write-only; unknown channels are ignored
        p = self.ports[index]
        p.ready.wait(CONNECT_TIMEOUT + 1)
        if p.target is not None:
            try:
                p.target.sock.sendall(payload)
            except OSError:
                pass  # the pod side is gone; its pump ends the port
        return True

    def _forward(self, p: _LegacyPort) -> Callable[[], None]:
        def run() -> None:
            try:
                self._pump(p)
            finally:
                self._port_done()

        return run

    def _pump(self, p: _LegacyPort) -> None:
        try:
            sock = self._dial(p.port)
        except OSError as exc:
            p.ready.set()
            text = self._describe_error(p.port, exc)
            log.info("[%s] %s", self.tag, text)
            self._send(2 * p.index + 1, text.encode())
            return
        target = _Target(sock)
        p.target = target
        p.ready.set()
        if self._aborted:
            target.abort()
        channel = 2 * p.index
        room = _WS_HEADER_ROOM + 1
        buffer = bytearray(room + self._chunk)
        view = memoryview(buffer)
        try:
            while True:
                try:
                    n = sock.recv_into(view[room:])
                except OSError:
                    break
                if not n:
                    break
                if self.protocol.base64:
                    self._send(channel, bytes(view[room : room + n]))
                    continue
                header = _binary_header(1 + n)
                start = _WS_HEADER_ROOM - len(header)
                buffer[start:_WS_HEADER_ROOM] = header
                buffer[_WS_HEADER_ROOM] = channel
                if not self.send_bytes(view[start : room + n]):
                    break
        finally:
            # The pod closed its end: the runtime closes both directions (no half-close).
            target.abort()
            target.release("pump")

    def _port_done(self) -> None:
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            # Every port finished: the runtime's handler returns and x/net closes (1000).
            self.close(wait=True)


# --- Path C: SPDY/3.1 tunnelled in the WebSocket ---------------------------------------------


class _Pair:
    """One forwarded connection: its error and data streams, paired by request id."""

    def __init__(self, number: int, request_id: str, deadline: float) -> None:
        self.number = number
        self.request_id = request_id
        self.deadline = deadline
        self.error_id: Optional[int] = None
        self.data_id: Optional[int] = None
        self.port = 0
        self.started = False
        self.reset_fault = False
        self.target: Optional[_Target] = None
        self.pending = bytearray()
        self.client_fin = False  # FIN on the data stream from the client
        self.server_fin = False  # FIN sent on both streams
        self.reset = False  # either stream reset, by either side
        self.completed = False
        self.pump: Optional[threading.Thread] = None

    @property
    def stream_ids(self) -> List[int]:
        return [i for i in (self.error_id, self.data_id) if i is not None]


class TunnelSession(_WebSocketSession):
    """One SPDY-over-WebSocket port-forward session, served as the runtime serves it."""

    def __init__(
        self,
        ws: WebSocket,
        *,
        dial: Dial,
        describe_error: DescribeError,
        tag: str,
        path: str,
        faults: Faults,
        stream_timeout: float,
        max_message_size: int,
    ) -> None:
        super().__init__(ws, tag)
        self._dial = dial
        self._describe_error = describe_error
        self._path = path
        self._faults = faults
        self._stream_timeout = stream_timeout
        # A DATA frame and its 8-byte header travel in one message of at most this size.
        self._chunk = max(1, max_message_size - 8)
        self._codec = FrameCodec()
        # Header compression is one zlib stream per direction: encode and send as one step.
        self._control_lock = threading.Lock()
        self._lock = threading.Condition()
        self._streams: Dict[int, Tuple[str, _Pair]] = {}
        self._pairs: Dict[str, _Pair] = {}
        self._ignored: Set[int] = set()
        self._numbers = itertools.count()
        self._paired = 0
        self._goaway_after = faults.take_goaway(path)
        self._goaway_sent = False
        self._goaway_received = False
        self._last_stream_id = 0
        self._ended = False
        self._monitor: Optional[threading.Thread] = None

    # -- sending --

    def _control(self, frame: Frame) -> None:
        with self._control_lock:
            self.send_bytes(_message(self._codec.encode(frame)))

    def _data(self, stream_id: int, data: bytes = b"", *, fin: bool = False) -> None:
        frame = struct.pack("!II", stream_id, (1 << 24 if fin else 0) | len(data)) + data
        self.send_bytes(_message(frame))

    def _rst(self, stream_id: int, status: int = RstStatus.CANCEL) -> None:
        self._control(RstStreamFrame(stream_id, status))

    # -- the session --

    def run(self) -> None:
        """Serve on the calling (connection) thread until the WebSocket ends."""
        if self._goaway_after == 0:
            self._send_goaway()
        try:
            self.read_loop(self._on_message)
        finally:
            self._end()

    def abort(self) -> None:
        """Wake every thread of this session (server stop)."""
        with self._lock:
            pairs = list(self._pairs.values())
        for pair in pairs:
            if pair.target is not None:
                pair.target.abort()
        self.ws.wire.abort()

    def _end(self) -> None:
        with self._lock:
            self._ended = True
            pairs = list(self._pairs.values())
            self._lock.notify_all()
        for pair in pairs:
            pair.reset = True
            if pair.target is not None:
                pair.target.abort()
            self._complete(pair)
        deadline = time.monotonic() + _JOIN_SECONDS
        threads = [p.pump for p in pairs if p.pump is not None]
        for thread in threads:
            thread.join(min(DRAIN_SECONDS, max(0.0, deadline - time.monotonic())))
        if any(t.is_alive() for t in threads):
            self.ws.wire.abort()  # a pump is stuck sending to a client that stopped reading
        for thread in [*threads, *([self._monitor] if self._monitor else [])]:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _on_message(self, opcode: int, data: bytes) -> bool:
        if opcode == ABNF.OPCODE_TEXT:
            # The tunnel reads binary messages only; anything else breaks the connection.
            log.info("[%s] text message in the SPDY tunnel; dropping the connection", self.tag)
            self.ws.wire.abort()
            return False
        try:
            frames = self._codec.receive(data)
        except RemoteProtocolError as exc:
            log.info("[%s] SPDY error from the client: %s; dropping the connection", self.tag, exc)
            self.ws.wire.abort()
            return False
        for frame in frames:
            self._on_frame(frame)
        return True

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            self._on_data(frame)
        elif isinstance(frame, SynStreamFrame):
            self._on_syn_stream(frame)
        elif isinstance(frame, RstStreamFrame):
            self._on_rst(frame)
        elif isinstance(frame, PingFrame):
            # The server's own ping ids would be even; echo the client's (odd) ones.
            if frame.ping_id & 1:
                self._control(frame)
        elif isinstance(frame, GoAwayFrame):
            with self._lock:
                self._goaway_received = True
            self._maybe_close()
        # SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: spdystream ignores them here too.

    def _on_syn_stream(self, frame: SynStreamFrame) -> None:
        sid = frame.stream_id
        if self._faults.take_ignore_syn(self._path):
            log.info("[%s] ignoring SYN_STREAM %d (fault)", self.tag, sid)
            self._ignored.add(sid)
            return
        if sid in self._streams or sid in self._ignored or sid <= self._last_stream_id:
            self._rst(sid, RstStatus.PROTOCOL_ERROR)
            return
        self._last_stream_id = sid
        if self._goaway_sent or self._goaway_received:
            self._rst(sid, RstStatus.REFUSED_STREAM)
            return
        problem = _stream_problem(frame)
        if problem is not None:
            log.info("[%s] stream %d rejected: %s", self.tag, sid, problem)
            self._rst(sid, RstStatus.CANCEL)
            return
        kind = header_value(frame.headers, "streamtype") or ""
        request_id = header_value(frame.headers, "requestid") or ""
        if not request_id:
            # Clients older than the header: consecutive stream ids (kubelet's heuristic).
            request_id = str(sid if kind == "error" else sid - 2)
        self._control(SynReplyFrame(sid))
        with self._lock:
            pair = self._pairs.get(request_id)
            if pair is None:
                pair = _Pair(
                    next(self._numbers), request_id, time.monotonic() + self._stream_timeout
                )
                self._pairs[request_id] = pair
                self._ensure_monitor()
                self._lock.notify_all()
            duplicate = (pair.error_id if kind == "error" else pair.data_id) is not None
            if not duplicate:
                self._streams[sid] = (kind, pair)
                if kind == "error":
                    pair.error_id = sid
                else:
                    pair.data_id = sid
                    pair.port = int(header_value(frame.headers, "port") or 0)
            complete = pair.error_id is not None and pair.data_id is not None
        if duplicate:
            text = (
                f"error processing stream for request {request_id}: {kind} stream already assigned"
            )
            log.info("[%s] %s", self.tag, text)
            if pair.error_id is not None:
                self._data(pair.error_id, text.encode())
            self._rst(sid)
            return
        if kind == "data" and self._faults.take_reset_data(self._path):
            pair.reset_fault = True
        if complete and not pair.started:
            self._start(pair)

    def _start(self, pair: _Pair) -> None:
        pair.started = True
        assert pair.error_id is not None and pair.data_id is not None
        with self._lock:
            self._paired += 1
            paired = self._paired
            self._lock.notify_all()
        if pair.reset_fault:
            log.info("[%s] resetting data stream %d (fault)", self.tag, pair.data_id)
            pair.reset = True
            self._rst(pair.data_id)
            self._data(pair.error_id, fin=True)
            self._complete(pair)
        else:
            try:
                sock = self._dial(pair.port)
            except OSError as exc:
                text = self._describe_error(pair.port, exc)
                log.info("[%s] %s", self.tag, text)
                pair.reset = True
                self._data(pair.error_id, text.encode())
                self._rst(pair.error_id)
                self._rst(pair.data_id)
                self._complete(pair)
            else:
                target = _Target(sock)
                pair.target = target
                if pair.pending:
                    self._write_target(pair, bytes(pair.pending))
                    pair.pending = bytearray()
                if pair.client_fin:
                    target.shutdown_write()
                pair.pump = spawn_thread(f"pf{pair.number}-{self.tag}", lambda: self._pump(pair))
        if self._goaway_after is not None and paired == self._goaway_after:
            self._send_goaway()

    def _write_target(self, pair: _Pair, data: bytes) -> None:
        assert pair.target is not None
        try:
            pair.target.sock.sendall(data)
        except OSError:
            pass  # the pod side closed; its pump reports the end

    def _on_data(self, frame: DataFrame) -> None:
        entry = self._streams.get(frame.stream_id)
        if entry is None:
            return  # unknown, ignored or finished stream: spdystream drops such frames too
        kind, pair = entry
        if kind == "error" or pair.reset or pair.client_fin:
            return  # the error stream is the server's to write; the client only half-closes it
        if frame.data:
            if pair.target is not None:
                self._write_target(pair, frame.data)
            elif not pair.started:
                if len(pair.pending) + len(frame.data) > MAX_PENDING:
                    log.info("[%s] too much data before the error stream arrived", self.tag)
                    self._rst(frame.stream_id)
                    self._forget(pair)
                    return
                pair.pending += frame.data
        if frame.fin:
            pair.client_fin = True
            if pair.target is not None:
                pair.target.shutdown_write()  # a real half-close towards the pod
            self._maybe_done(pair)

    def _on_rst(self, frame: RstStreamFrame) -> None:
        entry = self._streams.get(frame.stream_id)
        if entry is None:
            return
        _kind, pair = entry
        pair.reset = True
        if pair.target is not None:
            pair.target.abort()
        if not pair.started:
            self._forget(pair)
        else:
            self._maybe_done(pair)

    def _pump(self, pair: _Pair) -> None:
        target = pair.target
        assert target is not None and pair.data_id is not None and pair.error_id is not None
        room = _WS_HEADER_ROOM + 8
        buffer = bytearray(room + self._chunk)
        view = memoryview(buffer)
        data_id = pair.data_id
        try:
            while True:
                try:
                    n = target.sock.recv_into(view[room:])
                except OSError:
                    break
                if not n or pair.reset:
                    break
                header = _binary_header(8 + n)
                start = _WS_HEADER_ROOM - len(header)
                buffer[start:_WS_HEADER_ROOM] = header
                struct.pack_into("!II", buffer, _WS_HEADER_ROOM, data_id, n)
                if not self.send_bytes(view[start : room + n]):
                    break
        finally:
            target.release("pump")
        if not pair.reset:
            self._data(data_id, fin=True)
            self._data(pair.error_id, fin=True)
        pair.server_fin = True
        self._maybe_done(pair)

    # -- ending connections --

    def _maybe_done(self, pair: _Pair) -> None:
        # Pairs without a pump (refused, reset by a fault) are completed where they fail.
        if pair.server_fin and (pair.client_fin or pair.reset):
            self._complete(pair)

    def _complete(self, pair: _Pair) -> None:
        with self._lock:
            if pair.completed:
                return
            pair.completed = True
            self._drop(pair)
        if pair.target is not None:
            pair.target.release("writer")
        self._maybe_close()

    def _forget(self, pair: _Pair) -> None:
        """Drop a pair that never started forwarding."""
        with self._lock:
            pair.completed = True
            self._drop(pair)
        self._maybe_close()

    def _drop(self, pair: _Pair) -> None:
        # Caller holds self._lock.
        for sid in pair.stream_ids:
            self._streams.pop(sid, None)
        if self._pairs.get(pair.request_id) is pair:
            del self._pairs[pair.request_id]

    def _send_goaway(self) -> None:
        with self._lock:
            self._goaway_sent = True
            last = self._last_stream_id
        log.info("[%s] sending GOAWAY (fault)", self.tag)
        self._control(GoAwayFrame(last, 0))
        self._maybe_close()

    def _maybe_close(self) -> None:
        with self._lock:
            closing = (self._goaway_sent or self._goaway_received) and not self._pairs
            ended = self._ended
        if closing and not ended:
            # Both sides said goodbye and nothing is left open: the SPDY connection ends and
            # the tunnel closes the WebSocket. Called from the reader too, so never wait here.
            self.close(wait=False)

    # -- unpaired streams --

    def _ensure_monitor(self) -> None:
        # Caller holds self._lock.
        if self._monitor is None:
            self._monitor = spawn_thread(f"pfmon-{self.tag}", self._watch_pairs)

    def _watch_pairs(self) -> None:
        while True:
            with self._lock:
                if self._ended:
                    return
                now = time.monotonic()
                waiting = [p for p in self._pairs.values() if not p.started]
                expired = [p for p in waiting if p.deadline <= now]
                later = [p.deadline for p in waiting if p.deadline > now]
                if not expired:
                    self._lock.wait(min(later) - now if later else None)
                    continue
            for pair in expired:
                self._time_out(pair)

    def _time_out(self, pair: _Pair) -> None:
        text = f"(conn={self.tag}, request={pair.request_id}) timed out waiting for streams"
        log.info("[%s] %s", self.tag, text)
        if pair.error_id is not None:
            self._data(pair.error_id, text.encode())
        for sid in pair.stream_ids:
            self._rst(sid)
        self._forget(pair)


def _message(payload: bytes) -> bytes:
    return _binary_header(len(payload)) + payload


def _stream_problem(frame: SynStreamFrame) -> Optional[str]:
    """Why the runtime would refuse this new stream (``httpStreamReceived``), or None."""
    port = header_value(frame.headers, "port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or int(port) > 0xFFFF:
        return f"unable to parse {port!r} as a port"
    if int(port) < 1:
        return f'port "{port}" must be > 0'
    kind = header_value(frame.headers, "streamtype")
    if not kind:
        return '"streamType" header is required'
    if kind not in ("error", "data"):
        return f'invalid stream type "{kind}"'
    return None
