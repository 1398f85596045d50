"""The emulator against the real kubectl: proof that it speaks the protocols as kube-apiserver does.

``/usr/bin/kubectl`` may be a Google Cloud SDK dispatcher that runs the bundled kubectl matching
the server's ``/version`` (the emulator reports v1.33.x, so kubectl 1.33 runs and uses WebSocket).

Paths in ``kubectl cp`` are relative to the container directory (the process cwd); absolute pod
paths would be host paths, so these tests use relative ones.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import select
import shutil
import signal
import ssl
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import pytest

from k8sstream.testing import ApiServer, Container, Pod

pytestmark = pytest.mark.kubectl

KUBECTL = shutil.which("kubectl")
TIMEOUT = 30.0
V5 = "v5.channel.k8s.io"

if KUBECTL is None:
    pytest.skip("kubectl is not on the PATH", allow_module_level=True)


class Kubectl:
    def __init__(self, server: ApiServer, tmp_path: Path) -> None:
        self.server = server
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        self.env: Dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # keeps kubectl's discovery cache out of the real HOME
            "KUBECONFIG": self.kubeconfig,
        }

    def argv(self, *args: str) -> List[str]:
        assert KUBECTL is not None
        return [KUBECTL, "--request-timeout=20s", *args]

    def run(
        self, *args: str, input: Optional[bytes] = None, timeout: float = TIMEOUT
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            env=self.env,
            timeout=timeout,
        )

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer() as srv:
        yield srv


@pytest.fixture
def kubectl(server: ApiServer, tmp_path: Path) -> Kubectl:
    return Kubectl(server, tmp_path)


def test_dispatcher_runs_a_websocket_kubectl(kubectl: Kubectl) -> None:
    result = kubectl.run("version")
    assert result.returncode == 0, result.stderr
    client = re.search(rb"Client Version: v1\.(\d+)\.", result.stdout)
    assert client is not None, result.stdout
    assert int(client.group(1)) >= 31, "kubectl older than 1.31 would not use WebSocket"
    assert b"Server Version: v1.33." in result.stdout


def test_exec_exit_code_and_streams(kubectl: Kubectl, server: ApiServer) -> None:
    result = kubectl.run(
        "exec", "demo", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert result.stderr.startswith(b"err\n")
    assert b"command terminated with exit code 3" in result.stderr

    ok = kubectl.run("exec", "demo", "-c", "main", "--", "true")
    assert ok.returncode == 0 and ok.stdout == b"" and ok.stderr == b""
    exec_requests = [r for r in server.requests if r.path.endswith("/exec")]
    assert [(r.method, r.subprotocol) for r in exec_requests] == [("GET", V5)] * 2


def test_exec_default_container_and_errors(kubectl: Kubectl) -> None:
    defaulted = kubectl.run("exec", "demo", "--", "pwd")
    assert defaulted.returncode == 0
    assert defaulted.stdout.strip().endswith(b"/default/demo/main")
    assert b'Defaulted container "main" out of: main, sidecar' in defaulted.stderr

    missing = kubectl.run("exec", "nope", "--", "true")
    assert missing.returncode == 1
    assert b'pods "nope" not found' in missing.stderr

    not_found = kubectl.run("exec", "demo", "-c", "main", "--", "no-such-binary")
    assert not_found.returncode == 1
    assert b"error executing command in container" in not_found.stderr
    assert b'exec: "no-such-binary": executable file not found in $PATH' in not_found.stderr


def test_exec_stdin_binary_reaches_eof(kubectl: Kubectl) -> None:
    data = os.urandom(1024 * 1024 + 17)
    echoed = kubectl.run("exec", "-i", "demo", "-c", "main", "--", "cat", input=data)
    assert echoed.returncode == 0, echoed.stderr
    assert hashlib.sha256(echoed.stdout).hexdigest() == hashlib.sha256(data).hexdigest()

    counted = kubectl.run("exec", "-i", "demo", "-c", "main", "--", "wc", "-c", input=data)
    assert counted.returncode == 0, counted.stderr
    assert int(counted.stdout) == len(data)


def _read_pty_until(
    master: int, pattern: Union[bytes, Tuple[bytes, ...]], deadline: float
) -> bytes:
    patterns = (pattern,) if isinstance(pattern, bytes) else pattern
    out = b""
    while not any(p in out for p in patterns) and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def _pty_session(
    kubectl: Kubectl, args: List[str], rows: int, cols: int
) -> Tuple[subprocess.Popen, int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        proc = kubectl.popen(*args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    finally:
        os.close(slave)
    return proc, master


def test_exec_tty_through_a_pty(kubectl: Kubectl) -> None:
    proc, master = _pty_session(kubectl, ["exec", "-it", "demo", "-c", "main", "--", "sh"], 33, 101)
    try:
        deadline = time.monotonic() + TIMEOUT
        # Type only once the remote shell prompts: kubectl has set raw mode by then, so the
        # input cannot be echoed or flushed by the local line discipline.
        out = _read_pty_until(master, (b"$ ", b"# "), deadline)
        assert b"$ " in out or b"# " in out
        os.write(master, b"stty size; echo mark-$((6*7))\r")
        out += _read_pty_until(master, b"mark-42", deadline)
        assert b"33 101" in out
        assert b"mark-42" in out
        os.write(master, b"exit 4\r")
        out += _read_pty_until(master, b"exit code 4", deadline)
        assert proc.wait(timeout=TIMEOUT) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_attach_to_main_container(kubectl: Kubectl, server: ApiServer) -> None:
    proc = kubectl.popen(
        "attach",
        "-i",
        "demo",
        "-c",
        "main",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        # Wait until the session is attached: output while nobody is attached is dropped.
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if any(r.path.endswith("/attach") and r.subprotocol == V5 for r in server.requests):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        proc.stdin.write(b"hello from kubectl\n")
        proc.stdin.flush()
        line = _readline_with_deadline(proc.stdout, deadline)
        assert line == b"main: hello from kubectl\n"
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _readline_with_deadline(stream, deadline: float) -> bytes:  # type: ignore[no-untyped-def]
    fd = stream.fileno()
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            line += chunk
    return line


def test_attach_stdin_once_ends_with_the_container(kubectl: Kubectl, server: ApiServer) -> None:
    server.add_pod(Pod("once", containers=[Container("app", stdin_once=True)]))
    result = kubectl.run("attach", "-i", "once", "-c", "app", input=b"one\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"app: one\napp: two\n"


def test_cp_directory_round_trip(kubectl: Kubectl, server: ApiServer, tmp_path: Path) -> None:
    source = tmp_path / "tree"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "a.bin").write_bytes(os.urandom(300_000))
    (source / "sub" / "b.txt").write_text("hello\n")
    (source / "sub" / "deeper" / "c.bin").write_bytes(os.urandom(70_001))
    (source / "empty").write_bytes(b"")

    up = kubectl.run("cp", str(source), "demo:copied", "-c", "main")
    assert up.returncode == 0, up.stderr
    inside = Path(server.container_dir("default", "demo", "main")) / "copied"
    assert _tree(inside) == _tree(source)

    back = tmp_path / "back"
    down = kubectl.run("cp", "demo:copied", str(back), "-c", "main")
    assert down.returncode == 0, down.stderr
    assert _tree(back) == _tree(source)


def _tree(root: Path) -> Dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


def test_old_server_fallback_to_spdy_is_refused_visibly(tmp_path: Path) -> None:
    with ApiServer(remote_command_protocols=["v4.channel.k8s.io"]) as server:
        kubectl = Kubectl(server, tmp_path)
        result = kubectl.run("-v=6", "exec", "demo", "-c", "main", "--", "true")
        assert result.returncode != 0
        assert b"does not implement SPDY/3.1 streaming" in result.stderr
        exec_requests = [
            (r.method, r.subprotocol) for r in server.requests if r.path.endswith("/exec")
        ]
        # The WebSocket attempt got the raw 403 of an old server, then kubectl fell back.
        assert exec_requests == [("GET", None), ("POST", None)]


def test_verbose_log_shows_websocket_v5(kubectl: Kubectl) -> None:
    result = kubectl.run("-v=6", "exec", "demo", "-c", "main", "--", "echo", "hi")
    assert result.returncode == 0
    assert result.stdout == b"hi\n"
    assert b"The subprotocol is v5.channel.k8s.io" in result.stderr
    assert b"101 Switching Protocols" in result.stderr
    assert b"SPDY" not in result.stderr


def test_interrupt_is_clean(kubectl: Kubectl, server: ApiServer) -> None:
    proc = kubectl.popen(
        "exec",
        "demo",
        "-c",
        "main",
        "--",
        "sleep",
        "30",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not any(
            r.path.endswith("/exec") for r in server.requests
        ):
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    # The emulator is still healthy afterwards.
    assert kubectl.run("exec", "demo", "-c", "main", "--", "true").returncode == 0


def test_get_pods_uses_server_side_table(kubectl: Kubectl) -> None:
    result = kubectl.run("get", "pods")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.decode().splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row.split()[:4] == ["demo", "2/2", "Running", "0"]


def test_https_with_token_and_client_certificate(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    alice = ca.issue_cert("alice", common_name="alice")
    with ApiServer(ssl_context=server_ctx, token="t0k", client_ca=ca.cert_pem.bytes()) as server:
        kubectl = Kubectl(server, tmp_path)
        data = os.urandom(3_000_000)
        for name, extra in (
            ("token", {}),
            (
                "cert",
                {
                    "user_token": "",
                    "client_cert": alice.cert_chain_pems[0].bytes(),
                    "client_key": alice.private_key_pem.bytes(),
                },
            ),
        ):
            kubectl.env["KUBECONFIG"] = server.write_kubeconfig(
                tmp_path / f"kubeconfig-{name}", ca_data=ca.cert_pem.bytes(), **extra
            )
            result = kubectl.run("exec", "-i", "demo", "-c", "main", "--", "cat", input=data)
            assert result.returncode == 0, (name, result.stderr)
            assert result.stdout == data
        kubectl.env["KUBECONFIG"] = server.write_kubeconfig(
            tmp_path / "kubeconfig-bad", ca_data=ca.cert_pem.bytes(), user_token="wrong"
        )
        denied = kubectl.run("exec", "demo", "-c", "main", "--", "true")
        assert denied.returncode == 1
        assert b"Unauthorized" in denied.stderr
