"""Fault injection at the public API: every fault ends in a documented exception, in time,
with the output received before it, and with nothing left behind (the autouse leak check).

The byte-level reactions of the transport are in test_transport.py; here the same faults
(and more) go through ``k8sstream.run``/``Popen``/``port_forward`` as a caller meets them,
from the emulator's fault hooks and from scripted raw-socket peers that also answer the
pod lookup, so the whole path (REST, upgrade, reader, pipes, communicate) is exercised.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import socket
import struct
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import k8sstream
from k8sstream import (
    ApiError,
    Client,
    ConnectError,
    PortForwardError,
    ProxyError,
    RemoteProtocolError,
    StreamClosedError,
    TimeoutExpired,
    process,
)
from k8sstream._status import exit_code_status
from k8sstream.testing import EchoServer, Pod
from tests.reliability import Stopwatch, record
from tests.scripted import GUID, ScriptedServer, binary, close_frame, frame, read_request

#: Every fault must end within the caller's timeout plus this much (thread joins, a close
#: handshake cut short). Generous for a loaded 2-core CI machine.
SLACK = 1.5
TIMEOUT = 5.0

POD = json.dumps(
    {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running"},
    }
).encode()

Script = Callable[[socket.socket, Dict[str, str]], None]


def answer_upgrade(
    sock: socket.socket, headers: Dict[str, str], protocol: Optional[str] = "v5.channel.k8s.io"
) -> None:
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest())
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept.decode()}\r\n"
    )
    if protocol is not None:
        response += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    sock.sendall((response + "\r\n").encode())


def drain(sock: socket.socket, seconds: float = 10.0) -> None:
    """Read (and drop) whatever the client sends until it closes or ``seconds`` pass."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def kubeconfig(path, server: str, token: str = "s3cret-token", proxy: Optional[str] = None):
    cluster = {"server": server}
    if proxy:
        cluster["proxy-url"] = proxy
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture
def peer(tmp_path) -> Iterator[Callable[[Script], Client]]:
    """``peer(script)``: a Client whose server answers the pod lookup, then runs ``script``
    on each upgrade request (with the request's headers)."""
    made: List[Tuple[Client, ScriptedServer]] = []

    def start(upgrade: Script) -> Client:
        def serve(sock: socket.socket) -> None:
            _, headers = read_request(sock)
            if headers.get("upgrade", "").lower() != "websocket":
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(POD) + POD
                )
                return
            upgrade(sock, headers)

        server = ScriptedServer(serve)
        path = kubeconfig(tmp_path / f"kc{len(made)}", f"http://127.0.0.1:{server.port}")
        client = Client.from_kubeconfig(path)
        made.append((client, server))
        return client

    yield start
    for client, server in made:
        client.close()
        server.close()


def run_capture(client: Client, timeout: float = TIMEOUT, **kwargs):
    return k8sstream.run(
        ["sh", "-c", "x"], pod="p", client=client, capture_output=True, timeout=timeout, **kwargs
    )


def expect(
    exc_type, client: Client, timeout: float = TIMEOUT, **kwargs
) -> Tuple[BaseException, float]:
    with Stopwatch() as watch, pytest.raises(exc_type) as info:
        run_capture(client, timeout, **kwargs)
    assert watch.elapsed < timeout + SLACK, f"took {watch.elapsed:.2f} s"
    return info.value, watch.elapsed


# --- the connection ends at the wrong moment ---------------------------------------------------


def test_close_mid_handshake_is_a_connect_error(peer):
    def script(sock, headers):
        sock.sendall(b"HTTP/1.1 101 Switching Pro")  # and close

    exc, elapsed = expect(ConnectError, peer(script))
    assert "s3cret" not in str(exc)
    record("connection", "TCP closed mid-handshake", type(exc).__name__, seconds=elapsed)


