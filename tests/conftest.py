"""Shared fixtures: the leak check every test gets, the emulator, and kubeconfigs."""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Iterator, Set

import pytest


def _k8sstream_threads() -> Set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("k8sstream-")}


def _open_fds() -> Set[int]:
    try:
        return {int(fd) for fd in os.listdir("/proc/self/fd")}
    except FileNotFoundError:  # not Linux: the thread check still runs
        return set()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test must leave no k8sstream thread and no file descriptor behind."""
    threads_before = _k8sstream_threads()
    fds_before = _open_fds()
    yield
    if request.node.get_closest_marker("allow_leaks"):
        return
    deadline = time.monotonic() + 5.0
    while True:
        leaked_threads = _k8sstream_threads() - threads_before
        leaked_fds = _open_fds() - fds_before
        if (not leaked_threads and not leaked_fds) or time.monotonic() > deadline:
            break
        # Exceptions kept by pytest.raises hold frames (and their sockets) in reference cycles.
        gc.collect()
        time.sleep(0.05)
    details = {fd: _describe_fd(fd) for fd in leaked_fds}
    assert not leaked_threads, f"threads left running: {sorted(t.name for t in leaked_threads)}"
    assert not leaked_fds, f"file descriptors left open: {details}"


def _describe_fd(fd: int) -> str:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"
    if target.startswith("socket:["):
        inode = target[8:-1]
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/net/{table}") as f:
                    for line in f.readlines()[1:]:
                        fields = line.split()
                        if fields[9] == inode:
                            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
                            return f"{target} tcp port {local} -> {remote}"
            except OSError:
                pass
    return target


@pytest.fixture(autouse=True)
def clean_proxy_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide about proxies themselves (requests' own test suite does the same)."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def emulator():
    """A fresh API-server emulator (plain HTTP) with pod default/demo."""
    from k8sstream.testing import ApiServer

    with ApiServer() as server:
        yield server


@pytest.fixture
def client(emulator, tmp_path):
    """A Client for the emulator, loaded from a kubeconfig the way users load theirs."""
    from k8sstream import Client

    path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    with Client.from_kubeconfig(path) as c:
        yield c
