"""Byte-level tests of the remote-command channel protocols (``k8sstream._channel``).

Everything here is bytes in, events and bytes out: no sockets, no threads, no clocks. The wire
examples and rules come from shared/PROTOCOL.md sections 3.2-3.3 (negotiation), 4 (channels and
framing), 5 (error channel), 6 (resize) and 7 (the v5 CLOSE signal). Statuses are fed at every
split point, because the transport may hand the core a status in any number of pieces.
"""

from __future__ import annotations

import base64
import json
from typing import List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sstream import _channel
from k8sstream._channel import (
    CLOSE_SIGNAL,
    DEFAULT_OFFER,
    ERROR,
    MAX_MESSAGE_SIZE,
    MAX_STATUS_SIZE,
    PROTOCOLS,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    UNNAMED,
    V1,
    V1_BASE64,
    V4,
    V4_BASE64,
    V5,
    ChannelProtocol,
    ConnectionState,
    RemoteCommandConnection,
    StatusReceived,
    StreamData,
    decode_message,
    decode_resize_stream,
    encode_message,
    encode_resize,
    negotiated_protocol,
    protocol_named,
    select_protocol,
)
from k8sstream._status import exit_code_status, internal_error_status, success_status
from k8sstream.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    StreamClosedError,
)

ALL = list(PROTOCOLS.values())
BINARY = [p for p in ALL if not p.base64]
BASE64 = [p for p in ALL if p.base64]
JSON_STATUS = [p for p in ALL if p.json_status]
TEXT_STATUS = [p for p in ALL if not p.json_status]
PRE_V5 = [p for p in ALL if p is not V5]


def _ids(protocol: ChannelProtocol) -> str:
    return protocol.name or "unnamed"


all_protocols = pytest.mark.parametrize("protocol", ALL, ids=_ids)
binary_protocols = pytest.mark.parametrize("protocol", BINARY, ids=_ids)
base64_protocols = pytest.mark.parametrize("protocol", BASE64, ids=_ids)
json_protocols = pytest.mark.parametrize("protocol", JSON_STATUS, ids=_ids)
text_protocols = pytest.mark.parametrize("protocol", TEXT_STATUS, ids=_ids)
pre_v5_protocols = pytest.mark.parametrize("protocol", PRE_V5, ids=_ids)

# PROTOCOL.md 5.2, byte for byte.
SUCCESS = b'{"metadata":{},"status":"Success"}'
EXIT_2 = (
    b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
    b'command terminated with exit code 2","reason":"NonZeroExitCode","details":{"causes":'
    b'[{"reason":"ExitCode","message":"2"}]}}'
)
INTERNAL = (
    b'{"metadata":{},"status":"Failure","message":"Internal error occurred: unable to upgrade '
    b'connection: container not found (\\"app\\")","reason":"InternalError","details":{"causes":'
    b'[{"message":"unable to upgrade connection: container not found (\\"app\\")"}]},"code":500}'
)
# The same InternalError with a multi-byte message, so that splits fall inside UTF-8 sequences.
INTERNAL_UTF8 = (
    '{"metadata":{},"status":"Failure","message":"Internal error occurred: '
    'conteneur \u00ab\u00e4pp\u00bb introuvable \u2603","reason":"InternalError",'
    '"details":{"causes":[{"message":"conteneur \u00ab\u00e4pp\u00bb introuvable \u2603"}]},'
    '"code":500}'
).encode("utf-8")
STATUS_CASES = [
    pytest.param(SUCCESS, 0, "", id="success"),
    pytest.param(
        EXIT_2,
        2,
        "command terminated with non-zero exit code: command terminated with exit code 2",
        id="exit-2",
    ),
    pytest.param(
        INTERNAL,
        None,
        'Internal error occurred: unable to upgrade connection: container not found ("app")',
        id="internal-error",
    ),
    pytest.param(
        INTERNAL_UTF8,
        None,
        "Internal error occurred: conteneur \u00ab\u00e4pp\u00bb introuvable \u2603",
        id="internal-error-utf8",
    ),
]


def make(protocol: ChannelProtocol, *, stdin: bool = True, tty: bool = False):
    return RemoteCommandConnection(protocol, stdin=stdin, tty=tty)


def server_message(protocol: ChannelProtocol, channel: int, payload: bytes) -> Tuple[bool, bytes]:
    """What a server sends: the same framing as ours, used as the peer."""
    return encode_message(protocol, channel, payload)


def feed(conn: RemoteCommandConnection, channel: int, payload: bytes):
    return conn.receive(*server_message(conn.protocol, channel, payload))


def status_nonzero(message: str) -> bytes:
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: x",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": message}]},
        }
    ).encode()


def assert_refuses_everything(conn: RemoteCommandConnection) -> None:
    """After a fatal error every entry point raises LocalProtocolError (STYLE 4)."""
    assert conn.state is ConnectionState.ERROR
    ok_text, ok_data = server_message(conn.protocol, STDOUT, b"x")
    for call in (
        lambda: conn.receive(ok_text, ok_data),
        lambda: conn.stdin_messages(b"x"),
        conn.close_stdin_message,
        lambda: conn.resize_message(80, 24),
        lambda: conn.connection_lost(1000),
    ):
        with pytest.raises(LocalProtocolError):
            call()
    assert conn.state is ConnectionState.ERROR


# --- catalogue (PROTOCOL.md 4.1) ------------------------------------------------------------------


def test_catalogue_matches_protocol_md():
    # name: (text frames / base64, JSON status on channel 3, can send FF 00)
    expected = {
        "v5.channel.k8s.io": (False, True, True),
        "v4.channel.k8s.io": (False, True, False),
        "v4.base64.channel.k8s.io": (True, True, False),
        # v3/v2 exist only as SPDY names; their error stream is v1-style text.
        "v3.channel.k8s.io": (False, False, False),
        "v2.channel.k8s.io": (False, False, False),
        "channel.k8s.io": (False, False, False),
        "base64.channel.k8s.io": (True, False, False),
        "": (False, False, False),
    }
    assert {
        name: (p.base64, p.json_status, p.can_close_stdin) for name, p in PROTOCOLS.items()
    } == expected
    for name, protocol in PROTOCOLS.items():
        assert protocol.name == name
    assert PROTOCOLS[""] is UNNAMED


