"""Pods and containers as users declare them, and the JSON the API server returns for them."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["DEFAULT_IMAGE", "WORKLOAD_KINDS", "Container", "Pod", "Workload"]

DEFAULT_IMAGE = "k8sstream/emulator:latest"


@dataclass
class Container:
    """One container of an emulated pod.

    Args:
        name: the container name.
        command: argv of the container's main process, started when the pod is added and the
            process that ``attach`` connects to. ``None`` picks a default: with ``stdin`` a shell
            loop that echoes each input line prefixed with ``"<name>: "``, without ``stdin``
            a process that sleeps forever. Run without a shell, from the container directory.
        tty: run the main process under a pseudo-terminal (attach then forces a TTY, as kubectl
            does for such containers).
        stdin: keep the main process's stdin open for ``attach -i``. Without it the main
            process reads EOF immediately.
        stdin_once: close the main process's stdin when the first attached session that sent
            stdin detaches or closes stdin (Kubernetes ``stdinOnce``).
        image: shown in the pod JSON only.
        env: extra environment variables for the main process and every exec.
    """

    name: str
    command: Optional[Sequence[str]] = None
    tty: bool = False
    stdin: bool = True
    stdin_once: bool = False
    image: str = DEFAULT_IMAGE
    env: Mapping[str, str] = field(default_factory=dict)

    def main_command(self) -> List[str]:
        if self.command is not None:
            return list(self.command)
        if self.stdin:
            return ["sh", "-c", f'while IFS= read -r l; do echo "{self.name}: $l"; done']
        return ["tail", "-f", "/dev/null"]


@dataclass
class Pod:
    """An emulated pod. Every container's main process starts when the pod is added.

    Args:
        name, namespace, labels, annotations: the pod's metadata.
        containers: at least one :class:`Container`.
        phase: ``status.phase``; kubectl refuses exec/attach for ``Succeeded``/``Failed``.
        node_name: ``spec.nodeName``; empty makes exec/attach/port-forward fail like an
            unscheduled pod.
        ports: where port-forward connects, as ``{container port: port on 127.0.0.1}``. A
            port not in the map is forwarded to the same port number on 127.0.0.1. The keys
            appear in the first container's ``ports`` in the pod JSON (protocol TCP).
        port_names: ``{name: container port}``, shown as the ``name`` of those ports in the
            pod JSON so that kubectl can resolve named ports (``kubectl port-forward pod/p :http``).
    """

    name: str
    namespace: str = "default"
    containers: Sequence[Container] = field(default_factory=lambda: [Container("main")])
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    phase: str = "Running"
    node_name: str = "k8sstream-node"
    ports: Mapping[int, int] = field(default_factory=dict)
    port_names: Mapping[str, int] = field(default_factory=dict)

    def container_names(self) -> List[str]:
        return [c.name for c in self.containers]

    def container(self, name: str) -> Optional[Container]:
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def forward_target(self, port: int) -> Tuple[str, int]:
        """The local address that port-forward to container ``port`` connects to."""
        return ("127.0.0.1", int(self.ports.get(port, port)))

    def validate_ports(self) -> None:
        """Raises ValueError for a port outside 1-65535 or a name for an unlisted port."""
        for port, target in self.ports.items():
            for value in (port, target):
                if not isinstance(value, int) or not 0 < value <= 0xFFFF:
                    raise ValueError(f"pod {self.name}: invalid port {value!r} in ports")
        for name, port in self.port_names.items():
            if not isinstance(port, int) or not 0 < port <= 0xFFFF:
                raise ValueError(f"pod {self.name}: invalid port {port!r} for name {name!r}")

    def container_ports(self) -> List[Dict[str, Any]]:
        """``spec.containers[0].ports``: every mapped or named port, sorted."""
        names = {port: name for name, port in self.port_names.items()}
        result = []
        for port in sorted(set(self.ports) | set(names)):
            entry: Dict[str, Any] = {"containerPort": port, "protocol": "TCP"}
            if port in names:
                entry = {"name": names[port], **entry}
            result.append(entry)
        return result


def rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclass
class ContainerState:
    """What the pod JSON reports about one container's main process."""

    container_id: str
    started_at: float
    exit_code: Optional[int] = None
    finished_at: Optional[float] = None


