"""The remote-command (exec/attach) channel protocols, without I/O.

One WebSocket message is one channel prefix plus a payload (PROTOCOL.md section 4). This module
knows every subprotocol name, how each one frames and encodes data, what each one can do (close
stdin, report exit codes as JSON), and the per-connection state: which channels are open, what
the caller may still send, and when the command's exit status is known.

Nothing here touches sockets, threads, clocks or logging; tests drive it with bytes.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ._status import ExitStatus, exit_status_from_json, exit_status_from_text
from .errors import LocalProtocolError, RemoteProtocolError, StreamClosedError

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE_SIGNAL = 255
CHANNEL_COUNT = 5

# Outgoing messages stay at or under 64 KiB: small enough that the server never sees a
# fragmented message (PROTOCOL.md 4.6) and that the I/O lock is held briefly.
MAX_MESSAGE_SIZE = 64 * 1024
# The error channel carries one small Status; anything much larger is a broken server.
MAX_STATUS_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ChannelProtocol:
    """What one remote-command subprotocol can do."""

    name: str
    base64: bool
    json_status: bool
    can_close_stdin: bool

    @property
    def max_payload(self) -> int:
        """The largest payload that fits one outgoing message."""
        if self.base64:
            return (MAX_MESSAGE_SIZE - 1) // 4 * 3
        return MAX_MESSAGE_SIZE - 1


V5 = ChannelProtocol("v5.channel.k8s.io", base64=False, json_status=True, can_close_stdin=True)
V4 = ChannelProtocol("v4.channel.k8s.io", base64=False, json_status=True, can_close_stdin=False)
V4_BASE64 = ChannelProtocol(
    "v4.base64.channel.k8s.io", base64=True, json_status=True, can_close_stdin=False
)
V3 = ChannelProtocol("v3.channel.k8s.io", base64=False, json_status=False, can_close_stdin=False)
V2 = ChannelProtocol("v2.channel.k8s.io", base64=False, json_status=False, can_close_stdin=False)
V1 = ChannelProtocol("channel.k8s.io", base64=False, json_status=False, can_close_stdin=False)
V1_BASE64 = ChannelProtocol(
    "base64.channel.k8s.io", base64=True, json_status=False, can_close_stdin=False
)
# What a Path B server uses when the client offers no subprotocol at all.
UNNAMED = ChannelProtocol("", base64=False, json_status=False, can_close_stdin=False)

PROTOCOLS: Dict[str, ChannelProtocol] = {
    p.name: p for p in (V5, V4, V4_BASE64, V3, V2, V1, V1_BASE64, UNNAMED)
}
DEFAULT_OFFER: Tuple[str, ...] = (V5.name, V4.name, V3.name, V2.name, V1.name)


def protocol_named(name: str) -> ChannelProtocol:
    """Look up a subprotocol by name.

    Raises:
        LocalProtocolError: the name is not a remote-command subprotocol.
    """
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise LocalProtocolError(
            f"unknown remote-command subprotocol {name!r}; known: {', '.join(DEFAULT_OFFER)}, "
            f"{V4_BASE64.name}, {V1_BASE64.name}"
        ) from None


def negotiated_protocol(offered: Sequence[str], selected: Optional[str]) -> ChannelProtocol:
    """Check the server's ``Sec-WebSocket-Protocol`` answer against what was offered.

    Raises:
        RemoteProtocolError: the server chose nothing, or something that was not offered.
    """
    if not selected:
        raise RemoteProtocolError(
            f"the server accepted the WebSocket without choosing a subprotocol; "
            f"offered: {', '.join(offered)}"
        )
    lowered = {name.lower(): name for name in offered}
    name = lowered.get(selected.strip().lower())
    if name is None:
        raise RemoteProtocolError(
            f"the server chose subprotocol {selected!r}, which was not offered "
            f"({', '.join(offered)})"
        )
    return protocol_named(name)


def select_protocol(offer_header: Optional[str], supported: Sequence[str]) -> Optional[str]:
    """Server side: the first client-offered subprotocol the server supports (client order wins).

    Returns ``""`` when the client offered nothing and the server accepts that, ``None`` when
    nothing matches.
    """
    offered = [p.strip() for p in (offer_header or "").split(",") if p.strip()]
    if not offered:
        return "" if "" in supported else None
    for name in offered:
        if name in supported:
            return name
    return None


# --- framing ---------------------------------------------------------------------------------


def encode_message(protocol: ChannelProtocol, channel: int, payload: bytes) -> Tuple[bool, bytes]:
    """Frame one payload for one channel.

    Returns:
        ``(is_text, data)``: the WebSocket opcode to use (text for base64 protocols) and bytes.
    """
    if protocol.base64:
        return True, bytes((0x30 + channel,)) + base64.b64encode(payload)
    return False, bytes((channel,)) + payload


def decode_message(protocol: ChannelProtocol, data: bytes) -> Tuple[int, bytes]:
    """Split one received message into its channel number and payload.

    Raises:
        RemoteProtocolError: the message is empty or its base64 is invalid.
    """
    if not data:
        raise RemoteProtocolError("received an empty message (no channel byte)")
    if not protocol.base64:
        return data[0], data[1:]
    channel = data[0] - 0x30
    if channel < 0:
        raise RemoteProtocolError(f"invalid base64 channel character {chr(data[0])!r}")
    encoded = data[1:]
    try:
        # b64decode accepts surplus trailing '=' (how many depends on the Python version);
        # Go's StdEncoding does not.
        if len(encoded) % 4 or encoded.endswith(b"==="):
            raise ValueError("bad padding")
        return channel, base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"invalid base64 payload on channel {channel}") from exc


def encode_resize(width: int, height: int) -> bytes:
    """The channel-4 payload for a terminal size: capitalised Go field names, newline-ended."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            raise LocalProtocolError(
                f"terminal {name} must be an integer in 0..65535, not {value!r}"
            )
    return json.dumps({"Width": width, "Height": height}, separators=(",", ":")).encode() + b"\n"


