#!/usr/bin/env python
"""cp benchmark: ``copy_to_pod``/``copy_from_pod`` vs ``kubectl cp``, a big file and many small.

Usage::

    python benchmarks/bench_cp.py [--runs N] [--file-mib 512] [--files 10000] [--file-kib 4]
                                  [--tmpdir DIR] [--quick] [--markdown] [--profile] [-v]

One emulator (``python -m k8sstream.testing``, plain HTTP on 127.0.0.1) runs in its own process,
so ``getrusage(RUSAGE_SELF)`` here measures k8sstream alone and ``RUSAGE_CHILDREN`` deltas
measure kubectl. The emulator's container directories, the local sources and the destinations
all live under ``--tmpdir`` (default ``/dev/shm``): on this machine's disk each file creation
costs ~0.5 ms of kernel time, which would otherwise dominate the small-file case for both tools.

Per run, round-robin over the cases (the first case rotates each run): upload and download of
the file and of the tree, with each tool. Destinations are removed before each measurement,
outside the timed region, and every result is verified afterwards (sha256 of the file; paths
and content of every file of the tree). Raw results go to ``benchmarks/results/`` as JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

# Run as ``python benchmarks/bench_cp.py``: make ``_common`` (next to this file) importable
# from any working directory; it puts the checkout on sys.path for ``k8sstream``.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    Meter,
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
from k8sstream.cp import copy_from_pod, copy_to_pod

RUN_TIMEOUT = 300.0
TARGET_VS_KUBECTL = 1.0


def _write_file(path: str, size: int) -> None:
    """Incompressible enough (no two MiB alike), written without holding more than 1 MiB."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(i.to_bytes(8, "little") + block[8:])
        f.write(block[: size % MiB])


def _write_tree(root: str, files: int, size: int) -> None:
    per_dir = 100
    for i in range(files):
        directory = os.path.join(root, f"d{i // per_dir:04}")
        if i % per_dir == 0:
            os.makedirs(directory)
        with open(os.path.join(directory, f"f{i % per_dir:03}"), "wb") as f:
            f.write(os.urandom(size))


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_digest(root: str) -> Dict[str, Any]:
    """Files, bytes and one digest over every relative path and content, in sorted order."""
    digest = hashlib.sha256()
    files = nbytes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            digest.update(os.path.relpath(path, root).encode() + b"\0" + data)
            files += 1
            nbytes += len(data)
    return {"files": files, "bytes": nbytes, "sha256": digest.hexdigest()}


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        self.emulator = TestingEmulator(self.kubeconfig)
        self.client = k8sstream.Client.from_kubeconfig(self.kubeconfig)
        self.kubectl = shutil.which("kubectl")
        # Containers are local processes: the container's working directory is a host path.
        self.pod_dir = (
            k8sstream.check_output(["pwd"], pod="demo", container="main", client=self.client)
            .decode()
            .strip()
        )
        self.file_size = args.file_mib * MiB
        self.local_file = os.path.join(workdir, "big.bin")
        self.local_tree = os.path.join(workdir, "tree")
        _write_file(self.local_file, self.file_size)
        _write_tree(self.local_tree, args.files, args.file_kib * 1024)
        self.file_digest = _file_digest(self.local_file)
        self.tree_digest = _tree_digest(self.local_tree)
        self.tree_bytes = self.tree_digest["bytes"]
        # The download sources, in the pod.
        shutil.copyfile(self.local_file, os.path.join(self.pod_dir, "src.bin"))
        shutil.copytree(self.local_tree, os.path.join(self.pod_dir, "srctree"))

    def _kubectl(self, *args: str) -> None:
        assert self.kubectl
        argv = [self.kubectl, "--kubeconfig", self.kubeconfig, *args]
        proc = popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
        rc = reap(proc, RUN_TIMEOUT)
        if rc:
            raise RuntimeError(f"kubectl {' '.join(args)} exited {rc}: {err.decode()[-500:]}")

    def transfer(self, what: str, direction: str, tool: str) -> Callable[[], Dict[str, Any]]:
        """One measurement: returns a callable that clears the destination, copies, verifies."""
        name = f"{what}-{direction}-{tool}"
        src_local = self.local_file if what == "file" else self.local_tree
        src_remote = "src.bin" if what == "file" else "srctree"
        if direction == "up":
            dest_path = os.path.join(self.pod_dir, name)
        else:
            dest_path = os.path.join(self.workdir, name)

        def copy() -> None:
            if direction == "up" and tool == "k8sstream":
                copy_to_pod(src_local, "demo", name, container="main", client=self.client)
            elif direction == "up":
                self._kubectl("cp", src_local, f"demo:{name}", "-c", "main")
            elif tool == "k8sstream":
                copy_from_pod("demo", src_remote, dest_path, container="main", client=self.client)
            else:
                self._kubectl("cp", f"demo:{src_remote}", dest_path, "-c", "main")

        def measure() -> Dict[str, Any]:
            _remove(dest_path)
            with Meter(self.emulator, children=tool == "kubectl") as m:
                copy()
            self._verify(what, dest_path)
            _remove(dest_path)
            nbytes = self.file_size if what == "file" else self.tree_bytes
            result = {
                "wall_s": m.wall,
                "bytes": nbytes,
                "mib_s": nbytes / MiB / m.wall,
                "cpu_s": m.cpu,
                "emulator_cpu_s": m.emulator_cpu,
            }
            if what == "tree":
                result["files"] = self.args.files
                result["files_s"] = self.args.files / m.wall
            return result

        measure.copy = copy  # type: ignore[attr-defined]
        measure.dest = dest_path  # type: ignore[attr-defined]
        return measure

    def _verify(self, what: str, path: str) -> None:
        if what == "file":
            if os.path.getsize(path) != self.file_size or _file_digest(path) != self.file_digest:
                raise RuntimeError(f"{path}: the copy differs from the source")
        elif _tree_digest(path) != self.tree_digest:
            raise RuntimeError(f"{path}: the copied tree differs from the source")


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# --- running, summarising, reporting ------------------------------------------------------------

