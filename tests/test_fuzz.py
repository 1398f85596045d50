"""Property-based fuzzing of the sans-IO decoders that test_channel_protocol.py and
test_status.py do not fuzz yet: SPDY framing and header blocks, the tunnel session, the
legacy port-forward preamble, and mutated (rather than random) statuses and sessions.

The property is always the same (h11's "any other exception ... is a bug"): whatever the
server sends, split wherever the network splits it, a decoder either succeeds or raises the
library's ProtocolError; valid input round-trips. CI runs a bounded number of examples,
``K8SSTREAM_FUZZ_EXAMPLES=N`` (or ``K8SSTREAM_SLOW=1``: 20,000) runs longer. Every test counts
the inputs it actually tried and records the number for RELIABILITY.md.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Callable, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sstream import _channel, _spdy, _status
from k8sstream._portforward import LegacyPortForward, PortData, PortError, TunnelSession
from k8sstream.errors import ProtocolError, RemoteProtocolError, StreamClosedError
from tests.reliability import SLOW, record

EXAMPLES = int(os.environ.get("K8SSTREAM_FUZZ_EXAMPLES") or (20_000 if SLOW else 300))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not (SLOW or os.environ.get("K8SSTREAM_FUZZ_EXAMPLES")),
    # The counter fixture is meant to persist across inputs: it counts them.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

_tried: Dict[str, int] = {}


@pytest.fixture
def counted(request) -> Callable[[], None]:
    """Call once per generated input; the total is recorded after the test passed."""
    name = request.node.name
    _tried[name] = 0

    def tick() -> None:
        _tried[name] += 1

    yield tick
    record(
        "fuzz",
        request.node.function.__doc__.strip().split("\n")[0],
        "only ProtocolError",
        inputs=_tried[name],
        max_examples=EXAMPLES,
    )


def split(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


cuts = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=8)

# --- SPDY framing -----------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-:", min_size=1, max_size=12)
values = st.text(max_size=40)
headers = st.dictionaries(names, values, max_size=5).map(lambda d: tuple(sorted(d.items())))
stream_ids = st.integers(min_value=1, max_value=0x7FFFFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)

frames = st.one_of(
    st.builds(_spdy.DataFrame, stream_ids, st.binary(max_size=300), st.booleans()),
    st.builds(
        _spdy.SynStreamFrame,
        stream_ids,
        headers,
        st.booleans(),
        st.booleans(),
        st.integers(min_value=0, max_value=0x7FFFFFFF),
        st.integers(min_value=0, max_value=7),
    ),
    st.builds(_spdy.SynReplyFrame, stream_ids, headers, st.booleans()),
    st.builds(_spdy.HeadersFrame, stream_ids, headers, st.booleans()),
    st.builds(_spdy.RstStreamFrame, stream_ids, u32),
    st.builds(
        _spdy.SettingsFrame,
        st.lists(
            st.tuples(st.integers(0, 255), st.integers(0, 0xFFFFFF), u32),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(_spdy.PingFrame, st.integers(min_value=1, max_value=0xFFFFFFFF)),
    st.builds(_spdy.GoAwayFrame, st.integers(min_value=0, max_value=0x7FFFFFFF), u32),
    st.builds(_spdy.WindowUpdateFrame, stream_ids, st.integers(min_value=0, max_value=0x7FFFFFFF)),
)


@FUZZ
@given(st.lists(frames, max_size=12), cuts)
def test_spdy_frames_round_trip_at_any_split(counted, sequence, where):
    """SPDY frames and header blocks round-trip at any split"""
    counted()
    encoder = _spdy.FrameCodec()  # one compression context per direction, as SPDY requires
    wire = b"".join(encoder.encode(f) for f in sequence)
    decoder = _spdy.FrameCodec()
    got: List[_spdy.Frame] = []
    for piece in split(wire, where):
        got += decoder.receive(piece)
    assert got == sequence


@FUZZ
@given(st.binary(max_size=600), cuts)
def test_spdy_arbitrary_bytes(counted, data, where):
    """SPDY decoder, arbitrary bytes at any split"""
    counted()
    codec = _spdy.FrameCodec()
    try:
        for piece in split(data, where):
            codec.receive(piece)
    except RemoteProtocolError:
        with pytest.raises(ProtocolError):  # h11 rule: a failed decoder refuses further use
            codec.receive(b"")


@FUZZ
@given(
    st.lists(frames, min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6),
    cuts,
)
def test_spdy_mutated_valid_frames(counted, sequence, flips, where):
    """SPDY decoder, valid frames with bytes overwritten (corrupt zlib, lengths, types)"""
    counted()
    wire = bytearray(b"".join(_spdy.FrameCodec().encode(f) for f in sequence))
    for position, value in flips:
        wire[position % len(wire)] = value
    codec = _spdy.FrameCodec()
    try:
        for piece in split(bytes(wire), where):
            codec.receive(piece)
    except RemoteProtocolError:
        pass


def test_spdy_header_block_bomb_is_refused():
    """A 1 KiB compressed header block that inflates to 64 MiB is cut off at the limit."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, _spdy.DICTIONARY)
    value = b"a" * (64 << 20)
    block = struct.pack("!II", 1, 1) + b"x" + struct.pack("!I", len(value))
    compressed = (
        deflate.compress(block) + deflate.compress(value) + deflate.flush(zlib.Z_SYNC_FLUSH)
    )
    assert len(compressed) < 100_000
    body = struct.pack("!I", 1) + compressed
    wire = struct.pack("!HHI", 0x8003, 2, len(body)) + body
    with pytest.raises(RemoteProtocolError, match="too large"):
        _spdy.FrameCodec().receive(wire)
    record(
        "fuzz",
        "SPDY header block bomb (64 MiB from <100 KB)",
        "RemoteProtocolError",
        compressed_bytes=len(compressed),
        limit_bytes=_spdy.MAX_HEADER_BLOCK,
    )


