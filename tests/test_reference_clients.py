"""The official Kubernetes Python client as a second reference peer for the emulator."""

from __future__ import annotations

import pytest

kubernetes = pytest.importorskip("kubernetes")


@pytest.fixture
def core_v1(emulator, tmp_path):
    from kubernetes import client, config

    path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(path))
    yield client.CoreV1Api(api_client)
    api_client.close()


def test_official_client_exec_output_and_exit_code(core_v1):
    from kubernetes.stream import stream

    resp = stream(
        core_v1.connect_get_namespaced_pod_exec,
        "demo",
        "default",
        command=["sh", "-c", "echo out; echo err >&2; exit 3"],
        container="main",
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 3
    resp.close()


def test_official_client_sees_the_pod(core_v1):
    pod = core_v1.read_namespaced_pod("demo", "default")
    assert [c.name for c in pod.spec.containers] == ["main", "sidecar"]
    assert pod.status.phase == "Running"
