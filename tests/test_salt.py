"""The Salt execution module: through the real ``salt-call --local`` (Salt from PyPI, found via
k8sstream's ``salt.loader`` entry point), and called directly with a fake ``__salt__`` the way
Salt's loader injects it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict

import pytest

from k8sstream.saltext.modules import k8sstream_mod
from k8sstream.testing import ApiServer, Container, Pod

SALT_CALL = Path(sys.executable).parent / "salt-call"
TIMEOUT = 60


def _registered() -> bool:
    return any(e.value == "k8sstream.saltext" for e in entry_points().select(group="salt.loader"))


needs_salt = pytest.mark.skipif(
    not SALT_CALL.exists() or not _registered(),
    reason="salt-call is not installed next to this Python, or k8sstream is not installed "
    "(pip install -e '.[test]') so its salt.loader entry point is missing",
)


@pytest.fixture
def cluster(tmp_path):
    with ApiServer(with_demo_pod=False) as server:
        server.add_pod(
            Pod(
                name="web-0",
                labels={"app": "web"},
                containers=[Container("app", ["sleep", "300"], stdin=False)],
            )
        )
        server.add_workload("Deployment", "web", {"app": "web"})
        server.write_kubeconfig(tmp_path / "kubeconfig")
        yield server


@pytest.fixture
def salt_call(cluster, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "minion").write_text(
        f"root_dir: {tmp_path / 'root'}\nfile_client: local\nlog_level: warning\n"
        f"k8sstream:\n  kubeconfig: {tmp_path / 'kubeconfig'}\n"
    )

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SALT_CALL), "--local", "-c", str(etc), "--out=json", *args],
            capture_output=True,
            timeout=TIMEOUT,
            env=dict(os.environ, LC_ALL="C.UTF-8"),
        )

    return call


def _local(result: subprocess.CompletedProcess) -> Any:
    return json.loads(result.stdout)["local"]


@needs_salt
def test_salt_call_run_with_stdin_eof_and_retcode(salt_call):
    result = salt_call(
        "--retcode-passthrough",
        "k8sstream.run",
        '["sh", "-c", "wc -c; exit 3"]',
        "pod=web-0",
        "stdin=hello",
    )
    assert result.returncode == 3, result.stderr
    assert _local(result) == {
        "pod": "web-0",
        "retcode": 3,
        "stdout": "5\n",
        "stderr": "",
        "stdout_encoding": "utf-8",
        "stderr_encoding": "utf-8",
    }


@needs_salt
def test_salt_call_is_binary_safe(salt_call):
    payload = bytes(range(256)) * 64
    result = salt_call(
        "k8sstream.run", "cat", "pod=deploy/web", f"stdin_b64={base64.b64encode(payload).decode()}"
    )
    assert result.returncode == 0, result.stderr
    out = _local(result)
    assert out["pod"] == "web-0" and out["stdout_encoding"] == "base64"  # not UTF-8: base64
    assert base64.b64decode(out["stdout"]) == payload


@needs_salt
def test_salt_call_copies_both_ways(salt_call, cluster, tmp_path):
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(100_000))
    remote = tmp_path / "remote"  # container paths are host paths in the emulator
    remote.mkdir()
    result = salt_call("k8sstream.cp_to", str(source), "web-0", str(remote / "copy.bin"))
    assert result.returncode == 0, result.stderr
    assert _local(result)["result"] is True
    assert (remote / "copy.bin").read_bytes() == source.read_bytes()
    result = salt_call(
        "k8sstream.cp_from", "deploy/web", str(remote / "copy.bin"), str(tmp_path / "back.bin")
    )
    assert result.returncode == 0, result.stderr
    assert (
        hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest()
        == hashlib.sha256(source.read_bytes()).digest()
    )


@needs_salt
def test_salt_call_errors_are_salt_errors(salt_call):
    result = salt_call("k8sstream.run", "id", "pod=nope")
    assert result.returncode == 1
    assert b'k8sstream: id in nope: 404 NotFound: pods "nope" not found' in result.stderr
    # Salt parses arguments as YAML: a bare "true" arrives as a bool, which is refused.
    result = salt_call("k8sstream.run", "true", "pod=web-0")
    assert result.returncode == 1
    assert b"cmd must be a string or a list, not bool" in result.stderr


# --- the functions called directly, as Salt's loader would call them ---


@pytest.fixture
def module(cluster, tmp_path, monkeypatch):
    config: Dict[str, Any] = {"k8sstream:kubeconfig": str(tmp_path / "kubeconfig")}
    monkeypatch.setattr(
        k8sstream_mod,
        "__salt__",
        {"config.get": lambda key, default=None: config.get(key, default)},
    )
    monkeypatch.setattr(k8sstream_mod, "__opts__", {})
    monkeypatch.setattr(k8sstream_mod, "__context__", {})
    return k8sstream_mod


def test_virtual_name():
    assert k8sstream_mod.__virtual__() == "k8sstream"


def test_run_directly(module, tmp_path):
    out = module.run("sh -c 'cat; echo err >&2'", "web-0", stdin="héllo\n")
    assert (out["retcode"], out["stdout"], out["stderr"]) == (0, "héllo\n", "err\n")
    assert module.__context__["retcode"] == 0
    stdin_file = tmp_path / "in.bin"
    stdin_file.write_bytes(b"\x00\xff" * 1000)
    out = module.run(["wc", "-c"], "deploy/web", stdin_file=str(stdin_file))
    assert out["stdout"].strip() == "2000" and out["pod"] == "web-0"
    out = module.run(["echo", "hi"], "web-0", output_encoding="base64")
    assert (out["stdout"], out["stdout_encoding"]) == ("aGkK", "base64")


def test_run_argument_errors(module):
    with pytest.raises(Exception, match="at most one of stdin, stdin_b64 and stdin_file"):
        module.run("cat", "web-0", stdin="a", stdin_b64="YQ==")
    with pytest.raises(Exception, match="not valid base64"):
        module.run("cat", "web-0", stdin_b64="***")
    with pytest.raises(Exception, match="timed out"):
        module.run(["sleep", "10"], "web-0", timeout=0.5)
    with pytest.raises(Exception, match="executable file not found"):
        module.run(["no-such-binary"], "web-0")


def test_copy_directly(module, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (tmp_path / "a.txt").write_text("a\n")
    assert module.cp_to(str(tmp_path / "a.txt"), "web-0", str(remote / "b.txt"))["result"]
    assert module.cp_from("web-0", str(remote / "b.txt"), str(tmp_path / "c.txt"))["result"]
    assert (tmp_path / "c.txt").read_text() == "a\n"
    with pytest.raises(Exception, match="failed"):
        module.cp_from("web-0", str(remote / "missing"), str(tmp_path / "d.txt"))