def test_close_right_after_101_through_the_emulator(client, emulator):
    emulator.faults.close_after_upgrade()
    with Stopwatch() as watch, pytest.raises(StreamClosedError, match="no close frame") as info:
        k8sstream.run(["echo", "x"], pod="demo", client=client, capture_output=True, timeout=5)
    assert info.value.close_code is None
    record(
        "connection",
        "TCP closed right after 101 (emulator)",
        "StreamClosedError",
        seconds=watch.elapsed,
    )


def test_close_mid_frame_keeps_the_output_before_it(peer):
    def script(sock, headers):
        answer_upgrade(sock, headers)
        sock.sendall(
            binary(b"\x01partial") + binary(b"\x02err") + binary(b"\x01" + b"y" * 999)[:300]
        )

    exc, elapsed = expect(StreamClosedError, peer(script))
    assert (exc.output, exc.stderr) == (b"partial", b"err")
    record(
        "connection",
        "TCP closed mid-frame",
        "StreamClosedError; earlier output kept",
        seconds=elapsed,
    )


@pytest.mark.parametrize("code", [1000, 1001, 1011, None])
@pytest.mark.parametrize("with_status", [True, False])
def test_close_codes_with_and_without_a_status(peer, code, with_status):
    def script(sock, headers):
        answer_upgrade(sock, headers)
        sock.sendall(binary(b"\x01partial"))
        if with_status:
            sock.sendall(binary(b"\x03" + exit_code_status(3)))
        if code is not None:
            sock.sendall(close_frame(code, b"going"))
            drain(sock, 3)
        # code None: EOF without a close frame, what a reset or crash looks like (1006)

    client = peer(script)
    label = f"close {code or '1006 (no frame)'}, {'with' if with_status else 'without'} status"
    if with_status:
        with Stopwatch() as watch:
            result = run_capture(client)
        assert (result.returncode, result.stdout) == (3, b"partial")
        record("close", label, "returncode 3, output intact", seconds=watch.elapsed)
    else:
        exc, elapsed = expect(StreamClosedError, client)
        assert exc.output == b"partial"
        assert exc.close_code == code
        record("close", label, f"StreamClosedError(close_code={code})", seconds=elapsed)


# --- malformed frames -------------------------------------------------------------------------


