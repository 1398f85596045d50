"""A local Kubernetes API-server emulator for exec, attach and port-forward, backed by local
processes.

It speaks the streaming protocols as a 1.31+ kube-apiserver does, refusals and error bodies
included, so scripts (and kubectl) can be tested without a cluster::

    from k8sstream.testing import ApiServer, Pod, Container

    with ApiServer() as server:                 # pod default/demo: containers main, sidecar
        server.write_kubeconfig("kubeconfig")
        ...

Port-forward connects to 127.0.0.1: ``Pod(..., ports={80: 18080})`` sends the pod's port 80
to 127.0.0.1:18080 (an unmapped port goes to the same port number). :class:`EchoServer` and
:class:`SinkServer` are ready-made services to put behind a pod port.

Commands run as local processes of the current user, without isolation: a container is only a
working directory under ``root_dir``, and absolute paths in commands are host paths.
"""

from __future__ import annotations

from ._faults import Faults, RequestRecord
from ._model import Container, Pod, Workload
from ._server import ApiServer
from ._services import EchoServer, SinkServer

__all__ = [
    "ApiServer",
    "Container",
    "EchoServer",
    "Faults",
    "Pod",
    "RequestRecord",
    "SinkServer",
    "Workload",
]
