"""``python -m k8sstream.testing --kubeconfig PATH [--port N]``: run the emulator until a signal."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import List, Optional

from ._server import ApiServer


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m k8sstream.testing",
        description="Run the k8sstream API-server emulator (http, loopback) with pod default/demo.",
    )
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = ApiServer(host=args.host, port=args.port, token=args.token)
    server.start()
    try:
        path = server.write_kubeconfig(args.kubeconfig)
        print(
            f"k8sstream emulator listening on {server.url}; kubeconfig written to {path}",
            flush=True,
        )
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
