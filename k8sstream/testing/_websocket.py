"""Server side of RFC 6455 as golang.org/x/net/websocket speaks it (PROTOCOL.md 3, 4.6, 8.1).

Frames are parsed with websocket-client's ``frame_buffer`` and written with a struct-packed
header (what ``ABNF(...).format()`` produces for unmasked frames, without its per-call checks).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
import threading
from typing import Callable, Optional, cast

from websocket import ABNF
from websocket._abnf import frame_buffer
from websocket._exceptions import WebSocketProtocolException

from .._masking import mask
from ._wire import Wire

__all__ = ["FrameTooLarge", "WebSocket", "accept_key"]

log = logging.getLogger("k8sstream.testing")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# x/net's DefaultMaxPayloadBytes: a larger frame ends the receive loop.
MAX_FRAME_PAYLOAD = 32 << 20

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + _GUID).digest()).decode()


class FrameTooLarge(WebSocketProtocolException):
    """A client frame above x/net's 32 MiB limit."""


class _LimitedFrameBuffer(frame_buffer):
    """frame_buffer with x/net's size limit, leaving the unmasking to :func:`mask`.

    websocket-client's own unmasking is a big-integer XOR that capped every client's upload
    through the emulator; the header's mask bit is hidden from it and the key kept here.
    """

    client_key: bytes = b""

    def recv_header(self) -> None:
        super().recv_header()
        assert self.header is not None
        fin, rsv1, rsv2, rsv3, opcode, has_mask, length_bits = self.header
        # Control frames stay with websocket-client: it validates them before returning, and
        # they are small. Data frames carry the bulk.
        self._masked = bool(has_mask) and opcode < ABNF.OPCODE_CLOSE
        if self._masked:
            self.header = (fin, rsv1, rsv2, rsv3, opcode, 0, length_bits)

    def recv_mask(self) -> None:
        if not self._masked:
            self.client_key = b""
            super().recv_mask()
            return
        self.mask_value = ""
        self.client_key = self.recv_strict(4)

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > MAX_FRAME_PAYLOAD:
            raise FrameTooLarge(f"frame payload of {self.length} bytes exceeds the limit")


def _frame_header(opcode: int, length: int) -> bytes:
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


class WebSocket:
    """An upgraded connection: one reader (``recv_frame``), any number of senders."""

    def __init__(self, wire: Wire, leftover: bytes = b"") -> None:
        self.wire = wire
        self._pending = bytearray(leftover)
        self._pending_pos = 0
        self._frames = _LimitedFrameBuffer(self._recv, skip_utf8_validation=True)
        self._close_lock = threading.Lock()
        self.close_sent = False
        self.broken = False

    def _recv(self, size: int) -> bytes:
        # Hand frame_buffer at most what it asked for: it re-joins and re-slices whatever it
        # holds on every call, so returning a large surplus would cost a copy per frame.
        if self._pending_pos >= len(self._pending):
            data = self.wire.recv()
            if not data:
                raise EOFError("connection closed by the client")
            if len(data) <= size:
                return data
            self._pending = bytearray(data)
            self._pending_pos = 0
        start = self._pending_pos
        self._pending_pos = min(start + size, len(self._pending))
        return bytes(self._pending[start : self._pending_pos])

    def recv_frame(self) -> ABNF:
        """Read one frame (never reassembled: x/net treats each frame as a message).

        Raises:
            EOFError: the client closed TCP.
            WebSocketProtocolException: malformed frame.
            OSError: connection broken.
        """
        frame = self._frames.recv_frame()
        key = self._frames.client_key
        if key:
            frame.data = bytes(mask(key, frame.data))  # type: ignore[arg-type]  # bytes: no utf-8 check
            frame.mask_value = 1
        return frame

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one unfragmented frame. Raises OSError if the client is gone."""
        self.wire.sendall(_frame_header(opcode, len(payload)) + payload)

    def send_message(self, is_text: bool, payload: bytes) -> bool:
        """Send a data message; returns False (and remembers it) if the connection is gone."""
        if self.broken:
            return False
        try:
            self.send(ABNF.OPCODE_TEXT if is_text else ABNF.OPCODE_BINARY, payload)
        except OSError:
            self.broken = True
            return False
        return True

    def send_close(self, code: Optional[int] = CLOSE_NORMAL) -> None:
        """Send a Close frame once (x/net sends a bare 2-byte code, no reason)."""
        with self._close_lock:
            if self.close_sent:
                return
            self.close_sent = True
        payload = struct.pack("!H", code) if code is not None else b""
        try:
            self.send(ABNF.OPCODE_CLOSE, payload)
        except OSError:
            self.broken = True

    def read_client_frames(
        self,
        tag: str,
        on_message: Callable[[int, bytes], bool],
        end_by_client: Callable[[int], None],
        on_lost: Optional[Callable[[], None]] = None,
    ) -> None:
        """x/net's receive loop, shared by every session (PROTOCOL.md 4.2-7, 8.1).

        Control frames are answered here; each data frame goes to ``on_message(opcode, data)``
        until it returns False. ``end_by_client(code)`` runs where the client ends the session
        and should send Close ``code``; ``on_lost`` where the connection drops without a Close.
        """
        while True:
            try:
                frame = self.recv_frame()
            except FrameTooLarge as exc:
                log.info("[%s] %s; closing", tag, exc)
                end_by_client(CLOSE_NORMAL)
                return
            except WebSocketProtocolException as exc:
                log.info("[%s] protocol error from client: %s", tag, exc)
                end_by_client(CLOSE_PROTOCOL_ERROR)
                return
            except (EOFError, OSError):
                if on_lost is not None:
                    on_lost()
                return
            if not frame.mask_value:
                log.info("[%s] unmasked client frame; closing with 1002", tag)
                end_by_client(CLOSE_PROTOCOL_ERROR)
                return
            opcode = frame.opcode
            if opcode == ABNF.OPCODE_CLOSE:
                end_by_client(CLOSE_NORMAL)
                return
            if opcode == ABNF.OPCODE_PING:
                try:
                    self.send(ABNF.OPCODE_PONG, cast(bytes, frame.data))
                except OSError:
                    return
                continue
            if opcode == ABNF.OPCODE_PONG:
                continue
            # frame_buffer never decodes text frames
            if not on_message(opcode, cast(bytes, frame.data)):
                return
