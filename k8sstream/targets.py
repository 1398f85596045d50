"""Targets as kubectl accepts them (``web-0``, ``pod/web-0``, ``deploy/web``, ``sts/db``,
``ds/agent``, ``rs/x``, ``job/x``, ``rc/x``, ``svc/web``), resolved to one pod the way
``kubectl exec``/``attach``/``port-forward`` resolve them.

kubectl (``polymorphichelpers.AttachablePodForObject``) takes the object's pod selector
(``spec.selector``; a Service's ``spec.selector`` map), lists the pods that match it, sorts them
with ``sort.Reverse(podutils.ActivePods)`` and takes the first: assigned to a node before
unassigned, Running before Unknown before Pending, ready before not ready, ready for longer
first, fewer restarts first, older first. When nothing matches it waits for a pod to appear
(``--pod-running-timeout``, 1 minute). A ``pod/x`` target is the pod itself, whatever its state.

Every call here blocks on REST requests to the API server.
"""

from __future__ import annotations

import calendar
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from .errors import ConfigError, PodStateError

__all__ = [
    "label_selector",
    "list_pods",
    "parse_target",
    "pick_pod",
    "resolve_target",
    "selector_for",
]

#: How long kubectl waits for a pod to match (``--pod-running-timeout``).
DEFAULT_TIMEOUT = 60.0
_POLL_SECONDS = 0.5

# resource -> (API group, kind); the aliases kubectl's discovery gives each of them.
_RESOURCES: Dict[str, Tuple[str, str]] = {
    "pods": ("", "Pod"),
    "deployments": ("apps", "Deployment"),
    "statefulsets": ("apps", "StatefulSet"),
    "daemonsets": ("apps", "DaemonSet"),
    "replicasets": ("apps", "ReplicaSet"),
    "jobs": ("batch", "Job"),
    "services": ("", "Service"),
    "replicationcontrollers": ("", "ReplicationController"),
}
_ALIASES: Dict[str, str] = {
    "po": "pods",
    "deploy": "deployments",
    "sts": "statefulsets",
    "ds": "daemonsets",
    "rs": "replicasets",
    "svc": "services",
    "rc": "replicationcontrollers",
}
for _resource, (_group, _kind) in _RESOURCES.items():
    _ALIASES[_resource] = _resource
    _ALIASES[_kind.lower()] = _resource


def parse_target(target: str) -> Tuple[str, str]:
    """Split a target into ``(resource, name)``: ``"deploy/web"`` -> ``("deployments", "web")``.

    A bare name is a pod. ``TYPE.GROUP/name`` and ``TYPE.VERSION.GROUP/name`` are accepted
    (``deployments.apps/web``, ``deployments.v1.apps/web``).

    Raises:
        ConfigError: an empty name or a type kubectl cannot exec into.
    """
    kind, sep, name = target.partition("/")
    if not sep:
        kind, name = "pods", target
    if not name or "/" in name:
        raise ConfigError(f"invalid target {target!r}: expected NAME or TYPE/NAME")
    type_name, _, group = kind.lower().partition(".")
    resource = _ALIASES.get(type_name)
    if resource is None:
        raise ConfigError(
            f"cannot resolve {target!r} to a pod: the type must be one of "
            "pod, deployment, statefulset, daemonset, replicaset, job, service, "
            "replicationcontroller (or their short names)"
        )
    expected = _RESOURCES[resource][0]
    if group and group.split(".")[-1] != (expected or "v1") and group not in ("v1", "core"):
        raise ConfigError(f"cannot resolve {target!r}: {type_name} is not in group {group!r}")
    return resource, name


def label_selector(selector: Optional[Mapping[str, Any]]) -> str:
    """A ``metav1.LabelSelector`` as the selector string ``LabelSelectorAsSelector`` gives.

    An empty selector matches everything (``""``), as in Kubernetes.

    Raises:
        ConfigError: an unknown operator or an invalid requirement.
    """
    if not selector:
        return ""
    requirements: List[Tuple[str, str]] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        requirements.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator")
        values = sorted(str(v) for v in expr.get("values") or [])
        if op in ("In", "NotIn"):
            if not values:
                raise ConfigError(f"invalid label selector: {op} needs values for key {key!r}")
            word = "in" if op == "In" else "notin"
            requirements.append((key, f"{key} {word} ({','.join(values)})"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                raise ConfigError(f"invalid label selector: {op} takes no values ({key!r})")
            requirements.append((key, key if op == "Exists" else f"!{key}"))
        else:
            raise ConfigError(f"invalid label selector: unknown operator {op!r}")
    # labels.Selector sorts its requirements by key.
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0]))


