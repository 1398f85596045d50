"""Port-forward protocols with bytes alone: SPDY framing, the tunnel session, legacy channels."""

from __future__ import annotations

import struct
import zlib

import pytest

from k8sstream import _spdy
from k8sstream._channel import V4, V4_BASE64
from k8sstream._portforward import (
    LegacyPortForward,
    PortData,
    PortEOF,
    PortError,
    PortReset,
    SessionEnded,
    StreamState,
    TunnelSession,
)
from k8sstream.errors import LocalProtocolError, RemoteProtocolError


def test_dictionary_is_the_spdy3_one():
    assert len(_spdy.DICTIONARY) == 1423
    assert zlib.adler32(_spdy.DICTIONARY) == 0xE3C6A7C2


ALL_FRAMES = [
    _spdy.SynStreamFrame(1, (("streamtype", "error"), ("port", "80"), ("requestid", "0"))),
    _spdy.DataFrame(1, b"", fin=True),
    _spdy.SynStreamFrame(
        3, (("streamtype", "data"), ("port", "80"), ("requestid", "0")), priority=2
    ),
    _spdy.SynReplyFrame(3),
    _spdy.DataFrame(3, bytes(range(256)) * 10),
    _spdy.HeadersFrame(3, (("x", "y"),)),
    _spdy.RstStreamFrame(3, _spdy.RstStatus.CANCEL),
    _spdy.SettingsFrame(((0, 4, 100),)),
    _spdy.WindowUpdateFrame(3, 65536),
    _spdy.PingFrame(1),
    _spdy.GoAwayFrame(0, 0),
]


def test_every_frame_round_trips_at_every_split_point():
    encoder = _spdy.FrameCodec()  # one compression context for the whole direction
    wire = b"".join(encoder.encode(f) for f in ALL_FRAMES)
    for split in range(len(wire) + 1):
        codec = _spdy.FrameCodec()
        assert codec.receive(wire[:split]) + codec.receive(wire[split:]) == ALL_FRAMES


def test_byte_by_byte():
    encoder = _spdy.FrameCodec()  # one compression context for the whole direction
    wire = b"".join(encoder.encode(f) for f in ALL_FRAMES)
    codec = _spdy.FrameCodec()
    frames = []
    for i in range(len(wire)):
        frames += codec.receive(wire[i : i + 1])
    assert frames == ALL_FRAMES


def test_wire_layout_of_data_and_control_frames():
    codec = _spdy.FrameCodec()
    assert (
        codec.encode(_spdy.DataFrame(5, b"ab", fin=True)) == b"\x00\x00\x00\x05\x01\x00\x00\x02ab"
    )
    assert codec.encode(_spdy.PingFrame(7)) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"
    rst = codec.encode(_spdy.RstStreamFrame(3, 5))
    assert rst == b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x05"
    syn = codec.encode(_spdy.SynStreamFrame(1, (("port", "80"),)))
    assert syn[:4] == b"\x80\x03\x00\x01"
    assert syn[8:18] == b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    # The header block is a zlib stream with the SPDY/3 dictionary id, sync-flushed.
    block = syn[18:]
    assert block[:2] == b"\x78\xf9" and struct.unpack("!I", block[2:6])[0] == 0xE3C6A7C2
    assert block.endswith(b"\x00\x00\xff\xff")