def test_there_is_no_v5_base64():
    assert "v5.base64.channel.k8s.io" not in PROTOCOLS
    with pytest.raises(LocalProtocolError, match=r"v5\.base64\.channel\.k8s\.io"):
        protocol_named("v5.base64.channel.k8s.io")


@all_protocols
def test_protocol_named_finds_every_protocol(protocol):
    assert protocol_named(protocol.name) is protocol


def test_protocol_named_unknown_lists_the_known_names():
    with pytest.raises(LocalProtocolError) as info:
        protocol_named("portforward.k8s.io")
    message = str(info.value)
    assert "'portforward.k8s.io'" in message
    for name in (*DEFAULT_OFFER, V4_BASE64.name, V1_BASE64.name):
        assert name in message


def test_default_offer_is_v5_v4_v3_v2_v1():
    assert DEFAULT_OFFER == (
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    )
    assert all(name in PROTOCOLS for name in DEFAULT_OFFER)


def test_channel_numbers():
    assert (STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE_SIGNAL) == (0, 1, 2, 3, 4, 255)
    assert _channel.CHANNEL_COUNT == 5
    assert MAX_MESSAGE_SIZE == 64 * 1024
    assert MAX_STATUS_SIZE == 1024 * 1024


@all_protocols
def test_max_payload_is_the_largest_that_fits_64_kib(protocol):
    fits = len(encode_message(protocol, STDIN, bytes(protocol.max_payload))[1])
    too_big = len(encode_message(protocol, STDIN, bytes(protocol.max_payload + 1))[1])
    assert fits <= MAX_MESSAGE_SIZE < too_big
    assert protocol.max_payload == (49149 if protocol.base64 else 65535)


# --- framing: exact wire bytes (PROTOCOL.md 4.3) --------------------------------------------------


@binary_protocols
def test_binary_wire_bytes(protocol):
    assert encode_message(protocol, STDIN, b"ls\n") == (False, bytes.fromhex("00 6C 73 0A"))
    assert decode_message(protocol, bytes.fromhex("01 68 69 0A")) == (STDOUT, b"hi\n")


@base64_protocols
def test_base64_wire_text(protocol):
    assert encode_message(protocol, STDIN, b"ls\n") == (True, b"0bHMK")
    assert decode_message(protocol, b"1aGkK") == (STDOUT, b"hi\n")


@binary_protocols
def test_binary_stdout_event_from_wire_bytes(protocol):
    conn = make(protocol)
    assert conn.receive(False, bytes.fromhex("01 68 69 0A")) == StreamData(STDOUT, b"hi\n")
    assert conn.receive(False, b"\x02oops") == StreamData(STDERR, b"oops")
    assert conn.state is ConnectionState.OPEN


@base64_protocols
def test_base64_stdout_event_from_wire_text(protocol):
    conn = make(protocol)
    assert conn.receive(True, b"1aGkK") == StreamData(STDOUT, b"hi\n")
    assert conn.receive(True, b"2" + base64.b64encode(b"\x00\xff")) == StreamData(
        STDERR, b"\x00\xff"
    )


@binary_protocols
def test_binary_stdin_message_from_connection(protocol):
    assert make(protocol).stdin_messages(b"ls\n") == [(False, bytes.fromhex("00 6C 73 0A"))]


@base64_protocols
def test_base64_stdin_message_from_connection(protocol):
    assert make(protocol).stdin_messages(b"ls\n") == [(True, b"0bHMK")]


PAYLOADS = [b"", b"\x00", b"hi\n", bytes(range(256)), b"\xff" * 1000, b"x" * 3 * 7 + b"yz"]


@all_protocols
@pytest.mark.parametrize("channel", [STDIN, STDOUT, STDERR, ERROR, RESIZE])
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"len{len(p)}")
def test_round_trip_every_channel(protocol, channel, payload):
    is_text, data = encode_message(protocol, channel, payload)
    assert is_text is protocol.base64
    assert decode_message(protocol, data) == (channel, payload)
    if protocol.base64:
        assert data[:1] == str(channel).encode()
        data.decode("ascii")  # a text frame must be valid text
        assert base64.b64decode(data[1:], validate=True) == payload
    else:
        assert data == bytes([channel]) + payload


@binary_protocols
@pytest.mark.parametrize("channel", [5, 9, 200, CLOSE_SIGNAL])
def test_binary_round_trip_high_channels(protocol, channel):
    assert decode_message(protocol, encode_message(protocol, channel, b"ab")[1]) == (channel, b"ab")


@base64_protocols
def test_base64_channel_characters_go_past_nine(protocol):
    # Port-forward uses ':' and ';' for channels 10 and 11 (PROTOCOL.md 4.3).
    assert encode_message(protocol, 10, b"") == (True, b":")
    assert decode_message(protocol, b";aGkK") == (11, b"hi\n")


# --- receiving: initial, empty and odd messages (PROTOCOL.md 4.4, 4.5) ----------------------------


@all_protocols
@pytest.mark.parametrize("channel", [STDOUT, STDERR, ERROR])
def test_initial_empty_message_is_a_no_op(protocol, channel):
    conn = make(protocol)
    wire = str(channel).encode() if protocol.base64 else bytes([channel])
    assert conn.receive(protocol.base64, wire) is None
    assert conn.state is ConnectionState.OPEN
    assert conn.exit_status is None
    # The connection carries on normally afterwards.
    assert feed(conn, STDOUT, b"out") == StreamData(STDOUT, b"out")


@binary_protocols
def test_initial_message_exact_binary_byte(protocol):
    assert make(protocol).receive(False, b"\x01") is None


@base64_protocols
def test_initial_message_exact_base64_char(protocol):
    assert make(protocol).receive(True, b"1") is None


