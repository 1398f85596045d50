#!/usr/bin/env python
"""Exec streaming benchmark: k8sstream vs kubectl vs the official ``kubernetes`` Python client.

Usage::

    python benchmarks/bench_exec.py [--runs N] [--stdout-mib 256] [--stdin-mib 64]
                                    [--official-mib 16] [--rss-mib 1024]
                                    [--quick] [--markdown] [--profile]

One emulator (``python -m k8sstream.testing``, plain HTTP on 127.0.0.1) runs in a separate
process, so ``getrusage(RUSAGE_SELF)`` in this process measures only the in-process clients
(k8sstream and the official client); kubectl's CPU comes from ``RUSAGE_CHILDREN`` deltas, and the
emulator's own CPU from ``/proc/<pid>/stat``. Measurements, per run, round-robin over clients
(the starting client rotates each run):

* stdout: ``cat FILE`` of a pre-generated incompressible file (every client gets the same bytes),
  read and discarded by the client; the byte count is checked.
* stdin: upload into a remote ``wc -c``; the count it prints is checked. The official client
  ends stdin with ``close_channel(0)`` (v5.channel.k8s.io) when it has it, else runs
  ``head -c N`` remotely.
* peak RSS of a child process reading a large stream slowly with k8sstream.

Raw results go to ``benchmarks/results/`` (git-ignored) as JSON. ``--profile`` additionally runs
the k8sstream stdout path once under cProfile: the main (consuming) thread and, by wrapping
``WebSocketConnection._run`` at run time, the connection's reader thread.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Callable, Dict, List, Optional

# Run as ``python benchmarks/bench_exec.py``: make ``_common`` (next to this file) importable
# from any working directory; it puts the checkout on sys.path for ``k8sstream``.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from _common import (
    REPO,
    GiB,
    MiB,
    TestingEmulator,
    install_cleanup,
    kill_children,
    kubectl_version,
    popen,
    publish,
    reap,
    round_robin,
    spread,
    table,
)
from _common import notes as notes_lines

import k8sstream

CHUNK = 1 * MiB
RUN_TIMEOUT = 120.0  # no single measurement may take longer than this

TARGETS = {
    "stdout_vs_kubectl": 1.0,
    "stdout_vs_official": 50.0,
    "stdin_vs_kubectl": 0.8,
    "rss_over_idle_mib": 64.0,
}


# --- measuring ----------------------------------------------------------------------------------


class Meter(_common.Meter):
    """Wall time, client CPU (self or children) and emulator CPU around one measurement."""

    def result(self, nbytes: int, expected: int) -> Dict[str, Any]:
        if nbytes != expected:
            raise RuntimeError(f"byte count {nbytes} != expected {expected}")
        return {
            "bytes": nbytes,
            "wall_s": self.wall,
            "mib_s": nbytes / MiB / self.wall,
            "cpu_user_s": self.cpu_user,
            "cpu_sys_s": self.cpu_sys,
            "cpu_s_per_gib": (self.cpu_user + self.cpu_sys) * GiB / nbytes,
            "emulator_cpu_s_per_gib": self.emulator_cpu * GiB / nbytes,
        }


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        self.emulator = TestingEmulator(self.kubeconfig)
        self.client = k8sstream.Client.from_kubeconfig(self.kubeconfig)
        import kubernetes  # the official client

        self.kubernetes = kubernetes
        kubernetes.config.load_kube_config(config_file=self.kubeconfig)
        self.core_v1 = kubernetes.client.CoreV1Api()
        self.data_file = os.path.join(workdir, "stdout.bin")
        self.stdin_file = os.path.join(workdir, "stdin.bin")
        _random_file(self.data_file, args.stdout_mib * MiB)
        _random_file(self.stdin_file, args.stdin_mib * MiB)
        with open(self.stdin_file, "rb") as f:
            self.stdin_data = f.read()
        self.kubectl = shutil.which("kubectl")

    # -- k8sstream --

    def k8sstream_stdout(self, size: int) -> Dict[str, Any]:
        with Meter(self.emulator, children=False) as m:
            n = k8sstream_read(self.client, ["head", "-c", str(size), self.data_file])
        return m.result(n, size)

    def k8sstream_stdout_capture(self, size: int) -> Dict[str, Any]:
        with Meter(self.emulator, children=False) as m:
            done = k8sstream.run(
                ["head", "-c", str(size), self.data_file],
                pod="demo",
                container="main",
                capture_output=True,
                client=self.client,
                timeout=RUN_TIMEOUT,
                check=True,
            )
            n = len(done.stdout)
            del done
        return m.result(n, size)

    def k8sstream_stdin(self, size: int) -> Dict[str, Any]:
        data = self.stdin_data[:size] if size < len(self.stdin_data) else self.stdin_data
        with Meter(self.emulator, children=False) as m:
            done = k8sstream.run(
                ["wc", "-c"],
                pod="demo",
                container="main",
                input=data,
                capture_output=True,
                client=self.client,
                timeout=RUN_TIMEOUT,
                check=True,
            )
        return m.result(int(done.stdout.split()[0]), size)

    # -- kubectl --

    def _kubectl(self, *args: str) -> List[str]:
        assert self.kubectl
        return [self.kubectl, "--kubeconfig", self.kubeconfig, *args]

    def kubectl_stdout(self, size: int) -> Dict[str, Any]:
        argv = self._kubectl(
            "exec", "demo", "-c", "main", "--", "head", "-c", str(size), self.data_file
        )
        with Meter(self.emulator, children=True) as m:
            proc = popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            n = 0
            buf = bytearray(CHUNK)
            fd = proc.stdout.fileno()  # type: ignore[union-attr]
            deadline = time.monotonic() + RUN_TIMEOUT
            while True:
                k = os.readv(fd, [buf])
                if not k:
                    break
                n += k
                if time.monotonic() > deadline:
                    raise TimeoutError("kubectl stdout")
            proc.stdout.close()  # type: ignore[union-attr]
            rc = reap(proc, RUN_TIMEOUT)
        if rc:
            raise RuntimeError(f"kubectl exited {rc}")
        return m.result(n, size)

    def kubectl_stdin(self, size: int) -> Dict[str, Any]:
        argv = self._kubectl("exec", "-i", "demo", "-c", "main", "--", "wc", "-c")
        with open(self.stdin_file, "rb") as src:
            if size < len(self.stdin_data):
                raise ValueError("kubectl stdin uses the whole file")
            with Meter(self.emulator, children=True) as m:
                proc = popen(argv, stdin=src, stdout=subprocess.PIPE)
                out, _ = proc.communicate(timeout=RUN_TIMEOUT)
                reap(proc, RUN_TIMEOUT)
        if proc.returncode:
            raise RuntimeError(f"kubectl exited {proc.returncode}")
        return m.result(int(out.split()[0]), size)

    # -- the official client --

    def _official_stream(self, command: List[str], stdin: bool) -> Any:
        from kubernetes.stream import stream

        return stream(
            self.core_v1.connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=command,
            container="main",
            stderr=True,
            stdin=stdin,
            stdout=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )

    def official_stdout(self, size: int) -> Dict[str, Any]:
        with Meter(self.emulator, children=False) as m:
            resp = self._official_stream(["head", "-c", str(size), self.data_file], stdin=False)
            n = 0
            deadline = time.monotonic() + RUN_TIMEOUT
            # The read loop of the client's README and examples/pod_exec.py.
            while resp.is_open():
                resp.update(timeout=1)
                if resp.peek_stdout():
                    n += len(resp.read_stdout())
                if resp.peek_stderr():
                    resp.read_stderr()
                if time.monotonic() > deadline:
                    resp.close()
                    raise TimeoutError("official client stdout")
            n += len(resp.read_stdout() or b"")
            resp.close()
        return m.result(n, size)

    def official_stdin(self, size: int) -> Dict[str, Any]:
        data = memoryview(self.stdin_data)[:size]
        with Meter(self.emulator, children=False) as m:
            can_close = hasattr(self.kubernetes.stream.ws_client.WSClient, "close_channel")
            command = ["wc", "-c"] if can_close else ["sh", "-c", f"head -c {size} | wc -c"]
            resp = self._official_stream(command, stdin=True)
            for start in range(0, size, CHUNK):
                resp.write_stdin(bytes(data[start : start + CHUNK]))
                resp.update(timeout=0)
            if can_close:
                resp.close_channel(0)
            out = b""
            deadline = time.monotonic() + RUN_TIMEOUT
            while resp.is_open():
                resp.update(timeout=1)
                if resp.peek_stdout():
                    out += resp.read_stdout()
                if resp.peek_stderr():
                    resp.read_stderr()
                if time.monotonic() > deadline:
                    resp.close()
                    raise TimeoutError("official client stdin")
            out += resp.read_stdout() or b""
            resp.close()
        result = m.result(int(out.split()[0]), size)
        result["eof"] = "close_channel(0)" if can_close else "remote head -c N"
        return result

    # -- latency of a command without output --

    def latency(self, client: str) -> Dict[str, Any]:
        """Wall time of ``true``: connection setup and teardown, no payload."""
        t0 = time.perf_counter()
        if client == "k8sstream":
            rc = k8sstream.call(["true"], pod="demo", container="main", client=self.client)
        elif client == "kubectl":
            proc = popen(self._kubectl("exec", "demo", "-c", "main", "--", "true"))
            rc = reap(proc, RUN_TIMEOUT)
        else:
            resp = self._official_stream(["true"], stdin=False)
            while resp.is_open():
                resp.update(timeout=1)
            rc = resp.returncode
            resp.close()
        if rc:
            raise RuntimeError(f"{client}: true exited {rc}")
        return {"wall_s": time.perf_counter() - t0}

    # -- peak RSS --

    def rss(self, size: int, seconds: float) -> Dict[str, Any]:
        code = textwrap.dedent(
            """
            import json, os, resource, sys, time
            sys.path.insert(0, sys.argv[1])
            import k8sstream
            def hwm_kib():
                with open("/proc/self/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            return int(line.split()[1])
            client = k8sstream.Client.from_kubeconfig(sys.argv[2])
            idle = hwm_kib()
            size, limit = int(sys.argv[3]), float(sys.argv[4])
            start = time.monotonic()
            p = k8sstream.Popen(["head", "-c", str(size), "/dev/zero"], pod="demo",
                                container="main", stdout=k8sstream.PIPE,
                                stderr=k8sstream.DEVNULL, client=client)
            n, complete = 0, True
            while True:
                data = p.stdout.raw.read(65536)
                if not data:
                    break
                n += len(data)
                time.sleep(0.001)
                if time.monotonic() - start > limit:
                    complete = False
                    p.kill()
                    break
            if complete:
                p.wait(30)
            # VmHWM, not ru_maxrss: on Linux, ru_maxrss after fork/vfork+exec starts from the
            # parent's high-water mark (exec_mmap keeps the old mm's), so it reports the
            # benchmark process's RSS whenever that is larger.
            print(json.dumps({"idle_kib": idle, "peak_kib": hwm_kib(), "ru_maxrss_kib":
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "bytes": n,
                "complete": complete, "seconds": time.monotonic() - start}))
            """
        )
        proc = popen(
            [sys.executable, "-c", code, REPO, self.kubeconfig, str(size), str(seconds)],
            stdout=subprocess.PIPE,
        )
        out, _ = proc.communicate(timeout=seconds + 60)
        reap(proc, 10)
        r = json.loads(out)
        r["over_idle_mib"] = (r["peak_kib"] - r["idle_kib"]) / 1024
        r["mib_s"] = r["bytes"] / MiB / r["seconds"]
        return r


def k8sstream_read(client: Any, command: List[str]) -> int:
    """Run ``command`` with stdout=PIPE and read it to the end in 1 MiB ``readinto`` calls."""
    with k8sstream.Popen(
        command,
        pod="demo",
        container="main",
        stdout=k8sstream.PIPE,
        stderr=k8sstream.DEVNULL,
        client=client,
    ) as proc:
        raw = proc.stdout.raw
        buf = bytearray(CHUNK)
        n = 0
        while True:
            k = raw.readinto(buf)
            if not k:
                break
            n += k
        rc = proc.wait(RUN_TIMEOUT)
    if rc:
        raise RuntimeError(f"remote command exited {rc}")
    return n


def _random_file(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            k = min(left, 16 * MiB)
            f.write(os.urandom(k))
            left -= k


# --- running, summarising, reporting ------------------------------------------------------


def summarise(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"runs": len(samples), "bytes": samples[0]["bytes"]}
    for key in ("mib_s", "wall_s", "cpu_s_per_gib", "emulator_cpu_s_per_gib"):
        out[key] = spread([s[key] for s in samples])
    if "eof" in samples[0]:
        out["eof"] = samples[0]["eof"]
    return out


def run_all(bench: Bench, args: argparse.Namespace) -> Dict[str, Any]:
    out_size = args.stdout_mib * MiB
    in_size = args.stdin_mib * MiB
    off_size = args.official_mib * MiB
    off_in_size = min(args.official_stdin_mib * MiB, in_size)
    cases: Dict[str, Callable[[], Dict[str, Any]]] = {
        "stdout/k8sstream": lambda: bench.k8sstream_stdout(out_size),
        "stdout/kubectl": lambda: bench.kubectl_stdout(out_size),
        "stdout/official": lambda: bench.official_stdout(off_size),
        "stdin/k8sstream": lambda: bench.k8sstream_stdin(in_size),
        "stdin/kubectl": lambda: bench.kubectl_stdin(in_size),
        "stdin/official": lambda: bench.official_stdin(off_in_size),
    }
    if args.capture:
        cases["stdout/k8sstream-run-capture"] = lambda: bench.k8sstream_stdout_capture(out_size)
    if bench.kubectl is None:
        print("kubectl not on PATH: skipping it", file=sys.stderr)
        cases = {k: v for k, v in cases.items() if "kubectl" not in k}

    # Warm-up: imports, first connections, kubectl's first start (page cache, dispatcher).
    bench.k8sstream_stdout(MiB)
    bench.k8sstream_stdin(MiB)
    bench.official_stdout(MiB)
    if bench.kubectl:
        bench.kubectl_stdout(MiB)

    for client in ("k8sstream", "kubectl", "official"):
        if client != "kubectl" or bench.kubectl:
            cases[f"latency/{client}"] = functools.partial(bench.latency, client)
    samples: Dict[str, List[Dict[str, Any]]] = {k: [] for k in cases}
    names = list(cases)
    for run, order in round_robin(names, args.runs):
        for name in order:
            r = cases[name]()
            samples[name].append(r)
            if args.verbose and "mib_s" not in r:
                print(f"  run {run + 1} {name:32s} {r['wall_s'] * 1000:8.0f} ms", file=sys.stderr)
            elif args.verbose:
                print(
                    f"  run {run + 1} {name:32s} {r['mib_s']:8.1f} MiB/s "
                    f"cpu {r['cpu_s_per_gib']:6.2f} s/GiB emu {r['emulator_cpu_s_per_gib']:6.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    results: Dict[str, Any] = {
        "samples": samples,
        "summary": {k: summarise(v) for k, v in samples.items() if not k.startswith("latency/")},
        "latency_ms": {
            k.split("/", 1)[1]: {
                stat: seconds * 1000 for stat, seconds in spread([s["wall_s"] for s in v]).items()
            }
            for k, v in samples.items()
            if k.startswith("latency/")
        },
    }
    results["rss"] = bench.rss(args.rss_mib * MiB, args.rss_seconds)
    return results


def ratios(summary: Dict[str, Any]) -> Dict[str, Optional[float]]:
    def rate(key: str) -> Optional[float]:
        s = summary.get(key)
        return s["mib_s"]["median"] if s else None

    def div(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return a / b if a is not None and b else None

    return {
        "stdout_vs_kubectl": div(rate("stdout/k8sstream"), rate("stdout/kubectl")),
        "stdout_vs_official": div(rate("stdout/k8sstream"), rate("stdout/official")),
        "stdin_vs_kubectl": div(rate("stdin/k8sstream"), rate("stdin/kubectl")),
        "stdin_vs_official": div(rate("stdin/k8sstream"), rate("stdin/official")),
    }


def _fmt_ratio(value: Optional[float], target: Optional[float]) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}x" if value < 10 else f"{value:.0f}x"
    if target is not None:
        text += f" ({'meets' if value >= target else 'MISSES'} >= {target:g}x)"
    return text


def report(results: Dict[str, Any], markdown: bool) -> str:
    summary = results["summary"]
    rat = results["ratios"]
    header = [
        "test",
        "client",
        "MiB",
        "MiB/s median (min-max)",
        "client CPU s/GiB",
        "emulator CPU s/GiB",
        "vs kubectl",
        "vs official",
    ]
    rows = []
    for name, s in summary.items():
        test, client = name.split("/", 1)
        vs_k = vs_o = ""
        if client == "k8sstream":
            vs_k = _fmt_ratio(rat[f"{test}_vs_kubectl"], TARGETS.get(f"{test}_vs_kubectl"))
            vs_o = _fmt_ratio(rat[f"{test}_vs_official"], TARGETS.get(f"{test}_vs_official"))
        label = client + (f" [EOF: {s['eof']}]" if "eof" in s else "")
        rows.append(
            [
                test,
                label,
                f"{s['bytes'] / MiB:g}",
                f"{s['mib_s']['median']:.1f} ({s['mib_s']['min']:.1f}-{s['mib_s']['max']:.1f})",
                f"{s['cpu_s_per_gib']['median']:.2f}",
                f"{s['emulator_cpu_s_per_gib']['median']:.2f}",
                vs_k,
                vs_o,
            ]
        )
    r = results["rss"]
    rss_line = (
        f"peak RSS, k8sstream reading {r['bytes'] / MiB:g} MiB slowly "
        f"({'complete' if r['complete'] else 'stopped at the time limit'}, "
        f"{r['mib_s']:.0f} MiB/s): {r['peak_kib'] / 1024:.1f} MiB, idle interpreter with "
        f"k8sstream {r['idle_kib'] / 1024:.1f} MiB, over idle {r['over_idle_mib']:.1f} MiB "
        f"({'meets' if r['over_idle_mib'] < TARGETS['rss_over_idle_mib'] else 'MISSES'} "
        f"< {TARGETS['rss_over_idle_mib']:g} MiB)"
    )
    env = results["environment"]
    latency_line = "exec latency of `true` (connect, run, close), median (min-max): " + ", ".join(
        f"{client} {v['median']:.0f} ms ({v['min']:.0f}-{v['max']:.0f})"
        for client, v in results["latency_ms"].items()
    )
    notes = [
        f"{env['runs']} runs, round-robin; {env['cpus']} CPUs; kubectl {env['kubectl_version']}; "
        f"kubernetes (official) {env['kubernetes_version']}; Python {env['python']}",
        "client CPU: RUSAGE_SELF for in-process clients (incl. the benchmark's read loop), "
        "RUSAGE_CHILDREN for kubectl; the emulator runs in its own process",
        "wall time includes connecting (kubectl: process start, kubeconfig, pod GET)",
    ]
    lines = table(header, rows, markdown)
    lines += ["", *notes_lines([rss_line, latency_line, *notes], markdown)]
    return "\n".join(lines)


def environment(bench: Bench, args: argparse.Namespace) -> Dict[str, Any]:
    return {
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "kubectl_version": (
            kubectl_version(bench._kubectl("version", "-o", "json")) if bench.kubectl else "-"
        ),
        "kubernetes_version": bench.kubernetes.__version__,
        "k8sstream_version": k8sstream.__version__,
        "emulator": bench.emulator.banner,
        "args": vars(args),
    }


# --- profiling ----------------------------------------------------------------------------------


def profile_stdout(bench: Bench, size: int, top: int) -> str:
    """cProfile the k8sstream stdout path: the consuming thread and the reader thread."""
    from k8sstream import _transport

    reader_profiles: List[cProfile.Profile] = []
    original = _transport.WebSocketConnection._run

    def profiled_run(self: Any) -> None:
        prof = cProfile.Profile()
        reader_profiles.append(prof)
        prof.runcall(original, self)

    _transport.WebSocketConnection._run = profiled_run  # type: ignore[method-assign]
    try:
        main_prof = cProfile.Profile()
        t0 = time.perf_counter()
        main_prof.enable()
        n = k8sstream_read(bench.client, ["head", "-c", str(size), bench.data_file])
        main_prof.disable()
        wall = time.perf_counter() - t0
    finally:
        _transport.WebSocketConnection._run = original  # type: ignore[method-assign]
    out = io.StringIO()
    out.write(f"k8sstream stdout under cProfile: {n / MiB:g} MiB in {wall:.2f} s\n")
    for title, prof in (("reader thread", reader_profiles[0]), ("main thread", main_prof)):
        out.write(f"\n=== {title} (sorted by tottime) ===\n")
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs per client (default 5)")
    p.add_argument("--stdout-mib", type=int, default=None, help="stdout size (default 256)")
    p.add_argument("--stdin-mib", type=int, default=None, help="stdin size (default 64)")
    p.add_argument(
        "--official-mib", type=int, default=None, help="stdout size for the official client (16)"
    )
    p.add_argument(
        "--official-stdin-mib",
        type=int,
        default=None,
        help="stdin size for the official client (default: --stdin-mib)",
    )
    p.add_argument("--rss-mib", type=int, default=None, help="slow-read RSS test size (1024)")
    p.add_argument("--rss-seconds", type=float, default=60.0, help="time bound of the RSS test")
    p.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--capture", action="store_true", help="also time run(capture_output=True)")
    p.add_argument("--profile", action="store_true", help="cProfile the k8sstream stdout path")
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--no-bench", action="store_true", help="with --profile: only profile")
    p.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "stdout_mib": 32 if quick else 256,
        "stdin_mib": 16 if quick else 64,
        "official_mib": 4 if quick else 16,
        "rss_mib": 256 if quick else 1024,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.official_stdin_mib is None:
        args.official_stdin_mib = args.stdin_mib
    if quick:
        args.rss_seconds = min(args.rss_seconds, 15.0)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    workdir = tempfile.mkdtemp(prefix="k8sstream-bench-")
    bench: Optional[Bench] = None
    try:
        bench = Bench(args, workdir)
        if args.profile:
            print(profile_stdout(bench, args.stdout_mib * MiB, args.profile_top))
            if args.no_bench:
                return 0
        started = time.time()
        results = run_all(bench, args)
        results["ratios"] = ratios(results["summary"])
        results["targets"] = TARGETS
        results["environment"] = environment(bench, args)
        results["elapsed_s"] = time.time() - started
        publish("bench_exec", results, started, report, args.markdown)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            try:
                bench.emulator.stop()
            except Exception:
                pass
        kill_children()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