@dataclass
class PodRecord:
    """Server-side bookkeeping for one pod."""

    pod: Pod
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)
    resource_version: str = "1"
    states: Dict[str, ContainerState] = field(default_factory=dict)
    #: The CRI sandbox id: what the runtime calls the pod in port-forward error text.
    sandbox_id: str = field(default_factory=lambda: secrets.token_hex(32))
    netns: str = field(default_factory=lambda: f"cni-{uuid.uuid4()}")

    def to_json(self) -> Dict[str, Any]:
        pod = self.pod
        metadata: Dict[str, Any] = {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": self.uid,
            "resourceVersion": self.resource_version,
            "creationTimestamp": rfc3339(self.created),
        }
        if pod.labels:
            metadata["labels"] = dict(pod.labels)
        if pod.annotations:
            metadata["annotations"] = dict(pod.annotations)
        containers = []
        for index, c in enumerate(pod.containers):
            spec: Dict[str, Any] = {
                "name": c.name,
                "image": c.image,
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
            if c.command is not None:
                spec["command"] = list(c.command)
            if c.stdin:
                spec["stdin"] = True
            if c.stdin_once:
                spec["stdinOnce"] = True
            if c.tty:
                spec["tty"] = True
            if index == 0 and (pod.ports or pod.port_names):
                spec["ports"] = pod.container_ports()
            containers.append(spec)
        statuses = [self._container_status(c) for c in pod.containers]
        all_ready = all(s["ready"] for s in statuses)
        created = rfc3339(self.created)
        conditions = [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": created}
            for t in ("Initialized", "PodScheduled")
        ] + [
            {
                "type": t,
                "status": "True" if all_ready else "False",
                "lastProbeTime": None,
                "lastTransitionTime": created,
            }
            for t in ("Ready", "ContainersReady")
        ]
        spec_obj: Dict[str, Any] = {
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
        }
        if pod.node_name:
            spec_obj["nodeName"] = pod.node_name
        status: Dict[str, Any] = {
            "phase": pod.phase,
            "conditions": conditions,
            "qosClass": "BestEffort",
        }
        if pod.node_name:
            status.update(
                hostIP="127.0.0.1",
                hostIPs=[{"ip": "127.0.0.1"}],
                podIP="127.0.0.1",
                podIPs=[{"ip": "127.0.0.1"}],
                startTime=created,
                containerStatuses=statuses,
            )
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata,
            "spec": spec_obj,
            "status": status,
        }

    def _container_status(self, c: Container) -> Dict[str, Any]:
        state = self.states.get(c.name)
        result: Dict[str, Any] = {
            "name": c.name,
            "image": c.image,
            "imageID": "",
            "restartCount": 0,
            "started": False,
            "ready": False,
            "state": {"waiting": {"reason": "ContainerCreating"}},
            "lastState": {},
        }
        if state is None:
            return result
        result["containerID"] = state.container_id
        if state.exit_code is None:
            result.update(started=True, ready=True)
            result["state"] = {"running": {"startedAt": rfc3339(state.started_at)}}
        else:
            result["state"] = {
                "terminated": {
                    "exitCode": state.exit_code,
                    "reason": "Completed" if state.exit_code == 0 else "Error",
                    "startedAt": rfc3339(state.started_at),
                    "finishedAt": rfc3339(state.finished_at or state.started_at),
                    "containerID": state.container_id,
                }
            }
        return result


def _split_requirements(selector: str) -> List[str]:
    """Split on the commas that separate requirements, not those inside ``in (a,b)``."""
    parts: List[str] = []
    depth = 0
    current = ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET_REQUIREMENT = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s*\(([^()]*)\)$")


