"""``python -m k8sstream.testing --kubeconfig PATH [--port N]``: run the emulator until a signal.

``--forward 80=8080`` sends port-forward to pod port 80 to 127.0.0.1:8080; ``--echo 7`` puts an
:class:`EchoServer` behind pod port 7.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import List, Optional

from ._model import Container, Pod
from ._server import ApiServer
from ._services import EchoServer


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m k8sstream.testing",
        description="Run the k8sstream API-server emulator (http, loopback) with pod default/demo.",
    )
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="POD_PORT=LOCAL_PORT",
        help="port-forward to this pod port connects to 127.0.0.1:LOCAL_PORT (repeatable)",
    )
    parser.add_argument(
        "--echo",
        action="append",
        default=[],
        type=int,
        metavar="POD_PORT",
        help="run an echo service behind this pod port (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    ports = {}
    for item in args.forward:
        pod_port, sep, local_port = item.partition("=")
        if not sep or not pod_port.isdigit() or not local_port.isdigit():
            parser.error(f"--forward expects POD_PORT=LOCAL_PORT, not {item!r}")
        ports[int(pod_port)] = int(local_port)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    echoes = [EchoServer().start() for _ in args.echo]
    ports.update({pod_port: echo.port for pod_port, echo in zip(args.echo, echoes)})
    server = ApiServer(host=args.host, port=args.port, token=args.token)
    if ports:
        server.add_pod(
            Pod("demo", containers=[Container("main"), Container("sidecar")], ports=ports)
        )
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
        for echo in echoes:
            echo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
