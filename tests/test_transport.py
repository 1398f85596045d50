"""The WebSocket transport against scripted raw-socket servers."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

import pytest

from k8sstream._transport import DialOptions, WebSocketConnection, dial
from k8sstream.errors import ApiError, ConnectError, RemoteProtocolError, StreamClosedError
from tests.scripted import (
    ScriptedServer,
    accept_upgrade,
    binary,
    close_frame,
    frame,
    read_frame,
    read_request,
)

OFFER = ("v5.channel.k8s.io", "v4.channel.k8s.io")


class Peer:
    """A client connection with its received messages and close report."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.messages: queue.Queue[Tuple[bool, bytes]] = queue.Queue()
        self.closed: queue.Queue[Tuple[Optional[int], str, Optional[BaseException]]] = queue.Queue()
        self.on_message: Callable[[bool, bytes], None] = lambda t, d: self.messages.put((t, d))
        ws, self.protocol = dial(
            DialOptions(url=url, subprotocols=OFFER, headers={"Authorization": "Bearer s3cret"})
        )
        self.conn = WebSocketConnection(
            ws,
            lambda t, d: self.on_message(t, d),
            lambda *a: self.closed.put(a),
            tag="test",
            **kwargs,
        )
        self.conn.start()

    def close_report(
        self, timeout: float = 5.0
    ) -> Tuple[Optional[int], str, Optional[BaseException]]:
        report = self.closed.get(timeout=timeout)
        assert self.conn.wait_finished(5)
        return report


@pytest.fixture
def serve():
    servers: List[ScriptedServer] = []

    def start(script: Callable[[socket.socket], None]) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_handshake_offers_one_header_line_and_returns_the_choice(serve):
    seen = {}

    def script(sock):
        seen.update(accept_upgrade(sock, "v4.channel.k8s.io"))
        sock.sendall(close_frame(1000))
        read_frame(sock)

    peer = Peer(serve(script).url)
    assert peer.protocol == "v4.channel.k8s.io"
    assert peer.close_report()[0] == 1000
    assert seen["sec-websocket-protocol"] == "v5.channel.k8s.io, v4.channel.k8s.io"
    assert seen["authorization"] == "Bearer s3cret"
    assert "origin" not in seen


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (
            404,
            b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            b'"message":"pods \\"web-0\\" not found","reason":"NotFound",'
            b'"details":{"name":"web-0","kind":"pods"},"code":404}',
            'pods "web-0" not found',
        ),
        (500, b'container not found ("app")', 'container not found ("app")'),
        (403, b"", "(no response body)"),
    ],
)
def test_refused_upgrade_is_an_api_error(serve, status, body, expected):
    def script(sock):
        read_request(sock)
        head = f"HTTP/1.1 {status} Nope\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        sock.sendall(head + body)

    server = serve(script)
    with pytest.raises(ApiError) as info:
        dial(
            DialOptions(
                url=server.url, subprotocols=OFFER, headers={"Authorization": "Bearer s3cret"}
            )
        )
    assert info.value.status_code == status
    assert expected in info.value.message
    assert "s3cret" not in str(info.value)
    if status == 404:
        assert info.value.status.reason == "NotFound"
    if status == 403:
        assert "pods/exec" in info.value.message and "create" in info.value.message


def test_connection_refused_is_a_connect_error():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(ConnectError, match="cannot connect"):
        dial(DialOptions(url=f"ws://127.0.0.1:{port}/x", subprotocols=OFFER, headers={}))


def test_messages_split_into_single_bytes_arrive_whole(serve):
    messages = [b"\x01" + bytes(range(256)) * 3, b"\x02err", b"\x01" + b"x" * 70000]

    def script(sock):
        accept_upgrade(sock)
        wire = b"".join(binary(m) for m in messages) + close_frame(1000)
        for i in range(0, len(wire), 1 if len(wire) < 2000 else 997):
            sock.sendall(wire[i : i + (1 if len(wire) < 2000 else 997)])
        read_frame(sock)

    peer = Peer(serve(script).url)
    assert [peer.messages.get(timeout=5)[1] for _ in messages] == messages
    assert peer.close_report()[:2] == (1000, "")


def test_fragmented_message_is_reassembled(serve):
    def script(sock):
        accept_upgrade(sock)
        sock.sendall(frame(0x2, b"\x01abc", fin=False) + frame(0x0, b"def", fin=False))
        sock.sendall(frame(0x0, b"ghi") + close_frame(1000))
        read_frame(sock)

    peer = Peer(serve(script).url)
    assert peer.messages.get(timeout=5) == (False, b"\x01abcdefghi")
    peer.close_report()


def test_ping_is_answered_with_the_same_payload(serve):
    pongs: queue.Queue[Tuple[int, bytes]] = queue.Queue()

    def script(sock):
        accept_upgrade(sock)
        sock.sendall(frame(0x9, b"are you there"))
        pongs.put(read_frame(sock))
        sock.sendall(close_frame(1000))
        read_frame(sock)

    peer = Peer(serve(script).url, ping_interval=None)
    assert pongs.get(timeout=5) == (0xA, b"are you there")
    peer.close_report()


@pytest.mark.parametrize("code", [1000, 1001, 1011])
def test_server_close_is_reported_and_echoed(serve, code):
    replies: queue.Queue[Tuple[int, bytes]] = queue.Queue()

    def script(sock):
        accept_upgrade(sock)
        sock.sendall(close_frame(code, b"bye"))
        replies.put(read_frame(sock))

    peer = Peer(serve(script).url)
    assert peer.close_report() == (code, "bye", None)
    assert replies.get(timeout=5) == (0x8, struct.pack("!H", code))


