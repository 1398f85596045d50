"""SPDY/3.1 framing as moby/spdystream speaks it, without I/O.

Port-forward since Kubernetes 1.31 tunnels a SPDY/3.1 connection inside a WebSocket
(PROTOCOL.md section 10): the WebSocket carries an opaque byte stream, so frames arrive split
at arbitrary points and :class:`FrameCodec` reassembles them. Header blocks are compressed
with one zlib stream per direction for the whole connection, primed with the SPDY/3
dictionary. There is no flow control: spdystream neither sends nor honours WINDOW_UPDATE.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from .errors import LocalProtocolError, RemoteProtocolError

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_LENGTH = 0xFFFFFF
# Header blocks are a few dozen bytes in port-forward; anything near this is hostile.
MAX_HEADER_BLOCK = 256 * 1024


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


def _dictionary() -> bytes:
    # The SPDY/3 header-compression dictionary: length-prefixed common header names and
    # values, then a run of common value fragments. Its Adler-32 is 0xE3C6A7C2 (tested).
    names = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status"
    )
    words = [*names.split(" "), "200 OK", "version", "HTTP/1.1", "url", "public"]
    words += ["set-cookie", "keep-alive", "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
        "504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(struct.pack("!I", len(w)) + w.encode() for w in words) + tail.encode()


DICTIONARY = _dictionary()

Headers = Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStreamFrame:
    stream_id: int
    headers: Headers
    fin: bool = False
    unidirectional: bool = False
    associated_id: int = 0
    priority: int = 0


@dataclass(frozen=True)
class SynReplyFrame:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True)
class RstStreamFrame:
    stream_id: int
    status: int


@dataclass(frozen=True)
class SettingsFrame:
    entries: Tuple[Tuple[int, int, int], ...] = ()  # (flags, id, value)


@dataclass(frozen=True)
class PingFrame:
    ping_id: int


@dataclass(frozen=True)
class GoAwayFrame:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdateFrame:
    stream_id: int
    delta: int


Frame = Union[
    DataFrame,
    SynStreamFrame,
    SynReplyFrame,
    RstStreamFrame,
    SettingsFrame,
    PingFrame,
    GoAwayFrame,
    HeadersFrame,
    WindowUpdateFrame,
]


def header_value(headers: Headers, name: str) -> Optional[str]:
    for key, value in headers:
        if key == name:
            return value
    return None


class FrameCodec:
    """Encodes outgoing frames and reassembles incoming ones, for one side of a connection.

    Each side owns one compressor (for what it sends) and one decompressor (for what it
    receives), and both live as long as the connection, as SPDY requires.
    """

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(
            9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._buffer = bytearray()
        self._failed = False

    # --- encoding ---

    def encode(self, frame: Frame) -> bytes:
        """The wire bytes of one frame.

        Raises:
            LocalProtocolError: a field is out of range (stream id 0, oversized data ...).
        """
        if isinstance(frame, DataFrame):
            _check_stream_id(frame.stream_id)
            if len(frame.data) > MAX_LENGTH:
                raise LocalProtocolError("a SPDY data frame carries at most 16 MiB - 1")
            flags = FLAG_FIN if frame.fin else 0
            return struct.pack("!II", frame.stream_id, flags << 24 | len(frame.data)) + frame.data
        if isinstance(frame, SynStreamFrame):
            _check_stream_id(frame.stream_id)
            flags = (FLAG_FIN if frame.fin else 0) | (
                FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
            )
            body = struct.pack(
                "!IIBB", frame.stream_id, frame.associated_id, frame.priority << 5, 0
            )
            return _control(FrameType.SYN_STREAM, flags, body + self._compress(frame.headers))
        if isinstance(frame, SynReplyFrame):
            _check_stream_id(frame.stream_id)
            body = struct.pack("!I", frame.stream_id) + self._compress(frame.headers)
            return _control(FrameType.SYN_REPLY, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, HeadersFrame):
            _check_stream_id(frame.stream_id)
            body = struct.pack("!I", frame.stream_id) + self._compress(frame.headers)
            return _control(FrameType.HEADERS, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, RstStreamFrame):
            _check_stream_id(frame.stream_id)
            return _control(
                FrameType.RST_STREAM, 0, struct.pack("!II", frame.stream_id, frame.status)
            )
        if isinstance(frame, PingFrame):
            if not 0 < frame.ping_id <= 0xFFFFFFFF:
                raise LocalProtocolError(f"invalid SPDY ping id {frame.ping_id}")
            return _control(FrameType.PING, 0, struct.pack("!I", frame.ping_id))
        if isinstance(frame, GoAwayFrame):
            body = struct.pack("!II", frame.last_good_stream_id, frame.status)
            return _control(FrameType.GOAWAY, 0, body)
        if isinstance(frame, SettingsFrame):
            body = struct.pack("!I", len(frame.entries)) + b"".join(
                struct.pack("!II", flags << 24 | key, value) for flags, key, value in frame.entries
            )
            return _control(FrameType.SETTINGS, 0, body)
        if isinstance(frame, WindowUpdateFrame):
            _check_stream_id(frame.stream_id)
            return _control(
                FrameType.WINDOW_UPDATE, 0, struct.pack("!II", frame.stream_id, frame.delta)
            )
        raise LocalProtocolError(f"cannot encode {frame!r}")

    def _compress(self, headers: Sequence[Tuple[str, str]]) -> bytes:
        names = [name for name, _ in headers]
        if len(set(names)) != len(names) or any(not n or n != n.lower() for n in names):
            raise LocalProtocolError("SPDY header names must be unique, non-empty and lower-case")
        block = struct.pack("!I", len(headers)) + b"".join(
            struct.pack("!I", len(n)) + n + struct.pack("!I", len(v)) + v
            for n, v in ((name.encode(), value.encode()) for name, value in headers)
        )
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    # --- decoding ---

    def receive(self, data: bytes) -> List[Frame]:
        """Feed received bytes; return every frame now complete, in order.

        Raises:
            RemoteProtocolError: the bytes are not valid SPDY/3; the codec is then unusable.
        """
        if self._failed:
            raise LocalProtocolError("the SPDY connection already failed")
        self._buffer += data
        frames: List[Frame] = []
        try:
            while len(self._buffer) >= 8:
                word, flags_length = struct.unpack_from("!II", self._buffer)
                length = flags_length & MAX_LENGTH
                if len(self._buffer) < 8 + length:
                    break
                flags = flags_length >> 24
                payload = bytes(self._buffer[8 : 8 + length])
                del self._buffer[: 8 + length]
                if word & 0x80000000:
                    frame = self._control_frame(word, flags, payload)
                    if frame is not None:
                        frames.append(frame)
                else:
                    if word == 0:
                        raise RemoteProtocolError("SPDY data frame on stream 0")
                    frames.append(DataFrame(word, payload, bool(flags & FLAG_FIN)))
        except RemoteProtocolError:
            self._failed = True
            raise
        return frames

    def _control_frame(self, word: int, flags: int, payload: bytes) -> Optional[Frame]:
        version = (word >> 16) & 0x7FFF
        kind = word & 0xFFFF
        if version != VERSION:
            raise RemoteProtocolError(f"SPDY version {version} control frame (only 3 is spoken)")
        fin = bool(flags & FLAG_FIN)
        if kind == FrameType.SYN_STREAM:
            _need(payload, 10, "SYN_STREAM")
            stream_id, associated, priority = struct.unpack_from("!IIB", payload)
            stream_id &= 0x7FFFFFFF
            _check_remote_stream_id(stream_id, "SYN_STREAM")
            return SynStreamFrame(
                stream_id,
                self._decompress(payload[10:]),
                fin,
                bool(flags & FLAG_UNIDIRECTIONAL),
                associated & 0x7FFFFFFF,
                priority >> 5,
            )
        if kind in (FrameType.SYN_REPLY, FrameType.HEADERS):
            _need(payload, 4, FrameType(kind).name)
            stream_id = struct.unpack_from("!I", payload)[0] & 0x7FFFFFFF
            _check_remote_stream_id(stream_id, FrameType(kind).name)
            headers = self._decompress(payload[4:])
            if kind == FrameType.SYN_REPLY:
                return SynReplyFrame(stream_id, headers, fin)
            return HeadersFrame(stream_id, headers, fin)
        if kind == FrameType.RST_STREAM:
            _exact(payload, 8, "RST_STREAM")
            stream_id, status = struct.unpack("!II", payload)
            _check_remote_stream_id(stream_id & 0x7FFFFFFF, "RST_STREAM")
            return RstStreamFrame(stream_id & 0x7FFFFFFF, status)
        if kind == FrameType.SETTINGS:
            _need(payload, 4, "SETTINGS")
            count = struct.unpack_from("!I", payload)[0]
            _exact(payload, 4 + 8 * count, "SETTINGS")
            entries = []
            for i in range(count):
                key, value = struct.unpack_from("!II", payload, 4 + 8 * i)
                entries.append((key >> 24, key & MAX_LENGTH, value))
            return SettingsFrame(tuple(entries))
        if kind == FrameType.PING:
            _exact(payload, 4, "PING")
            ping_id = struct.unpack("!I", payload)[0]
            if ping_id == 0:
                raise RemoteProtocolError("SPDY PING with id 0")
            return PingFrame(ping_id)
        if kind == FrameType.GOAWAY:
            _exact(payload, 8, "GOAWAY")
            last, status = struct.unpack("!II", payload)
            return GoAwayFrame(last & 0x7FFFFFFF, status)
        if kind == FrameType.WINDOW_UPDATE:
            _exact(payload, 8, "WINDOW_UPDATE")
            stream_id, delta = struct.unpack("!II", payload)
            return WindowUpdateFrame(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        raise RemoteProtocolError(f"unsupported SPDY control frame type {kind}")

    def _decompress(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise RemoteProtocolError(f"corrupt SPDY header block: {exc}") from None
        if self._inflate.unconsumed_tail:
            raise RemoteProtocolError("SPDY header block too large")
        return _parse_header_block(raw)


def _parse_header_block(raw: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from("!I", raw)
        pos = 4
        headers = []
        seen = set()
        for _ in range(count):
            (n,) = struct.unpack_from("!I", raw, pos)
            name = raw[pos + 4 : pos + 4 + n]
            pos += 4 + n
            (v,) = struct.unpack_from("!I", raw, pos)
            value = raw[pos + 4 : pos + 4 + v]
            pos += 4 + v
            if len(name) != n or len(value) != v:
                raise struct.error("truncated")
            text = name.decode("ascii")
            if not text or text != text.lower() or text in seen:
                raise RemoteProtocolError(f"invalid SPDY header name {text!r}")
            seen.add(text)
            headers.append((text, value.decode("utf-8", "replace")))
    except (struct.error, UnicodeDecodeError):
        raise RemoteProtocolError("malformed SPDY header block") from None
    if pos != len(raw):
        raise RemoteProtocolError("SPDY header block has trailing bytes")
    return tuple(headers)


def _control(kind: FrameType, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_LENGTH:
        raise LocalProtocolError("SPDY control frame too large")
    return struct.pack("!HHI", 0x8000 | VERSION, kind, flags << 24 | len(body)) + body


def _check_stream_id(stream_id: int) -> None:
    if not 0 < stream_id <= 0x7FFFFFFF:
        raise LocalProtocolError(f"invalid SPDY stream id {stream_id}")


def _check_remote_stream_id(stream_id: int, kind: str) -> None:
    if stream_id == 0:
        raise RemoteProtocolError(f"SPDY {kind} on stream 0")


def _need(payload: bytes, size: int, kind: str) -> None:
    if len(payload) < size:
        raise RemoteProtocolError(f"SPDY {kind} frame too short ({len(payload)} bytes)")


def _exact(payload: bytes, size: int, kind: str) -> None:
    if len(payload) != size:
        raise RemoteProtocolError(f"SPDY {kind} frame has length {len(payload)}, not {size}")
