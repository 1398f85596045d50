"""The emulator's port-forward, byte by byte: raw websocket-client and the SPDY codec as the peer.

Path B (legacy channels, PROTOCOL.md 9) and Path C (SPDY/3.1 in the WebSocket, PROTOCOL.md 10):
the preamble, the channel layout, the pairing of streams, half-close, errors and faults.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import struct
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import pytest
import websocket

from k8sstream._spdy import (
    DataFrame,
    Frame,
    FrameCodec,
    GoAwayFrame,
    PingFrame,
    RstStatus,
    RstStreamFrame,
    SynReplyFrame,
    SynStreamFrame,
)
from k8sstream.testing import ApiServer, EchoServer, Pod, SinkServer
from tests.emulator_helpers import (
    TIMEOUT,
    V4,
    connect,
    http_request,
    raw_exchange,
    read_until_close,
    split_response,
    upgrade_request,
)

TUNNEL = "SPDY/3.1+portforward.k8s.io"
PF = "/api/v1/namespaces/default/pods/demo/portforward"


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as service:
        yield service


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    with SinkServer() as service:
        yield service


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections for as long as the test runs (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def server(echo: EchoServer, sink: SinkServer, closed_port: int) -> Iterator[ApiServer]:
    """Pod demo: port 80 echoes, 81 is a sink, 82 refuses."""
    with ApiServer(with_demo_pod=False, stream_creation_timeout=0.5) as api:
        api.add_pod(
            Pod(
                "demo",
                ports={80: echo.port, 81: sink.port, 82: closed_port},
                port_names={"http": 80},
            )
        )
        api.add_pod(Pod("unscheduled", node_name=""))
        yield api


def map_port(server: ApiServer, port: int, listener: socket.socket) -> None:
    """Point a pod port at a listener the test drives by hand (ports are read per dial)."""
    ports = server.get_pod("default", "demo").ports
    assert isinstance(ports, dict)
    ports[port] = listener.getsockname()[1]


# --- Path B ---------------------------------------------------------------------------------


def recv_message(ws: websocket.WebSocket) -> Tuple[int, bytes]:
    opcode, data = ws.recv_data(control_frame=False)
    return opcode, data


def test_legacy_preamble_on_both_channels_of_every_port_then_echo(server: ApiServer) -> None:
    ws = connect(server, PF + "?ports=80,81", [V4])
    try:
        assert ws.subprotocol == V4
        preamble = [recv_message(ws)[1] for _ in range(4)]
        assert preamble == [b"\x00\x50\x00", b"\x01\x50\x00", b"\x02\x51\x00", b"\x03\x51\x00"]
        ws.send_binary(b"\x00hello")
        ws.send_binary(b"\x01ignored: the error channel is the server's")
        ws.send_binary(b"\x09unknown channel")
        ws.send_binary(b"\x00 world")
        received = b""
        while received != b"hello world":
            opcode, data = recv_message(ws)
            assert opcode == websocket.ABNF.OPCODE_BINARY and data[:1] == b"\x00"
            received += data[1:]
    finally:
        ws.close()


def test_legacy_base64_variant(server: ApiServer) -> None:
    ws = connect(server, PF + "?ports=80", ["v4.base64.channel.k8s.io"])
    try:
        assert [ws.recv_data()[1] for _ in range(2)] == [b"0UAA=", b"1UAA="]
        ws.send("0" + base64.b64encode(b"ping").decode())
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT
        assert data == b"0" + base64.b64encode(b"ping")
    finally:
        ws.close()


def test_legacy_without_subprotocol_is_binary(server: ApiServer) -> None:
    ws = connect(server, PF + "?ports=80", None)
    try:
        assert [recv_message(ws)[1] for _ in range(2)] == [b"\x00\x50\x00", b"\x01\x50\x00"]
    finally:
        ws.close()
    assert server.requests[-1].subprotocol == ""


def test_legacy_refused_port_reports_on_error_channel_then_closes(server: ApiServer) -> None:
    ws = connect(server, PF + "?ports=82", [V4])
    transcript = read_until_close(ws)
    assert transcript.channel(0) == b"\x52\x00"
    error = transcript.channel(1)[2:].decode()
    assert error.startswith("error forwarding port 82 to pod ")
    assert ", uid : " in error and "connect: connection refused" in error
    assert transcript.close_code == 1000


def test_legacy_remote_close_ends_the_port_silently_and_the_socket_with_1000(
    server: ApiServer,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        map_port(server, 83, listener)
        ws = connect(server, PF + "?ports=83", [V4])
        conn, _ = listener.accept()
        conn.sendall(b"bye")
        conn.close()
        transcript = read_until_close(ws)
    finally:
        listener.close()
    assert transcript.channel(0) == b"\x53\x00bye"
    assert transcript.channel(1) == b"\x53\x00"  # nothing but the preamble: no error text
    assert transcript.close_code == 1000


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ("", 400, b'query parameter "port" is required'),
        ("?ports=0", 400, b'port "0" must be > 0'),
        ("?ports=80&ports=0", 400, b'port "80,0" must be > 0'),
    ],
)
def test_legacy_kubelet_port_checks_are_plain_text(
    server: ApiServer, query: str, status: int, body: bytes
) -> None:
    status_line, headers, content = split_response(
        raw_exchange(server, upgrade_request(PF + query, protocols=V4))
    )
    assert status_line == f"HTTP/1.1 {status} Bad Request"
    assert headers["content-type"].startswith("text/plain")
    assert content == body


@pytest.mark.parametrize("value", ["abc", "70000", "", "-1"])
def test_bad_ports_value_is_an_api_server_status(server: ApiServer, value: str) -> None:
    for protocols in (V4, TUNNEL):
        status_line, _, content = split_response(
            raw_exchange(
                server,
                upgrade_request(PF + "?ports=" + value, protocols=protocols),
                read_until_eof=False,
            )
        )
        assert status_line == "HTTP/1.1 400 Bad Request"
        status = json.loads(content)
        assert status["reason"] == "BadRequest" and "strconv.ParseUint" in status["message"]


def test_refusals_before_the_upgrade(server: ApiServer) -> None:
    raw = raw_exchange(server, upgrade_request(PF + "?ports=80", protocols="channel.k8s.io"))
    assert raw == b"HTTP/1.1 403 Forbidden\r\n\r\n"

    missing = PF.replace("demo", "nothere") + "?ports=80"
    status_line, _, content = split_response(
        raw_exchange(server, upgrade_request(missing), read_until_eof=False)
    )
    assert status_line == "HTTP/1.1 404 Not Found"
    assert json.loads(content)["message"] == 'pods "nothere" not found'

    unscheduled = PF.replace("demo", "unscheduled")
    for protocols in (V4, TUNNEL):
        status_line, _, content = split_response(
            raw_exchange(
                server, upgrade_request(unscheduled, protocols=protocols), read_until_eof=False
            )
        )
        assert status_line == "HTTP/1.1 400 Bad Request"
        assert json.loads(content)["message"] == "pod unscheduled does not have a host assigned"

    spdy = (
        f"POST {PF} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        "X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    status_line, _, content = split_response(raw_exchange(server, spdy))
    assert status_line == "HTTP/1.1 400 Bad Request"
    assert "does not implement SPDY/3.1" in json.loads(content)["message"]


def test_tunnel_for_another_spdy_protocol_is_the_runtimes_403(server: ApiServer) -> None:
    raw = raw_exchange(server, upgrade_request(PF, protocols="SPDY/3.1+v4.channel.k8s.io"))
    status_line, headers, content = split_response(raw)
    assert status_line == "HTTP/1.1 403 Forbidden"
    assert headers["x-accepted-stream-protocol-versions"] == "portforward.k8s.io"
    assert b"unable to negotiate protocol" in content


def test_pod_json_lists_the_ports_for_kubectl(server: ApiServer) -> None:
    pod = http_request(server, "/api/v1/namespaces/default/pods/demo").json()
    assert pod["spec"]["containers"][0]["ports"] == [
        {"name": "http", "containerPort": 80, "protocol": "TCP"},
        {"containerPort": 81, "protocol": "TCP"},
        {"containerPort": 82, "protocol": "TCP"},
    ]


# --- Path C ---------------------------------------------------------------------------------


class Tunnel:
    """A SPDY client over a raw WebSocket, collecting every frame the server sends."""

    def __init__(
        self,
        server: ApiServer,
        protocols: Sequence[str] = (TUNNEL,),
        query: str = "",
        sslopt: Optional[dict] = None,
    ) -> None:
        self.ws = connect(server, PF + query, protocols, sslopt=sslopt)
        self.codec = FrameCodec()
        self.frames: List[Frame] = []
        self.message_sizes: List[int] = []
        self.next_id = 1
        self.close_code: Optional[int] = None

    def send(self, *frames: Frame, split: int = 0) -> None:
        data = b"".join(self.codec.encode(f) for f in frames)
        step = split or len(data)
        for i in range(0, len(data), step):
            self.ws.send_bytes(data[i : i + step])

    def open(self, kind: str, port: int = 80, request_id: Optional[str] = "0", **extra: str) -> int:
        headers = {"streamtype": kind, "port": str(port), **extra}
        if request_id is not None:
            headers["requestid"] = request_id
        sid = self.next_id
        self.next_id += 2
        self.send(SynStreamFrame(sid, tuple(headers.items())))
        return sid

    def connection(self, port: int = 80, request_id: str = "0") -> Tuple[int, int]:
        """Open an error and a data stream as client-go does; returns their ids."""
        error_id = self.open("error", port, request_id)
        self.send(DataFrame(error_id, b"", fin=True))
        return error_id, self.open("data", port, request_id)

    def _read(self, deadline: float) -> bool:
        self.ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            frame = self.ws.recv_frame()
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return False
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            self.close_code = struct.unpack("!H", frame.data[:2])[0] if frame.data else None
            return False
        self.message_sizes.append(len(frame.data))
        self.frames += self.codec.receive(frame.data)
        return True

    def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for frame in self.frames[seen:]:
                if predicate(frame):
                    return frame
            seen = len(self.frames)
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"no such frame; got {self.frames!r}")

    def stream_data(self, sid: int, timeout: float = TIMEOUT) -> Tuple[bytes, str]:
        """All data on a stream and how it ended: "fin" or "rst"."""
        end = self.wait_for(
            lambda f: (
                (isinstance(f, DataFrame) and f.stream_id == sid and f.fin)
                or (isinstance(f, RstStreamFrame) and f.stream_id == sid)
            ),
            timeout,
        )
        data = b"".join(
            f.data for f in self.frames if isinstance(f, DataFrame) and f.stream_id == sid
        )
        return data, "rst" if isinstance(end, RstStreamFrame) else "fin"

    def has(self, predicate: Callable[[Frame], bool]) -> bool:
        return any(predicate(f) for f in self.frames)

    def wait_close(self, timeout: float = TIMEOUT) -> Optional[int]:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            assert time.monotonic() < deadline, "the server did not close"
        return self.close_code

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def tunnel(server: ApiServer) -> Iterator[Tunnel]:
    t = Tunnel(server)
    try:
        yield t
    finally:
        t.close()


def is_reply(sid: int) -> Callable[[Frame], bool]:
    return lambda f: isinstance(f, SynReplyFrame) and f.stream_id == sid


def is_rst(sid: int) -> Callable[[Frame], bool]:
    return lambda f: isinstance(f, RstStreamFrame) and f.stream_id == sid


def test_tunnel_upgrade_ignores_ports_and_prefers_the_tunnel(server: ApiServer) -> None:
    t = Tunnel(server, [TUNNEL, V4], query="?ports=1")
    try:
        assert t.ws.subprotocol == TUNNEL.lower()  # websocket-client lower-cases it
        assert server.requests[-1].subprotocol == TUNNEL
        t.send(PingFrame(1))
        assert t.wait_for(lambda f: isinstance(f, PingFrame)) == PingFrame(1)
        assert t.frames == [PingFrame(1)]  # nothing else: no SETTINGS, no hello
    finally:
        t.close()


def test_syn_reply_and_echo_with_frames_split_at_every_byte(tunnel: Tunnel) -> None:
    error_id, data_id = tunnel.connection()
    assert tunnel.wait_for(is_reply(error_id)) == SynReplyFrame(error_id, ())
    tunnel.wait_for(is_reply(data_id))
    tunnel.send(DataFrame(data_id, b"split "), DataFrame(data_id, b"frames"), split=1)
    tunnel.send(DataFrame(data_id, b"!", fin=True), split=3)
    assert tunnel.stream_data(data_id) == (b"split frames!", "fin")
    assert tunnel.stream_data(error_id) == (b"", "fin")


def test_half_close_reaches_the_target_and_its_reply_still_arrives(
    tunnel: Tunnel, sink: SinkServer
) -> None:
    error_id, data_id = tunnel.connection(port=81)
    tunnel.send(DataFrame(data_id, b"x" * 100_000), DataFrame(data_id, b"", fin=True))
    # The sink answers only after EOF: the count proves shutdown(SHUT_WR) reached it.
    assert tunnel.stream_data(data_id) == (b"100000\n", "fin")
    assert tunnel.stream_data(error_id) == (b"", "fin")
    assert not tunnel.has(lambda f: isinstance(f, RstStreamFrame))


def test_concurrent_connections_in_one_session(tunnel: Tunnel) -> None:
    errors = [tunnel.open("error", 80, str(n)) for n in range(6)]
    datas = [tunnel.open("data", 80, str(n)) for n in range(6)]
    for n, sid in enumerate(datas):
        tunnel.send(DataFrame(sid, f"conn {n};".encode() * 1000))
    for sid in reversed(datas):
        tunnel.send(DataFrame(sid, b"", fin=True))
    for n, sid in enumerate(datas):
        assert tunnel.stream_data(sid) == (f"conn {n};".encode() * 1000, "fin")
    for sid in errors:
        assert tunnel.stream_data(sid) == (b"", "fin")


def test_large_transfer_keeps_messages_at_32_kib(tunnel: Tunnel) -> None:
    _error_id, data_id = tunnel.connection()
    payload = bytes(range(256)) * (4 << 12)  # 4 MiB
    for i in range(0, len(payload), 32768):
        tunnel.send(DataFrame(data_id, payload[i : i + 32768]))
        # Read as we go so neither side's buffers fill (the echo is bounded, not a queue).
        while tunnel.ws.sock is not None and _readable(tunnel.ws.sock):
            tunnel._read(time.monotonic() + 1)
    tunnel.send(DataFrame(data_id, b"", fin=True))
    assert tunnel.stream_data(data_id, timeout=30) == (payload, "fin")
    assert max(tunnel.message_sizes) <= 32 * 1024


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


@pytest.mark.parametrize(
    "headers",
    [
        {"streamtype": "bogus", "port": "80"},
        {"streamtype": "data"},
        {"streamtype": "data", "port": "0"},
        {"streamtype": "data", "port": "65536"},
        {"port": "80"},
    ],
)
def test_invalid_streams_are_reset_with_cancel(tunnel: Tunnel, headers: dict) -> None:
    tunnel.send(SynStreamFrame(1, tuple(headers.items())))
    assert tunnel.wait_for(is_rst(1)) == RstStreamFrame(1, RstStatus.CANCEL)
    assert not tunnel.has(is_reply(1))


def test_ping_is_echoed(tunnel: Tunnel) -> None:
    tunnel.send(PingFrame(7), PingFrame(2), PingFrame(9))
    tunnel.wait_for(lambda f: f == PingFrame(9))
    assert [f for f in tunnel.frames if isinstance(f, PingFrame)] == [PingFrame(7), PingFrame(9)]


def test_streams_are_paired_by_request_id(tunnel: Tunnel) -> None:
    error_a = tunnel.open("error", 80, "a")
    error_b = tunnel.open("error", 81, "b")
    data_b = tunnel.open("data", 81, "b")  # the data stream's port decides: 81 is the sink
    data_a = tunnel.open("data", 80, "a")
    tunnel.send(DataFrame(data_a, b"echo me", fin=True), DataFrame(data_b, b"count me", fin=True))
    assert tunnel.stream_data(data_a) == (b"echo me", "fin")
    assert tunnel.stream_data(data_b) == (b"8\n", "fin")
    assert tunnel.stream_data(error_a)[1] == tunnel.stream_data(error_b)[1] == "fin"


def test_without_request_id_data_pairs_with_the_error_stream_two_before(tunnel: Tunnel) -> None:
    error_id = tunnel.open("error", request_id=None)
    data_id = tunnel.open("data", request_id=None)
    tunnel.send(DataFrame(data_id, b"legacy", fin=True))
    assert tunnel.stream_data(data_id) == (b"legacy", "fin")
    assert tunnel.stream_data(error_id) == (b"", "fin")


def test_refused_port_error_text_then_both_streams_reset(tunnel: Tunnel) -> None:
    error_id, data_id = tunnel.connection(port=82)
    text, end = tunnel.stream_data(error_id)
    assert end == "rst"
    assert text.startswith(b"error forwarding port 82 to pod ")
    assert b"dial tcp4 127.0.0.1:82: connect: connection refused" in text
    assert tunnel.wait_for(is_rst(data_id)) == RstStreamFrame(data_id, RstStatus.CANCEL)
    # The session survives: the next connection works.
    _, data_id = tunnel.connection(request_id="1")
    tunnel.send(DataFrame(data_id, b"still here", fin=True))
    assert tunnel.stream_data(data_id) == (b"still here", "fin")


def test_unpaired_stream_times_out(tunnel: Tunnel) -> None:
    error_id = tunnel.open("error", 80, "lonely")
    text, end = tunnel.stream_data(error_id, timeout=5)
    assert b"timed out waiting for streams" in text and b"request=lonely" in text
    assert end == "rst"


def test_duplicate_stream_type_is_reported_on_the_error_stream(tunnel: Tunnel) -> None:
    error_id = tunnel.open("error", 80, "dup")
    second = tunnel.open("error", 80, "dup")
    assert tunnel.wait_for(is_rst(second)) == RstStreamFrame(second, RstStatus.CANCEL)
    text = tunnel.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == error_id)
    assert isinstance(text, DataFrame)
    assert text.data == b"error processing stream for request dup: error stream already assigned"


def test_client_reset_closes_the_target_connection(server: ApiServer, tunnel: Tunnel) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        map_port(server, 84, listener)
        _, data_id = tunnel.connection(port=84)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            tunnel.send(DataFrame(data_id, b"before"))
            assert conn.recv(100) == b"before"
            tunnel.send(RstStreamFrame(data_id, RstStatus.CANCEL))
            assert conn.recv(100) == b""  # the runtime closed its connection to the pod
    finally:
        listener.close()


def test_client_goaway_ends_the_session_with_close_1000(tunnel: Tunnel) -> None:
    _, data_id = tunnel.connection()
    tunnel.send(DataFrame(data_id, b"last", fin=True))
    assert tunnel.stream_data(data_id) == (b"last", "fin")
    tunnel.send(GoAwayFrame(0, 0))
    assert tunnel.wait_close() == 1000


def test_text_message_breaks_the_tunnel(tunnel: Tunnel) -> None:
    tunnel.ws.send("not binary")
    assert tunnel.wait_close() is None  # dropped, no Close frame


def test_several_sessions_at_once(server: ApiServer) -> None:
    tunnels = [Tunnel(server) for _ in range(3)]
    try:
        for n, t in enumerate(tunnels):
            _, data_id = t.connection()
            t.send(DataFrame(data_id, b"session %d" % n, fin=True))
        for n, t in enumerate(tunnels):
            assert t.stream_data(3) == (b"session %d" % n, "fin")
    finally:
        for t in tunnels:
            t.close()


def test_tunnel_over_tls_with_concurrent_pumps(echo: EchoServer) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with ApiServer(server_ctx, with_demo_pod=False) as api:
        api.add_pod(Pod("demo", ports={80: echo.port}))
        t = Tunnel(api, sslopt={"context": client_ctx})
        try:
            ids = [t.connection(request_id=str(n))[1] for n in range(4)]
            payload = bytes(range(256)) * 512
            for sid in ids:
                t.send(DataFrame(sid, payload), DataFrame(sid, b"", fin=True))
            for sid in ids:
                assert t.stream_data(sid) == (payload, "fin")
        finally:
            t.close()


# --- faults ---------------------------------------------------------------------------------


def test_fault_reset_next_data_stream(server: ApiServer, tunnel: Tunnel) -> None:
    server.faults.reset_next_data_stream()
    error_id, data_id = tunnel.connection()
    tunnel.wait_for(is_reply(data_id))
    assert tunnel.wait_for(is_rst(data_id)) == RstStreamFrame(data_id, RstStatus.CANCEL)
    assert tunnel.stream_data(error_id) == (b"", "fin")
    _, data_id = tunnel.connection(request_id="1")
    tunnel.send(DataFrame(data_id, b"ok", fin=True))
    assert tunnel.stream_data(data_id) == (b"ok", "fin")


def test_fault_ignore_next_syn_stream(server: ApiServer, tunnel: Tunnel) -> None:
    server.faults.ignore_next_syn_stream()
    ignored = tunnel.open("error", 80, "x")
    answered = tunnel.open("error", 80, "y")
    tunnel.wait_for(is_reply(answered))
    assert not tunnel.has(is_reply(ignored))


def test_fault_send_goaway_after_a_connection(server: ApiServer) -> None:
    server.faults.send_goaway(after_connections=1)
    t = Tunnel(server)
    try:
        _, data_id = t.connection()
        goaway = t.wait_for(lambda f: isinstance(f, GoAwayFrame))
        assert goaway == GoAwayFrame(data_id, 0)
        refused = t.open("error", 80, "1")
        assert t.wait_for(is_rst(refused)) == RstStreamFrame(refused, RstStatus.REFUSED_STREAM)
        t.send(DataFrame(data_id, b"finish", fin=True))
        assert t.stream_data(data_id) == (b"finish", "fin")
        assert t.wait_close() == 1000
    finally:
        t.close()


def test_stop_with_a_target_that_never_reads(server: ApiServer) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        map_port(server, 85, listener)
        t = Tunnel(server)
        _, data_id = t.connection(port=85)
        conn, _ = listener.accept()
        t.ws.settimeout(0.5)
        try:
            for _ in range(400):  # until the runtime's reader blocks on the full target
                t.send(DataFrame(data_id, b"\0" * 32768))
        except (websocket.WebSocketTimeoutException, socket.timeout):
            pass
        server.stop()  # must not hang, and must leave nothing behind
        t.ws.shutdown()
        conn.close()
    finally:
        listener.close()


# --- the services ---------------------------------------------------------------------------


def test_echo_and_sink_services() -> None:
    with EchoServer(max_connections=1) as echo, SinkServer(source_bytes=100_000) as sink:
        with socket.create_connection(echo.address, timeout=TIMEOUT) as sock:
            sock.sendall(b"abc")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(10) == b"abc" and sock.recv(10) == b""
        with socket.create_connection(sink.address, timeout=TIMEOUT) as sock:
            sock.sendall(b"12345")
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data == SinkServer.pattern(100_000) + b"5\n"
        assert sink.received == 5 and echo.connections == 1
