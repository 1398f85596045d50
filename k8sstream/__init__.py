"""k8sstream: run commands in Kubernetes pods and forward their ports over WebSocket.

The interface follows :mod:`subprocess`: ``k8sstream.run(["ls"], pod="web-0")`` works like
``subprocess.run(["ls"])``, in a pod.
"""

from __future__ import annotations

import logging

from ._secret import Secret
from ._status import ApiStatus, ExitStatus
from .client import Client
from .config import ClusterConfig, load_kubeconfig
from .cp import UnsafeArchiveError, copy_from_pod, copy_to_pod
from .errors import (
    ApiError,
    CalledProcessError,
    ConfigError,
    ConnectError,
    K8sStreamError,
    LocalProtocolError,
    PodStateError,
    PortForwardError,
    ProtocolError,
    ProxyError,
    RemoteCommandError,
    RemoteProtocolError,
    StreamClosedError,
    StreamTimeout,
    TimeoutExpired,
    TLSError,
)
from .fanout import FanOut, PodResult, Summary, run_many
from .portforward import ForwardedSocket, PortForwarder, create_connection, port_forward
from .process import (
    DEVNULL,
    PIPE,
    STDOUT,
    CompletedProcess,
    Popen,
    RemoteProcess,
    attach,
    call,
    check_call,
    check_output,
    run,
)
from .targets import resolve_target

__version__ = "0.1.0"

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "ApiError",
    "ApiStatus",
    "CalledProcessError",
    "Client",
    "ClusterConfig",
    "CompletedProcess",
    "ConfigError",
    "ConnectError",
    "ExitStatus",
    "FanOut",
    "ForwardedSocket",
    "K8sStreamError",
    "LocalProtocolError",
    "PodResult",
    "PodStateError",
    "Popen",
    "PortForwardError",
    "PortForwarder",
    "ProtocolError",
    "ProxyError",
    "RemoteCommandError",
    "RemoteProcess",
    "RemoteProtocolError",
    "Secret",
    "StreamClosedError",
    "StreamTimeout",
    "Summary",
    "TLSError",
    "TimeoutExpired",
    "UnsafeArchiveError",
    "__version__",
    "attach",
    "call",
    "check_call",
    "check_output",
    "copy_from_pod",
    "copy_to_pod",
    "create_connection",
    "load_kubeconfig",
    "port_forward",
    "resolve_target",
    "run",
    "run_many",
]

logging.getLogger("k8sstream").addHandler(logging.NullHandler())
