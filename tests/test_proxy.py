"""Proxies: Go's selection rules, and exec/attach through a real forward proxy (tinyproxy),
a real https proxy (nginx stream TLS in front of tinyproxy) and a real reverse proxy (nginx).

The real components are started on loopback by the fixtures below and stopped after each test;
a test is skipped, saying why, only when the binary is not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

import k8sstream
from k8sstream import ApiError, Client, ConfigError, ProxyError
from k8sstream._proxy import ProxySettings, parse_proxy_url, proxy_from_environment, use_proxy
from k8sstream.testing import ApiServer
from tests.test_tls import server_context, write_kubeconfig

trustme = pytest.importorskip("trustme")

TOKEN = "proxy-test-token"
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


# --- selection: pure ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, port, no_proxy, expected",
    [
        ("api.example.com", 443, "", True),
        ("localhost", 443, "", False),  # Go never proxies loopback from the environment
        ("127.0.0.1", 6443, "", False),
        ("127.9.9.9", 6443, "", False),
        ("::1", 6443, "", False),
        ("api.example.com", 443, "*", False),
        ("api.example.com", 443, "example.com", False),  # the domain and its subdomains
        ("example.com", 443, "example.com", False),
        ("example.com", 443, ".example.com", True),  # subdomains only
        ("api.example.com", 443, ".example.com", False),
        ("api.example.com", 443, "*.example.com", False),
        ("notexample.com", 443, "example.com", True),
        ("api.example.com", 443, "example.com:6443", True),  # port must match
        ("api.example.com", 6443, "example.com:6443", False),
        ("10.1.2.3", 443, "10.0.0.0/8", False),  # CIDR
        ("11.1.2.3", 443, "10.0.0.0/8", True),
        ("10.1.2.3", 443, "10.1.2.3", False),
        ("10.1.2.3", 443, "10.1.2.4", True),
        ("fd00::5", 443, "fd00::/8", False),
        ("api.example.com", 443, " other.org , EXAMPLE.COM ", False),
        ("api.example.com", 443, "nonsense/99,", True),
    ],
)
def test_no_proxy_rules_match_go(host, port, no_proxy, expected):
    assert use_proxy(host, port, no_proxy) is expected


def test_environment_variables_by_scheme():
    env = {"HTTPS_PROXY": "proxy.corp:3128", "http_proxy": "http://plain.corp:80"}
    chosen = proxy_from_environment("https://api.example.com:6443", env)
    assert chosen == ProxySettings("proxy.corp", 3128, scheme="http")
    assert proxy_from_environment("http://api.example.com", env).host == "plain.corp"
    assert proxy_from_environment("https://127.0.0.1:6443", env) is None
    assert proxy_from_environment("https://api.example.com", {**env, "no_proxy": ".com"}) is None
    assert proxy_from_environment("https://api.example.com", {}) is None


def test_proxy_urls_and_their_errors():
    p = parse_proxy_url("https://us%40er:p%3Ass@proxy:8443", "kc: proxy-url")
    assert (p.scheme, p.host, p.port, p.username, p.password) == (
        "https",
        "proxy",
        8443,
        "us@er",
        "p:ss",
    )
    assert "p:ss" not in repr(p) and "p%3Ass" not in repr(p) and "<credentials>" in repr(p)
    assert parse_proxy_url("socks5://s", "x").port == 1080
    with pytest.raises(ConfigError, match="kc: proxy-url: proxy scheme 'ftp'") as info:
        parse_proxy_url("ftp://user:hunter2@proxy:21", "kc: proxy-url")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="no host"):
        parse_proxy_url("http://:8080", "x")


def test_kubeconfig_proxy_url_is_validated_with_file_and_key(tmp_path):
    path = write_kubeconfig(
        tmp_path / "kc", {"server": "https://api", "proxy-url": "gopher://u:sekrit@p:70"}
    )
    with pytest.raises(ConfigError) as info:
        k8sstream.load_kubeconfig(path)
    assert str(path) in str(info.value) and "clusters[c].cluster.proxy-url" in str(info.value)
    assert "sekrit" not in str(info.value)


def test_socks5_without_python_socks_is_a_clear_config_error(monkeypatch, emulator, tmp_path):
    monkeypatch.setitem(sys.modules, "python_socks", None)  # makes the import fail
    path = write_kubeconfig(
        tmp_path / "kc", {"server": emulator.url, "proxy-url": "socks5://127.0.0.1:1"}
    )
    with Client.from_kubeconfig(path) as client:
        with pytest.raises(ConfigError, match="python-socks"):
            client.check_output(["true"], pod="demo")


# --- real components ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}: {text[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"{proc.args[0]} did not listen on {port}")


class Daemon:
    def __init__(self, args: List[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with open(log.with_suffix(".out"), "wb") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_listening(port, self.proc, log if log.exists() else log.with_suffix(".out"))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def daemons() -> Iterator[List[Daemon]]:
    started: List[Daemon] = []
    yield started
    for daemon in reversed(started):
        daemon.stop()


def need(binary: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None
    )
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it with apt-get)")
    return path


@pytest.fixture
def tinyproxy(tmp_path, daemons) -> Callable[..., Daemon]:
    """Start tinyproxy on loopback: an HTTP CONNECT proxy, optionally with Basic auth."""
    binary = need("tinyproxy")

    def start(connect_ports: List[int], auth: Optional[tuple] = None) -> Daemon:
        port = free_port()
        conf = tmp_path / f"tinyproxy-{port}.conf"
        log = tmp_path / f"tinyproxy-{port}.log"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            "MaxClients 50",
            f'LogFile "{log}"',
            "LogLevel Info",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
        ]
        # Only the API server's port may be tunnelled to, as a locked-down proxy would have it.
        lines += [f"ConnectPort {p}" for p in connect_ports]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        conf.write_text("\n".join(lines) + "\n")
        daemon = Daemon([binary, "-d", "-c", str(conf)], port, log)
        daemons.append(daemon)
        return daemon

    return start


NGINX_HEAD = """
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 128; }}
"""

NGINX_REVERSE = """
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/front.pem;
        ssl_certificate_key {d}/front.key;
        location / {{
            {auth}
            proxy_pass https://127.0.0.1:{upstream};
            proxy_ssl_trusted_certificate {d}/ca.pem;
            proxy_ssl_verify on;
            proxy_ssl_name kubernetes.default.svc;
            proxy_ssl_server_name on;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
        }}
    }}
}}
"""

NGINX_TLS_FRONT = """
stream {{
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/front.pem;
        ssl_certificate_key {d}/front.key;
        proxy_pass 127.0.0.1:{upstream};
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path, daemons) -> Callable[..., Daemon]:
    """Start nginx on loopback with TLS terminated there (certificate for 127.0.0.1).

    ``kind="reverse"``: an https reverse proxy to an https upstream, configured for WebSocket
    the way people put nginx in front of an API server. ``kind="tls-front"``: a TLS stream
    front (an https proxy when the upstream is tinyproxy).
    """
    binary = need("nginx")

    def start(ca: Any, upstream: int, kind: str = "reverse", auth: str = "") -> Daemon:
        port = free_port()
        d = tmp_path / f"nginx-{port}"
        d.mkdir()
        cert = ca.issue_cert("127.0.0.1")
        cert.private_key_pem.write_to_path(str(d / "front.key"))
        cert.cert_chain_pems[0].write_to_path(str(d / "front.pem"))
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        if kind == "reverse":
            conf = NGINX_HEAD + NGINX_REVERSE
        else:
            if not os.path.exists(NGINX_STREAM_MODULE):
                pytest.skip("nginx's stream module is not installed (libnginx-mod-stream)")
            conf = f"load_module {NGINX_STREAM_MODULE};\n" + NGINX_HEAD + NGINX_TLS_FRONT
        (d / "nginx.conf").write_text(conf.format(d=d, port=port, upstream=upstream, auth=auth))
        daemon = Daemon(
            [binary, "-e", str(d / "error.log"), "-p", str(d), "-c", str(d / "nginx.conf")],
            port,
            d / "error.log",
        )
        daemons.append(daemon)
        return daemon

    return start


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def tls_server(ca) -> Iterator[ApiServer]:
    # nginx checks an upstream certificate by DNS name only (X509_check_host), hence the second.
    ctx = server_context(ca, "127.0.0.1", "kubernetes.default.svc")
    with ApiServer(ssl_context=ctx, token=TOKEN) as server:
        yield server


def kubeconfig_for(tmp_path: Path, server: ApiServer, ca: Any, **cluster: Any) -> str:
    return write_kubeconfig(
        tmp_path / f"kc-{len(list(tmp_path.iterdir()))}",
        {
            "server": server.url,
            "certificate-authority-data": _b64(ca.cert_pem.bytes()),
            **cluster,
        },
        {"token": TOKEN},
    )


def exec_with_stdin(client: Client) -> None:
    data = os.urandom(300_000)
    result = client.run(
        ["sh", "-c", "wc -c; echo err >&2; exit 7"], pod="demo", input=data, capture_output=True
    )
    assert result.returncode == 7
    assert result.stdout.strip() == str(len(data)).encode()
    assert result.stderr == b"err\n"


def test_exec_through_tinyproxy_over_tls(tls_server, ca, tinyproxy, tmp_path):
    proxy = tinyproxy([tls_server.port])
    path = kubeconfig_for(
        tmp_path, tls_server, ca, **{"proxy-url": f"http://127.0.0.1:{proxy.port}"}
    )
    with Client.from_kubeconfig(path) as client:
        assert client.proxy is not None and client.proxy.port == proxy.port
        exec_with_stdin(client)
    # Both the REST pod lookup and the WebSocket went through the tunnel.
    assert _connects(proxy, tls_server.port) >= 2


def test_exec_through_tinyproxy_with_basic_auth(tls_server, ca, tinyproxy, tmp_path):
    proxy = tinyproxy([tls_server.port], auth=("k8s", "s3cretPw"))
    good = kubeconfig_for(
        tmp_path, tls_server, ca, **{"proxy-url": f"http://k8s:s3cretPw@127.0.0.1:{proxy.port}"}
    )
    with Client.from_kubeconfig(good) as client:
        exec_with_stdin(client)
        assert "s3cretPw" not in repr(client) and "s3cretPw" not in repr(client.proxy)
    assert _connects(proxy, tls_server.port) >= 2

    for url, hint in (
        (f"http://k8s:wrong@127.0.0.1:{proxy.port}", "rejected"),
        (f"http://127.0.0.1:{proxy.port}", "needs credentials"),
    ):
        bad = kubeconfig_for(tmp_path, tls_server, ca, **{"proxy-url": url})
        with Client.from_kubeconfig(bad) as client:
            with pytest.raises(ProxyError, match=hint) as info:
                client.run(["true"], pod="demo")
            assert "wrong" not in str(info.value)
            # The WebSocket path reports the same.
            with pytest.raises(ProxyError, match=hint):
                client.dial(
                    "/api/v1/namespaces/default/pods/demo/exec",
                    [("command", "true")],
                    ["v5.channel.k8s.io"],
                )


def test_proxy_refusing_the_port_is_a_proxy_error(tls_server, ca, tinyproxy, tmp_path):
    proxy = tinyproxy([1])  # ConnectPort does not allow the API server's port
    path = kubeconfig_for(
        tmp_path, tls_server, ca, **{"proxy-url": f"http://127.0.0.1:{proxy.port}"}
    )
    with Client.from_kubeconfig(path) as client:
        with pytest.raises(ProxyError, match="refused the tunnel"):
            client.run(["true"], pod="demo")


def test_unreachable_proxy_is_a_proxy_error(tls_server, ca, tmp_path):
    path = kubeconfig_for(
        tmp_path, tls_server, ca, **{"proxy-url": f"http://127.0.0.1:{free_port()}"}
    )
    with Client.from_kubeconfig(path) as client:
        with pytest.raises(ProxyError, match="cannot connect to the proxy"):
            client.run(["true"], pod="demo")


def test_https_proxy_nginx_tls_in_front_of_tinyproxy(tls_server, ca, tinyproxy, nginx, tmp_path):
    inner = tinyproxy([tls_server.port])
    front = nginx(ca, inner.port, kind="tls-front")
    path = kubeconfig_for(
        tmp_path, tls_server, ca, **{"proxy-url": f"https://127.0.0.1:{front.port}"}
    )
    with Client.from_kubeconfig(path) as client:
        exec_with_stdin(client)
    assert _connects(inner, tls_server.port) >= 2


def test_environment_proxy_is_not_used_for_a_loopback_server(tls_server, ca, tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens
    with Client.from_kubeconfig(kubeconfig_for(tmp_path, tls_server, ca)) as client:
        assert client.proxy is None
        exec_with_stdin(client)


def _non_loopback_address() -> Optional[str]:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source address
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_environment_proxy_and_no_proxy_for_a_remote_address(ca, tinyproxy, tmp_path, monkeypatch):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    ctx = server_context(ca, address)
    with ApiServer(ssl_context=ctx, token=TOKEN, host=address) as server:
        proxy = tinyproxy([server.port])
        path = kubeconfig_for(tmp_path, server, ca)
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")
        with Client.from_kubeconfig(path) as client:
            assert client.proxy is not None
            exec_with_stdin(client)
        assert proxy.text().count(f"CONNECT {address}:{server.port}") >= 2

        # NO_PROXY by CIDR: a direct connection (the proxy variable now points nowhere).
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
        network = ".".join(address.split(".")[:2]) + ".0.0/16"
        monkeypatch.setenv("NO_PROXY", f"example.com,{network}")
        with Client.from_kubeconfig(path) as client:
            assert client.proxy is None
            exec_with_stdin(client)


def _connects(proxy: Daemon, port: int) -> int:
    return proxy.text().count(f"CONNECT 127.0.0.1:{port}")


# --- nginx as a reverse proxy ---------------------------------------------------------------


def test_exec_and_attach_through_nginx_reverse_proxy(tls_server, ca, nginx, tmp_path):
    front = nginx(ca, tls_server.port)
    path = write_kubeconfig(
        tmp_path / "kc",
        {
            "server": f"https://127.0.0.1:{front.port}",
            "certificate-authority-data": _b64(ca.cert_pem.bytes()),
        },
        {"token": TOKEN},
    )
    with Client.from_kubeconfig(path) as client:
        exec_with_stdin(client)
        with client.attach(
            "demo", container="main", stdin=k8sstream.PIPE, stdout=k8sstream.PIPE
        ) as proc:
            proc.stdin.write(b"through nginx\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"main: through nginx\n"
            proc.kill()
        # A stream that closes stdin (v5 CLOSE) is relayed too.
        with client.Popen(["cat"], pod="demo", stdin=k8sstream.PIPE, stdout=k8sstream.PIPE) as proc:
            out, _ = proc.communicate(b"eof through nginx", timeout=10)
        assert (out, proc.returncode) == (b"eof through nginx", 0)
    access = (Path(front.log).parent / "access.log").read_text()
    assert '"GET /api/v1/namespaces/default/pods/demo/exec?' in access
    assert " 101 " in access and '"GET /api/v1/namespaces/default/pods/demo/attach?' in access

    # The API server's refusals pass through as Status bodies.
    wrong = write_kubeconfig(
        tmp_path / "wrong",
        {
            "server": f"https://127.0.0.1:{front.port}",
            "certificate-authority-data": _b64(ca.cert_pem.bytes()),
        },
        {"token": "not-the-token"},
    )
    with Client.from_kubeconfig(wrong) as client, pytest.raises(ApiError) as info:
        client.run(["true"], pod="demo")
    assert info.value.status_code == 401


def test_basic_auth_checked_by_nginx_in_front_of_the_server(tls_server, ca, nginx, tmp_path):
    # A gateway that takes basic credentials and presents the service token upstream.
    (tmp_path / "htpasswd").write_text("admin:{PLAIN}open-sesame\n")
    auth = (
        f'auth_basic "k8s"; auth_basic_user_file {tmp_path / "htpasswd"}; '
        f'proxy_set_header Authorization "Bearer {TOKEN}";'
    )
    front = nginx(ca, tls_server.port, auth=auth)
    for password, ok in (("open-sesame", True), ("wrong", False)):
        path = write_kubeconfig(
            tmp_path / f"kc-{ok}",
            {
                "server": f"https://127.0.0.1:{front.port}",
                "certificate-authority-data": _b64(ca.cert_pem.bytes()),
            },
            {"username": "admin", "password": password},
        )
        with Client.from_kubeconfig(path) as client:
            assert password not in repr(client.config)
            if ok:
                exec_with_stdin(client)
            else:
                with pytest.raises(ApiError) as info:
                    client.run(["true"], pod="demo")
                assert info.value.status_code == 401 and password not in str(info.value)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


# --- SOCKS5 (python-socks is optional; the server is a small scripted one) ------------------


class Socks5Server:
    """A minimal RFC 1928/1929 SOCKS5 server on loopback that relays CONNECTs and logs them."""

    def __init__(self, credentials: Optional[tuple] = None) -> None:
        self.credentials = credentials
        self.seen: List[tuple] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(0.05)  # close() does not wake a blocked accept()
        self.stopping = threading.Event()
        self.threads: List[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, name="socks-test", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(5)
            t = threading.Thread(target=self._serve, args=(conn,), name="socks-test-conn")
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        upstream: Optional[socket.socket] = None
        try:
            head = _recv_exact(conn, 2)
            methods = _recv_exact(conn, head[1])
            want = 2 if self.credentials else 0
            if want not in methods:
                conn.sendall(b"\x05\xff")
                return
            conn.sendall(bytes([5, want]))
            if want == 2:
                _recv_exact(conn, 1)
                user = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode()
                password = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode()
                ok = (user, password) == self.credentials
                conn.sendall(b"\x01\x00" if ok else b"\x01\x01")
                if not ok:
                    return
            _ver, _cmd, _rsv, atyp = _recv_exact(conn, 4)
            if atyp == 1:
                host = socket.inet_ntop(socket.AF_INET, _recv_exact(conn, 4))
            elif atyp == 4:
                host = socket.inet_ntop(socket.AF_INET6, _recv_exact(conn, 16))
            else:
                host = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode()
            port = int.from_bytes(_recv_exact(conn, 2), "big")
            self.seen.append((host, port))
            upstream = socket.create_connection((host, port), timeout=5)
            conn.sendall(b"\x05\x00\x00\x01" + bytes(4) + bytes(2))
            _pump(conn, upstream)
        except OSError:
            pass
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()
        for t in self.threads:
            t.join(5)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("short read")
        data += chunk
    return data


def _pump(a: socket.socket, b: socket.socket) -> None:
    a.settimeout(None)
    b.settimeout(None)
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in sel.select(10):
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


@pytest.fixture
def socks5() -> Iterator[Callable[..., Socks5Server]]:
    pytest.importorskip("python_socks", reason="python-socks (optional) is not installed")
    servers: List[Socks5Server] = []

    def start(credentials: Optional[tuple] = None) -> Socks5Server:
        server = Socks5Server(credentials)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_exec_through_a_socks5_proxy(tls_server, ca, socks5, tmp_path, scheme):
    proxy = socks5(("sock", "pw-1"))
    url = f"{scheme}://sock:pw-1@127.0.0.1:{proxy.port}"
    path = kubeconfig_for(tmp_path, tls_server, ca, **{"proxy-url": url})
    with Client.from_kubeconfig(path) as client:
        exec_with_stdin(client)
    assert proxy.seen.count(("127.0.0.1", tls_server.port)) >= 2

    wrong = kubeconfig_for(
        tmp_path, tls_server, ca, **{"proxy-url": f"{scheme}://sock:nope@127.0.0.1:{proxy.port}"}
    )
    with Client.from_kubeconfig(wrong) as client, pytest.raises(ProxyError) as info:
        client.run(["true"], pod="demo")
    assert "nope" not in str(info.value)
