"""What the benchmark scripts share: child processes, the emulator, metering, summaries, output.

Imported by ``bench_exec.py``, ``bench_portforward.py`` and ``bench_cp.py``, which put this
directory on ``sys.path`` themselves; ``REPO`` (the checkout) is put there on import, so that
``k8sstream`` is importable from the working tree.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- process hygiene ------------------------------------------------------------------------

_children: List[subprocess.Popen] = []


def popen(args: List[str], **kwargs: Any) -> subprocess.Popen:
    """A tracked child in its own session, so that its whole process group can be killed."""
    proc = subprocess.Popen(args, start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass


def _forget(proc: subprocess.Popen) -> None:
    if proc in _children:
        _children.remove(proc)


def _wait_or_kill(proc: subprocess.Popen, timeout: float, close_streams: bool) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _killpg(proc, signal.SIGKILL)
        proc.wait()
    _forget(proc)
    if not close_streams:
        return
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def stop(proc: subprocess.Popen, timeout: float = 5.0, close_streams: bool = True) -> None:
    """SIGTERM the process group, then SIGKILL after ``timeout``; always reaped."""
    if proc.poll() is None:
        _killpg(proc, signal.SIGTERM)
    _wait_or_kill(proc, timeout, close_streams)


def reap(proc: subprocess.Popen, timeout: float) -> int:
    """Wait for a child that should end by itself; on timeout kill its group and raise."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        if proc.poll() is not None:
            _forget(proc)
    return rc


def kill_children() -> None:
    """Stop every tracked child: emulator and kubectl run in their own session, so signalling
    the group takes the emulator's container processes and kubectl's dispatcher child too.
    All groups are signalled first, so that they shut down in parallel."""
    for proc in list(_children):
        if proc.poll() is None:
            _killpg(proc, signal.SIGTERM)
    for proc in list(_children):
        _wait_or_kill(proc, 5.0, close_streams=True)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def install_cleanup() -> None:
    """SIGTERM ends the run like Ctrl-C; children are killed at exit whatever happens."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    atexit.register(kill_children)


def proc_stat(pid: Any) -> List[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3, state, is [0])."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


class LineReader:
    """Lines from a child's stdout pipe with a deadline (raw reads: select and a buffered
    reader do not mix)."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.pending = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return ""
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 65536)
                if not data:
                    return ""
                self.pending += data
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode(errors="replace") + "\n"


# --- the emulator -----------------------------------------------------------------------------


class Emulator:
    """An emulator command in its own process group; ready once it prints "listening on"."""

    def __init__(self, argv: List[str], stdin: Any) -> None:
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = popen(argv, stdout=subprocess.PIPE, stdin=stdin, env=env)
        line = LineReader(self.proc.stdout).readline(30)
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.banner = line.strip()
        self.url = line.split("listening on ", 1)[1].split(";", 1)[0]

    def cpu_seconds(self) -> float:
        """The emulator's own user+system CPU (its container processes not included)."""
        fields = proc_stat(self.proc.pid)
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        stop(self.proc, 10)


class TestingEmulator(Emulator):
    """``python -m k8sstream.testing`` (plain HTTP on 127.0.0.1, pod ``demo``)."""

    def __init__(self, kubeconfig: str) -> None:
        super().__init__(
            [sys.executable, "-m", "k8sstream.testing", "--kubeconfig", kubeconfig],
            stdin=subprocess.DEVNULL,
        )


# --- measuring --------------------------------------------------------------------------------


class Meter:
    """Wall time, client CPU (this process, or its reaped children) and emulator CPU around
    one measurement. Subclasses add counters in ``_start``/``_stop``, outside the timed span."""

    def __init__(self, emulator: Emulator, children: bool = False) -> None:
        self.emulator = emulator
        self.who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF

    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass

    def __enter__(self) -> Meter:
        self.r0 = resource.getrusage(self.who)
        self.e0 = self.emulator.cpu_seconds()
        self._start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        r1 = resource.getrusage(self.who)
        self.cpu_user = r1.ru_utime - self.r0.ru_utime
        self.cpu_sys = r1.ru_stime - self.r0.ru_stime
        self.cpu = self.cpu_user + self.cpu_sys
        self._stop()
        self.emulator_cpu = self.emulator.cpu_seconds() - self.e0


# --- running, summarising, reporting ------------------------------------------------------


def spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def round_robin(names: List[str], runs: int) -> Iterator[Tuple[int, List[str]]]:
    """``(run, names)`` per run, the starting name rotating by one each run."""
    for run in range(runs):
        yield run, names[run % len(names) :] + names[: run % len(names)]


def kubectl_version(argv: List[str]) -> str:
    """``clientVersion.gitVersion`` of ``argv`` (a ``kubectl ... version -o json``), or "-"."""
    try:
        out = subprocess.run(argv, capture_output=True, timeout=30).stdout
        return json.loads(out)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError, subprocess.SubprocessError):
        return "-"


def table(header: List[str], rows: List[List[str]], markdown: bool) -> List[str]:
    """A Markdown table, or plain columns padded to their widest cell."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*row) for row in rows
    ]


def notes(lines: List[str], markdown: bool) -> List[str]:
    """Notes under a table: a Markdown list, or plain lines."""
    return [f"- {n}" if markdown else n for n in lines]


def publish(
    script: str,
    results: Dict[str, Any],
    started: float,
    report: Callable[[Dict[str, Any], bool], str],
    markdown: bool,
) -> None:
    """Write ``results`` to ``results/<script>-<start time>.json``, then print the report."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(
        RESULTS_DIR, time.strftime(f"{script}-%Y%m%d-%H%M%S.json", time.localtime(started))
    )
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(report(results, markdown))
    print(f"\nraw results: {path} ({results['elapsed_s']:.0f} s)")
