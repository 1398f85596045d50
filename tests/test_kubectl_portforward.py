"""The emulator's port-forward against the real kubectl (the SPDY/3.1 tunnel, PROTOCOL.md 10-11.4).

``/usr/bin/kubectl`` may be a Google Cloud SDK dispatcher that runs the bundled kubectl matching
the server's ``/version`` (the emulator reports v1.33.x, so kubectl 1.33 runs). The pod's port 80
is a small HTTP server the test runs on 127.0.0.1; port 82 refuses connections.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from k8sstream.testing import ApiServer, Pod

pytestmark = pytest.mark.kubectl

KUBECTL = shutil.which("kubectl")
TIMEOUT = 30.0
TUNNEL = "SPDY/3.1+portforward.k8s.io"
BIG = 64 << 20

if KUBECTL is None:
    pytest.skip("kubectl is not on the PATH", allow_module_level=True)


def pattern(size: int) -> bytes:
    block = bytes(range(251)) * 261  # a prime period, so misplaced chunks change the digest
    return (block * (size // len(block) + 1))[:size]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing stays open

    def do_GET(self) -> None:
        if self.path.startswith("/bytes/"):
            body = pattern(int(self.path.rsplit("/", 1)[1]))
        else:
            body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        left = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        body = digest.hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 standing in for the pod's port 80; yields its port."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()  # joins the request threads
        thread.join(TIMEOUT)


@pytest.fixture
def closed_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def server(web: int, closed_port: int) -> Iterator[ApiServer]:
    with ApiServer(with_demo_pod=False) as api:
        api.add_pod(Pod("demo", ports={80: web, 82: closed_port}, port_names={"http": 80}))
        yield api


class Forward:
    """A running ``kubectl port-forward`` and what it printed."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.stdout = b""
        self.stderr = b""
        self.local_port = 0
        self.remote_port = 0

    def read_forwarding_line(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            match = re.search(rb"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)\n", self.stdout)
            if match:
                self.local_port, self.remote_port = int(match[1]), int(match[2])
                return
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"kubectl did not start forwarding: {self.stdout!r}"
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 4096)
                assert chunk, f"kubectl exited: {self.proc.wait(TIMEOUT)} {self.stdout!r}"
                self.stdout += chunk

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for kubectl to exit by itself; return its exit code."""
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout += out
        self.stderr += err
        return self.proc.returncode


@contextmanager
def port_forward(server: ApiServer, tmp_path: Path, *ports: str) -> Iterator[Forward]:
    assert KUBECTL is not None
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # keeps kubectl's discovery cache out of the real HOME
        "KUBECONFIG": server.write_kubeconfig(tmp_path / "kubeconfig"),
        "KUBECTL_PORT_FORWARD_WEBSOCKETS": "true",  # the 1.31+ default, made explicit
    }
    proc = subprocess.Popen(
        [KUBECTL, "port-forward", "--address=127.0.0.1", "pod/demo", *ports],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    forward = Forward(proc)
    try:
        forward.read_forwarding_line(time.monotonic() + TIMEOUT)
        yield forward
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # kubectl's clean stop: exits 0
        try:
            forward.finish(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            forward.finish()


def get(port: int, path: str, timeout: float = TIMEOUT) -> Tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def tunnel_requests(server: ApiServer) -> List[Optional[str]]:
    return [r.subprotocol for r in server.requests if r.path.endswith("/portforward")]


def test_concurrent_http_requests_through_one_tunnel(server: ApiServer, tmp_path: Path) -> None:
    with port_forward(server, tmp_path, ":80") as forward:
        assert forward.remote_port == 80
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda n: get(forward.local_port, f"/req/{n}"), range(24)))
    assert results == [(200, f"hello from /req/{n}".encode()) for n in range(24)]
    assert forward.proc.returncode == 0
    # One WebSocket for the whole command, and it was the SPDY tunnel (no fallback).
    assert tunnel_requests(server) == [TUNNEL]
    assert [r.query for r in server.requests if r.path.endswith("/portforward")] == [""]


def test_named_port_is_resolved_from_the_pod_spec(server: ApiServer, tmp_path: Path) -> None:
    with port_forward(server, tmp_path, ":http") as forward:
        assert forward.remote_port == 80
        assert get(forward.local_port, "/named") == (200, b"hello from /named")


def test_large_transfers_both_ways_with_checksum(server: ApiServer, tmp_path: Path) -> None:
    with port_forward(server, tmp_path, ":80") as forward:
        started = time.monotonic()
        status, body = get(forward.local_port, f"/bytes/{BIG}")
        down = time.monotonic() - started
        assert status == 200 and len(body) == BIG
        assert hashlib.sha256(body).digest() == hashlib.sha256(pattern(BIG)).digest()

        upload = pattern(BIG)
        conn = http.client.HTTPConnection("127.0.0.1", forward.local_port, timeout=TIMEOUT)
        try:
            started = time.monotonic()
            conn.request("POST", "/sha256", body=upload)
            response = conn.getresponse()
            digest = response.read()
            up = time.monotonic() - started
        finally:
            conn.close()
        assert digest == hashlib.sha256(upload).hexdigest().encode()
    print(
        f"kubectl port-forward 64 MiB: down {BIG / down / 1e6:.0f} MB/s, "
        f"up {BIG / up / 1e6:.0f} MB/s"
    )


def test_refused_remote_port(server: ApiServer, tmp_path: Path) -> None:
    with port_forward(server, tmp_path, ":82") as forward:
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert s.recv(100) == b""  # kubectl closes the local connection
        # client-go logs the runtime's error text and closes the whole SPDY connection;
        # kubectl then exits 1 with "lost connection to pod" (PROTOCOL.md 10.4).
        code = forward.finish()
    assert code == 1
    stderr = forward.stderr.decode()
    assert f"an error occurred forwarding {forward.local_port} -> 82: " in stderr
    assert "error forwarding port 82 to pod " in stderr
    assert "dial tcp4 127.0.0.1:82: connect: connection refused" in stderr
    assert "lost connection to pod" in stderr
    assert tunnel_requests(server) == [TUNNEL]