@all_protocols
def test_zero_length_message_is_a_remote_error(protocol):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="empty message"):
        conn.receive(protocol.base64, b"")
    assert_refuses_everything(conn)


@binary_protocols
def test_text_frame_on_binary_protocol(protocol):
    conn = make(protocol, tty=True)
    with pytest.raises(RemoteProtocolError, match="text message"):
        conn.receive(True, b"1aGkK")
    assert_refuses_everything(conn)


@base64_protocols
def test_binary_frame_on_base64_protocol(protocol):
    conn = make(protocol, tty=True)
    with pytest.raises(RemoteProtocolError, match="binary message"):
        conn.receive(False, b"\x01hi\n")
    assert_refuses_everything(conn)


def test_opcode_error_names_the_unnamed_protocol():
    with pytest.raises(RemoteProtocolError, match="unnamed"):
        make(UNNAMED).receive(True, b"1aGkK")


@binary_protocols
@pytest.mark.parametrize("channel", [0, 4, 5, 200, 255])
def test_unknown_or_client_channel_from_server_binary(protocol, channel):
    conn = make(protocol, tty=True)
    with pytest.raises(RemoteProtocolError, match=f"channel {channel}"):
        conn.receive(False, bytes([channel]) + b"data")
    assert_refuses_everything(conn)


@base64_protocols
@pytest.mark.parametrize("channel", [0, 4, 5, 200])
def test_unknown_or_client_channel_from_server_base64(protocol, channel):
    conn = make(protocol, tty=True)
    with pytest.raises(RemoteProtocolError, match=f"channel {channel}"):
        conn.receive(True, bytes([0x30 + channel]) + b"aGkK")
    assert_refuses_everything(conn)


@base64_protocols
@pytest.mark.parametrize("first", [b"\xff", b"/", b" ", b"\x00", b"z"])
def test_odd_base64_channel_characters(protocol, first):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError):
        conn.receive(True, first + b"aGkK")
    assert_refuses_everything(conn)


@base64_protocols
@pytest.mark.parametrize(
    "payload",
    [
        b"aGk",  # truncated: padding missing
        b"aG",
        b"a",
        b"aGk=K",
        b"a@kK",
        b"=aGkK",  # leading padding
        b"aG===",
        b"aGk=aGk=",  # padding in the middle
        b"aGk\n",  # Go ignores CR/LF, but no server sends them
        b"\xc3\xa4GkK",  # not even ASCII
    ],
)
def test_invalid_base64_payload(protocol, payload):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="base64"):
        conn.receive(True, b"1" + payload)
    assert_refuses_everything(conn)


@base64_protocols
@pytest.mark.parametrize("payload", [b"aGkK=", b"aGkK=="])
def test_surplus_base64_padding_is_invalid(protocol, payload):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="base64"):
        conn.receive(True, b"1" + payload)


@base64_protocols
def test_invalid_base64_on_error_channel(protocol):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="channel 3"):
        conn.receive(True, b"3e30")
    assert_refuses_everything(conn)


@all_protocols
def test_stdout_and_stderr_are_passed_through_unchanged(protocol):
    conn = make(protocol)
    blob = bytes(range(256)) * 4
    assert feed(conn, STDOUT, blob) == StreamData(STDOUT, blob)
    assert feed(conn, STDERR, blob) == StreamData(STDERR, blob)


# --- the error channel (PROTOCOL.md 5) ------------------------------------------------------------


@json_protocols
@pytest.mark.parametrize(("body", "code", "message"), STATUS_CASES)
def test_status_in_one_message(protocol, body, code, message):
    conn = make(protocol)
    event = feed(conn, ERROR, body)
    assert isinstance(event, StatusReceived)
    assert event.exit_status.returncode == code
    assert event.exit_status.message == message
    assert conn.state is ConnectionState.STATUS_RECEIVED
    assert conn.exit_status == event.exit_status
    assert conn.connection_lost(1000) == event.exit_status
    assert conn.state is ConnectionState.CLOSED


@json_protocols
@pytest.mark.parametrize(("body", "code", "message"), STATUS_CASES)
def test_status_split_in_two_at_every_point(protocol, body, code, message):
    for split in range(len(body) + 1):
        conn = make(protocol)
        events = [feed(conn, ERROR, body[:split]), feed(conn, ERROR, body[split:])]
        received = [e for e in events if e is not None]
        assert len(received) == 1, split
        assert isinstance(received[0], StatusReceived), split
        assert received[0].exit_status.returncode == code, split
        assert received[0].exit_status.message == message, split
        # The status is complete exactly when its last byte has arrived.
        expected_index = 0 if split == len(body) else 1
        assert events[expected_index] is not None, split
        assert conn.connection_lost(1000) == received[0].exit_status


@json_protocols
@pytest.mark.parametrize(("body", "code", "message"), STATUS_CASES)
def test_status_split_in_three_at_every_point(protocol, body, code, message):
    # Every pair of split points, with stdout interleaved between the pieces.
    step = 1 if protocol is V5 else 7  # full grid on v5; a sparser grid elsewhere keeps it fast
    for first in range(0, len(body) + 1, step):
        for second in range(first, len(body) + 1, step):
            conn = make(protocol)
            events = [
                feed(conn, ERROR, body[:first]),
                feed(conn, STDOUT, b"o"),
                feed(conn, ERROR, body[first:second]),
                feed(conn, STDERR, b"e"),
                feed(conn, ERROR, body[second:]),
            ]
            statuses = [e for e in events if isinstance(e, StatusReceived)]
            assert len(statuses) == 1, (first, second)
            assert statuses[0].exit_status.returncode == code
            assert events[1] == StreamData(STDOUT, b"o")
            assert events[3] == StreamData(STDERR, b"e")


@json_protocols
@pytest.mark.parametrize(("body", "code", "message"), STATUS_CASES)
def test_status_one_byte_per_message(protocol, body, code, message):
    conn = make(protocol)
    events = [feed(conn, ERROR, body[i : i + 1]) for i in range(len(body))]
    assert events[:-1] == [None] * (len(body) - 1)
    assert isinstance(events[-1], StatusReceived)
    assert events[-1].exit_status.returncode == code
    assert events[-1].exit_status.message == message


