"""The two port-forward protocols, client side, without I/O.

* :class:`LegacyPortForward`: the WebSocket channel protocol (PROTOCOL.md section 9): one
  WebSocket carries exactly one TCP connection per listed port, data on channel ``2i`` and
  error text on ``2i+1``, each channel starting with the port as 2 bytes little-endian.
  There is no half-close and no second connection.
* :class:`TunnelSession`: port-forward over SPDY/3.1 tunnelled in a WebSocket (section 10):
  any number of connections, each an error stream and a data stream paired by
  ``requestid``, with real half-close. Stream and request ids are assigned as client-go does.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from . import _spdy
from ._channel import ChannelProtocol, chunks, decode_message, encode_message
from .errors import LocalProtocolError, RemoteProtocolError

TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
LEGACY_PROTOCOLS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io")
MAX_DATA_FRAME = 64 * 1024
MAX_ERROR_TEXT = 64 * 1024


@dataclass(frozen=True)
class PortData:
    """Bytes received for one forwarded connection."""

    connection: int
    data: bytes


@dataclass(frozen=True)
class PortEOF:
    """The remote side will send nothing more on this connection."""

    connection: int


@dataclass(frozen=True)
class PortError:
    """The server reported that forwarding failed (for example, connection refused)."""

    connection: int
    message: str


@dataclass(frozen=True)
class PortReset:
    """The server reset the connection's streams."""

    connection: int
    status: int


@dataclass(frozen=True)
class SessionEnded:
    """The server sent GOAWAY: no new connections, existing ones are finished."""

    status: int


Event = Union[PortData, PortEOF, PortError, PortReset, SessionEnded]


# --- legacy WebSocket channels ------------------------------------------------------------------


class LegacyPortForward:
    """One legacy port-forward WebSocket: connection ``i`` is the ``i``-th listed port."""

    def __init__(self, protocol: ChannelProtocol, ports: Sequence[int]) -> None:
        self.protocol = protocol
        self.ports = list(ports)
        # Each channel must first carry its port number; collect those two bytes per channel.
        self._preamble: Dict[int, bytes] = {ch: b"" for ch in range(2 * len(self.ports))}
        self._error_text: Dict[int, bytearray] = {i: bytearray() for i in range(len(self.ports))}

    def receive(self, is_text: bool, data: bytes) -> Optional[Event]:
        """Process one message; returns data or error text once the preamble is through.

        Raises:
            RemoteProtocolError: unknown channel, bad port preamble, wrong frame type.
        """
        if is_text != self.protocol.base64:
            raise RemoteProtocolError(
                f"{'text' if is_text else 'binary'} message on {self.protocol.name}"
            )
        channel, payload = decode_message(self.protocol, data)
        if channel not in self._preamble:
            raise RemoteProtocolError(f"port-forward message on unknown channel {channel}")
        index = channel // 2
        pending = self._preamble[channel]
        if len(pending) < 2:
            need = 2 - len(pending)
            pending += payload[:need]
            payload = payload[need:]
            self._preamble[channel] = pending
            if len(pending) == 2:
                port = struct.unpack("<H", pending)[0]
                if port != self.ports[index]:
                    raise RemoteProtocolError(
                        f"port preamble {port} on channel {channel}, expected {self.ports[index]}"
                    )
        if not payload:
            return None
        if channel % 2 == 0:
            return PortData(index, payload)
        text = self._error_text[index]
        text += payload
        if len(text) > MAX_ERROR_TEXT:
            raise RemoteProtocolError("port-forward error channel exceeded 64 KiB")
        return PortError(index, text.decode("utf-8", "replace"))

    def data_messages(self, connection: int, data: bytes) -> List[Tuple[bool, bytes]]:
        channel = 2 * connection
        return [
            encode_message(self.protocol, channel, piece)
            for piece in chunks(data, self.protocol.max_payload)
        ]


# --- SPDY tunnel --------------------------------------------------------------------------------


class StreamState(enum.Enum):
    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed (local)"
    HALF_CLOSED_REMOTE = "half-closed (remote)"
    CLOSED = "closed"


@dataclass
class _Connection:
    port: int
    request_id: int
    error_stream: int
    data_stream: int
    replied: bool = False
    local_fin: bool = False
    remote_fin: bool = False
    error_text: bytearray = field(default_factory=bytearray)
    reset: bool = False

    @property
    def state(self) -> StreamState:
        if self.reset or (self.local_fin and self.remote_fin):
            return StreamState.CLOSED
        if self.local_fin:
            return StreamState.HALF_CLOSED_LOCAL
        if self.remote_fin:
            return StreamState.HALF_CLOSED_REMOTE
        return StreamState.OPEN


