"""Command line: ``python -m k8sstream demo`` runs the main job against the embedded emulator."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from typing import List, Optional


def demo() -> int:
    """Start the local API-server emulator and run a few remote commands against it."""
    from . import PIPE, Client, Popen, run
    from .testing import ApiServer

    with ApiServer() as server, tempfile.TemporaryDirectory(prefix="k8sstream-demo-") as tmp:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        server.write_kubeconfig(kubeconfig)
        print(f"emulator: {server.url} (kubeconfig {kubeconfig})")
        with Client.from_kubeconfig(kubeconfig) as client:
            result = run(["uname", "-s"], pod="demo", capture_output=True, client=client)
            print(
                f"$ uname -s          -> {result.stdout.decode().strip()!r}, "
                f"exit {result.returncode}"
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
            result = run(
                ["sha256sum"], pod="demo", input=payload, capture_output=True, client=client
            )
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
                f"$ cat (sidecar)      -> {echoed!r}, protocol {proc.protocol}, "
                f"exit {proc.returncode}"
            )
            ok = remote == local and result.returncode == 0 and proc.returncode == 0
    print("demo finished" if ok else "demo FAILED")
    return 0 if ok else 1


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