# --- the tunnel session, as a hostile server drives it -----------------------------------------


server_frames = st.one_of(
    st.builds(_spdy.DataFrame, st.integers(1, 12), st.binary(max_size=64), st.booleans()),
    st.builds(_spdy.SynReplyFrame, st.integers(1, 12), headers, st.booleans()),
    st.builds(_spdy.RstStreamFrame, st.integers(1, 12), st.integers(0, 12)),
    st.builds(_spdy.PingFrame, st.integers(1, 8)),
    st.builds(_spdy.GoAwayFrame, st.integers(0, 12), st.integers(0, 3)),
    st.builds(_spdy.SynStreamFrame, st.integers(1, 12).map(lambda i: 2 * i), headers),
    st.builds(_spdy.WindowUpdateFrame, st.integers(1, 12), st.integers(0, 1000)),
)


@FUZZ
@given(st.integers(0, 3), st.lists(server_frames, max_size=20), cuts)
def test_tunnel_session_against_hostile_frames(counted, opened, sequence, where):
    """Tunnel session fed any frame sequence on any stream, at any split"""
    counted()
    session = TunnelSession()
    for port in range(opened):
        session.open(8000 + port)
    server = _spdy.FrameCodec()
    wire = b"".join(server.encode(f) for f in sequence)
    try:
        for piece in split(wire, where):
            events, reply = session.receive(piece)
            assert isinstance(reply, bytes)
            for event in events:
                if isinstance(event, (PortData, PortError)):
                    assert 0 <= event.connection < max(opened, 1)
    except RemoteProtocolError:
        pass


# --- legacy port-forward: the two-byte port preamble -------------------------------------------

LEGACY = [_channel.V4, _channel.V4_BASE64]


@FUZZ
@given(
    st.sampled_from(LEGACY),
    st.lists(st.integers(1, 65535), min_size=1, max_size=3),
    st.lists(st.tuples(st.booleans(), st.binary(max_size=40)), max_size=12),
)
def test_legacy_port_forward_arbitrary_messages(counted, protocol, ports, messages):
    """Legacy port-forward, arbitrary messages (bad preambles, channels, base64)"""
    counted()
    codec = LegacyPortForward(protocol, ports)
    try:
        for is_text, data in messages:
            codec.receive(is_text, data)
    except RemoteProtocolError:
        pass


@FUZZ
@given(
    st.sampled_from(LEGACY),
    st.integers(1, 65535),
    st.binary(min_size=1, max_size=2000),
    st.lists(st.integers(1, 300), max_size=10),
)
def test_legacy_port_forward_round_trip(counted, protocol, port, payload, sizes):
    """Legacy port-forward preamble and data in any message sizes round-trip"""
    counted()
    stream = struct.pack("<H", port) + payload
    codec = LegacyPortForward(protocol, [port])
    got = b""
    position = 0
    for size in [*sizes, len(stream)]:
        piece = stream[position : position + size]
        position += len(piece)
        if not piece:
            continue
        is_text, message = _channel.encode_message(protocol, 0, piece)
        event = codec.receive(is_text, message)
        if event is not None:
            assert isinstance(event, PortData)
            got += event.data
    assert got == payload


# --- mutated statuses and mutated exec sessions -------------------------------------------------


VALID_STATUSES = [
    _status.success_status(),
    _status.exit_code_status(3),
    _status.internal_error_status('executable file not found: "nope"'),
]


@FUZZ
@given(
    st.sampled_from(VALID_STATUSES),
    st.lists(st.tuples(st.integers(0, 1 << 12), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_status(counted, status, flips):
    """Status parsing, valid Status JSON with bytes overwritten"""
    counted()
    data = bytearray(status)
    for position, value in flips:
        data[position % len(data)] = value
    for parse in (_status.parse_status, _status.exit_status_from_json):
        try:
            parse(bytes(data))
        except RemoteProtocolError:
            pass


def _session(protocol: _channel.ChannelProtocol) -> List[Tuple[bool, bytes]]:
    return [
        _channel.encode_message(protocol, _channel.STDOUT, b"hello"),
        _channel.encode_message(protocol, _channel.STDERR, b"oops"),
        _channel.encode_message(protocol, _channel.ERROR, _status.exit_code_status(2))
        if protocol.json_status
        else _channel.encode_message(protocol, _channel.ERROR, b"command terminated"),
    ]


@FUZZ
@given(
    st.sampled_from([_channel.V5, _channel.V4, _channel.V4_BASE64, _channel.V1]),
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1 << 12), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([None, 1000, 1006, 1011]),
)
def test_mutated_exec_session(counted, protocol, flips, close):
    """Exec channel protocol, a valid session with bytes overwritten, then any close"""
    counted()
    messages = [(t, bytearray(m)) for t, m in _session(protocol)]
    for index, position, value in flips:
        message = messages[index][1]
        message[position % len(message)] = value
    connection = _channel.RemoteCommandConnection(protocol, stdin=True, tty=False)
    try:
        for is_text, message in messages:
            connection.receive(is_text, bytes(message))
        connection.connection_lost(close)
    except (ProtocolError, StreamClosedError):
        pass