CASES = [(w, d) for w in ("file", "tree") for d in ("up", "down")]


def run_all(bench: Bench, args: argparse.Namespace) -> Dict[str, Any]:
    tools = ["k8sstream"] + (["kubectl"] if bench.kubectl else [])
    if not bench.kubectl:
        print("kubectl not on PATH: measuring k8sstream alone", file=sys.stderr)
    cases = {
        f"{what}-{direction}/{tool}": bench.transfer(what, direction, tool)
        for what, direction in CASES
        for tool in tools
    }
    # Warm-up: imports, first connections, kubectl's first start (page cache, dispatcher).
    for tool in tools:
        bench.transfer("file", "down", tool)()
    samples: Dict[str, List[Dict[str, Any]]] = {k: [] for k in cases}
    names = list(cases)
    for run, order in round_robin(names, args.runs):
        for name in order:
            r = cases[name]()
            samples[name].append(r)
            if args.verbose:
                extra = f" {r['files_s']:8.0f} files/s" if "files_s" in r else ""
                print(
                    f"  run {run + 1} {name:24s} {r['mib_s']:8.1f} MiB/s{extra}"
                    f" cpu {r['cpu_s']:6.2f} s emu {r['emulator_cpu_s']:6.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    summary: Dict[str, Any] = {}
    for name, values in samples.items():
        s: Dict[str, Any] = {"runs": len(values), "bytes": values[0]["bytes"]}
        for key in ("mib_s", "files_s", "wall_s", "cpu_s", "emulator_cpu_s"):
            if key in values[0]:
                s[key] = spread([v[key] for v in values])
        if "files" in values[0]:
            s["files"] = values[0]["files"]
        summary[name] = s
    ratios: Dict[str, Optional[float]] = {}
    for what, direction in CASES:
        ours = summary.get(f"{what}-{direction}/k8sstream")
        theirs = summary.get(f"{what}-{direction}/kubectl")
        ratios[f"{what}-{direction}"] = (
            ours["mib_s"]["median"] / theirs["mib_s"]["median"] if ours and theirs else None
        )
    return {"samples": samples, "summary": summary, "ratios": ratios}


def report(results: Dict[str, Any], markdown: bool) -> str:
    header = [
        "test",
        "tool",
        "size",
        "MiB/s median (min-max)",
        "files/s median",
        "client CPU s",
        "emulator CPU s",
        "vs kubectl",
    ]
    rows = []
    for name, s in results["summary"].items():
        case, tool = name.split("/", 1)
        size = (
            f"{s['files']} x {s['bytes'] // s['files'] // 1024} KiB"
            if "files" in s
            else f"{s['bytes'] / MiB:g} MiB"
        )
        ratio = ""
        if tool == "k8sstream" and results["ratios"].get(case) is not None:
            value = results["ratios"][case]
            verdict = "meets" if value >= TARGET_VS_KUBECTL else "MISSES"
            ratio = f"{value:.2f}x ({verdict} >= {TARGET_VS_KUBECTL:g}x)"
        m = s["mib_s"]
        rows.append(
            [
                case,
                tool,
                size,
                f"{m['median']:.1f} ({m['min']:.1f}-{m['max']:.1f})",
                f"{s['files_s']['median']:.0f}" if "files_s" in s else "",
                f"{s['cpu_s']['median']:.2f}",
                f"{s['emulator_cpu_s']['median']:.2f}",
                ratio,
            ]
        )
    env = results["environment"]
    notes = [
        f"{env['runs']} runs, round-robin; {env['cpus']} CPUs; kubectl {env['kubectl_version']}; "
        f"Python {env['python']}; files under {env['tmpdir']}",
        "wall time includes connecting (kubectl: process start, kubeconfig, pod GET); "
        "up = local to pod, down = pod to local; every copy verified by sha256",
        "client CPU: RUSAGE_SELF for k8sstream, RUSAGE_CHILDREN for kubectl; the remote tar "
        "runs under the emulator and is in neither",
    ]
    return "\n".join([*table(header, rows, markdown), "", *notes_lines(notes, markdown)])


def environment(bench: Bench, args: argparse.Namespace) -> Dict[str, Any]:
    version = "-"
    if bench.kubectl:
        version = kubectl_version(
            [bench.kubectl, "--kubeconfig", bench.kubeconfig, "version", "-o", "json"]
        )
    return {
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "kubectl_version": version,
        "k8sstream_version": k8sstream.__version__,
        "emulator": bench.emulator.banner,
        "tmpdir": args.tmpdir,
        "args": vars(args),
    }


def profile(bench: Bench, top: int) -> str:
    """cProfile each k8sstream case once (the calling thread; the reader thread is separate)."""
    out = io.StringIO()
    for what, direction in CASES:
        measure = bench.transfer(what, direction, "k8sstream")
        _remove(measure.dest)  # type: ignore[attr-defined]
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(measure.copy)  # type: ignore[attr-defined]
        wall = time.perf_counter() - t0
        _remove(measure.dest)  # type: ignore[attr-defined]
        out.write(f"\n=== k8sstream {what}-{direction} under cProfile: {wall:.2f} s ===\n")
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    p.add_argument("--file-mib", type=int, default=None, help="big file size (default 512)")
    p.add_argument("--files", type=int, default=None, help="small files (default 10000)")
    p.add_argument("--file-kib", type=int, default=4, help="size of each small file (4)")
    default_tmp = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    p.add_argument("--tmpdir", default=default_tmp, help=f"where files live ({default_tmp})")
    p.add_argument("--quick", action="store_true", help="64 MiB and 1,000 files")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--profile", action="store_true", help="cProfile each k8sstream case once")
    p.add_argument("--profile-top", type=int, default=20)
    p.add_argument("--no-bench", action="store_true", help="with --profile: only profile")
    p.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    args = p.parse_args(argv)
    if args.file_mib is None:
        args.file_mib = 64 if args.quick else 512
    if args.files is None:
        args.files = 1000 if args.quick else 10_000
    if args.runs < 1 or args.files < 1 or args.file_mib < 1:
        p.error("--runs, --files and --file-mib must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    workdir = tempfile.mkdtemp(prefix="k8sstream-bench-cp-", dir=args.tmpdir)
    # The emulator makes its container directories under TMPDIR: keep them next to ours.
    os.environ["TMPDIR"] = workdir
    bench: Optional[Bench] = None
    try:
        bench = Bench(args, workdir)
        if args.profile:
            print(profile(bench, args.profile_top))
            if args.no_bench:
                return 0
        started = time.time()
        results = run_all(bench, args)
        results["target_vs_kubectl"] = TARGET_VS_KUBECTL
        results["environment"] = environment(bench, args)
        results["elapsed_s"] = time.time() - started
        publish("bench_cp", results, started, report, args.markdown)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            bench.client.close()
            try:
                bench.emulator.stop()
            except Exception:
                pass
        kill_children()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