def decode_resize_stream(buffer: bytes) -> Tuple[List[Tuple[int, int]], bytes]:
    """Server side: decode the concatenated JSON sizes on channel 4.

    Returns:
        The complete ``(width, height)`` pairs found and the unconsumed remainder.

    Raises:
        RemoteProtocolError: a value that is not a size object with 16-bit dimensions.
    """
    decoder = json.JSONDecoder()
    sizes: List[Tuple[int, int]] = []
    text = buffer.decode("utf-8", "replace")
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return sizes, b""
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if exc.pos >= len(text) or exc.msg.startswith("Unterminated string"):
                return sizes, text[pos:].encode()  # incomplete: wait for more
            raise RemoteProtocolError(f"invalid terminal size stream: {exc}") from None
        if obj is None:
            obj = {}  # Go leaves the size at zero for null
        if not isinstance(obj, dict):
            raise RemoteProtocolError(f"invalid terminal size {obj!r}")
        keys = {k.lower(): v for k, v in obj.items()}
        width, height = keys.get("width", 0), keys.get("height", 0)
        if not all(_is_uint16(v) for v in (width, height)):
            raise RemoteProtocolError(f"invalid terminal size {obj!r}")
        sizes.append((width, height))
        pos = end


def _is_uint16(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF


def chunks(data: Union[bytes, bytearray, memoryview], size: int) -> Iterator[bytes]:
    """Split data into pieces of at most ``size`` bytes (nothing for empty data)."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])


# --- per-connection state ----------------------------------------------------------------------


class ConnectionState(enum.Enum):
    """Where one remote-command connection is in its life."""

    OPEN = "open"
    #: The exit status has arrived; output may still be trailing until the close.
    STATUS_RECEIVED = "status received"
    CLOSED = "closed"
    ERROR = "error"


@dataclass(frozen=True)
class StreamData:
    """Output received on stdout or stderr."""

    channel: int
    data: bytes


@dataclass(frozen=True)
class StatusReceived:
    """The error channel has delivered the command's final status."""

    exit_status: ExitStatus


Event = Union[StreamData, StatusReceived]


class RemoteCommandConnection:
    """The client side of one exec/attach connection.

    Feed it every received data message with :meth:`receive` and the end of the connection
    with :meth:`connection_lost`; ask it for the bytes of every message to send.
    """

    def __init__(self, protocol: ChannelProtocol, *, stdin: bool, tty: bool) -> None:
        self.protocol = protocol
        self.tty = tty
        self.state = ConnectionState.OPEN
        self.stdin_open = stdin
        self._error_data = bytearray()
        self.exit_status: Optional[ExitStatus] = None

    # -- receiving --

    def receive(self, is_text: bool, data: bytes) -> Optional[Event]:
        """Process one received data message.

        Returns:
            A :class:`StreamData` for output, a :class:`StatusReceived` once the status is
            complete, or ``None`` for messages that carry nothing (the initial empty message).

        Raises:
            RemoteProtocolError: the message breaks the protocol; the connection is then
                in the ERROR state.
        """
        self._check_usable()
        try:
            if is_text != self.protocol.base64:
                kind = "text" if is_text else "binary"
                raise RemoteProtocolError(f"{kind} message on the {self._describe()} protocol")
            channel, payload = decode_message(self.protocol, data)
            if channel not in (STDOUT, STDERR, ERROR):
                raise RemoteProtocolError(f"message on unknown or client-only channel {channel}")
            if channel != ERROR:
                return StreamData(channel, payload) if payload else None
            return self._receive_error_data(payload)
        except RemoteProtocolError:
            self.state = ConnectionState.ERROR
            raise

    def _receive_error_data(self, payload: bytes) -> Optional[Event]:
        if self.exit_status is not None:
            if payload:
                raise RemoteProtocolError("data on the error channel after the final status")
            return None
        self._error_data += payload
        if len(self._error_data) > MAX_STATUS_SIZE:
            raise RemoteProtocolError("the error channel exceeded 1 MiB without a status")
        if not self.protocol.json_status or not self._error_data:
            return None  # text statuses are only complete when the connection closes
        stripped = self._error_data.strip()
        if stripped.startswith(b"{") and not stripped.endswith(b"}"):
            return None  # cannot be a whole object yet; avoids re-parsing on every fragment
        try:
            json.loads(self._error_data)
        except ValueError:
            return None  # a status split over messages; wait for the rest
        except RecursionError:
            raise RemoteProtocolError("the error channel status is nested too deeply") from None
        return self._finish(exit_status_from_json(bytes(self._error_data)))

    def connection_lost(self, close_code: Optional[int], close_reason: str = "") -> ExitStatus:
        """The WebSocket has closed; return the final exit status.

        Raises:
            StreamClosedError: the connection ended before a v4/v5 status arrived.
            RemoteProtocolError: what the error channel carried cannot be decoded.
        """
        if self.state is ConnectionState.ERROR:
            raise LocalProtocolError("the connection already failed with a protocol error")
        if self.exit_status is not None:
            self.state = ConnectionState.CLOSED
            return self.exit_status
        # Before v4 success sends no status at all, so only the server's close frame tells a
        # finished command from a dropped connection (the real server always sends one).
        lost = self.protocol.json_status or close_code is None
        if lost and not self._error_data:
            self.state = ConnectionState.ERROR
            how = f"close code {close_code}" if close_code is not None else "no close frame"
            raise StreamClosedError(
                f"connection closed before the command reported its exit status ({how}"
                + (f": {close_reason}" if close_reason else "")
                + ")",
                close_code,
                close_reason,
            )
        try:
            if self.protocol.json_status:
                status = exit_status_from_json(bytes(self._error_data))
            else:
                status = exit_status_from_text(bytes(self._error_data))
        except RemoteProtocolError:
            self.state = ConnectionState.ERROR
            raise
        self._finish(status)
        self.state = ConnectionState.CLOSED
        return status

    def _finish(self, status: ExitStatus) -> StatusReceived:
        self.exit_status = status
        self.state = ConnectionState.STATUS_RECEIVED
        return StatusReceived(status)

    # -- sending --

    def stdin_messages(self, data: Union[bytes, bytearray, memoryview]) -> List[Tuple[bool, bytes]]:
        """Frame stdin data as one or more messages.

        Raises:
            LocalProtocolError: stdin was not requested or has been closed.
        """
        self._check_usable()
        if not self.stdin_open:
            raise LocalProtocolError("stdin is closed or was not requested")
        return [
            encode_message(self.protocol, STDIN, piece)
            for piece in chunks(data, self.protocol.max_payload)
        ]

    def close_stdin_message(self) -> Tuple[bool, bytes]:
        """The message that tells the server stdin has reached EOF (v5 only).

        Raises:
            LocalProtocolError: the negotiated protocol cannot signal EOF, or stdin is not open.
        """
        self._check_usable()
        if not self.stdin_open:
            raise LocalProtocolError("stdin is already closed or was not requested")
        if not self.protocol.can_close_stdin:
            raise LocalProtocolError(
                f"the server negotiated {self._describe()}, which cannot signal end of input on "
                f"stdin; only {V5.name} (Kubernetes 1.30+) can. Close the whole connection "
                "instead, or make the remote command stop on its own"
            )
        self.stdin_open = False
        return False, bytes((CLOSE_SIGNAL, STDIN))

    def resize_message(self, width: int, height: int) -> Tuple[bool, bytes]:
        """The message that tells the server the terminal size.

        Raises:
            LocalProtocolError: the session has no tty (the server would stall, PROTOCOL.md 6).
        """
        if not self.tty:
            raise LocalProtocolError("cannot resize a session without a tty")
        self._check_usable()
        return encode_message(self.protocol, RESIZE, encode_resize(width, height))

    def _check_usable(self) -> None:
        if self.state is ConnectionState.ERROR:
            raise LocalProtocolError(
                "the connection failed with a protocol error; it cannot be used"
            )
        if self.state is ConnectionState.CLOSED:
            raise LocalProtocolError("the connection is closed")

    def _describe(self) -> str:
        return self.protocol.name or "unnamed (channel.k8s.io)"