@pytest.mark.parametrize(
    "wire, message",
    [
        (b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01", "version 2"),
        (b"\x80\x03\x00\x05\x00\x00\x00\x00", "unsupported SPDY control frame type 5"),
        (b"\x80\x03\x00\x0a\x00\x00\x00\x00", "unsupported SPDY control frame type 10"),
        (b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x00", "PING with id 0"),
        (b"\x80\x03\x00\x06\x00\x00\x00\x05\x00\x00\x00\x01\x00", "length 5"),
        (b"\x00\x00\x00\x00\x00\x00\x00\x01x", "stream 0"),
        (b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x05", "stream 0"),
        (b"\x80\x03\x00\x02\x00\x00\x00\x06\x00\x00\x00\x01\xde\xad", "corrupt SPDY header block"),
        (b"\x80\x03\x00\x07\x00\x00\x00\x04\x00\x00\x00\x00", "length 4"),
    ],
)
def test_malformed_frames(wire, message):
    codec = _spdy.FrameCodec()
    with pytest.raises(RemoteProtocolError, match=message):
        codec.receive(wire)
    with pytest.raises(LocalProtocolError):
        codec.receive(b"")


def test_header_names_must_be_lower_case_and_unique():
    with pytest.raises(LocalProtocolError):
        _spdy.FrameCodec().encode(_spdy.SynReplyFrame(1, (("Port", "80"),)))
    with pytest.raises(LocalProtocolError):
        _spdy.FrameCodec().encode(_spdy.SynReplyFrame(1, (("a", "1"), ("a", "2"))))


def test_tunnel_ids_as_client_go_assigns_them():
    session, server = TunnelSession(), _spdy.FrameCodec()
    first, wire = session.open(80)
    frames = server.receive(wire)
    assert first == 0
    assert [type(f).__name__ for f in frames] == ["SynStreamFrame", "DataFrame", "SynStreamFrame"]
    assert (frames[0].stream_id, frames[2].stream_id) == (1, 3)
    assert dict(frames[0].headers) == {"streamtype": "error", "port": "80", "requestid": "0"}
    assert dict(frames[2].headers) == {"streamtype": "data", "port": "80", "requestid": "0"}
    assert frames[1] == _spdy.DataFrame(1, b"", fin=True)
    second, wire = session.open(443)
    frames = server.receive(wire)
    assert second == 1
    assert (frames[0].stream_id, frames[2].stream_id) == (5, 7)
    assert dict(frames[2].headers)["requestid"] == "1"


def test_tunnel_data_half_close_and_eof():
    session, server = TunnelSession(), _spdy.FrameCodec()
    conn, wire = session.open(80)
    server.receive(wire)
    assert server.receive(session.send(conn, b"x" * 70000)) == [
        _spdy.DataFrame(3, b"x" * 65536),
        _spdy.DataFrame(3, b"x" * 4464),
    ]
    assert server.receive(session.close_write(conn)) == [_spdy.DataFrame(3, b"", fin=True)]
    assert session.connection_state(conn) is StreamState.HALF_CLOSED_LOCAL
    with pytest.raises(LocalProtocolError, match="SHUT_WR"):
        session.send(conn, b"late")
    reply = server.encode(_spdy.SynReplyFrame(3)) + server.encode(_spdy.DataFrame(3, b"pong"))
    reply += server.encode(_spdy.DataFrame(3, b"", fin=True))
    events, back = session.receive(reply)
    assert events == [PortData(conn, b"pong"), PortEOF(conn)]
    assert back == b""
    assert session.connection_state(conn) is StreamState.CLOSED


def test_tunnel_error_text_and_reset():
    session, server = TunnelSession(), _spdy.FrameCodec()
    conn, wire = session.open(81)
    server.receive(wire)
    text = b"error forwarding port 81 to pod demo, uid x: dial tcp: connect: connection refused"
    events, _ = session.receive(
        server.encode(_spdy.DataFrame(1, text)) + server.encode(_spdy.RstStreamFrame(3, 5))
    )
    assert events == [PortError(conn, text.decode()), PortReset(conn, 5)]
    with pytest.raises(LocalProtocolError):
        session.send(conn, b"x")


def test_tunnel_ping_goaway_and_reset_by_us():
    session, server = TunnelSession(), _spdy.FrameCodec()
    assert server.receive(session.ping()) == [_spdy.PingFrame(1)]
    assert server.receive(session.ping()) == [_spdy.PingFrame(3)]
    events, back = session.receive(server.encode(_spdy.PingFrame(2)))
    assert events == [] and server.receive(back) == [_spdy.PingFrame(2)]
    conn, wire = session.open(80)
    server.receive(wire)
    assert server.receive(session.reset(conn)) == [
        _spdy.RstStreamFrame(3, 5),
        _spdy.RstStreamFrame(1, 5),
    ]
    events, _ = session.receive(server.encode(_spdy.GoAwayFrame(0, 0)))
    assert events == [SessionEnded(0)]
    with pytest.raises(LocalProtocolError, match="GOAWAY"):
        session.open(80)
    assert server.receive(session.goaway()) == [_spdy.GoAwayFrame(0, 0)]


def test_legacy_preamble_then_data():
    fwd = LegacyPortForward(V4, [8080])
    assert fwd.receive(False, b"\x00\x90\x1f") is None
    assert fwd.receive(False, b"\x01\x90\x1f") is None
    assert fwd.receive(False, b"\x00hello") == PortData(0, b"hello")
    assert fwd.receive(False, b"\x01refused") == PortError(0, "refused")
    assert fwd.data_messages(0, b"hi") == [(False, b"\x00hi")]


def test_legacy_preamble_split_and_base64():
    fwd = LegacyPortForward(V4_BASE64, [8080])
    assert fwd.receive(True, b"0kA==") is None
    assert fwd.receive(True, b"0H2hp") == PortData(0, b"hi")
    assert fwd.data_messages(0, b"ls\n") == [(True, b"0bHMK")]


@pytest.mark.parametrize(
    "message, error",
    [(b"\x00\x50\x00", "preamble 80"), (b"\x02\x90\x1f", "unknown channel 2")],
)
def test_legacy_bad_preamble(message, error):
    with pytest.raises(RemoteProtocolError, match=error):
        LegacyPortForward(V4, [8080]).receive(False, message)