class TunnelSession:
    """The client side of one port-forward SPDY session.

    Every method returns the bytes to send on the tunnel; :meth:`receive` also returns events.
    Connection ids are the ``requestid`` values (0, 1, 2 ... for the whole session, as
    client-go numbers them).
    """

    def __init__(self) -> None:
        self._codec = _spdy.FrameCodec()
        self._next_stream = 1
        self._next_request = 0
        self._next_ping = 1
        self._connections: Dict[int, _Connection] = {}
        self._by_stream: Dict[int, int] = {}
        self.goaway_received = False

    def open(self, port: int) -> Tuple[int, bytes]:
        """Start a new forwarded connection to ``port``.

        The error stream is opened and half-closed and the data stream opened in one go,
        without waiting for the replies (the server pairs them by ``requestid``).
        """
        if not 0 < port < 65536:
            raise LocalProtocolError(f"invalid port {port}")
        if self.goaway_received:
            raise LocalProtocolError("the server has ended the port-forward session (GOAWAY)")
        request_id = self._next_request
        error_id, data_id = self._next_stream, self._next_stream + 2
        self._next_request += 1
        self._next_stream += 4
        conn = _Connection(port, request_id, error_id, data_id)
        self._connections[request_id] = conn
        self._by_stream[error_id] = request_id
        self._by_stream[data_id] = request_id
        wire = b"".join(
            self._codec.encode(frame)
            for frame in (
                _spdy.SynStreamFrame(error_id, self._headers("error", port, request_id)),
                _spdy.DataFrame(error_id, b"", fin=True),
                _spdy.SynStreamFrame(data_id, self._headers("data", port, request_id)),
            )
        )
        return request_id, wire

    @staticmethod
    def _headers(kind: str, port: int, request_id: int) -> _spdy.Headers:
        return (("streamtype", kind), ("port", str(port)), ("requestid", str(request_id)))

    def send(self, connection: int, data: bytes) -> bytes:
        conn = self._live(connection)
        if conn.local_fin:
            raise LocalProtocolError("cannot send after shutdown(SHUT_WR)")
        return b"".join(
            self._codec.encode(_spdy.DataFrame(conn.data_stream, piece))
            for piece in chunks(data, MAX_DATA_FRAME)
        )

    def close_write(self, connection: int) -> bytes:
        """Half-close: the remote port sees end of input, replies still arrive."""
        conn = self._live(connection)
        if conn.local_fin:
            return b""
        conn.local_fin = True
        wire = self._codec.encode(_spdy.DataFrame(conn.data_stream, b"", fin=True))
        self._forget_if_closed(conn)
        return wire

    def reset(self, connection: int) -> bytes:
        """Abort a connection: RST_STREAM CANCEL on both of its streams."""
        conn = self._connections.get(connection)
        if conn is None or conn.reset:
            return b""
        conn.reset = True
        self._forget_if_closed(conn)
        return b"".join(
            self._codec.encode(_spdy.RstStreamFrame(stream, _spdy.RstStatus.CANCEL))
            for stream in (conn.data_stream, conn.error_stream)
        )

    def ping(self) -> bytes:
        ping_id = self._next_ping
        self._next_ping = (self._next_ping + 2) & 0x7FFFFFFF or 1
        return self._codec.encode(_spdy.PingFrame(ping_id))

    def goaway(self) -> bytes:
        return self._codec.encode(_spdy.GoAwayFrame(0, 0))

    def connection_state(self, connection: int) -> StreamState:
        conn = self._connections.get(connection)
        return StreamState.CLOSED if conn is None else conn.state

    def _live(self, connection: int) -> _Connection:
        conn = self._connections.get(connection)
        if conn is None or conn.reset:
            raise LocalProtocolError(f"port-forward connection {connection} is closed")
        return conn

    def _forget_if_closed(self, conn: _Connection) -> None:
        if conn.state is StreamState.CLOSED:
            self._connections.pop(conn.request_id, None)
            self._by_stream.pop(conn.error_stream, None)
            self._by_stream.pop(conn.data_stream, None)

    def receive(self, data: bytes) -> Tuple[List[Event], bytes]:
        """Feed tunnel bytes; returns the events and any bytes to send back (ping replies).

        Raises:
            RemoteProtocolError: invalid SPDY; the session cannot continue.
        """
        events: List[Event] = []
        reply = b""
        for frame in self._codec.receive(data):
            if isinstance(frame, _spdy.DataFrame):
                events.extend(self._on_data(frame))
            elif isinstance(frame, _spdy.SynReplyFrame):
                conn = self._conn_for(frame.stream_id)
                if conn is not None:
                    conn.replied = True
            elif isinstance(frame, _spdy.RstStreamFrame):
                conn = self._conn_for(frame.stream_id)
                if conn is not None and not conn.reset:
                    conn.reset = True
                    text = conn.error_text.decode("utf-8", "replace").strip()
                    if text:
                        events.append(PortError(conn.request_id, text))
                    events.append(PortReset(conn.request_id, frame.status))
                    self._forget_if_closed(conn)
            elif isinstance(frame, _spdy.PingFrame):
                if frame.ping_id % 2 == 0:  # the server's own ping: echo it
                    reply += self._codec.encode(frame)
            elif isinstance(frame, _spdy.GoAwayFrame):
                self.goaway_received = True
                events.append(SessionEnded(frame.status))
            elif isinstance(frame, _spdy.SynStreamFrame):
                # The server never opens streams in port-forward; refuse politely.
                reply += self._codec.encode(
                    _spdy.RstStreamFrame(frame.stream_id, _spdy.RstStatus.REFUSED_STREAM)
                )
            # SETTINGS, WINDOW_UPDATE and HEADERS carry nothing port-forward uses.
        return events, reply

    def _conn_for(self, stream_id: int) -> Optional[_Connection]:
        request_id = self._by_stream.get(stream_id)
        return None if request_id is None else self._connections.get(request_id)

    def _on_data(self, frame: _spdy.DataFrame) -> List[Event]:
        conn = self._conn_for(frame.stream_id)
        if conn is None:
            return []  # data for a connection we already reset: late frames are expected
        events: List[Event] = []
        if frame.stream_id == conn.error_stream:
            conn.error_text += frame.data
            if len(conn.error_text) > MAX_ERROR_TEXT:
                raise RemoteProtocolError("port-forward error stream exceeded 64 KiB")
            if frame.fin and conn.error_text.strip():
                events.append(
                    PortError(conn.request_id, conn.error_text.decode("utf-8", "replace").strip())
                )
            return events
        if frame.data:
            events.append(PortData(conn.request_id, frame.data))
        if frame.fin and not conn.remote_fin:
            conn.remote_fin = True
            events.append(PortEOF(conn.request_id))
            self._forget_if_closed(conn)
        return events