@json_protocols
def test_output_after_the_status_is_still_delivered(protocol):
    # Order on the wire is output, status, close; but output may trail the status in Path B.
    conn = make(protocol)
    assert isinstance(feed(conn, ERROR, EXIT_2), StatusReceived)
    assert feed(conn, STDOUT, b"late") == StreamData(STDOUT, b"late")
    assert feed(conn, ERROR, b"") is None  # an empty error-channel message is harmless
    assert conn.state is ConnectionState.STATUS_RECEIVED
    assert conn.connection_lost(1000).returncode == 2


@json_protocols
def test_data_on_error_channel_after_the_status(protocol):
    conn = make(protocol)
    feed(conn, ERROR, SUCCESS)
    with pytest.raises(RemoteProtocolError, match="after the final status"):
        feed(conn, ERROR, b" ")
    assert conn.state is ConnectionState.ERROR
    with pytest.raises(LocalProtocolError):
        feed(conn, STDOUT, b"x")


def test_error_state_is_terminal_even_after_a_status():
    conn = make(V5)
    feed(conn, ERROR, SUCCESS)
    with pytest.raises(RemoteProtocolError):
        feed(conn, ERROR, b"{}")
    with pytest.raises(LocalProtocolError):
        conn.connection_lost(1000)
    assert conn.state is ConnectionState.ERROR


@json_protocols
@pytest.mark.parametrize(
    ("exit_message", "code"),
    [("0", 0), ("1", 1), ("2", 2), ("127", 127), ("254", 254), ("255", 255), ("007", 7)],
)
def test_exit_code_boundaries_accepted(protocol, exit_message, code):
    event = feed(make(protocol), ERROR, status_nonzero(exit_message))
    assert isinstance(event, StatusReceived)
    assert event.exit_status.returncode == code


@json_protocols
@pytest.mark.parametrize(
    "exit_message", ["256", "-1", "abc", "", " 2", "2 ", "+2", "2.0", "0x2", "1e2", "99999999999"]
)
def test_exit_code_out_of_range_or_not_decimal(protocol, exit_message):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="ExitCode"):
        feed(conn, ERROR, status_nonzero(exit_message))
    assert_refuses_everything(conn)


NONZERO_WITHOUT_CODE = [
    pytest.param({"status": "Failure", "reason": "NonZeroExitCode"}, id="no-details"),
    pytest.param(
        {"status": "Failure", "reason": "NonZeroExitCode", "details": None}, id="details-null"
    ),
    pytest.param({"status": "Failure", "reason": "NonZeroExitCode", "details": {}}, id="no-causes"),
    pytest.param(
        {"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": []}},
        id="empty-causes",
    ),
    pytest.param(
        {"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": "2"}},
        id="causes-not-a-list",
    ),
    pytest.param(
        {
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "Other", "message": "2"}]},
        },
        id="no-ExitCode-cause",
    ),
    pytest.param(
        {
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"type": "ExitCode", "message": "2"}]},
        },
        id="type-key-instead-of-reason",
    ),
    pytest.param(
        {
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode"}]},
        },
        id="ExitCode-without-message",
    ),
]


@json_protocols
@pytest.mark.parametrize("obj", NONZERO_WITHOUT_CODE)
def test_nonzero_exit_without_a_usable_exit_code_cause(protocol, obj):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="NonZeroExitCode"):
        feed(conn, ERROR, json.dumps(obj).encode())
    assert_refuses_everything(conn)


@json_protocols
def test_exit_code_cause_need_not_be_first(protocol):
    obj = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {
            "causes": [{"reason": "Other", "message": "x"}, {"reason": "ExitCode", "message": "9"}]
        },
    }
    assert feed(make(protocol), ERROR, json.dumps(obj).encode()).exit_status.returncode == 9


@json_protocols
@pytest.mark.parametrize("status", ["Pending", "success", "", "Unknown"])
def test_unknown_status_value(protocol, status):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="unknown status"):
        feed(conn, ERROR, json.dumps({"metadata": {}, "status": status}).encode())
    assert_refuses_everything(conn)


@json_protocols
@pytest.mark.parametrize(
    "body", [b"[]", b'"Success"', b"42", b"null", b"true", b"{}", b'{"status":0}']
)
def test_status_json_that_is_not_a_status_object(protocol, body):
    conn = make(protocol)
    with pytest.raises(RemoteProtocolError, match="status"):
        feed(conn, ERROR, body)
    assert_refuses_everything(conn)


@json_protocols
@pytest.mark.parametrize(
    "body", [b"command terminated with exit code 2", b'{"status":"Success"', b"\xff\xfe", b"{"]
)
def test_non_json_status_fails_at_close(protocol, body):
    conn = make(protocol)
    assert feed(conn, ERROR, body) is None  # may still be the start of a split status
    with pytest.raises(RemoteProtocolError, match="status"):
        conn.connection_lost(1000)
    assert_refuses_everything(conn)


@json_protocols
def test_other_failure_has_no_exit_code(protocol):
    event = feed(make(protocol), ERROR, internal_error_status("boom"))
    assert event.exit_status.returncode is None
    assert event.exit_status.status.reason == "InternalError"
    assert event.exit_status.status.code == 500
    assert event.exit_status.message == "Internal error occurred: boom"


@json_protocols
@pytest.mark.parametrize(
    ("close_code", "close_reason", "text"),
    [
        (1006, "", "close code 1006"),
        (1011, "internal error", "close code 1011: internal error"),
        (1000, "", "close code 1000"),
        (None, "", "no close frame"),
    ],
)
def test_connection_lost_without_status(protocol, close_code, close_reason, text):
    conn = make(protocol)
    feed(conn, STDOUT, b"partial output")
    with pytest.raises(StreamClosedError) as info:
        conn.connection_lost(close_code, close_reason)
    assert isinstance(info.value, BrokenPipeError)
    assert info.value.close_code == close_code
    assert info.value.close_reason == close_reason
    assert text in str(info.value)
    assert conn.exit_status is None
    assert_refuses_everything(conn)


