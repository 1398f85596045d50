#!/usr/bin/env python
"""Port-forward benchmark: k8sstream vs ``kubectl port-forward`` vs the official Python client.

Usage::

    python benchmarks/bench_portforward.py [--runs 5] [--bulk-mib 256] [--echo-mib 64]
                                           [--official-echo-mib 0] [--rtts 10000]
                                           [--connections 100] [--quick] [--markdown]
                                           [--profile [--no-bench]]

The emulator runs in a child process started from this file (``--serve KUBECONFIG``): an
``EchoServer`` behind pod port 7, a ``SinkServer`` (discard, ``source_bytes=0``) behind port 9
and a ``SinkServer(source_bytes=N)`` (a source, like chargen) behind port 19 of pod
``default/bench``. Port 9 cannot be both: a sink with ``source_bytes`` sends N bytes on every
connection, uploads included. Per run, round-robin over the cases (the starting case rotates):

* download: N bytes from port 19. Clients with half-close shut down their write side right after
  connecting and read to EOF (the N bytes plus the sink's ``"0\\n"`` count); the others read
  exactly N bytes and close. CRC-32 over everything received is checked.
* upload: N bytes to port 9, half-close, then the sink's byte count is checked (needs
  half-close: not possible over the legacy WebSocket protocol or with the official client).
* echo: N bytes through port 7 while reading them back (both directions at once; all clients).
* latency: small round trips on one connection to port 7; p50 and p99 per run.
* concurrency: C connections at once, each sending and reading back 64 KiB through port 7;
  every byte is compared; total time, failures and the peak thread count.

k8sstream is measured as ``port_forward()`` (tunnel and legacy WebSocket) and through a
``PortForwarder`` local port; kubectl as one ``kubectl port-forward pod/bench :7 :9 :19`` per run
whose local ports get plain TCP sockets; the official client as
``kubernetes.stream.portforward(...).socket(port)``, one WebSocket per connection.
Raw results go to ``benchmarks/results/`` (git-ignored) as JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

# Run as ``python benchmarks/bench_portforward.py``: make ``_common`` (next to this file)
# importable from any working directory; it puts the checkout on sys.path for ``k8sstream``.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from _common import (
    CLK_TCK,
    GiB,
    KiB,
    LineReader,
    MiB,
    install_cleanup,
    kill_children,
    kubectl_version,
    popen,
    proc_stat,
    publish,
    round_robin,
    spread,
    stop,
    table,
)
from _common import notes as notes_lines

import k8sstream

CHUNK = 1 * MiB
RUN_TIMEOUT = 120.0  # no single measurement may take longer than this
SOCK_TIMEOUT = 60.0  # no single socket operation may block longer than this
POD = "bench"
ECHO_PORT, SINK_PORT, SOURCE_PORT = 7, 9, 19
MESSAGE = 64  # bytes per latency round trip
CONN_BYTES = 64 * KiB  # per connection in the concurrency test

TARGETS = {
    "throughput_vs_kubectl": 1.0,  # MiB/s ratio, higher is better
    "latency_p50_vs_kubectl": 1.5,  # ratio of p50, lower is better
    "concurrency_failures": 0,
}

# Clients: (name, kind). "tunnel", "forwarder" and "kubectl" can half-close.
K8S_TUNNEL = "k8sstream port_forward tunnel"
K8S_FORWARDER = "k8sstream PortForwarder"
K8S_LEGACY = "k8sstream port_forward websocket"
KUBECTL = "kubectl port-forward"
# The k8sstream CLI in its own process, as kubectl runs: the fair comparison for the
# forwarder, whose in-process row shares its interpreter with the benchmark's own loops.
K8S_CLI = "k8sstream port-forward (CLI process)"
OFFICIAL = "official portforward"
HALF_CLOSE = {K8S_TUNNEL, K8S_FORWARDER, KUBECTL, K8S_CLI}
OUT_OF_PROCESS = {KUBECTL, K8S_CLI}
IN_PROCESS = {K8S_TUNNEL, K8S_FORWARDER, K8S_LEGACY, OFFICIAL}


# --- the emulator child (--serve) -------------------------------------------------------------


def serve(kubeconfig: str, source_bytes: int) -> int:
    """Echo on pod port 7, discard on 9, a source of ``source_bytes`` on 19; until signalled.

    Also ends when stdin reaches EOF, so the emulator cannot outlive a benchmark that was killed.
    """
    from k8sstream.testing import ApiServer, EchoServer, Pod, SinkServer

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def watch_stdin() -> None:
        # Raw reads on fd 0: a buffered stdin held by a daemon thread breaks interpreter exit.
        try:
            while not done.is_set():
                ready, _, _ = select.select([0], [], [], 0.5)
                if ready and not os.read(0, 1024):
                    break
        except OSError:
            pass
        done.set()

    echo = EchoServer(max_connections=1024).start()
    sink = SinkServer(max_connections=1024).start()
    source = SinkServer(source_bytes=source_bytes, max_connections=1024).start()
    server = ApiServer(with_demo_pod=False)
    server.add_pod(
        Pod(POD, ports={ECHO_PORT: echo.port, SINK_PORT: sink.port, SOURCE_PORT: source.port})
    )
    server.start()
    try:
        path = server.write_kubeconfig(kubeconfig)
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
        print(
            f"bench emulator listening on {server.url}; kubeconfig written to {path}; "
            f"pod {POD}: {ECHO_PORT}=echo {SINK_PORT}=sink {SOURCE_PORT}=source({source_bytes})",
            flush=True,
        )
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
        for service in (echo, sink, source):
            service.stop()
    return 0


# --- child processes ----------------------------------------------------------------------


def _session_stats(sid: int) -> Tuple[float, int]:
    """CPU seconds (user+system) and thread count of every live process in session ``sid``."""
    cpu = 0
    threads = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = proc_stat(entry)
        except OSError:
            continue
        if int(fields[3]) == sid:
            cpu += int(fields[11]) + int(fields[12])
            threads += int(fields[17])
    return cpu / CLK_TCK, threads


class Emulator(_common.Emulator):
    """This file's ``--serve`` mode in its own process group."""

    def __init__(self, kubeconfig: str, source_bytes: int) -> None:
        super().__init__(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--serve",
                kubeconfig,
                "--source-bytes",
                str(source_bytes),
            ],
            stdin=subprocess.PIPE,  # never written: its EOF tells the emulator we are gone
        )