MALFORMED = {
    "unknown channel byte 7": binary(b"\x07x"),
    "client-only channel 0 (stdin)": binary(b"\x00x"),
    "reserved data opcode 0x3": frame(0x3, b"\x01x"),
    "reserved control opcode 0xB": frame(0xB, b""),
    "text frame on v5 (binary) protocol": frame(0x1, b"\x01text"),
    "masked server frame": frame(0x2, b"\x01masked", mask=True),
    "continuation without a start": frame(0x0, b"\x01x"),
    "RSV1 bit set (no extension negotiated)": bytes([0xC2, 2]) + b"\x01x",
    "fragmented control frame": frame(0x9, b"", fin=False),
    "ping over 125 bytes": frame(0x9, b"p" * 200),
    "pong over 125 bytes": frame(0xA, b"p" * 126),
    "fragmented pong": frame(0xA, b"", fin=False),
    "error channel over 1 MiB without a status": b"".join(
        binary(b"\x03" + b" " * 65536) for _ in range(17)
    ),
    "status that is not JSON": binary(b"\x03{not json}") + close_frame(1000),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_frames_are_remote_protocol_errors(peer, name):
    def script(sock, headers):
        answer_upgrade(sock, headers)
        sock.sendall(binary(b"\x01partial"))
        sock.sendall(MALFORMED[name])
        drain(sock, 5)

    exc, elapsed = expect(RemoteProtocolError, peer(script))
    assert exc.output == b"partial"
    record("malformed", name, "RemoteProtocolError; earlier output kept", seconds=elapsed)


def test_protocol_error_after_the_status_keeps_the_status(peer):
    """Garbage after the final status cannot change the result (it used to surface as a
    LocalProtocolError, "you broke it", from the already failed channel state machine)."""

    def script(sock, headers):
        answer_upgrade(sock, headers)
        sock.sendall(binary(b"\x01out") + binary(b"\x03" + exit_code_status(5)))
        sock.sendall(binary(b"\x03more") + frame(0x3, b"junk"))
        drain(sock, 5)

    with Stopwatch() as watch:
        result = run_capture(peer(script))
    assert (result.returncode, result.stdout) == (5, b"out")
    record(
        "malformed",
        "garbage after the final status",
        "returncode 5 kept, output intact",
        seconds=watch.elapsed,
    )


def test_invalid_base64_on_the_base64_protocol(peer):
    def script(sock, headers):
        answer_upgrade(sock, headers, "v4.base64.channel.k8s.io")
        sock.sendall(frame(0x1, b"1" + base64.b64encode(b"partial")))
        sock.sendall(frame(0x1, b"1!!not-base64!!"))
        drain(sock, 5)

    exc, elapsed = expect(
        RemoteProtocolError, peer(script), subprotocols=["v4.base64.channel.k8s.io"]
    )
    assert "base64" in str(exc)
    assert exc.output == b"partial"
    record("malformed", "invalid base64 (v4.base64)", "RemoteProtocolError", seconds=elapsed)


def test_huge_declared_frame_length_then_eof_buffers_nothing(peer):
    """A frame header announcing 2**62 bytes: websocket-client reads incrementally, so the
    client must not allocate it, and EOF ends the call."""

    def script(sock, headers):
        answer_upgrade(sock, headers)
        sock.sendall(binary(b"\x01partial"))
        sock.sendall(struct.pack("!BBQ", 0x82, 127, 1 << 62) + b"\x01" * 1000)

    exc, elapsed = expect(StreamClosedError, peer(script))
    assert exc.output == b"partial"
    record(
        "malformed", "frame declaring 2**62 bytes, then EOF", "StreamClosedError", seconds=elapsed
    )


@pytest.mark.parametrize(
    "chosen", [None, "v9.channel.k8s.io", "SPDY/3.1+portforward.k8s.io"], ids=str
)
def test_subprotocol_none_or_not_offered(peer, chosen):
    def script(sock, headers):
        answer_upgrade(sock, headers, chosen)
        drain(sock, 5)

    with Stopwatch() as watch, pytest.raises(RemoteProtocolError) as info:
        k8sstream.run(["x"], pod="p", client=peer(script), timeout=TIMEOUT)
    assert watch.elapsed < TIMEOUT
    assert "subprotocol" in str(info.value)
    record(
        "handshake",
        f"server chose subprotocol {chosen!r}",
        "RemoteProtocolError",
        seconds=watch.elapsed,
    )


# --- refusals ---------------------------------------------------------------------------------


STATUS_BODY = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    '"message":"emulated %d","reason":"Emulated","code":%d}'
)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
@pytest.mark.parametrize("with_body", [True, False], ids=["status-body", "plain"])
def test_upgrade_refusals_are_api_errors(client, emulator, status, with_body):
    if with_body:
        emulator.faults.refuse_next_upgrade(
            status, STATUS_BODY % (status, status), "application/json", count=2
        )
    else:
        emulator.faults.refuse_next_upgrade(status, "", count=2)  # 401 is retried once
    with Stopwatch() as watch, pytest.raises(ApiError) as info:
        k8sstream.run(["true"], pod="demo", client=client, timeout=TIMEOUT)
    assert info.value.status_code == status
    if with_body:
        assert info.value.message.startswith(f"emulated {status}")
        assert info.value.status.reason == "Emulated"
    assert watch.elapsed < TIMEOUT
    record(
        "refusal",
        f"upgrade refused {status} {'with Status' if with_body else 'no body'}",
        f"ApiError({status})",
        seconds=watch.elapsed,
    )


def fake_proxy(behaviour: str, release: Optional[threading.Event] = None) -> ScriptedServer:
    def script(sock: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                return
            request += chunk
        assert request.startswith(b"CONNECT "), request[:40]
        if behaviour == "refuse":
            sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nnope\r\n")
        elif behaviour == "auth":
            sock.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="x"\r\nContent-Length: 0\r\n\r\n'
            )
        elif behaviour == "garbage":
            sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        elif behaviour == "hang" and release is not None:
            release.wait(10)  # accepts CONNECT and never answers
        # "drop": close without a word

    return ScriptedServer(script)


