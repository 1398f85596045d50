"""Port-forward end to end against the emulator: the socket contract and the forwarder."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import select
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import k8sstream
from k8sstream import ForwardedSocket, PortForwarder, PortForwardError, StreamTimeout
from k8sstream.errors import LocalProtocolError
from k8sstream.testing import EchoServer, Pod, SinkServer

PROTOCOLS = ["tunnel", "websocket"]


@pytest.fixture
def echo(emulator):
    with EchoServer() as server:
        emulator.add_pod(Pod(name="web", ports={7: server.port, 9: 1}))  # 9 -> nothing listens
        yield server


def _recv_exactly(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "unexpected EOF"
        data += chunk
    return data


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_echo_through_a_forwarded_socket(client, echo, emulator, protocol):
    with k8sstream.port_forward("web", 7, client=client, protocol=protocol) as sock:
        assert isinstance(sock, ForwardedSocket)
        payload = os.urandom(300_000)
        sock.sendall(payload)
        assert _recv_exactly(sock, len(payload)) == payload
        assert sock.send(b"x" * 100_000) == 65536
    selected = [r.subprotocol for r in emulator.requests if r.path.endswith("/portforward")]
    expected = "SPDY/3.1+portforward.k8s.io" if protocol == "tunnel" else "v4.channel.k8s.io"
    assert selected[-1] == expected


def test_half_close_with_the_tunnel(client, echo):
    with k8sstream.port_forward("web", 7, client=client, protocol="tunnel") as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            chunk = sock.recv(1024)
            if not chunk:
                break
            received += chunk
        assert received == b"last words"  # the echo saw EOF, answered, then closed


def test_legacy_protocol_cannot_half_close(client, echo):
    with k8sstream.port_forward("web", 7, client=client, protocol="websocket") as sock:
        with pytest.raises(LocalProtocolError, match="half-close"):
            sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_port_raises_connection_refused(client, echo, protocol):
    with k8sstream.port_forward("web", 9, client=client, protocol=protocol, timeout=10) as sock:
        with pytest.raises(ConnectionRefusedError) as info:
            sock.recv(10)
    assert isinstance(info.value, PortForwardError)
    assert "connection refused" in str(info.value)


def test_timeouts_and_non_blocking(client, echo):
    with k8sstream.port_forward("web", 7, client=client) as sock:
        sock.settimeout(0.2)
        assert sock.gettimeout() == 0.2
        with pytest.raises(socket.timeout):
            sock.recv(10)
        with pytest.raises(StreamTimeout):
            sock.recv(10)
        sock.setblocking(False)
        assert sock.gettimeout() == 0.0
        with pytest.raises(BlockingIOError):
            sock.recv(10)


def test_makefile_and_http_client(client, emulator):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"path={self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        emulator.add_pod(Pod(name="http", ports={80: server.server_address[1]}))
        conn = http.client.HTTPConnection("pod.invalid")
        conn.sock = k8sstream.create_connection(("http", 80), timeout=10, client=client)
        for path in ("/a", "/b"):  # two requests on one kept-alive forwarded connection
            conn.request("GET", path)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, f"path={path}".encode())
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_fileno_bridge_works_with_select(client, echo):
    with k8sstream.port_forward("web", 7, client=client) as sock:
        fd = sock.fileno()
        assert select.select([fd], [], [], 0.1)[0] == []
        sock.sendall(b"ping")
        assert select.select([fd], [], [], 5)[0] == [fd]
        assert sock.recv(4) == b"ping"


def test_large_transfer_checksum(client, emulator):
    size = 32 * 1024 * 1024
    with SinkServer(source_bytes=size) as sink:
        emulator.add_pod(Pod(name="sink", ports={5000: sink.port}))
        with k8sstream.port_forward("sink", 5000, client=client, protocol="tunnel") as sock:
            upload = os.urandom(8 * 1024 * 1024)
            sender = threading.Thread(
                target=lambda: (sock.sendall(upload), sock.shutdown(socket.SHUT_WR))
            )
            sender.start()
            digest = hashlib.sha256()
            received = 0
            tail = b""
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                if received < size:
                    digest.update(chunk[: size - received])
                    tail += chunk[size - received :]
                else:
                    tail += chunk
                received += len(chunk)
            sender.join(30)
    assert digest.digest() == hashlib.sha256(SinkServer.pattern(size)).digest()
    assert tail == b"%d\n" % len(upload)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_forwarder_many_concurrent_connections(client, echo, protocol):
    with PortForwarder(
        "web", [":7"], client=client, protocol=protocol, address=["127.0.0.1"]
    ) as fwd:
        ((local, remote),) = fwd.ports
        assert remote == 7 and local > 0

        def roundtrip(i: int) -> bytes:
            with socket.create_connection(("127.0.0.1", local), timeout=20) as s:
                payload = f"message {i} ".encode() * 1000
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR) if protocol == "tunnel" else None
                return _recv_exactly(s, len(payload))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(roundtrip, range(40)))
    assert all(r == f"message {i} ".encode() * 1000 for i, r in enumerate(results))


def test_forwarder_reports_lost_pod_connection(client, emulator, echo):
    fwd = PortForwarder(
        "web", [":7"], client=client, protocol="tunnel", address=["127.0.0.1"]
    ).start()
    try:
        emulator.stop()  # the API server goes away under the forwarder
        with pytest.raises(k8sstream.StreamClosedError, match="lost connection to pod"):
            fwd.wait(10)
    finally:
        fwd.stop()


def test_pod_not_running(client, emulator):
    emulator.add_pod(Pod(name="pending", phase="Pending"))
    with pytest.raises(k8sstream.PodStateError, match="pod is not running"):
        k8sstream.port_forward("pending", 80, client=client)


def test_tls_over_a_forwarded_socket(client, emulator):
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("db.internal")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        emulator.add_pod(Pod(name="db", ports={443: listener.getsockname()[1]}))
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        raw = k8sstream.port_forward("db", 443, client=client, timeout=10)
        with client_ctx.wrap_socket(raw, server_hostname="db.internal") as tls:
            tls.sendall(b"hello over tls")
            assert tls.recv(100) == b"HELLO OVER TLS"
    finally:
        thread.join(10)
        listener.close()


def test_auto_falls_back_to_the_legacy_protocol(client, echo, emulator):
    emulator.faults.refuse_next_upgrade(400, "tunnel not supported here", match="portforward")
    with k8sstream.port_forward("web", 7, client=client) as sock:
        sock.sendall(b"fallback")
        assert _recv_exactly(sock, 8) == b"fallback"
    selected = [r.subprotocol for r in emulator.requests if r.path.endswith("/portforward")]
    assert selected[-1] == "v4.channel.k8s.io"
    emulator.faults.refuse_next_upgrade(400, "tunnel not supported here", match="portforward")
    with pytest.raises(k8sstream.ApiError):
        k8sstream.port_forward("web", 7, client=client, protocol="tunnel")


def test_forwarder_several_ports(client, echo):
    with PortForwarder("web", [":7", "0:7"], client=client, address=["127.0.0.1"]) as fwd:
        assert [remote for _, remote in fwd.ports] == [7, 7]
        for local, _ in fwd.ports:
            with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
                s.sendall(b"x")
                assert s.recv(1) == b"x"
