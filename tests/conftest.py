"""Shared fixtures: the leak check every test gets, the emulator, and kubeconfigs."""

from __future__ import annotations

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
    while time.monotonic() < deadline:
        leaked_threads = _k8sstream_threads() - threads_before
        leaked_fds = _open_fds() - fds_before
        if not leaked_threads and not leaked_fds:
            return
        time.sleep(0.05)
    details = {fd: _describe_fd(fd) for fd in leaked_fds}
    assert not leaked_threads, f"threads left running: {sorted(t.name for t in leaked_threads)}"
    assert not leaked_fds, f"file descriptors left open: {details}"


def _describe_fd(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


@pytest.fixture(autouse=True)
def clean_proxy_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide about proxies themselves (requests' own test suite does the same)."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