def selector_for(obj: Mapping[str, Any]) -> str:
    """The pod selector of a workload or Service object (``SelectorsForObject``).

    Raises:
        ConfigError: a Service without a selector, or an object kind that selects no pods.
    """
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    if kind in ("Service", "ReplicationController"):
        selector = spec.get("selector") or {}
        if not selector and kind == "Service":
            raise ConfigError(f"invalid service '{name}': Service is defined without a selector")
        return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        if spec.get("selector") is None:
            raise ConfigError(f"{kind} {name!r} has no spec.selector")
        return label_selector(spec["selector"])
    raise ConfigError(f"selector for {kind} not implemented")


def list_pods(
    selector: str, namespace: Optional[str] = None, *, client: Any = None
) -> List[Dict[str, Any]]:
    """The pods matching a label selector (``""``: every pod) in one namespace, as JSON."""
    from .client import default_client

    client = client or default_client()
    ns = namespace or client.namespace
    params = {"labelSelector": selector} if selector else None
    result = client.get_json(f"/api/v1/namespaces/{quote(ns, safe='')}/pods", params)
    return list(result.get("items") or [])


def pick_pod(pods: Sequence[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The pod kubectl would pick: the first after ``sort.Reverse(podutils.ActivePods)``.

    Ties keep the list order (the API server lists by name), where Go's unstable sort may
    pick any of them.
    """
    if not pods:
        return None
    return sorted(pods, key=_activeness, reverse=True)[0]


def _timestamp(value: Any) -> Optional[float]:
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        return float(calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def _activeness(pod: Mapping[str, Any]) -> Tuple[Any, ...]:
    """A sort key where larger means "less" in ``ActivePods.Less`` reversed (more active)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    assigned = 1 if spec.get("nodeName") else 0
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    ready_since: Optional[float] = None
    ready = False
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
            if ready:
                ready_since = _timestamp(condition.get("lastTransitionTime"))
            break
    # Ready longer ranks higher; a zero (unknown) ready time ranks lowest (afterOrZero).
    ready_key = (0, 0.0) if not ready else (1, -ready_since) if ready_since else (0, 0.0)
    restarts = max(
        (int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []),
        default=0,
    )
    created = _timestamp((pod.get("metadata") or {}).get("creationTimestamp"))
    created_key = (1, -created) if created is not None else (0, 0.0)
    return (assigned, phase, int(ready), ready_key, -restarts, created_key)


def resolve_target(
    target: str,
    *,
    namespace: Optional[str] = None,
    client: Any = None,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> str:
    """The pod name that ``kubectl exec TARGET`` would use.

    ``web-0`` and ``pod/web-0`` name the pod itself (no request is made). For a workload or
    Service: GET the object, list the pods matching its selector and pick one as kubectl
    does; if none match, poll until one does or ``timeout`` seconds pass (``None`` waits
    forever, ``0`` does not wait).

    Raises:
        ConfigError: an unknown type, or an object without a usable selector.
        ApiError: the object does not exist (404) or may not be read.
        PodStateError: no pod matched within ``timeout``.
    """
    from .client import default_client

    resource, name = parse_target(target)
    if resource == "pods":
        return name
    client = client or default_client()
    ns = namespace or client.namespace
    group = _RESOURCES[resource][0]
    prefix = f"/apis/{group}/v1" if group else "/api/v1"
    obj = client.get_json(f"{prefix}/namespaces/{quote(ns, safe='')}/{resource}/{quote(name)}")
    obj.setdefault("kind", _RESOURCES[resource][1])
    selector = selector_for(obj)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pod = pick_pod(list_pods(selector, ns, client=client))
        if pod is not None:
            return str((pod.get("metadata") or {}).get("name"))
        if deadline is not None and time.monotonic() >= deadline:
            raise PodStateError(
                f"no pod matches {target} (selector {selector or '<everything>'!r}) "
                f"in namespace {ns}" + (f" after {timeout:g} s" if timeout else "")
            )
        remaining = _POLL_SECONDS if deadline is None else deadline - time.monotonic()
        time.sleep(max(0.0, min(_POLL_SECONDS, remaining)))
