"""The ``k8sstream`` command: ``exec``, ``attach``, ``port-forward`` and ``cp`` with kubectl's
flags and meanings (targets as ``pod``, ``pod/x``, ``deploy/x``, ``sts/x``, ``svc/x`` ...),
``run-many`` (one command in every pod matching a selector) and ``demo``.

Exit status: for ``exec``, the remote command's exit code; otherwise 0, or 1 with one
``error: ...`` line on stderr (never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from .errors import K8sStreamError

_TTY_WARNING = "Unable to use a TTY - input is not a terminal or the right kind of file"


class _Exit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    return Client.from_kubeconfig(args.kubeconfig, context=args.context, namespace=args.namespace)


def _pod_name(target: str, client: Any) -> str:
    """The pod for ``pod``, ``pod/x``, ``deploy/x``, ``svc/x`` ... as kubectl picks it; closes
    the client if that fails."""
    from .targets import resolve_target

    try:
        return resolve_target(target, client=client)
    except BaseException:
        client.close()
        raise


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Put the local terminal in raw mode and restore it on every way out."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _terminal_size() -> Tuple[int, int]:
    size = os.get_terminal_size(sys.stdout.fileno() if sys.stdout.isatty() else 0)
    return size.columns, size.lines


def _run_session(args: argparse.Namespace, attach: bool) -> int:
    from .process import RemoteProcess

    client = _client(args)
    pod = _pod_name(args.pod, client)
    if not args.quiet and not args.container:
        _explain_default_container(client, pod)
    container, spec = client.resolve_container(pod, client.namespace, args.container, attach=attach)
    tty = bool(args.tty)
    if attach:
        # kubectl attach follows the container: a TTY only if it was started with one, and
        # always if it was (its stream would be unreadable otherwise).
        if tty and not spec.get("tty"):
            if not args.quiet:
                print(
                    f"error: Unable to use a TTY - container {container} did not allocate one",
                    file=sys.stderr,
                )
            tty = False
        elif spec.get("tty"):
            tty = True
    local_terminal = tty and args.stdin and sys.stdin.isatty()
    if tty and not local_terminal and not attach:
        if not args.quiet:
            print(_TTY_WARNING, file=sys.stderr)
        tty = False
    kwargs: dict = dict(
        pod=pod,
        container=container,
        client=client,
        stdin=sys.stdin if args.stdin else None,
        stdout=sys.stdout,
        stderr=sys.stderr,
        tty=tty,
    )
    if local_terminal:
        kwargs["terminal_size"] = _terminal_size()
    if attach:
        if not args.quiet:
            print("If you don't see a command prompt, try pressing enter.", file=sys.stderr)
        proc = RemoteProcess(None, _attach=True, **kwargs)
    else:
        proc = RemoteProcess(args.command, **kwargs)
    try:
        if local_terminal:
            previous = signal.signal(signal.SIGWINCH, lambda *_: _resize(proc))
            try:
                with _raw_terminal(sys.stdin.fileno()):
                    return proc.wait()
            finally:
                signal.signal(signal.SIGWINCH, previous)
        return proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
        client.close()


def _resize(proc: Any) -> None:
    with contextlib.suppress(K8sStreamError, OSError):
        proc.resize(*_terminal_size())


def _explain_default_container(client: Any, pod: str) -> None:
    obj = client.get_pod(pod)
    spec = obj.get("spec") or {}
    names = [
        c.get("name")
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if len(names) > 1 and "kubectl.kubernetes.io/default-container" not in annotations:
        print(f'Defaulted container "{names[0]}" out of: {", ".join(names)}', file=sys.stderr)


def _split_remote(spec: str) -> Optional[Tuple[Optional[str], str, str]]:
    """``[namespace/]pod:path`` -> (namespace, pod, path); None for a local path."""
    if ":" not in spec or spec.startswith(("/", ".")):
        return None
    target, _, path = spec.partition(":")
    namespace, _, pod = target.rpartition("/")
    return namespace or None, pod, path


class _Progress:
    """bytes, rate and elapsed time on the terminal; silent when stderr is not one."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = 0.0
        self.count = 0

    def __call__(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if self.enabled and now - self.last >= 0.2:
            self.last = now
            self._show(now)

    def _show(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        sys.stderr.write(
            f"\r{self.count / 1048576:10.1f} MiB  "
            f"{self.count / 1048576 / elapsed:8.1f} MiB/s  {elapsed:6.1f} s"
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            self._show(time.monotonic())
            sys.stderr.write("\n")


def _cp(args: argparse.Namespace) -> int:
    from .cp import copy_from_pod, copy_to_pod

    src, dest = _split_remote(args.src), _split_remote(args.dest)
    if (src is None) == (dest is None):
        raise _Exit(
            1,
            "error: one of src or dest must be a local file and the other a remote file (pod:path)",
        )
    client = _client(args)
    progress = _Progress(sys.stderr.isatty() and not args.quiet)
    try:
        if src is not None:
            namespace, pod, path = src
            copy_from_pod(
                pod,
                path,
                args.dest,
                namespace=namespace,
                container=args.container,
                client=client,
                preserve=not args.no_preserve,
                progress=progress,
                retries=args.retries,
            )
        else:
            assert dest is not None
            namespace, pod, path = dest
            copy_to_pod(
                args.src,
                pod,
                path,
                namespace=namespace,
                container=args.container,
                client=client,
                preserve=not args.no_preserve,
                progress=progress,
            )
    finally:
        client.close()
    progress.done()
    return 0


def _port_forward(args: argparse.Namespace) -> int:
    from .portforward import PortForwarder

    client = _client(args)
    addresses = [a for spec in args.address for a in spec.split(",")]
    addresses = [
        a for name in addresses for a in (["127.0.0.1", "::1"] if name == "localhost" else [name])
    ]
    forwarder = PortForwarder(
        _pod_name(args.pod, client), args.ports, address=addresses, client=client
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        forwarder.start()
        for local, remote in forwarder.ports:
            for address in addresses:
                host = f"[{address}]" if ":" in address else address
                print(f"Forwarding from {host}:{local} -> {remote}", flush=True)
        while not stop.is_set() and forwarder.error is None:
            try:
                stop.wait(0.2)
            except KeyboardInterrupt:
                break
        if forwarder.error is not None:
            raise _Exit(1, f"error: {forwarder.error}")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        forwarder.stop()
        client.close()


def _run_many(args: argparse.Namespace) -> int:
    from .fanout import run_many

    if (args.selector is None) == (args.pods is None):
        raise _Exit(1, "error: run-many needs exactly one of -l/--selector and --pods")
    data = sys.stdin.buffer.read() if args.stdin else None
    client = _client(args)
    try:
        pods = [p for p in args.pods.split(",") if p] if args.pods is not None else None
        run = run_many(
            args.command,
            selector=args.selector,
            pods=pods,
            container=args.container,
            input=data,
            timeout=args.timeout,
            max_workers=args.max_workers,
            client=client,
        )
        with run:
            out, err = sys.stdout.buffer, sys.stderr.buffer
            for result in run:
                prefix = f"[{result.pod}] ".encode()
                for stream, data_out in ((out, result.stdout), (err, result.stderr)):
                    for line in (data_out or b"").splitlines(keepends=True):
                        stream.write(prefix + line + (b"" if line.endswith(b"\n") else b"\n"))
                if result.error is not None:
                    err.write(prefix + f"error: {result.error}\n".encode())
                elif result.returncode and not args.quiet:
                    err.write(prefix + f"exit status {result.returncode}\n".encode())
                out.flush()
                err.flush()
        summary = run.summary
        assert summary is not None
        if summary.total == 0:
            raise _Exit(1, "error: no pods matched")
        if not args.quiet:
            print(summary, file=sys.stderr)
        return 0 if summary.ok else 1
    finally:
        client.close()


def _demo(args: argparse.Namespace) -> int:
    from .__main__ import demo

    return demo()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k8sstream", description="kubectl exec/attach/port-forward/cp in Python"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("--kubeconfig", help="path to the kubeconfig file")
    common.add_argument(
        "-q", "--quiet", action="store_true", help="only print output from the remote session"
    )
    sub = parser.add_subparsers(dest="verb", required=True)

    ex = sub.add_parser("exec", parents=[common], help="run a command in a container")
    ex.add_argument("-c", "--container")
    ex.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the container")
    ex.add_argument("-t", "--tty", action="store_true", help="stdin is a TTY")
    ex.add_argument("pod")
    ex.add_argument("command", nargs="*", help="the command, after --")

    at = sub.add_parser("attach", parents=[common], help="attach to a running container")
    at.add_argument("-c", "--container")
    at.add_argument("-i", "--stdin", action="store_true")
    at.add_argument("-t", "--tty", action="store_true")
    at.add_argument("pod")

    pf = sub.add_parser("port-forward", parents=[common], help="forward local ports to a pod")
    pf.add_argument(
        "--address", action="append", default=[], help="addresses to listen on (default localhost)"
    )
    pf.add_argument("pod")
    pf.add_argument("ports", nargs="+")

    cp = sub.add_parser("cp", parents=[common], help="copy files to and from containers")
    cp.add_argument("-c", "--container")
    cp.add_argument(
        "--no-preserve", action="store_true", help="do not preserve ownership and permissions"
    )
    cp.add_argument(
        "--retries",
        type=int,
        default=0,
        help="resume a download this many times after a lost connection (negative: no limit)",
    )
    cp.add_argument("src")
    cp.add_argument("dest")

    rm = sub.add_parser(
        "run-many", parents=[common], help="run one command in every pod matching a selector"
    )
    rm.add_argument("-l", "--selector", help="label selector, e.g. app=web ('' for all pods)")
    rm.add_argument("--pods", help="comma-separated pod names instead of a selector")
    rm.add_argument("-c", "--container")
    rm.add_argument("-i", "--stdin", action="store_true", help="send stdin to every pod")
    rm.add_argument("--max-workers", type=int, default=10, help="pods at once (default 10)")
    rm.add_argument("--timeout", type=float, help="seconds per pod")
    rm.add_argument("command", nargs="*", help="the command, after --")

    sub.add_parser("demo", help="run remote commands against the embedded API-server emulator")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the remote command, whatever flags come before it (kubectl).
    command: List[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    if command and args.verb not in ("exec", "run-many"):
        parser.error(f"{args.verb} takes no command after --")
    try:
        if args.verb == "exec":
            command = command or list(args.command)
            if not command:
                raise _Exit(1, "error: you must specify at least one command for the container")
            args.command = command
            return _run_session(args, attach=False)
        if args.verb == "attach":
            return _run_session(args, attach=True)
        if args.verb == "port-forward":
            if not args.address:
                args.address = ["localhost"]
            return _port_forward(args)
        if args.verb == "cp":
            return _cp(args)
        if args.verb == "run-many":
            args.command = command or list(args.command)
            if not args.command:
                raise _Exit(1, "error: you must specify a command after --")
            return _run_many(args)
        return _demo(args)
    except _Exit as exc:
        if str(exc):
            print(str(exc), file=sys.stderr)
        return exc.code
    except K8sStreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