def match_label_selector(selector: str, labels: Mapping[str, str]) -> bool:
    """Label selectors as the API server parses them: equality (``a=b``, ``a==b``, ``a!=b``),
    sets (``a in (x,y)``, ``a notin (x,y)``) and existence (``a``, ``!a``).

    Raises:
        ValueError: a requirement that does not parse.
    """
    for req in _split_requirements(selector):
        match = _SET_REQUIREMENT.match(req)
        if match is not None:
            key, op, raw_values = match.groups()
            values = {v.strip() for v in raw_values.split(",") if v.strip()}
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and key in labels and labels[key] in values:
                return False
        elif "(" in req or ")" in req:
            raise ValueError(f"unable to parse requirement: {req!r}")
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in req:
            key, value = (s.strip() for s in req.replace("==", "=", 1).split("=", 1))
            if labels.get(key) != value:
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


#: kind -> (API group, resource, short names) for the workloads the emulator can serve.
WORKLOAD_KINDS: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    "Deployment": ("apps", "deployments", ("deploy",)),
    "StatefulSet": ("apps", "statefulsets", ("sts",)),
    "DaemonSet": ("apps", "daemonsets", ("ds",)),
    "ReplicaSet": ("apps", "replicasets", ("rs",)),
    "Job": ("batch", "jobs", ()),
    "Service": ("", "services", ("svc",)),
    "ReplicationController": ("", "replicationcontrollers", ("rc",)),
}


@dataclass
class Workload:
    """A pod-owning object (or a Service) that is only stored and served, never reconciled:
    it creates no pods. Add pods whose labels match its selector to give it some.

    Args:
        kind: one of ``Deployment``, ``StatefulSet``, ``DaemonSet``, ``ReplicaSet``, ``Job``,
            ``Service``, ``ReplicationController``.
        name, namespace, labels: the object's metadata.
        selector: ``matchLabels`` (``spec.selector`` itself for a Service or a
            ReplicationController). Empty for a Service without a selector.
        match_expressions: ``matchExpressions`` (``key``, ``operator``, ``values``); not for
            Services and ReplicationControllers.
        ports: a Service's ``spec.ports`` (``port``, ``targetPort``, ``name``, ``protocol``).
    """

    kind: str
    name: str
    selector: Mapping[str, str] = field(default_factory=dict)
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: Sequence[Mapping[str, Any]] = ()
    ports: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        if self.kind not in WORKLOAD_KINDS:
            raise ValueError(
                f"unknown workload kind {self.kind!r}: one of {sorted(WORKLOAD_KINDS)}"
            )
        if self.match_expressions and self.kind in ("Service", "ReplicationController"):
            raise ValueError(f"a {self.kind} selector has no matchExpressions")

    @property
    def group(self) -> str:
        return WORKLOAD_KINDS[self.kind][0]

    @property
    def resource(self) -> str:
        return WORKLOAD_KINDS[self.kind][1]

    def to_json(self, uid: str, resource_version: str, created: float) -> Dict[str, Any]:
        metadata: Dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "uid": uid,
            "resourceVersion": resource_version,
            "generation": 1,
            "creationTimestamp": rfc3339(created),
        }
        if self.labels:
            metadata["labels"] = dict(self.labels)
        spec: Dict[str, Any]
        if self.kind == "Service":
            spec = {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "ports": [dict(p) for p in self.ports],
            }
            if self.selector:
                spec["selector"] = dict(self.selector)
        elif self.kind == "ReplicationController":
            spec = {
                "replicas": 1,
                "selector": dict(self.selector),
                "template": {"metadata": {"labels": dict(self.selector)}, "spec": {}},
            }
        else:
            selector: Dict[str, Any] = {}
            if self.selector:
                selector["matchLabels"] = dict(self.selector)
            if self.match_expressions:
                selector["matchExpressions"] = [dict(e) for e in self.match_expressions]
            spec = {
                "selector": selector,
                "template": {"metadata": {"labels": dict(self.selector)}, "spec": {}},
            }
            if self.kind in ("Deployment", "StatefulSet", "ReplicaSet"):
                spec["replicas"] = 1
        return {
            "kind": self.kind,
            "apiVersion": f"{self.group}/v1" if self.group else "v1",
            "metadata": metadata,
            "spec": spec,
            "status": {},
        }