@pytest.mark.parametrize("behaviour", ["refuse", "auth", "drop", "garbage"])
def test_proxy_refusing_or_dropping_connect(tmp_path, behaviour):
    proxy = fake_proxy(behaviour)
    try:
        path = kubeconfig(
            tmp_path / "kc",
            "https://10.0.0.1:6443",  # never reached: the proxy is the only way there
            proxy=f"http://user:pr0xy-pass@127.0.0.1:{proxy.port}",
        )
        with Client.from_kubeconfig(path) as client:
            with Stopwatch() as watch, pytest.raises(ProxyError) as info:
                k8sstream.run(["true"], pod="p", client=client, timeout=TIMEOUT)
    finally:
        proxy.close()
    text = str(info.value)
    assert "pr0xy-pass" not in text and "s3cret" not in text
    assert watch.elapsed < TIMEOUT
    record("proxy", f"proxy CONNECT: {behaviour}", "ProxyError", seconds=watch.elapsed)


def test_proxy_that_hangs_on_connect(tmp_path):
    release = threading.Event()
    proxy = fake_proxy("hang", release)
    try:
        path = kubeconfig(
            tmp_path / "kc",
            "https://10.0.0.1:6443",
            proxy=f"http://user:pr0xy-pass@127.0.0.1:{proxy.port}",
        )
        with Client.from_kubeconfig(path) as client:
            with Stopwatch() as watch, pytest.raises((TimeoutExpired, ConnectError)) as info:
                k8sstream.run(["true"], pod="p", client=client, timeout=1.0)
    finally:
        release.set()
        proxy.close()
    assert watch.elapsed < 1.0 + SLACK, f"took {watch.elapsed:.2f} s"
    assert "pr0xy-pass" not in str(info.value)
    record(
        "proxy",
        "proxy CONNECT: accepted, never answered; run(timeout=1)",
        type(info.value).__name__,
        seconds=watch.elapsed,
    )


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "channel.k8s.io"])
def test_legacy_protocol_connection_faults(peer, protocol):
    """Faults on the protocols older servers speak: v4 JSON statuses, v1 text statuses."""

    def cut_mid_frame(sock, headers):
        answer_upgrade(sock, headers, protocol)
        sock.sendall(binary(b"\x01partial") + binary(b"\x01" + b"y" * 999)[:300])

    exc, elapsed = expect(StreamClosedError, peer(cut_mid_frame), subprotocols=[protocol])
    assert exc.output == b"partial"
    record(
        "connection",
        f"{protocol}: TCP closed mid-frame",
        "StreamClosedError; earlier output kept",
        seconds=elapsed,
    )

    def status_then_reset(sock, headers):
        answer_upgrade(sock, headers, protocol)
        status = (
            exit_code_status(4)
            if protocol.startswith("v4")
            else b"command terminated with non-zero exit code: exit code 4"
        )
        sock.sendall(binary(b"\x01out") + binary(b"\x03" + status))
        # EOF without a close frame after the status: the status still decides

    with Stopwatch() as watch:
        result = run_capture(peer(status_then_reset), subprotocols=[protocol])
    assert (result.returncode, result.stdout) == (4, b"out")
    record(
        "connection",
        f"{protocol}: status then TCP reset",
        "returncode 4, output intact",
        seconds=watch.elapsed,
    )


# --- stalls, dead peers, a status with no close -----------------------------------------------


def test_upgraded_server_that_never_sends_times_out(peer):
    def script(sock, headers):
        answer_upgrade(sock, headers)
        drain(sock, 10)

    _, elapsed = expect(TimeoutExpired, peer(script), timeout=1.0)
    assert elapsed >= 1.0
    record("stall", "101 then silence; run(timeout=1)", "TimeoutExpired", seconds=elapsed)