@json_protocols
def test_connection_lost_after_empty_error_messages_is_still_no_status(protocol):
    conn = make(protocol)
    assert feed(conn, ERROR, b"") is None  # the initial message can come on channel 3
    with pytest.raises(StreamClosedError):
        conn.connection_lost(1006)


@json_protocols
@pytest.mark.parametrize(("body", "code", "message"), STATUS_CASES)
def test_connection_lost_in_the_middle_of_a_status(protocol, body, code, message):
    conn = make(protocol)
    feed(conn, ERROR, body[: len(body) // 2])
    with pytest.raises(RemoteProtocolError):
        conn.connection_lost(1006)
    assert conn.state is ConnectionState.ERROR


TEXT_STATUSES = [
    pytest.param(b"", 0, "", id="empty"),
    pytest.param(b" \n\t", 0, "", id="whitespace"),
    pytest.param(
        b"command terminated with non-zero exit code: command terminated with exit code 7",
        7,
        "command terminated with non-zero exit code: command terminated with exit code 7",
        id="exit-7",
    ),
    pytest.param(
        b"command terminated with non-zero exit code: Error executing in Docker Container: "
        b"exit code 255\n",
        255,
        "command terminated with non-zero exit code: Error executing in Docker Container: "
        "exit code 255",
        id="exit-255-runtime-text",
    ),
    pytest.param(b"exit code 256", None, "exit code 256", id="exit-256"),
    pytest.param(b"exit code 1234", None, "exit code 1234", id="exit-1234"),
    pytest.param(
        b'Internal error occurred: unable to upgrade connection: container not found ("app")',
        None,
        'Internal error occurred: unable to upgrade connection: container not found ("app")',
        id="internal-error",
    ),
    pytest.param(
        b"exit code 3 was not the problem", None, "exit code 3 was not the problem", id="not-at-end"
    ),
    pytest.param(b"\xff\xfebroken", None, "\ufffd\ufffdbroken", id="invalid-utf8"),
]


@text_protocols
@pytest.mark.parametrize(("body", "code", "message"), TEXT_STATUSES)
def test_v1_text_status_at_connection_lost(protocol, body, code, message):
    for split in range(len(body) + 1):
        conn = make(protocol)
        # Text statuses are complete only when the connection closes: no event before that.
        assert feed(conn, ERROR, body[:split]) is None
        assert feed(conn, ERROR, body[split:]) is None
        assert conn.state is ConnectionState.OPEN
        status = conn.connection_lost(1000)
        assert status.returncode == code, split
        assert status.message == message, split
        assert status.status is not None
        assert status.status.is_success is (code == 0 and not message)
        assert conn.state is ConnectionState.CLOSED
        assert conn.exit_status == status
        # Closed means closed; asking again gives the same answer.
        assert conn.connection_lost(1000) == status
        with pytest.raises(LocalProtocolError, match="closed"):
            feed(conn, STDOUT, b"x")


@text_protocols
def test_v1_json_lookalike_is_not_a_status_early(protocol):
    conn = make(protocol)
    assert feed(conn, ERROR, SUCCESS) is None
    assert conn.connection_lost(None).returncode is None  # v1 carries text: this is a message


@text_protocols
def test_v1_end_without_close_frame_is_a_lost_connection(protocol):
    # Before v4 a successful command sends no status (PROTOCOL.md 5.3 step 1), so an empty
    # error channel means success only when the server closed properly (it always sends
    # Close 1000); a TCP drop without a close frame must not pass for exit 0.
    assert make(protocol).connection_lost(1000).returncode == 0
    with pytest.raises(StreamClosedError):
        make(protocol).connection_lost(None)


@pytest.mark.parametrize("protocol", [V5, V1], ids=_ids)
def test_error_channel_cap_is_exactly_one_mib(protocol):
    conn = make(protocol)
    piece = b"x" * (64 * 1024)
    for _ in range(MAX_STATUS_SIZE // len(piece)):
        assert feed(conn, ERROR, piece) is None
    assert conn.state is ConnectionState.OPEN
    with pytest.raises(RemoteProtocolError, match="1 MiB"):
        feed(conn, ERROR, b"x")
    assert_refuses_everything(conn)


def test_error_channel_cap_in_one_message():
    conn = make(V4)
    with pytest.raises(RemoteProtocolError, match="1 MiB"):
        feed(conn, ERROR, b" " * (MAX_STATUS_SIZE + 1))


def test_deeply_nested_status_is_a_remote_error():
    conn = make(V5)
    with pytest.raises(RemoteProtocolError):
        feed(conn, ERROR, b"[" * 100_000)
    assert conn.state is ConnectionState.ERROR


def test_non_ascii_digit_exit_code_is_a_remote_error():
    conn = make(V5)
    with pytest.raises(RemoteProtocolError):
        feed(conn, ERROR, status_nonzero("\u00b2"))
    assert conn.state is ConnectionState.ERROR


# --- sending: stdin chunking, CLOSE, resize (PROTOCOL.md 4.6, 6, 7) -------------------------------


def _sizes(max_payload: int) -> List[int]:
    return [0, 1, max_payload, max_payload + 1, 3 * max_payload + 5]


@all_protocols
@pytest.mark.parametrize("which", range(5), ids=["0", "1", "max", "max+1", "3max+5"])
def test_stdin_chunking_at_max_payload_boundaries(protocol, which):
    size = _sizes(protocol.max_payload)[which]
    data = bytes(i % 251 for i in range(size))
    messages = make(protocol).stdin_messages(data)
    expected_pieces = -(-size // protocol.max_payload)  # ceil
    assert len(messages) == expected_pieces
    received = bytearray()
    for index, (is_text, wire) in enumerate(messages):
        assert is_text is protocol.base64
        assert len(wire) <= MAX_MESSAGE_SIZE
        channel, payload = decode_message(protocol, wire)
        assert channel == STDIN
        if index < len(messages) - 1:
            assert len(payload) == protocol.max_payload
        assert payload  # never an empty (channel-only) message
        received += payload
    assert bytes(received) == data


@all_protocols
def test_stdin_accepts_bytes_like(protocol):
    conn = make(protocol)
    expected = conn.stdin_messages(b"abc")
    assert conn.stdin_messages(bytearray(b"abc")) == expected
    assert conn.stdin_messages(memoryview(b"xabcx")[1:4]) == expected


@all_protocols
def test_stdin_not_requested(protocol):
    conn = make(protocol, stdin=False)
    with pytest.raises(LocalProtocolError, match="stdin"):
        conn.stdin_messages(b"x")
    with pytest.raises(LocalProtocolError, match="stdin"):
        conn.close_stdin_message()
    assert conn.state is ConnectionState.OPEN  # a local mistake does not break the connection


def test_close_stdin_on_v5_is_ff_00():
    conn = make(V5, tty=True)
    assert conn.close_stdin_message() == (False, bytes.fromhex("FF 00"))
    assert conn.stdin_open is False
    with pytest.raises(LocalProtocolError, match="stdin"):
        conn.stdin_messages(b"more")
    with pytest.raises(LocalProtocolError, match="stdin"):
        conn.stdin_messages(b"")
    with pytest.raises(LocalProtocolError, match="already closed"):
        conn.close_stdin_message()
    # Half-close: output, resize and the status still work.
    assert conn.state is ConnectionState.OPEN
    assert feed(conn, STDOUT, b"after eof") == StreamData(STDOUT, b"after eof")
    assert conn.resize_message(80, 24)[1].startswith(b"\x04")
    assert isinstance(feed(conn, ERROR, SUCCESS), StatusReceived)


@pre_v5_protocols
def test_close_stdin_before_v5_says_v5_is_needed(protocol):
    conn = make(protocol)
    with pytest.raises(LocalProtocolError) as info:
        conn.close_stdin_message()
    assert "v5.channel.k8s.io" in str(info.value)
    assert (protocol.name or "unnamed") in str(info.value)
    # Nothing changed: stdin is still open and usable.
    assert conn.stdin_open is True
    assert conn.state is ConnectionState.OPEN
    assert len(conn.stdin_messages(b"x")) == 1


@binary_protocols
def test_resize_exact_bytes(protocol):
    conn = make(protocol, tty=True)
    assert conn.resize_message(120, 40) == (False, b'\x04{"Width":120,"Height":40}\n')


@base64_protocols
def test_resize_exact_base64(protocol):
    conn = make(protocol, tty=True)
    expected = b"4" + base64.b64encode(b'{"Width":120,"Height":40}\n')
    assert conn.resize_message(120, 40) == (True, expected)


@all_protocols
def test_resize_needs_a_tty(protocol):
    conn = make(protocol, tty=False)
    with pytest.raises(LocalProtocolError, match="tty"):
        conn.resize_message(120, 40)
    assert conn.state is ConnectionState.OPEN


@pytest.mark.parametrize(("width", "height"), [(0, 0), (65535, 65535), (0, 65535), (1, 1)])
def test_resize_bounds_accepted(width, height):
    conn = make(V5, tty=True)
    _, wire = conn.resize_message(width, height)
    assert json.loads(wire[1:]) == {"Width": width, "Height": height}
    assert encode_resize(width, height) == wire[1:]


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (-1, 40),
        (120, -1),
        (65536, 40),
        (120, 65536),
        (1.5, 40),
        (120.0, 40),
        ("80", 24),
        (True, 24),
        (80, False),
        (None, 24),
        (2**70, 24),
    ],
)
def test_resize_bounds_and_types_rejected(width, height):
    conn = make(V5, tty=True)
    with pytest.raises(LocalProtocolError, match=r"0\.\.65535"):
        conn.resize_message(width, height)
    with pytest.raises(LocalProtocolError):
        encode_resize(width, height)
    assert conn.state is ConnectionState.OPEN


# --- resize decoding on the server side (PROTOCOL.md 6) -------------------------------------------


def test_decode_resize_single_and_concatenated():
    assert decode_resize_stream(b'{"Width":120,"Height":40}\n') == ([(120, 40)], b"")
    assert decode_resize_stream(b'{"Width":1,"Height":2}{"Width":3,"Height":4}') == (
        [(1, 2), (3, 4)],
        b"",
    )
    assert decode_resize_stream(b' \n{"Width":1,"Height":2}\r\n\t{"Width":3,"Height":4} ') == (
        [(1, 2), (3, 4)],
        b"",
    )
    assert decode_resize_stream(b"") == ([], b"")


def test_decode_resize_partial_at_every_split_point():
    stream = encode_resize(120, 40) + encode_resize(0, 65535) + encode_resize(7, 8)
    for split in range(len(stream) + 1):
        first, rest = decode_resize_stream(stream[:split])
        second, leftover = decode_resize_stream(rest + stream[split:])
        assert first + second == [(120, 40), (0, 65535), (7, 8)], split
        assert leftover == b"", split


def test_decode_resize_case_insensitive_keys_and_defaults():
    assert decode_resize_stream(b'{"width":5,"HEIGHT":6}') == ([(5, 6)], b"")
    assert decode_resize_stream(b'{"wIdTh":5}') == ([(5, 0)], b"")
    assert decode_resize_stream(b"{}") == ([(0, 0)], b"")
    assert decode_resize_stream(b'{"Width":5,"Height":6,"Extra":"x"}') == ([(5, 6)], b"")
    # Like Go, the last of several case-variants of one key wins.
    assert decode_resize_stream(b'{"width":1,"Width":2,"Height":3}') == ([(2, 3)], b"")


@pytest.mark.parametrize(
    "body",
    [
        b'{"Width":65536,"Height":1}',
        b'{"Width":1,"Height":-1}',
        b'{"Width":"80","Height":24}',
        b'{"Width":1.5,"Height":24}',
        b'{"Width":80.0,"Height":24}',
        b'{"Width":null,"Height":24}',
        b'{"Width":[80],"Height":24}',
    ],
)
def test_decode_resize_invalid_sizes(body):
    with pytest.raises(RemoteProtocolError, match="terminal size"):
        decode_resize_stream(body)


def test_decode_resize_invalid_size_after_valid_ones():
    with pytest.raises(RemoteProtocolError):
        decode_resize_stream(b'{"Width":1,"Height":2}{"Width":70000,"Height":2}')


@pytest.mark.parametrize("body", [b'{"Width":true,"Height":40}', b'{"Width":80,"Height":false}'])
def test_decode_resize_rejects_booleans(body):
    with pytest.raises(RemoteProtocolError, match="terminal size"):
        decode_resize_stream(body)


@pytest.mark.parametrize("body", [b"[120,40]", b"123", b'"120x40"', b"true"])
def test_decode_resize_rejects_non_objects(body):
    with pytest.raises(RemoteProtocolError, match="terminal size"):
        decode_resize_stream(body)


@pytest.mark.parametrize("body", [b"xyz", b'{"Width":}', b'{"Width":1,,"Height":2}', b"}{"])
def test_decode_resize_rejects_malformed_json(body):
    with pytest.raises(RemoteProtocolError):
        decode_resize_stream(body)


def test_decode_resize_null_is_zero_size_like_go():
    assert decode_resize_stream(b"null") == ([(0, 0)], b"")


# --- negotiation (PROTOCOL.md 3.2, 3.3) -----------------------------------------------------------

EVERY_NAME = (*DEFAULT_OFFER, V4_BASE64.name, V1_BASE64.name)


@pytest.mark.parametrize("name", EVERY_NAME)
def test_negotiated_protocol_each_name(name):
    assert negotiated_protocol(EVERY_NAME, name) is PROTOCOLS[name]
    assert negotiated_protocol([name], name) is PROTOCOLS[name]


@pytest.mark.parametrize("name", EVERY_NAME)
def test_negotiated_protocol_is_case_insensitive(name):
    # websocket-client lower-cases the answer; other clients may not.
    assert negotiated_protocol(EVERY_NAME, name.upper()) is PROTOCOLS[name]
    assert negotiated_protocol(EVERY_NAME, f"  {name.title()} ") is PROTOCOLS[name]


@pytest.mark.parametrize("selected", [None, ""])
def test_negotiated_protocol_none_chosen(selected):
    with pytest.raises(RemoteProtocolError) as info:
        negotiated_protocol(DEFAULT_OFFER, selected)
    message = str(info.value)
    assert "without choosing a subprotocol" in message
    assert "v5.channel.k8s.io, v4.channel.k8s.io" in message


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        ((V5.name,), V4.name),
        (DEFAULT_OFFER, V4_BASE64.name),
        (DEFAULT_OFFER, "v5.base64.channel.k8s.io"),
        (DEFAULT_OFFER, "portforward.k8s.io"),
        (DEFAULT_OFFER, "v5.channel.k8s.io,v4.channel.k8s.io"),
        ((V5.name,), "SPDY/3.1+portforward.k8s.io"),
    ],
)
def test_negotiated_protocol_not_offered(offered, selected):
    with pytest.raises(RemoteProtocolError) as info:
        negotiated_protocol(offered, selected)
    assert repr(selected) in str(info.value)
    assert "not offered" in str(info.value)


