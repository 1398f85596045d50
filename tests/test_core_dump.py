"""Credentials never reach a core dump of a process that streams (issue 6, security).

A client process runs an exec session over TLS against the emulator, and gdb's ``gcore``
dumps it three times: while the upgrade request waits for an answer, while the session is open
(after the REST lookup and the WebSocket handshake), and after the session closed. Each dump is
searched for the bearer token and the client key in every form they take on the way (raw,
``Bearer …``, base64, PEM lines, DER). A canary string the child keeps on its heap must be in
every dump, so an empty or partial dump cannot pass.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

from k8sstream.testing import ApiServer
from tests.reliability import record

trustme = pytest.importorskip("trustme")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="core dumps: Linux only"),
    pytest.mark.skipif(
        shutil.which("gcore") is None, reason="gdb's gcore is not installed (apt install gdb)"
    ),
]

TOKEN = "tok-7c1e55d08a3f4b29-CORE-SECRET"

CHILD = r"""
import gc, secrets, sys
import k8sstream
from k8sstream import Client

canary = "".join(["canary-", secrets.token_hex(16)])
print(canary, flush=True)
client = Client.from_kubeconfig(sys.argv[1])
proc = k8sstream.Popen(
    ["cat"], pod="demo", client=client, stdin=k8sstream.PIPE, stdout=k8sstream.PIPE
)
proc.stdin.write(b"ping\n")
proc.stdin.flush()
assert proc.stdout.readline() == b"ping\n"
print("open", flush=True)
sys.stdin.readline()
proc.stdin.close()
assert proc.wait(10) == 0
proc.stdout.close()
client.close()
del proc, client
gc.collect()
print("closed", flush=True)
sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    # The child must import this checkout, wherever pytest runs from.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def server_context(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def write_kubeconfig(path: Any, server: ApiServer, ca: Any, user: Dict[str, Any]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": server.url,
                    "certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def take_core_dump(pid: int, directory: Any) -> Tuple[Optional[bytes], str]:
    """The process's core as gcore writes it (removed from disk), or ``None`` and gcore's error."""
    prefix = os.path.join(str(directory), "core")
    done = subprocess.run(
        ["gcore", "-o", prefix, str(pid)], capture_output=True, text=True, timeout=120
    )
    path = f"{prefix}.{pid}"
    if done.returncode != 0 or not os.path.exists(path):
        return None, f"gcore exit {done.returncode}: {done.stderr[-500:]}"
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data, ""


def core_dump(pid: int, directory: Any) -> bytes:
    data, error = take_core_dump(pid, directory)
    if data is None:
        pytest.fail(error)
    return data


def token_forms(token: str) -> List[Tuple[str, bytes]]:
    raw = token.encode()
    return [
        ("token", raw),
        ("Authorization value", b"Bearer " + raw),
        ("base64 token", base64.b64encode(raw)),
        ("UTF-16 token", token.encode("utf-16-le")),
    ]


def key_forms(pem: bytes) -> List[Tuple[str, bytes]]:
    body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    der = base64.b64decode(b"".join(body))
    forms = [(f"PEM line {i + 1}", line) for i, line in enumerate(body)]
    return [*forms, ("DER key", der), ("PEM text", pem[:48])]