def test_stalled_server_and_keepalive_through_popen(peer, monkeypatch):
    """A peer that stops answering (pings included) is declared dead by the keepalive."""
    monkeypatch.setattr(
        process,
        "WebSocketConnection",
        functools.partial(process.WebSocketConnection, ping_interval=0.1, dead_after=0.6),
    )

    def script(sock, headers):
        answer_upgrade(sock, headers)
        sock.sendall(binary(b"\x01partial"))
        drain(sock, 10)  # pings arrive and are never answered

    exc, elapsed = expect(StreamClosedError, peer(script), timeout=TIMEOUT)
    assert "dead" in str(exc)
    assert exc.output == b"partial"
    assert elapsed < 3
    record(
        "stall",
        "dead peer (no pongs), keepalive 0.1 s / dead after 0.6 s",
        "StreamClosedError('...dead')",
        seconds=elapsed,
    )


@pytest.mark.parametrize("where", ["tcp", "upgrade"])
def test_stalled_server_respects_the_callers_timeout(tmp_path, client, emulator, where):
    """Accepted, never answered: run(timeout=1) should give up after about a second."""
    release = threading.Event()
    if where == "tcp":

        def stall(sock: socket.socket) -> None:
            release.wait(10)

        server = ScriptedServer(stall)
        target = Client.from_kubeconfig(
            kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{server.port}")
        )
        pod = "p"
    else:
        emulator.faults.stall(match="/exec")
        target, pod = client, "demo"
    outcome: List[BaseException] = []

    def call() -> None:
        try:
            k8sstream.run(["true"], pod=pod, client=target, timeout=1.0)
        except BaseException as exc:  # recorded for the assertion below
            outcome.append(exc)

    worker = threading.Thread(target=call)
    with Stopwatch() as watch:
        worker.start()
        worker.join(1.0 + SLACK)
    finished = not worker.is_alive()
    # Unblock the call so that nothing leaks, whatever the outcome.
    if where == "tcp":
        release.set()
        server.close()
    else:
        emulator.faults.clear()
        emulator.stop()
    worker.join(10)
    if where == "tcp":
        target.close()
    assert finished, f"still connecting after {watch.elapsed:.1f} s (caller said 1 s)"
    assert isinstance(outcome[0], (TimeoutExpired, ConnectError))


def test_status_then_held_connection_returns_promptly(client, emulator):
    """kubectl waits for the server to close; we return after a short bounded grace."""
    emulator.faults.hold_after_status(30)
    with Stopwatch() as watch:
        result = k8sstream.run(
            ["sh", "-c", "echo held; exit 4"],
            pod="demo",
            client=client,
            capture_output=True,
            timeout=TIMEOUT,
        )
    assert (result.returncode, result.stdout) == (4, b"held\n")
    assert watch.elapsed < 1.0 + process.STATUS_CLOSE_GRACE
    record(
        "hold",
        "status sent, connection held 30 s (emulator)",
        "returncode delivered after the close grace",
        seconds=watch.elapsed,
    )


def test_status_then_held_connection_that_ignores_our_close(peer):
    """Worse than the emulator: the peer never answers our close frame either."""

    def script(sock, headers):
        answer_upgrade(sock, headers)
        sock.sendall(binary(b"\x01out") + binary(b"\x03" + exit_code_status(2)))
        drain(sock, 10)

    with Stopwatch() as watch:
        result = run_capture(peer(script))
    assert (result.returncode, result.stdout) == (2, b"out")
    assert watch.elapsed < 2.0 + process.STATUS_CLOSE_GRACE
    record(
        "hold",
        "status sent, close frame never answered (scripted)",
        "returncode delivered",
        seconds=watch.elapsed,
    )


# --- SPDY tunnel faults -----------------------------------------------------------------------


@pytest.fixture
def echo_pod(emulator):
    with EchoServer() as echo:
        emulator.add_pod(Pod(name="web", ports={7: echo.port}))
        yield echo