def test_negotiated_protocol_offered_but_unknown_name():
    with pytest.raises(ProtocolError):
        negotiated_protocol([V5.name, "example.k8s.io"], "example.k8s.io")


PATH_A = (V5.name,)
PATH_B = ("", V1.name, V1_BASE64.name, V4.name, V4_BASE64.name)


@pytest.mark.parametrize(
    ("header", "supported", "expected"),
    [
        (", ".join(DEFAULT_OFFER), PATH_A, V5.name),
        (", ".join(DEFAULT_OFFER), PATH_B, V4.name),
        # The client's order wins, not the server's.
        ("v4.channel.k8s.io, v5.channel.k8s.io", (V5.name, V4.name), V4.name),
        ("channel.k8s.io,v4.channel.k8s.io", PATH_B, V1.name),
        # Splitting on commas, trimming spaces and tabs, skipping empty entries.
        ("  ,v5.channel.k8s.io ,, ", PATH_A, V5.name),
        ("\tv4.base64.channel.k8s.io\t,v4.channel.k8s.io", PATH_B, V4_BASE64.name),
        ("v5.channel.k8s.io", PATH_B, None),
        ("v4.channel.k8s.io", PATH_A, None),
        ("foo, bar", PATH_B, None),
        # No offer at all: the unnamed entry, only where the server has one.
        (None, PATH_B, ""),
        ("", PATH_B, ""),
        (" , ,", PATH_B, ""),
        (None, PATH_A, None),
        ("", PATH_A, None),
    ],
)
def test_select_protocol(header, supported, expected):
    assert select_protocol(header, supported) == expected