class Child:
    def __init__(self, kubeconfig: str, env: Dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, kubeconfig],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.canary = self.expect_line().encode()

    def expect_line(self, wanted: str = "") -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line or (wanted and line != wanted):
            self.proc.kill()
            pytest.fail(f"the child said {line!r}, not {wanted or 'a canary'!r}")
        return line

    def advance(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        self.advance()
        assert self.proc.wait(30) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def gcore_works(tmp_path_factory: Any) -> None:
    """gcore needs ptrace: containers without CAP_SYS_PTRACE or with Yama scope 2+ refuse it."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        data, error = take_core_dump(sleeper.pid, tmp_path_factory.mktemp("probe"))
    finally:
        sleeper.kill()
        sleeper.wait()
    if data is None:
        pytest.skip(f"gcore cannot dump a child process here (ptrace refused?): {error}")


@pytest.fixture
def run_child(child_env: Dict[str, str], gcore_works: None) -> Iterator[Any]:
    children: List[Child] = []

    def start(kubeconfig: str) -> Child:
        child = Child(kubeconfig, child_env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


def assert_absent(dump: bytes, canary: bytes, forms: List[Tuple[str, bytes]], when: str) -> None:
    assert canary in dump, f"{when}: the dump does not hold the child's heap (no canary)"
    found = [name for name, needle in forms if needle in dump]
    assert not found, f"{when}: the core dump holds {', '.join(found)}"


def dumps_of_a_session(child: Child, tmp_path: Any) -> List[Tuple[str, bytes]]:
    child.expect_line("open")
    during = core_dump(child.proc.pid, tmp_path)
    child.advance()
    child.expect_line("closed")
    after = core_dump(child.proc.pid, tmp_path)
    child.finish()
    return [("session open", during), ("session closed", after)]


def exec_plugin(tmp_path: Any, status: Dict[str, str]) -> Dict[str, Any]:
    """A kubeconfig ``exec`` entry for a plugin that prints an ExecCredential with ``status``."""
    api_version = "client.authentication.k8s.io/v1"
    credential = tmp_path / "credential.json"
    credential.write_text(
        json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status})
    )
    script = tmp_path / "plugin"
    script.write_text(f"#!/bin/sh\nexec cat '{credential}'\n")
    script.chmod(0o755)
    return {"apiVersion": api_version, "command": str(script), "interactiveMode": "Never"}


@pytest.mark.parametrize("source", ["tokenFile", "token", "exec"])
def test_the_bearer_token_is_in_no_core_dump(ca, tmp_path, run_child, source):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    user: Dict[str, Any] = {
        "tokenFile": {"tokenFile": str(token_file)},
        "token": {"token": TOKEN},
        "exec": {"exec": exec_plugin(tmp_path, {"token": TOKEN})},
    }[source]
    with ApiServer(ssl_context=server_context(ca), token=TOKEN) as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server, ca, user)
        server.faults.stall(match="/exec")
        waiting = run_child(kubeconfig)
        deadline = time.monotonic() + 20
        while not any("/exec" in r.path for r in list(server.requests)):
            assert time.monotonic() < deadline, "the upgrade request never arrived"
            time.sleep(0.05)
        # The request is on the wire and the client waits for the 101: the moment a copy
        # of the upgrade request would still be in memory if anything had kept one.
        dumps = [
            ("upgrade sent, no answer yet", waiting.canary, core_dump(waiting.proc.pid, tmp_path))
        ]
        waiting.kill()
        server.faults.clear()
        streaming = run_child(kubeconfig)
        dumps += [
            (when, streaming.canary, dump) for when, dump in dumps_of_a_session(streaming, tmp_path)
        ]
    for when, canary, dump in dumps:
        assert_absent(dump, canary, token_forms(TOKEN), when)
    record(
        "security",
        f"core dumps (gcore) of a TLS exec client, token from kubeconfig {source}",
        "token absent (raw, Bearer, base64, UTF-16) while the upgrade waits, mid-session "
        "and after close; the child's heap canary present",
        dumps=len(dumps),
        dump_mib=round(max(len(d) for _, _, d in dumps) / 2**20),
    )


@pytest.mark.parametrize("key_type", ["ECDSA", "RSA"])
@pytest.mark.parametrize("source", ["client-key", "client-key-data", "exec"])
def test_the_client_key_is_in_no_core_dump(ca, tmp_path, run_child, source, key_type):
    client_cert = ca.issue_cert("alice", common_name="alice", key_type=trustme.KeyType[key_type])
    key_pem = client_cert.private_key_pem.bytes()
    key_file = tmp_path / "client.key"
    key_file.write_bytes(key_pem)
    user: Dict[str, Any] = {
        "client-certificate-data": base64.b64encode(client_cert.cert_chain_pems[0].bytes()).decode()
    }
    if source == "client-key":
        user["client-key"] = str(key_file)
    elif source == "client-key-data":
        user["client-key-data"] = base64.b64encode(key_pem).decode()
    else:
        status = {
            "clientCertificateData": client_cert.cert_chain_pems[0].bytes().decode(),
            "clientKeyData": key_pem.decode(),
        }
        user = {"exec": exec_plugin(tmp_path, status)}
    with ApiServer(ssl_context=server_context(ca), client_ca=ca.cert_pem.bytes()) as server:
        child = run_child(write_kubeconfig(tmp_path / "kubeconfig", server, ca, user))
        dumps = dumps_of_a_session(child, tmp_path)
    forms = key_forms(key_pem)
    if source == "client-key-data":
        forms.append(("the kubeconfig's base64 of the PEM", base64.b64encode(key_pem)[:64]))
    for when, dump in dumps:
        assert_absent(dump, child.canary, forms, when)
    record(
        "security",
        f"core dumps (gcore) of a TLS exec client, {key_type} client key from kubeconfig {source}",
        "key absent as PEM lines, PEM text and DER, mid-session and after close "
        "(OpenSSL's own parsed key is necessarily in memory)",
        dumps=len(dumps),
    )