class Kubectl:
    """``kubectl port-forward pod/bench :7 :9 :19`` for one run."""

    def __init__(self, kubectl: str, kubeconfig: str, workdir: str, cli: bool = False) -> None:
        env = dict(os.environ, KUBECTL_PORT_FORWARD_WEBSOCKETS="true")
        name = "k8sstream" if cli else "kubectl"
        self.stderr_path = os.path.join(workdir, f"{name}-port-forward.err")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - kubectl's lifetime
        command = (
            [sys.executable, "-m", "k8sstream", "port-forward", "--kubeconfig", kubeconfig]
            if cli
            else [kubectl, "--kubeconfig", kubeconfig, "port-forward"]
        )
        args = [
            *command,
            "--address",
            "127.0.0.1",
            f"pod/{POD}",
            f":{ECHO_PORT}",
            f":{SINK_PORT}",
            f":{SOURCE_PORT}",
        ]
        self.proc = popen(
            args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=self._stderr, env=env
        )
        self.ports: Dict[int, int] = {}
        self._drain: Optional[threading.Thread] = None
        deadline = time.monotonic() + 30
        lines = LineReader(self.proc.stdout)
        while len(self.ports) < 3 and time.monotonic() < deadline:
            line = lines.readline(max(0.0, deadline - time.monotonic()))
            if not line:
                break
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            if m:
                self.ports[int(m.group(2))] = int(m.group(1))
        if len(self.ports) < 3:
            self.stop()
            with open(self.stderr_path, errors="replace") as f:
                raise RuntimeError(f"kubectl port-forward did not start: {f.read()[-2000:]}")
        # "Handling connection for 7" per connection: drain it so kubectl never blocks on it.
        self._fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self._drain = threading.Thread(target=self._drain_stdout, name="kubectl-drain", daemon=True)
        self._drain.start()

    def _drain_stdout(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except OSError:
            pass

    def stats(self) -> Tuple[float, int]:
        return _session_stats(self.proc.pid)

    def stop(self) -> None:
        stop(self.proc, 5, close_streams=False)
        if self._drain is not None:
            self._drain.join(5)  # kubectl is gone: its stdout is at EOF
        self.proc.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()


# --- measuring ----------------------------------------------------------------------------------


class Meter(_common.Meter):
    """Wall time, benchmark-process CPU, kubectl CPU (if any) and emulator CPU."""

    def __init__(self, emulator: Emulator, kubectl: Optional[Kubectl]) -> None:
        super().__init__(emulator, children=False)
        self.kubectl = kubectl

    def _start(self) -> None:
        self.k0 = self.kubectl.stats()[0] if self.kubectl else 0.0

    def _stop(self) -> None:
        self.self_cpu = self.cpu
        self.kubectl_cpu = (self.kubectl.stats()[0] - self.k0) if self.kubectl else 0.0

    def result(self, nbytes: int) -> Dict[str, Any]:
        return {
            "bytes": nbytes,
            "wall_s": self.wall,
            "mib_s": nbytes / MiB / self.wall,
            # In-process clients: everything in this process (library and the read loop).
            # kubectl: kubectl's processes plus this process's plain-socket loop.
            "cpu_s_per_gib": (self.self_cpu + self.kubectl_cpu) * GiB / nbytes,
            "self_cpu_s_per_gib": self.self_cpu * GiB / nbytes,
            "kubectl_cpu_s_per_gib": self.kubectl_cpu * GiB / nbytes,
            "emulator_cpu_s_per_gib": self.emulator_cpu * GiB / nbytes,
        }


class ThreadPeak:
    """Samples the thread count of this process (and kubectl's session) every 5 ms."""

    def __init__(self, kubectl: Optional[Kubectl]) -> None:
        self.kubectl = kubectl
        self.peak_self = self.base_self = len(os.listdir("/proc/self/task"))
        self.peak_kubectl = self.base_kubectl = kubectl.stats()[1] if kubectl else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thread-peak", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_self = max(self.peak_self, len(os.listdir("/proc/self/task")))
            if self.kubectl is not None:
                self.peak_kubectl = max(self.peak_kubectl, self.kubectl.stats()[1])

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def _pattern_crc(size: int, tail: bytes = b"") -> int:
    """CRC-32 of what the source sends: ``SinkServer.pattern(size)``, then ``tail``."""
    from k8sstream.testing import SinkServer

    block = SinkServer.pattern(64 * KiB)
    crc = 0
    left = size
    while left:
        k = min(left, len(block))
        crc = zlib.crc32(block[:k] if k < len(block) else block, crc)
        left -= k
    return zlib.crc32(tail, crc)


def _repeat_crc(block: bytes, size: int) -> int:
    crc = 0
    view = memoryview(block)
    left = size
    while left:
        k = min(left, len(block))
        crc = zlib.crc32(view[:k], crc)
        left -= k
    return crc


def _send_repeated(sock: Any, block: bytes, size: int) -> None:
    view = memoryview(block)
    left = size
    deadline = time.monotonic() + RUN_TIMEOUT
    while left:
        k = min(left, len(view))
        sock.sendall(view[:k])
        left -= k
        if time.monotonic() > deadline:
            raise TimeoutError("sending took too long")


def _read_all(sock: Any, limit: Optional[int], crc: int = 0) -> Tuple[int, int]:
    """Read to EOF (or exactly ``limit`` bytes); returns (count, CRC-32).

    ForwardedSocket.recv hands over received chunks without a copy, so it is read with
    ``recv``; real sockets with ``recv_into`` a 1 MiB buffer.
    """
    n = 0
    deadline = time.monotonic() + RUN_TIMEOUT
    if isinstance(sock, k8sstream.ForwardedSocket):
        while limit is None or n < limit:
            data = sock.recv(CHUNK if limit is None else min(CHUNK, limit - n))
            if not data:
                break
            n += len(data)
            crc = zlib.crc32(data, crc)
            if time.monotonic() > deadline:
                raise TimeoutError("reading took too long")
        return n, crc
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while limit is None or n < limit:
        k = sock.recv_into(view if limit is None else view[: min(CHUNK, limit - n)])
        if not k:
            break
        n += k
        crc = zlib.crc32(view[:k], crc)
        if time.monotonic() > deadline:
            raise TimeoutError("reading took too long")
    return n, crc


def _recv_exactly(sock: Any, size: int) -> bytes:
    parts = []
    got = 0
    while got < size:
        data = sock.recv(size - got)
        if not data:
            raise EOFError(f"EOF after {got} of {size} bytes")
        parts.append(data)
        got += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _percentile(sorted_values: List[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        self.source_bytes = args.bulk_mib * MiB
        self.emulator = Emulator(self.kubeconfig, self.source_bytes)
        self.client = k8sstream.Client.from_kubeconfig(self.kubeconfig)
        import kubernetes

        self.kubernetes = kubernetes
        kubernetes.config.load_kube_config(config_file=self.kubeconfig)
        self.core_v1 = kubernetes.client.CoreV1Api()
        self.kubectl_path = shutil.which("kubectl")
        self.kubectl: Optional[Kubectl] = None
        self.k8s_cli: Optional[Kubectl] = None
        self.kubectl_exe: Optional[str] = None  # what the kubectl on PATH runs (a dispatcher?)
        self.forwarder: Optional[k8sstream.PortForwarder] = None
        self.block = os.urandom(CHUNK)  # upload and echo payload, repeated
        # --profile replaces this to profile the echo sender thread too.
        self.wrap_thread: Callable[[str, Callable[[], None]], Callable[[], None]] = (
            lambda label, fn: fn
        )
        self._crc_cache: Dict[Tuple[Any, ...], int] = {}

    # -- per-run long-lived forwarders --

    def start_run(self, need_kubectl: bool) -> None:
        self.forwarder = k8sstream.PortForwarder(
            POD,
            [f":{ECHO_PORT}", f":{SINK_PORT}", f":{SOURCE_PORT}"],
            client=self.client,
            address=["127.0.0.1"],
            protocol="tunnel",
        ).start()
        if need_kubectl:
            self.k8s_cli = Kubectl("", self.kubeconfig, self.workdir, cli=True)
        if need_kubectl and self.kubectl_path:
            self.kubectl = Kubectl(self.kubectl_path, self.kubeconfig, self.workdir)
            try:
                self.kubectl_exe = os.readlink(f"/proc/{self.kubectl.proc.pid}/exe")
            except OSError:
                pass

    def end_run(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        if self.kubectl is not None:
            self.kubectl.stop()
            self.kubectl = None
        if self.k8s_cli is not None:
            self.k8s_cli.stop()
            self.k8s_cli = None

    # -- connecting --

    def connect(self, client: str, port: int) -> Tuple[Any, Callable[[], None]]:
        """A connected socket-like object to ``port`` of the pod, and how to close it."""
        if client in (K8S_TUNNEL, K8S_LEGACY):
            protocol = "tunnel" if client == K8S_TUNNEL else "websocket"
            sock = k8sstream.port_forward(
                POD, port, client=self.client, protocol=protocol, timeout=SOCK_TIMEOUT
            )
            return sock, sock.close
        if client in (K8S_FORWARDER, KUBECTL, K8S_CLI):
            if client == K8S_FORWARDER:
                assert self.forwarder is not None
                local = {remote: bound for bound, remote in self.forwarder.ports}[port]
            elif client == K8S_CLI:
                assert self.k8s_cli is not None
                local = self.k8s_cli.ports[port]
            else:
                assert self.kubectl is not None
                local = self.kubectl.ports[port]
            tcp = socket.create_connection(("127.0.0.1", local), timeout=SOCK_TIMEOUT)
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return tcp, tcp.close
        if client == OFFICIAL:
            from kubernetes.stream import portforward

            pf = portforward(
                self.core_v1.connect_get_namespaced_pod_portforward, POD, "default", ports=str(port)
            )
            sock = pf.socket(port)
            sock.settimeout(SOCK_TIMEOUT)

            def close() -> None:
                sock.close()
                pf.close()

            return sock, close
        raise ValueError(client)

    def _meter(self, client: str) -> Meter:
        return Meter(self.emulator, self._process(client))

    def _process(self, client: str) -> Optional[Kubectl]:
        return {KUBECTL: self.kubectl, K8S_CLI: self.k8s_cli}.get(client)

    # -- bulk --

    def download(self, client: str, size: int) -> Dict[str, Any]:
        if size != self.source_bytes:
            # Reading less and closing would leave data in flight: the official client's
            # proxy thread then dies on ECONNRESET without closing its WebSocket.
            raise ValueError("every client reads the whole source")
        half = client in HALF_CLOSE
        key = ("download", size, half)
        if key not in self._crc_cache:
            self._crc_cache[key] = _pattern_crc(size, b"0\n" if half else b"")
        expected_n = size + (2 if half else 0)
        with self._meter(client) as m:
            sock, close = self.connect(client, SOURCE_PORT)
            try:
                if half:
                    sock.shutdown(socket.SHUT_WR)  # the sink then ends with its count, "0\n"
                    n, crc = _read_all(sock, None)
                else:
                    n, crc = _read_all(sock, size)
            finally:
                close()
        if n != expected_n or crc != self._crc_cache[key]:
            raise RuntimeError(
                f"{client} download: {n} bytes (expected {expected_n}), "
                f"crc {'ok' if crc == self._crc_cache[key] else 'BAD'}"
            )
        return m.result(size)

    def upload(self, client: str, size: int) -> Dict[str, Any]:
        with self._meter(client) as m:
            sock, close = self.connect(client, SINK_PORT)
            try:
                _send_repeated(sock, self.block, size)
                sock.shutdown(socket.SHUT_WR)
                reply = b""
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    data = sock.recv(64)
                    if not data:
                        break
                    reply += data
            finally:
                close()
        if reply.strip() != str(size).encode():
            raise RuntimeError(f"{client} upload: the sink counted {reply!r}, sent {size}")
        return m.result(size)

    def echo(self, client: str, size: int) -> Dict[str, Any]:
        key = ("echo", size)
        if key not in self._crc_cache:
            self._crc_cache[key] = _repeat_crc(self.block, size)
        errors: List[BaseException] = []
        with self._meter(client) as m:
            sock, close = self.connect(client, ECHO_PORT)
            try:

                def send() -> None:
                    try:
                        _send_repeated(sock, self.block, size)
                    except BaseException as exc:  # reported below
                        errors.append(exc)

                sender = threading.Thread(
                    target=self.wrap_thread("echo sender", send),
                    name="bench-echo-send",
                    daemon=True,
                )
                sender.start()
                n, crc = _read_all(sock, size)
                sender.join(RUN_TIMEOUT)
            finally:
                close()
        if errors or n != size or crc != self._crc_cache[key]:
            raise RuntimeError(f"{client} echo: {n} of {size} bytes back, errors {errors}")
        # Both directions moved `size` bytes: MiB/s and CPU are per byte echoed (one way).
        return m.result(size)

    # -- latency --

    def latency(self, client: str, rtts: int) -> Dict[str, Any]:
        msg = bytes(i % 256 for i in range(MESSAGE))
        sock, close = self.connect(client, ECHO_PORT)
        times: List[float] = []
        try:
            clock = time.perf_counter
            for i in range(rtts + 100):  # the first 100 warm up the path, not recorded
                t0 = clock()
                sock.sendall(msg)
                got = _recv_exactly(sock, MESSAGE)
                dt = clock() - t0
                if got != msg:
                    raise RuntimeError(f"{client}: echo returned different bytes")
                if i >= 100:
                    times.append(dt)
        finally:
            close()
        times.sort()
        return {
            "rtts": rtts,
            "p50_us": _percentile(times, 0.50) * 1e6,
            "p99_us": _percentile(times, 0.99) * 1e6,
            "mean_us": statistics.fmean(times) * 1e6,
            "max_us": times[-1] * 1e6,
        }

    # -- concurrency --

    def concurrency(self, client: str, count: int) -> Dict[str, Any]:
        payloads = [os.urandom(CONN_BYTES) for _ in range(count)]
        failures: List[str] = []
        lock = threading.Lock()
        start = threading.Barrier(count + 1, timeout=30)

        def one(i: int) -> None:
            try:
                start.wait()
                sock, close = self.connect(client, ECHO_PORT)
                try:
                    sock.sendall(payloads[i])
                    back = _recv_exactly(sock, CONN_BYTES)
                finally:
                    close()
                if back != payloads[i]:
                    raise RuntimeError("different bytes came back")
            except BaseException as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")

        threads = [
            threading.Thread(target=one, args=(i,), name=f"bench-conn-{i}", daemon=True)
            for i in range(count)
        ]
        with ThreadPeak(self._process(client)) as peak:
            for t in threads:
                t.start()
            with self._meter(client) as m:
                start.wait()
                deadline = time.monotonic() + RUN_TIMEOUT
                for t in threads:
                    t.join(max(0.0, deadline - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
        if stuck:
            failures.append(f"{stuck} connections still running after {RUN_TIMEOUT:.0f} s")
        # The benchmark's own worker threads (count) are part of the peak; so is the sampler.
        return {
            "connections": count,
            "wall_s": m.wall,
            "failures": len(failures),
            "failure_examples": failures[:5],
            "threads_base": peak.base_self,
            "threads_peak": peak.peak_self,
            "kubectl_threads_base": peak.base_kubectl,
            "kubectl_threads_peak": peak.peak_kubectl,
            "client_cpu_s": m.self_cpu + m.kubectl_cpu,
            "emulator_cpu_s": m.emulator_cpu,
        }


# --- running, summarising, reporting ------------------------------------------------------


def build_cases(bench: Bench, args: argparse.Namespace) -> Dict[str, Callable[[], Dict[str, Any]]]:
    size = args.bulk_mib * MiB
    echo_size = args.echo_mib * MiB
    clients = [K8S_TUNNEL, K8S_FORWARDER, K8S_LEGACY, K8S_CLI, KUBECTL, OFFICIAL]
    if bench.kubectl_path is None:
        print("kubectl not on PATH: skipping it", file=sys.stderr)
        clients.remove(KUBECTL)
    cases: Dict[str, Callable[[], Dict[str, Any]]] = {}
    for c in clients:
        cases[f"download/{c}"] = functools.partial(bench.download, c, size)
    for c in clients:
        if c in HALF_CLOSE:  # the others cannot tell the sink that the upload is over
            cases[f"upload/{c}"] = functools.partial(bench.upload, c, size)
    for c in clients:
        if c == OFFICIAL and not args.official_echo_mib:
            continue  # its one proxy thread deadlocks on full-duplex bulk data (README)
        c_size = args.official_echo_mib * MiB if c == OFFICIAL else echo_size
        cases[f"echo/{c}"] = functools.partial(bench.echo, c, c_size)
    for c in clients:
        cases[f"latency/{c}"] = functools.partial(bench.latency, c, args.rtts)
    for c in clients:
        cases[f"concurrency/{c}"] = functools.partial(bench.concurrency, c, args.connections)
    return cases


def summarise(name: str, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"runs": len(samples)}
    keys: Tuple[str, ...]
    if name.startswith("latency/"):
        keys = ("p50_us", "p99_us", "mean_us", "max_us")
        out["rtts"] = samples[0]["rtts"]
    elif name.startswith("concurrency/"):
        keys = ("wall_s", "threads_peak", "kubectl_threads_peak", "client_cpu_s", "emulator_cpu_s")
        out["connections"] = samples[0]["connections"]
        out["failures_total"] = sum(s["failures"] for s in samples)
        out["threads_base"] = samples[0]["threads_base"]
        out["failure_examples"] = [e for s in samples for e in s["failure_examples"]][:5]
    else:
        keys = (
            "mib_s",
            "wall_s",
            "cpu_s_per_gib",
            "self_cpu_s_per_gib",
            "kubectl_cpu_s_per_gib",
            "emulator_cpu_s_per_gib",
        )
        out["bytes"] = samples[0]["bytes"]
    for key in keys:
        out[key] = spread([s[key] for s in samples])
    return out


def run_all(bench: Bench, args: argparse.Namespace) -> Dict[str, Any]:
    cases = build_cases(bench, args)
    names = list(cases)
    samples: Dict[str, List[Dict[str, Any]]] = {k: [] for k in names}
    errors: Dict[str, List[str]] = {}
    # Warm-up: imports, first connections, page cache for kubectl; nothing recorded.
    bench.start_run(need_kubectl=True)
    try:
        for c in sorted({n.split("/", 1)[1] for n in names}):
            if c != OFFICIAL:
                bench.echo(c, MiB)
            bench.latency(c, 200)
    finally:
        bench.end_run()
    for run, order in round_robin(names, args.runs):
        bench.start_run(need_kubectl=any(KUBECTL in n or K8S_CLI in n for n in names))
        try:
            for name in order:
                try:
                    r = cases[name]()
                except Exception as exc:  # one failing case must not hide the others
                    errors.setdefault(name, []).append(f"{type(exc).__name__}: {exc}")
                    print(f"  run {run + 1} {name}: FAILED {exc}", file=sys.stderr, flush=True)
                    continue
                samples[name].append(r)
                if args.verbose:
                    print(f"  run {run + 1} {name:44s} {_brief(r)}", file=sys.stderr, flush=True)
        finally:
            bench.end_run()
    return {
        "samples": samples,
        "errors": errors,
        "summary": {k: summarise(k, v) for k, v in samples.items() if v},
    }


def _brief(r: Dict[str, Any]) -> str:
    if "p50_us" in r:
        return f"p50 {r['p50_us']:7.0f} us  p99 {r['p99_us']:7.0f} us"
    if "connections" in r:
        return (
            f"{r['wall_s']:6.2f} s  failures {r['failures']}  threads {r['threads_peak']}"
            f"  kubectl threads {r['kubectl_threads_peak']}"
        )
    return (
        f"{r['mib_s']:8.1f} MiB/s  cpu {r['cpu_s_per_gib']:6.2f} s/GiB  "
        f"emu {r['emulator_cpu_s_per_gib']:6.2f}"
    )


def ratios(summary: Dict[str, Any]) -> Dict[str, Optional[float]]:
    out: Dict[str, Optional[float]] = {}
    for name, s in summary.items():
        test, client = name.split("/", 1)
        ref = summary.get(f"{test}/{KUBECTL}")
        if client == KUBECTL or ref is None:
            continue
        if test == "latency":
            out[name] = s["p50_us"]["median"] / ref["p50_us"]["median"]
        elif test != "concurrency":
            out[name] = s["mib_s"]["median"] / ref["mib_s"]["median"]
    return out


def _verdict(name: str, value: Optional[float], client: str) -> str:
    if value is None:
        return ""
    text = f"{value:.2f}x"
    if not client.startswith("k8sstream"):
        return text
    if name.startswith("latency/"):
        target = TARGETS["latency_p50_vs_kubectl"]
        return text + f" ({'meets' if value <= target else 'MISSES'} <= {target:g}x)"
    target = TARGETS["throughput_vs_kubectl"]
    return text + f" ({'meets' if value >= target else 'MISSES'} >= {target:g}x)"


def _mmm(s: Dict[str, float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def report(results: Dict[str, Any], markdown: bool) -> str:
    summary = results["summary"]
    rat = results["ratios"]
    lines: List[str] = []
    rows = []
    for name, s in summary.items():
        test, client = name.split("/", 1)
        if test not in ("download", "upload", "echo"):
            continue
        cpu = f"{s['cpu_s_per_gib']['median']:.2f}"
        if client in OUT_OF_PROCESS:
            cpu += (
                f" (process {s['kubectl_cpu_s_per_gib']['median']:.2f}"
                f" + loop {s['self_cpu_s_per_gib']['median']:.2f})"
            )
        rows.append(
            [
                test,
                client,
                f"{s['bytes'] / MiB:g}",
                _mmm(s["mib_s"]),
                cpu,
                f"{s['emulator_cpu_s_per_gib']['median']:.2f}",
                _verdict(name, rat.get(name), client),
            ]
        )
    lines += table(
        [
            "test",
            "client",
            "MiB",
            "MiB/s median (min-max)",
            "client CPU s/GiB",
            "emulator CPU s/GiB",
            "vs kubectl",
        ],
        rows,
        markdown,
    )
    lines.append("")
    rows = []
    for name, s in summary.items():
        test, client = name.split("/", 1)
        if test != "latency":
            continue
        rows.append(
            [
                client,
                f"{s['rtts']}",
                _mmm(s["p50_us"], "{:.0f}"),
                _mmm(s["p99_us"], "{:.0f}"),
                _verdict(name, rat.get(name), client),
            ]
        )
    lines += table(
        [
            "latency (64 B round trip)",
            "round trips/run",
            "p50 us median (min-max)",
            "p99 us median (min-max)",
            "p50 vs kubectl",
        ],
        rows,
        markdown,
    )
    lines.append("")
    rows = []
    for name, s in summary.items():
        test, client = name.split("/", 1)
        if test != "concurrency":
            continue
        threads = _mmm(s["threads_peak"], "{:.0f}") + f" (idle {s['threads_base']})"
        if client in OUT_OF_PROCESS:
            threads += f"; its process {_mmm(s['kubectl_threads_peak'], '{:.0f}')}"
        verdict = "meets 0 failures" if s["failures_total"] == 0 else "MISSES 0 failures"
        rows.append(
            [
                client,
                f"{s['connections']}",
                _mmm(s["wall_s"], "{:.2f}"),
                f"{s['failures_total']} ({verdict})",
                threads,
            ]
        )
    lines += table(
        [
            f"concurrency ({CONN_BYTES // KiB} KiB echoed each)",
            "connections",
            "total s median (min-max)",
            "failures (all runs)",
            "peak threads, benchmark process",
        ],
        rows,
        markdown,
    )
    env = results["environment"]
    notes = [
        f"{env['runs']} runs, round-robin; {env['cpus']} CPUs; kubectl {env['kubectl_version']} "
        f"(KUBECTL_PORT_FORWARD_WEBSOCKETS=true); kubernetes (official) "
        f"{env['kubernetes_version']}; Python {env['python']}",
        "download: half-closing clients (k8sstream tunnel, PortForwarder, kubectl) read the "
        "source to EOF; the others read exactly N bytes. upload needs half-close, so the legacy "
        "WebSocket protocol and the official client have no upload row. echo: N bytes each "
        "way at once, MiB/s counted one way; the official client only with "
        "--official-echo-mib (its proxy thread deadlocks on large full-duplex transfers)",
        "client CPU: in-process clients RUSAGE_SELF (library + the benchmark's loop); kubectl: "
        "its processes (/proc, its session) + the benchmark's plain-socket loop",
        "concurrency peak threads include the benchmark's own worker per connection and the "
        "sampler thread",
    ]
    if results.get("errors"):
        notes.append(
            "FAILED cases: " + "; ".join(f"{k}: {v[0]}" for k, v in results["errors"].items())
        )
    lines.append("")
    lines += notes_lines(notes, markdown)
    return "\n".join(lines)


def environment(bench: Bench, args: argparse.Namespace) -> Dict[str, Any]:
    version = "-"
    if bench.kubectl_path:
        exe = bench.kubectl_exe or bench.kubectl_path
        version = kubectl_version([exe, "version", "--client", "-o", "json"])
    return {
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "kubectl_version": version,
        "kubernetes_version": bench.kubernetes.__version__,
        "k8sstream_version": getattr(k8sstream, "__version__", "?"),
        "emulator": bench.emulator.banner,
        "args": {k: v for k, v in vars(args).items() if k != "serve"},
    }


# --- profiling ----------------------------------------------------------------------------------


def profile(bench: Bench, args: argparse.Namespace) -> str:
    """cProfile k8sstream's download, echo (direct and via PortForwarder) and latency paths.

    The reader thread (``WebSocketConnection._run``) and the forwarder's copier threads are
    profiled by wrapping their targets at run time; the main thread with its own profile.
    """
    from k8sstream import _transport
    from k8sstream import portforward as pf_module

    profiles: Dict[str, List[cProfile.Profile]] = {}
    originals: Dict[Tuple[type, str], Callable[..., Any]] = {
        (_transport.WebSocketConnection, "_run"): _transport.WebSocketConnection._run,
        (pf_module.PortForwarder, "_copy_in"): pf_module.PortForwarder._copy_in,
        (pf_module.PortForwarder, "_copy_out"): pf_module.PortForwarder._copy_out,
    }
    current = ["-"]

    def wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def profiled(*a: Any) -> Any:
            prof = cProfile.Profile()
            profiles.setdefault(f"{current[0]}: {label}", []).append(prof)
            return prof.runcall(fn, *a)

        return profiled

    for (cls, attr), fn in originals.items():
        setattr(cls, attr, wrap(f"{cls.__name__}.{attr} thread", fn))
    bench.wrap_thread = lambda label, fn: wrap(f"{label} thread", fn)
    out = io.StringIO()
    size = args.bulk_mib * MiB
    try:
        jobs = [
            ("download " + K8S_TUNNEL, lambda: bench.download(K8S_TUNNEL, size)),
            ("download " + K8S_FORWARDER, lambda: bench.download(K8S_FORWARDER, size)),
            ("upload " + K8S_TUNNEL, lambda: bench.upload(K8S_TUNNEL, size)),
            ("upload " + K8S_FORWARDER, lambda: bench.upload(K8S_FORWARDER, size)),
            ("echo " + K8S_TUNNEL, lambda: bench.echo(K8S_TUNNEL, args.echo_mib * MiB)),
            ("echo " + K8S_FORWARDER, lambda: bench.echo(K8S_FORWARDER, args.echo_mib * MiB)),
            ("latency " + K8S_TUNNEL, lambda: bench.latency(K8S_TUNNEL, args.rtts)),
        ]
        for title, job in jobs:
            current[0] = title
            # A forwarder per job that uses one, so that its tunnel's reader ends with the job.
            if K8S_FORWARDER in title:
                bench.start_run(need_kubectl=False)
            try:
                main = cProfile.Profile()
                t0 = time.perf_counter()
                main.enable()
                r = job()
                main.disable()
            finally:
                bench.end_run()
            out.write(f"\n##### {title}: {_brief(r)} in {time.perf_counter() - t0:.2f} s\n")
            profiles.setdefault(f"{title}: main thread", []).append(main)
    finally:
        for (cls, attr), fn in originals.items():
            setattr(cls, attr, fn)
        bench.wrap_thread = lambda label, fn: fn
    for label, profs in profiles.items():
        if not label.startswith(tuple(t for t, _ in jobs)):
            continue
        stats = pstats.Stats(profs[0], stream=out)
        for p in profs[1:]:
            stats.add(p)
        out.write(f"\n=== {label} ({len(profs)} thread(s), sorted by tottime) ===\n")
        stats.sort_stats("tottime").print_stats(args.profile_top)
    return out.getvalue()


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=None, help="runs per case (default 5; quick 2)")
    p.add_argument("--bulk-mib", type=int, default=None, help="download/upload size (256)")
    p.add_argument("--echo-mib", type=int, default=None, help="echo size each way (64)")
    p.add_argument(
        "--official-echo-mib",
        type=int,
        default=0,
        help="echo size for the official client (default 0: skipped, it deadlocks "
        "once the data in flight exceeds the socket buffers; 4 usually passes)",
    )
    p.add_argument("--rtts", type=int, default=None, help="latency round trips per run (10000)")
    p.add_argument("--connections", type=int, default=100, help="concurrent connections (100)")
    p.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--profile", action="store_true", help="cProfile k8sstream's paths first")
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--no-bench", action="store_true", help="with --profile: only profile")
    p.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    p.add_argument("--serve", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    p.add_argument("--source-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "runs": 2 if quick else 5,
        "bulk_mib": 32 if quick else 256,
        "echo_mib": 8 if quick else 64,
        "rtts": 1000 if quick else 10000,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.runs < 1 or args.rtts < 1 or args.connections < 1:
        p.error("--runs, --rtts and --connections must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args.serve, args.source_bytes)
    install_cleanup()
    workdir = tempfile.mkdtemp(prefix="k8sstream-bench-pf-")
    bench: Optional[Bench] = None
    try:
        bench = Bench(args, workdir)
        if args.profile:
            print(profile(bench, args))
            if args.no_bench:
                return 0
        started = time.time()
        results = run_all(bench, args)
        results["ratios"] = ratios(results["summary"])
        results["targets"] = TARGETS
        results["environment"] = environment(bench, args)
        results["elapsed_s"] = time.time() - started
        publish("bench_portforward", results, started, report, args.markdown)
        return 1 if results["errors"] else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            try:
                bench.end_run()
            except Exception:
                pass
            try:
                bench.emulator.stop()
            except Exception:
                pass
        kill_children()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
