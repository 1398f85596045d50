"""Leaks and load, bounded in count and time, loopback only.

The default sizes keep the suite fast on 2 cores; ``K8SSTREAM_SLOW=1`` runs the sizes of
issue 6 (1,000 sequential execs, 200 concurrent sessions, 100 concurrent port-forward
connections, a 1 GiB slow reader, 32 TLS connections). Each test records its figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import pytest

import k8sstream
from k8sstream import PIPE, Client
from k8sstream.testing import ApiServer, EchoServer, Pod
from tests.reliability import SLOW, Stopwatch, fd_count, proc_status, record

MiB = 1024 * 1024


class PeakThreads:
    """Samples the process's thread count in the background while a load runs."""

    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> PeakThreads:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def test_sequential_execs_keep_threads_fds_and_rss_flat(client):
    total = 1000 if SLOW else 100
    warmup = 20
    samples: List[Dict[str, int]] = []

    def sample() -> None:
        samples.append(
            {
                "threads": threading.active_count(),
                "fds": fd_count(),
                "rss_kib": proc_status("VmRSS"),
            }
        )

    with Stopwatch() as watch:
        for i in range(total + warmup):
            result = k8sstream.run(
                ["sh", "-c", "echo $0", str(i)], pod="demo", client=client, capture_output=True
            )
            assert result.stdout == f"{i}\n".encode()
            if i == warmup - 1 or (i >= warmup and (i - warmup + 1) % (total // 4) == 0):
                time.sleep(0.05)  # let finished reader threads be reaped before sampling
                sample()
    first, last = samples[0], samples[-1]
    grew = {k: last[k] - first[k] for k in first}
    assert grew["threads"] <= 1, samples
    assert grew["fds"] <= 2, samples
    assert grew["rss_kib"] < 16 * 1024, samples  # no per-exec growth (16 KiB x 1,000 would show)
    record(
        "load",
        f"{total} sequential execs, one process",
        "threads, fds and RSS flat",
        execs=total,
        seconds=watch.elapsed,
        threads=f"{first['threads']} -> {last['threads']}",
        fds=f"{first['fds']} -> {last['fds']}",
        rss_mib=f"{first['rss_kib'] / 1024:.1f} -> {last['rss_kib'] / 1024:.1f}",
    )


def test_concurrent_exec_sessions_with_checksums(client):
    sessions = 200 if SLOW else 30
    size = 64 * 1024

    def one(i: int) -> bool:
        data = os.urandom(size)
        result = k8sstream.run(
            ["sh", "-c", "cat; echo done >&2"],
            pod="demo",
            client=client,
            input=data,
            capture_output=True,
            timeout=120,
        )
        return (
            hashlib.sha256(result.stdout).digest() == hashlib.sha256(data).digest()
            and result.stderr == b"done\n"
            and result.returncode == 0
        )

    with Stopwatch() as watch, PeakThreads() as peak, ThreadPoolExecutor(sessions) as pool:
        results = list(pool.map(one, range(sessions)))
    assert all(results)
    record(
        "load",
        f"{sessions} concurrent exec sessions (64 KiB in, echoed back)",
        "all complete, checksums intact",
        sessions=sessions,
        seconds=watch.elapsed,
        peak_threads=peak.peak,
    )


@pytest.mark.parametrize("protocol", ["tunnel", "websocket"])
def test_concurrent_port_forward_connections_with_checksums(client, emulator, protocol):
    connections = 100 if SLOW else 20
    size = 256 * 1024
    with EchoServer() as echo:
        emulator.add_pod(Pod(name="echo", ports={7: echo.port}))
        tunnel_sock = None
        if protocol == "tunnel":
            # One tunnel shared by every connection: the hardest case for the I/O lock.
            tunnel_sock = k8sstream.port_forward("echo", 7, client=client, protocol="tunnel")

        def one(i: int) -> bool:
            data = os.urandom(size)
            with k8sstream.port_forward(
                "echo", 7, client=client, protocol=protocol, timeout=60
            ) as sock:
                sender = threading.Thread(target=sock.sendall, args=(data,))
                sender.start()
                got = bytearray()
                while len(got) < size:
                    chunk = sock.recv(65536)
                    assert chunk
                    got += chunk
                sender.join()
            return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

        try:
            with (
                Stopwatch() as watch,
                PeakThreads() as peak,
                ThreadPoolExecutor(connections) as pool,
            ):
                results = list(pool.map(one, range(connections)))
        finally:
            if tunnel_sock is not None:
                tunnel_sock.close()
    assert all(results)
    record(
        "load",
        f"{connections} concurrent port-forward connections ({protocol}, 256 KiB echoed)",
        "all complete, checksums intact",
        connections=connections,
        seconds=watch.elapsed,
        peak_threads=peak.peak,
    )


SLOW_READER = textwrap.dedent(
    """
    import json, sys, time
    import k8sstream

    def hwm():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    client = k8sstream.Client.from_kubeconfig(sys.argv[1])
    size, limit = int(sys.argv[2]), float(sys.argv[3])
    k8sstream.run(["true"], pod="demo", client=client)  # warm up imports and the pool
    idle = hwm()
    start = time.monotonic()
    with k8sstream.Popen(["head", "-c", str(size), "/dev/zero"], pod="demo",
                         stdout=k8sstream.PIPE, client=client) as p:
        n = 0
        while True:
            data = p.stdout.read1(256 * 1024)
            if not data:
                break
            n += len(data)
            time.sleep(0.0005)  # slower than the producer: the pipes fill and stay full
            if time.monotonic() - start > limit:
                p.kill()
                break
    client.close()
    print(json.dumps({"idle_kib": idle, "peak_kib": hwm(), "bytes": n,
                      "seconds": time.monotonic() - start}))
    """
)


def test_slow_reader_of_a_large_stream_keeps_memory_bounded(emulator, tmp_path):
    """Measured in a child process (VmHWM), with the emulator in this one."""
    size = (1024 if SLOW else 256) * MiB
    limit = 300.0 if SLOW else 60.0
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kc")
    child = subprocess.run(
        [sys.executable, "-c", SLOW_READER, kubeconfig, str(size), str(limit)],
        capture_output=True,
        timeout=limit + 60,
        check=True,
    )
    r = json.loads(child.stdout)
    over = (r["peak_kib"] - r["idle_kib"]) / 1024
    assert r["bytes"] == size, r
    assert over < 32, r  # 1 MiB per pipe, 256 KiB reads, frames: far below the stream size
    record(
        "load",
        f"slow reader of a {size // MiB} MiB stream (child process)",
        "memory bounded",
        bytes=r["bytes"],
        seconds=r["seconds"],
        peak_over_idle_mib=over,
        opt_in_1GiB="K8SSTREAM_SLOW=1",
    )


def test_fast_writer_into_a_slow_remote_stdin_is_back_pressured(client):
    chunk = b"w" * (64 * 1024)
    written = [0]
    rss_before = proc_status("VmRSS")
    with k8sstream.Popen(
        ["sh", "-c", "sleep 1.5; exec cat >/dev/null"], pod="demo", stdin=PIPE, client=client
    ) as proc:

        def write() -> None:
            for _ in range(1024):  # 64 MiB
                proc.stdin.write(chunk)
                written[0] += len(chunk)
            proc.stdin.close()

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(1.0)
        while_stalled = written[0]
        rss_stalled = proc_status("VmRSS")
        writer.join(60)
        assert not writer.is_alive()
    assert proc.returncode == 0
    assert written[0] == 64 * MiB
    # What is in flight is the socket buffers, the emulator's relay and the remote pipe.
    assert while_stalled < 16 * MiB, while_stalled
    record(
        "load",
        "fast writer into a remote stdin that reads nothing for 1.5 s",
        "writer blocked (back-pressure), then all 64 MiB delivered",
        written_while_stalled_mib=while_stalled / MiB,
        rss_growth_while_stalled_mib=(rss_stalled - rss_before) / 1024,
    )


def test_tls_full_duplex_stress(tmp_path):
    """Many TLS connections each sending and receiving at once: the single I/O lock must
    keep OpenSSL from seeing a concurrent SSL_read and SSL_write (no corruption, no hang)."""
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    connections = 32 if SLOW else 8
    size = (8 if SLOW else 2) * MiB
    with ApiServer(ssl_context=server_ctx) as server:
        path = server.write_kubeconfig(tmp_path / "kc", ca_data=ca.cert_pem.bytes())
        with Client.from_kubeconfig(path) as client:

            def one(i: int) -> bool:
                data = os.urandom(size)
                with k8sstream.Popen(
                    ["cat"], pod="demo", stdin=PIPE, stdout=PIPE, client=client
                ) as proc:
                    out, _ = proc.communicate(data, timeout=120)
                return hashlib.sha256(out).digest() == hashlib.sha256(data).digest()

            with (
                Stopwatch() as watch,
                PeakThreads() as peak,
                ThreadPoolExecutor(connections) as pool,
            ):
                results = list(pool.map(one, range(connections)))
    assert all(results)
    record(
        "load",
        f"TLS: {connections} connections, {size // MiB} MiB each way at the same time",
        "no corruption, no deadlock",
        connections=connections,
        seconds=watch.elapsed,
        mib_per_s=2 * connections * size / MiB / watch.elapsed,
        peak_threads=peak.peak,
    )
