"""run_many against 50 emulated pods: every result, bounded concurrency, results as pods
finish, failures that hide nothing, timeouts, stdin with EOF, early close, and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import k8sstream
from k8sstream import ApiError, Client, ConfigError, TimeoutExpired
from k8sstream.testing import ApiServer, Container, Pod

CLI = [sys.executable, "-m", "k8sstream"]
PODS = 50


@pytest.fixture
def fleet():
    """50 pods labelled app=web (web-00 .. web-49), plus a completed one and a db pod."""
    with ApiServer(with_demo_pod=False) as server:
        for i in range(PODS):
            server.add_pod(
                Pod(
                    name=f"web-{i:02d}",
                    labels={"app": "web", "shard": str(i % 5)},
                    containers=[Container("app", ["sleep", "300"], stdin=False)],
                )
            )
        server.add_pod(
            Pod(
                name="web-done",
                labels={"app": "web"},
                phase="Succeeded",
                containers=[Container("app", ["true"], stdin=False)],
            )
        )
        server.add_pod(Pod(name="db-0", labels={"app": "db"}))
        yield server


@pytest.fixture
def kc(fleet, tmp_path):
    with Client.from_kubeconfig(fleet.write_kubeconfig(tmp_path / "kubeconfig")) as c:
        yield c


def test_fifty_pods_all_report(kc):
    script = (
        'case "$HOSTNAME" in web-1?) echo "$HOSTNAME oops" >&2; exit 3;; esac; echo "$HOSTNAME"'
    )
    start = time.monotonic()
    with k8sstream.run_many(
        ["sh", "-c", script], selector="app=web", client=kc, max_workers=16
    ) as run:
        results = list(run)
    assert time.monotonic() - start < 30
    summary = run.summary
    assert summary is not None
    assert sorted(r.pod for r in results) == [f"web-{i:02d}" for i in range(PODS)]
    assert summary.total == PODS
    assert summary.skipped == ("web-done",)
    assert summary.succeeded == PODS - 10
    assert summary.failed == {f"web-1{i}": 3 for i in range(10)}
    assert summary.errors == {} and not summary.ok
    for r in results:
        if r.pod.startswith("web-1"):
            assert (r.returncode, r.stdout, r.stderr) == (3, b"", f"{r.pod} oops\n".encode())
        else:
            assert r.ok and r.output == f"{r.pod}\n".encode() and r.stderr == b""
            assert r.container == "app" and r.namespace == "default" and r.duration > 0
    assert "50 pods: 40 succeeded, 10 failed (web-10: exit 3" in str(summary)
    assert "1 completed pods skipped" in str(summary)


def test_concurrency_is_bounded_and_results_stream_as_pods_finish(kc, tmp_path):
    log = tmp_path / "log"  # absolute paths in the emulator's containers are host paths
    script = f'echo "+ $(date +%s.%N)" >> {log}; sleep 0.2; echo "- $(date +%s.%N)" >> {log}'
    slow = f'if [ "$HOSTNAME" = web-00 ]; then sleep 1.5; fi; {script}'
    order = []
    with k8sstream.run_many(
        ["sh", "-c", slow], selector="app=web,shard in (0,1)", client=kc, max_workers=4
    ) as run:
        for result in run:
            assert result.ok, result
            order.append(result.pod)
    assert len(order) == 20
    assert order[-1] == "web-00"  # the slow pod started first and finished last
    events = sorted(
        (float(t), +1 if sign == "+" else -1)
        for sign, t in (line.split() for line in log.read_text().splitlines())
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert 2 <= peak <= 4


def test_errors_and_exit_codes_never_hide_other_pods(kc):
    run = k8sstream.run_many(
        ["sh", "-c", "echo ok"],
        pods=["web-01", "no-such-pod", "web-done", "web-02", "web-01"],
        client=kc,
    )
    results = {r.pod: r for r in run}
    assert set(results) == {"web-01", "no-such-pod", "web-done", "web-02"}
    assert results["web-01"].stdout == b"ok\n" and results["web-02"].ok
    assert isinstance(results["no-such-pod"].error, ApiError)
    assert results["no-such-pod"].error.status_code == 404
    assert results["no-such-pod"].returncode is None
    assert isinstance(results["web-done"].error, k8sstream.PodStateError)
    assert run.summary is not None
    assert set(run.summary.errors) == {"no-such-pod", "web-done"}
    assert run.summary.errors["no-such-pod"].startswith("ApiError: ")


def test_missing_executable_is_a_per_pod_error(kc):
    with k8sstream.run_many(["no-such-binary"], pods=["web-03"], client=kc) as run:
        (result,) = list(run)
    assert isinstance(result.error, k8sstream.RemoteCommandError)


def test_timeout_per_pod_keeps_partial_output(kc):
    with k8sstream.run_many(
        ["sh", "-c", 'echo early; [ "$HOSTNAME" = web-04 ] && sleep 30; echo done'],
        pods=["web-04", "web-05"],
        timeout=1.0,
        client=kc,
    ) as run:
        results = {r.pod: r for r in run}
    assert isinstance(results["web-04"].error, TimeoutExpired)
    assert results["web-04"].stdout == b"early\n"
    assert results["web-05"].stdout == b"early\ndone\n"


def test_stdin_reaches_every_pod_with_eof(kc):
    payload = bytes(range(256)) * 1000
    with k8sstream.run_many(
        ["sh", "-c", "cat | md5sum"], selector="shard=2", input=payload, client=kc, max_workers=5
    ) as run:
        results = list(run)
    assert len(results) == 10
    import hashlib

    expected = hashlib.md5(payload).hexdigest().encode()
    assert all(r.ok and r.stdout.startswith(expected) for r in results)


def test_text_mode(kc):
    with k8sstream.run_many(["echo", "hé"], pods=["web-06"], text=True, client=kc) as run:
        assert [r.stdout for r in run] == ["hé\n"]


def test_closing_early_cancels_the_rest_and_leaves_nothing(kc):
    start = time.monotonic()
    run = k8sstream.run_many(["sleep", "30"], selector="app=web", client=kc, max_workers=3)
    with run:
        pass
    assert time.monotonic() - start < 10
    assert run.summary is not None
    assert run.summary.total == 3 and len(run.summary.cancelled) == PODS - 3
    # Ended sessions report what subprocess reports for a killed process.
    assert [r.returncode for r in run.results] == [-signal.SIGKILL] * 3


def test_argument_errors(kc):
    with pytest.raises(ConfigError):
        k8sstream.run_many(["true"], client=kc)
    with pytest.raises(ConfigError):
        k8sstream.run_many(["true"], selector="a", pods=["b"], client=kc)
    with pytest.raises(ConfigError):
        k8sstream.run_many(["true"], selector="a", max_workers=0, client=kc)
    with pytest.raises(ConfigError):
        k8sstream.run_many("true", selector="a", client=kc)  # type: ignore[arg-type]
    with k8sstream.run_many(["true"], selector="app=nothing", client=kc) as run:
        assert list(run) == []
    assert run.summary is not None and run.summary.total == 0 and not run.summary.ok


def test_cli_run_many(fleet, tmp_path: Path):
    env = dict(os.environ, KUBECONFIG=str(fleet.write_kubeconfig(tmp_path / "kc")))
    result = subprocess.run(
        [
            *CLI,
            "run-many",
            "-l",
            "shard=3",
            "--max-workers",
            "5",
            "--",
            "sh",
            "-c",
            "echo $HOSTNAME",
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.decode().splitlines())
    assert lines == sorted(f"[web-{i:02d}] web-{i:02d}" for i in range(3, PODS, 5))
    assert result.stderr.decode().startswith("10 pods: 10 succeeded in ")
    result = subprocess.run(
        [*CLI, "run-many", "--pods", "web-07,nope", "-i", "--", "sh", "-c", "wc -c; exit 4"],
        env=env,
        input=b"12345",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == b"[web-07] 5\n"
    err = result.stderr.decode()
    assert "[web-07] exit status 4" in err
    assert '[nope] error: 404 NotFound: pods "nope" not found' in err
    assert "2 pods: 0 succeeded, 1 failed (web-07: exit 4), 1 errors (nope: ApiError" in err
    result = subprocess.run(
        [*CLI, "run-many", "-l", "app=none", "--", "true"], env=env, capture_output=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (1, b"error: no pods matched\n")