def test_eof_without_close_frame_reports_no_code(serve):
    def script(sock):
        accept_upgrade(sock)
        sock.sendall(binary(b"\x01partial"))
        sock.shutdown(socket.SHUT_WR)

    peer = Peer(serve(script).url)
    assert peer.messages.get(timeout=5)[1] == b"\x01partial"
    assert peer.close_report() == (None, "", None)


def test_connection_dropped_mid_frame(serve):
    def script(sock):
        accept_upgrade(sock)
        sock.sendall(binary(b"\x01" + b"y" * 1000)[:500])

    peer = Peer(serve(script).url)
    code, _, _ = peer.close_report()
    assert code is None
    assert peer.messages.empty()


@pytest.mark.parametrize(
    "bad_frame, message",
    [
        (frame(0x2, b"\x01masked", mask=True), "masked"),
        (frame(0x3, b"\x01"), "invalid WebSocket frame"),
        (frame(0x0, b"\x01cont"), "invalid WebSocket frame"),
    ],
)
def test_protocol_violations_fail_with_close_1002(serve, bad_frame, message):
    replies: queue.Queue[Tuple[int, bytes]] = queue.Queue()

    def script(sock):
        accept_upgrade(sock)
        sock.sendall(bad_frame)
        replies.put(read_frame(sock))

    peer = Peer(serve(script).url)
    _, _, error = peer.close_report()
    assert isinstance(error, RemoteProtocolError)
    assert message in str(error)
    assert replies.get(timeout=5) == (0x8, struct.pack("!H", 1002))


def test_client_close_handshake(serve):
    got: queue.Queue[Tuple[int, bytes]] = queue.Queue()

    def script(sock):
        accept_upgrade(sock)
        opcode, payload = read_frame(sock)
        got.put((opcode, payload))
        sock.sendall(close_frame(1000))

    peer = Peer(serve(script).url)
    peer.conn.close()
    assert got.get(timeout=5) == (0x8, struct.pack("!H", 1000))
    assert peer.close_report()[0] == 1000
    with pytest.raises(StreamClosedError):
        peer.conn.send_message(False, b"\x00late")


def test_client_frames_are_masked_binary_and_whole_under_concurrency(serve):
    received: List[bytes] = []
    writers, per_writer = 4, 50

    def script(sock):
        accept_upgrade(sock)
        for _ in range(writers * per_writer):
            opcode, payload = read_frame(sock)
            assert opcode == 0x2
            received.append(payload)
        sock.sendall(close_frame(1000))
        read_frame(sock)

    peer = Peer(serve(script).url)

    def write(n: int) -> None:
        for i in range(per_writer):
            peer.conn.send_message(False, bytes([n]) * (1000 + i * 300))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peer.close_report()
    assert len(received) == writers * per_writer
    for payload in received:
        assert payload == bytes([payload[0]]) * len(payload)


def test_blocked_writer_does_not_stop_the_reader(serve):
    """The exec deadlock: the server stops reading until we have read what it sends."""
    release = threading.Event()

    def script(sock):
        accept_upgrade(sock)
        # Send a lot without reading anything: our client's sends must block meanwhile.
        for _ in range(200):
            sock.sendall(binary(b"\x01" + b"o" * 32768))
        release.wait(10)
        sock.sendall(close_frame(1000))
        sock.settimeout(10)
        while read_frame(sock)[0] != 0x8:
            pass

    peer = Peer(serve(script).url)
    sender_done = threading.Event()

    def send_lots() -> None:
        try:
            for _ in range(100):
                peer.conn.send_message(False, b"\x00" + b"i" * 65535)
        except StreamClosedError:
            pass
        sender_done.set()

    sender = threading.Thread(target=send_lots)
    sender.start()
    got = sum(len(peer.messages.get(timeout=10)[1]) for _ in range(200))
    assert got == 200 * 32769
    release.set()
    peer.close_report(timeout=15)
    sender.join(15)
    assert sender_done.is_set()


def test_keepalive_pings_and_detects_a_dead_peer(serve):
    pings: List[int] = []

    def script(sock):
        accept_upgrade(sock)
        sock.settimeout(5)
        try:
            while True:
                pings.append(read_frame(sock)[0])
        except (ConnectionError, OSError):
            pass

    peer = Peer(serve(script).url, ping_interval=0.1, dead_after=0.6)
    _, _, error = peer.close_report()
    assert isinstance(error, StreamClosedError)
    assert "dead" in str(error)
    assert pings.count(0x9) >= 3


def test_abort_wakes_an_idle_reader(serve):
    def script(sock):
        accept_upgrade(sock)
        sock.settimeout(3)
        try:
            sock.recv(1)  # returns as soon as the client's socket closes
        except OSError:
            pass

    peer = Peer(serve(script).url, ping_interval=None)
    start = time.monotonic()
    peer.conn.abort()
    peer.close_report()
    assert time.monotonic() - start < 1.0


def test_back_pressure_stops_reading_the_socket(serve):
    sent = {"n": 0}
    unblock = threading.Event()

    def script(sock):
        accept_upgrade(sock)
        sock.settimeout(0.5)
        try:
            for _ in range(10000):
                sock.sendall(binary(b"\x01" + b"z" * 65535))
                sent["n"] += 1
        except (socket.timeout, OSError):
            pass
        unblock.set()

    peer = Peer(serve(script).url, ping_interval=None)
    gate = threading.Event()
    delivered = []

    def slow(is_text: bool, data: bytes) -> None:
        delivered.append(len(data))
        gate.wait(10)

    peer.on_message = slow
    assert unblock.wait(15)
    # With the consumer blocked, only what fits in the socket buffers has left the server.
    assert sent["n"] < 200
    assert len(delivered) == 1
    gate.set()
    peer.conn.abort()
    peer.close_report()
