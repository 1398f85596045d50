"""Command line: ``python -m k8sstream demo`` runs the main job against the embedded emulator."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
import time
from typing import Any, List, Optional


def demo() -> int:
    """Start the local API-server emulator and run a few remote commands against it."""
    from .testing import ApiServer, EchoServer

    with EchoServer() as echo, ApiServer() as server:
        with tempfile.TemporaryDirectory(prefix="k8sstream-demo-") as tmp:
            return _demo_steps(echo, server, tmp)


def _demo_steps(echo: Any, server: Any, tmp: str) -> int:
    from . import PIPE, Client, Popen, copy_from_pod, copy_to_pod, port_forward, run
    from .testing import Pod

    server.add_pod(Pod(name="web", ports={7: echo.port}))
    kubeconfig = os.path.join(tmp, "kubeconfig")
    server.write_kubeconfig(kubeconfig)
    print(f"emulator: {server.url} (kubeconfig {kubeconfig})")
    with Client.from_kubeconfig(kubeconfig) as client:
        result = run(["uname", "-s"], pod="demo", capture_output=True, client=client)
        print(
            f"$ uname -s          -> {result.stdout.decode().strip()!r}, exit {result.returncode}"
        )

        result = run(
            ["sh", "-c", "echo oops >&2; exit 3"],
            pod="demo",
            capture_output=True,
            client=client,
        )
        print(
            f"$ sh -c 'exit 3'     -> exit {result.returncode}, "
            f"stderr {result.stderr.decode().strip()!r}"
        )

        payload = os.urandom(4 * 1024 * 1024)
        start = time.monotonic()
        result = run(["sha256sum"], pod="demo", input=payload, capture_output=True, client=client)
        remote = result.stdout.split()[0].decode()
        local = hashlib.sha256(payload).hexdigest()
        print(
            f"$ sha256sum < 4 MiB  -> {'match' if remote == local else 'MISMATCH'} "
            f"({time.monotonic() - start:.2f} s, stdin closed with v5 EOF)"
        )

        with Popen(
            ["cat"], pod="demo", container="sidecar", stdin=PIPE, stdout=PIPE, client=client
        ) as proc:
            proc.stdin.write(b"hello from k8sstream\n")
            proc.stdin.close()
            echoed = proc.stdout.read().decode().strip()
        print(
            f"$ cat (sidecar)      -> {echoed!r}, protocol {proc.protocol}, exit {proc.returncode}"
        )

        with port_forward("web", 7, client=client) as sock:
            sock.sendall(b"ping over the SPDY tunnel")
            sock.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
        print(f"port-forward web:7   -> echo {answer.decode()!r} (half-closed)")

        tree = os.path.join(tmp, "tree")
        os.makedirs(os.path.join(tree, "sub"))
        blob = os.urandom(1024 * 1024)
        with open(os.path.join(tree, "sub", "blob.bin"), "wb") as f:
            f.write(blob)
        copy_to_pod(tree, "demo", "copied", client=client)
        copy_from_pod("demo", "copied", os.path.join(tmp, "back"), client=client)
        with open(os.path.join(tmp, "back", "sub", "blob.bin"), "rb") as f:
            copied = f.read() == blob
        print(f"cp tree -> pod -> back: {'identical' if copied else 'DIFFERENT'} (1 MiB file)")
        ok = (
            remote == local
            and result.returncode == 0
            and proc.returncode == 0
            and answer == b"ping over the SPDY tunnel"
            and copied
        )
    print("demo finished" if ok else "demo FAILED")
    return 0 if ok else 1


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