def test_select_then_negotiate_is_a_peer_pair():
    for supported, expected in ((PATH_A, V5), (PATH_B, V4)):
        chosen = select_protocol(", ".join(DEFAULT_OFFER), supported)
        assert negotiated_protocol(DEFAULT_OFFER, chosen) is expected


# --- a client and a scripted server exchanging bytes ----------------------------------------------


@pytest.mark.parametrize(
    ("supported", "protocol"),
    [(PATH_A, V5), (PATH_B, V4), ((V4_BASE64.name,), V4_BASE64), ((V1.name,), V1)],
    ids=["v5", "v4", "v4-base64", "v1"],
)
def test_whole_session_against_a_peer(supported, protocol):
    offer = (*DEFAULT_OFFER, V4_BASE64.name)
    chosen = select_protocol(", ".join(offer), supported)
    client = RemoteCommandConnection(negotiated_protocol(offer, chosen), stdin=True, tty=True)
    server = PROTOCOLS[chosen]
    assert client.protocol is protocol is server

    # Server: "connected" signal, some output.
    assert client.receive(*encode_message(server, STDOUT, b"")) is None
    assert client.receive(*encode_message(server, STDOUT, b"$ ")) == StreamData(STDOUT, b"$ ")

    # Client: initial size, then stdin; the server decodes what it gets.
    resize_stream = b""
    stdin_seen = bytearray()
    to_send = [client.resize_message(100, 30), *client.stdin_messages(b"x" * 70000)]
    for is_text, wire in to_send:
        assert is_text is server.base64
        channel, payload = decode_message(server, wire)
        if channel == RESIZE:
            sizes, resize_stream = decode_resize_stream(resize_stream + payload)
            assert sizes == [(100, 30)]
        else:
            assert channel == STDIN
            stdin_seen += payload
    assert bytes(stdin_seen) == b"x" * 70000

    if protocol.can_close_stdin:
        assert client.close_stdin_message() == (False, b"\xff\x00")

    # Server: output, then the status (split in two), then close.
    assert client.receive(*encode_message(server, STDOUT, b"done\n")) == StreamData(
        STDOUT, b"done\n"
    )
    status = exit_code_status(3) if protocol.json_status else b"command terminated: exit code 3"
    assert client.receive(*encode_message(server, ERROR, status[:10])) is None
    event = client.receive(*encode_message(server, ERROR, status[10:]))
    if protocol.json_status:
        assert event == StatusReceived(client.exit_status)
    else:
        assert event is None
    assert client.connection_lost(1000).returncode == 3
    assert client.state is ConnectionState.CLOSED