def test_tunnel_rst_stream(client, emulator, echo_pod):
    emulator.faults.reset_next_data_stream()
    with Stopwatch() as watch:
        with k8sstream.port_forward("web", 7, client=client, protocol="tunnel", timeout=5) as s:
            with pytest.raises(StreamClosedError, match="reset"):
                s.sendall(b"hello")
                s.recv(10)
        # The tunnel stays usable for the next connection.
        with k8sstream.port_forward("web", 7, client=client, protocol="tunnel", timeout=5) as s:
            s.sendall(b"again")
            assert s.recv(10) == b"again"
    record(
        "spdy",
        "RST_STREAM on the data stream",
        "StreamClosedError on that connection only",
        seconds=watch.elapsed,
    )


def test_tunnel_goaway_after_a_connection(client, emulator, echo_pod):
    emulator.faults.send_goaway(after_connections=1)
    with Stopwatch() as watch, k8sstream.PortForwarder("web", [":7"], client=client) as fwd:
        local = fwd.ports[0][0]
        with socket.create_connection(("127.0.0.1", local), timeout=5) as first:
            first.sendall(b"one")
            assert first.recv(10) == b"one"
            # Later connections in that session are refused; the forwarder must not hang.
            with socket.create_connection(("127.0.0.1", local), timeout=5) as second:
                second.sendall(b"two")
                try:
                    got = second.recv(10)
                except OSError:
                    got = b""
    assert got in (b"", b"two")  # refused (EOF/reset) or served by a fresh session
    assert watch.elapsed < 10
    record(
        "spdy",
        "GOAWAY after the first connection",
        f"second connection: {got!r}",
        seconds=watch.elapsed,
    )


def test_tunnel_stream_never_replied_times_out(client, emulator, echo_pod):
    emulator.faults.ignore_next_syn_stream(count=2)
    with Stopwatch() as watch:
        with k8sstream.port_forward("web", 7, client=client, protocol="tunnel", timeout=1) as s:
            s.sendall(b"anyone?")
            with pytest.raises(socket.timeout):
                s.recv(10)
    assert watch.elapsed < 1 + SLACK
    record(
        "spdy",
        "SYN_STREAM never replied; recv timeout 1 s",
        "socket.timeout",
        seconds=watch.elapsed,
    )


@pytest.mark.parametrize("damage", ["corrupt zlib", "truncated frame", "bad version"])
def test_tunnel_corrupt_frames_fail_the_connection(peer, damage):
    def script(sock, headers):
        answer_upgrade(sock, headers, "SPDY/3.1+portforward.k8s.io")
        sock.settimeout(5)
        time.sleep(0.2)  # let the client open its streams first
        if damage == "corrupt zlib":
            body = struct.pack("!I", 1) + b"\x78\x9c not zlib at all"
            wire = struct.pack("!HHI", 0x8000 | 3, 2, len(body)) + body
        elif damage == "truncated frame":
            wire = struct.pack("!HHI", 0x8000 | 3, 2, 2) + b"\0\0"
        else:
            wire = struct.pack("!HHI", 0x8000 | 2, 2, 4) + struct.pack("!I", 1)
        sock.sendall(binary(wire))
        drain(sock, 5)

    with Stopwatch() as watch:
        with k8sstream.port_forward("p", 7, client=peer(script), protocol="tunnel", timeout=5) as s:
            with pytest.raises(RemoteProtocolError):
                s.recv(10)
    assert watch.elapsed < TIMEOUT
    record("spdy", f"SYN_REPLY with {damage}", "RemoteProtocolError", seconds=watch.elapsed)


def test_refused_pod_port_over_both_protocols(client, emulator):
    emulator.add_pod(Pod(name="closed", ports={7: 1}))
    for protocol in ("tunnel", "websocket"):
        with Stopwatch() as watch, pytest.raises(PortForwardError):
            with k8sstream.port_forward(
                "closed", 7, client=client, protocol=protocol, timeout=5
            ) as s:
                s.sendall(b"x")
                s.recv(10)
        record(
            "spdy" if protocol == "tunnel" else "portforward",
            f"refused pod port ({protocol})",
            "PortForwardError",
            seconds=watch.elapsed,
        )