def test_success_builder_through_every_json_protocol():
    for protocol in JSON_STATUS:
        event = feed(make(protocol), ERROR, success_status())
        assert event.exit_status.returncode == 0
        assert event.exit_status.status.is_success


# --- properties -----------------------------------------------------------------------------------

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _message(protocol: ChannelProtocol) -> st.SearchStrategy[Tuple[bool, bytes]]:
    """Mostly well-framed messages on plausible channels, sometimes anything at all."""
    framed = st.tuples(st.integers(0, 6), st.binary(max_size=64)).map(
        lambda cp: encode_message(protocol, *cp)
    )
    raw_status = st.sampled_from([SUCCESS, EXIT_2, INTERNAL, b"{", b"}", b'"', b"null"]).map(
        lambda body: encode_message(protocol, ERROR, body)
    )
    anything = st.tuples(st.booleans(), st.binary(max_size=64))
    return st.one_of(framed, raw_status, anything)


@pytest.mark.parametrize("protocol", ALL, ids=_ids)
def test_property_receive_raises_only_protocol_errors(protocol):
    @PROPERTY
    @given(
        messages=st.lists(_message(protocol), max_size=12),
        close=st.one_of(st.none(), st.integers(1000, 4999)),
    )
    def check(messages: List[Tuple[bool, bytes]], close: Optional[int]) -> None:
        conn = make(protocol)
        for is_text, data in messages:
            failed_before = conn.state is ConnectionState.ERROR
            try:
                event = conn.receive(is_text, data)
            except LocalProtocolError:
                assert failed_before or conn.state is ConnectionState.CLOSED
                continue
            except RemoteProtocolError:
                assert conn.state is ConnectionState.ERROR
                continue
            assert event is None or isinstance(event, (StreamData, StatusReceived))
            if isinstance(event, StreamData):
                assert event.channel in (STDOUT, STDERR)
                assert event.data
        try:
            status = conn.connection_lost(close)
        except (LocalProtocolError, RemoteProtocolError, StreamClosedError):
            return
        assert status.returncode is None or 0 <= status.returncode <= 255

    check()


@pytest.mark.parametrize("protocol", ALL, ids=_ids)
def test_property_arbitrary_bytes_in_either_frame_type(protocol):
    @PROPERTY
    @given(is_text=st.booleans(), data=st.binary(max_size=256))
    def check(is_text: bool, data: bytes) -> None:
        conn = make(protocol)
        try:
            conn.receive(is_text, data)
        except RemoteProtocolError:
            assert conn.state is ConnectionState.ERROR
        except LocalProtocolError:
            pytest.fail("a fresh connection must not raise LocalProtocolError")

    check()


@PROPERTY
@given(
    protocol=st.sampled_from(ALL),
    channel=st.integers(0, 207),
    payload=st.binary(max_size=2048),
)
def test_property_encode_decode_round_trip(protocol, channel, payload):
    is_text, data = encode_message(protocol, channel, payload)
    assert is_text is protocol.base64
    assert decode_message(protocol, data) == (channel, payload)


@PROPERTY
@given(protocol=st.sampled_from(ALL), payload=st.binary(max_size=200_000))
def test_property_stdin_chunks_reassemble(protocol, payload):
    messages = make(protocol).stdin_messages(payload)
    assert all(len(wire) <= MAX_MESSAGE_SIZE for _, wire in messages)
    assert b"".join(decode_message(protocol, wire)[1] for _, wire in messages) == payload


@PROPERTY
@given(
    protocol=st.sampled_from(JSON_STATUS),
    body=st.sampled_from([SUCCESS, EXIT_2, INTERNAL, INTERNAL_UTF8]),
    cuts=st.lists(st.integers(0, len(INTERNAL_UTF8)), max_size=8),
)
def test_property_status_in_any_number_of_pieces(protocol, body, cuts):
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    conn = make(protocol)
    events = [feed(conn, ERROR, body[a:b]) for a, b in zip(points, points[1:])]
    statuses = [e for e in events if e is not None]
    assert len(statuses) == 1
    assert events[-1] is statuses[0]
    assert conn.connection_lost(1000) == statuses[0].exit_status


@PROPERTY
@given(
    sizes=st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), max_size=5),
    cut=st.integers(0, 200),
)
def test_property_resize_stream_round_trip(sizes, cut):
    stream = b"".join(encode_resize(w, h) for w, h in sizes)
    cut = min(cut, len(stream))
    first, rest = decode_resize_stream(stream[:cut])
    second, leftover = decode_resize_stream(rest + stream[cut:])
    assert first + second == sizes
    assert leftover == b""
