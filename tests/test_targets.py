"""Targets resolved as kubectl resolves them: parsing, selectors, the ActivePods order, the
API against the emulator, waiting for a pod, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any, Dict, Optional

import pytest

from k8sstream import ApiError, Client, ConfigError, PodStateError, resolve_target
from k8sstream.targets import label_selector, parse_target, pick_pod, selector_for
from k8sstream.testing import ApiServer, Container, Pod

CLI = [sys.executable, "-m", "k8sstream"]


@pytest.mark.parametrize(
    "target, expected",
    [
        ("web-0", ("pods", "web-0")),
        ("pod/web-0", ("pods", "web-0")),
        ("po/web-0", ("pods", "web-0")),
        ("deploy/web", ("deployments", "web")),
        ("Deployment/web", ("deployments", "web")),
        ("deployments.apps/web", ("deployments", "web")),
        ("deployments.v1.apps/web", ("deployments", "web")),
        ("sts/db", ("statefulsets", "db")),
        ("statefulset/db", ("statefulsets", "db")),
        ("ds/agent", ("daemonsets", "agent")),
        ("rs/web-abc", ("replicasets", "web-abc")),
        ("job/once", ("jobs", "once")),
        ("jobs.batch/once", ("jobs", "once")),
        ("svc/web", ("services", "web")),
        ("service/web", ("services", "web")),
        ("rc/old", ("replicationcontrollers", "old")),
    ],
)
def test_parse_target(target, expected):
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    "target", ["", "pod/", "deploy/a/b", "cronjob/x", "configmap/x", "deployments.batch/x"]
)
def test_parse_target_refuses(target):
    with pytest.raises(ConfigError):
        parse_target(target)


def test_label_selector_matches_labelselectorasselector():
    assert label_selector(None) == ""
    assert label_selector({}) == ""
    assert label_selector({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["z", "db"]},
            {"key": "env", "operator": "In", "values": ["prod"]},
            {"key": "gpu", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
        ],
    }
    assert label_selector(selector) == "app=web,env in (prod),!gpu,tier notin (db,z),zone"
    with pytest.raises(ConfigError):
        label_selector({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
    with pytest.raises(ConfigError):
        label_selector({"matchExpressions": [{"key": "a", "operator": "In"}]})


def test_selector_for_objects():
    assert selector_for({"kind": "Service", "spec": {"selector": {"app": "web"}}}) == "app=web"
    with pytest.raises(ConfigError, match="Service is defined without a selector"):
        selector_for({"kind": "Service", "metadata": {"name": "ext"}, "spec": {}})
    assert (
        selector_for({"kind": "Job", "spec": {"selector": {"matchLabels": {"job": "x"}}}})
        == "job=x"
    )
    with pytest.raises(ConfigError):
        selector_for({"kind": "ConfigMap"})


def _pod(
    name: str,
    *,
    node: str = "n1",
    phase: str = "Running",
    ready: Optional[str] = "2025-01-01T00:00:00Z",
    restarts: int = 0,
    created: str = "2025-01-01T00:00:00Z",
) -> Dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if ready:
        conditions[0]["lastTransitionTime"] = ready
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"restartCount": restarts}],
        },
    }


@pytest.mark.parametrize(
    "loser, winner",
    [
        (_pod("a", node=""), _pod("b")),  # 1. assigned beats unassigned
        (_pod("a", phase="Pending"), _pod("b")),  # 2. Running beats Pending
        (_pod("a", phase="Pending"), _pod("b", phase="Unknown")),  # Unknown beats Pending
        (_pod("a", phase="Unknown"), _pod("b", ready=None)),  # Running, even not ready
        (_pod("a", ready=None), _pod("b")),  # 3. ready beats not ready
        (_pod("a", ready="2025-01-02T00:00:00Z"), _pod("b")),  # 4. ready for longer
        (_pod("a", restarts=3), _pod("b", restarts=1)),  # 5. fewer restarts
        (_pod("a", created="2025-01-02T00:00:00Z"), _pod("b")),  # 6. older
        (_pod("a", ready=None, created="2025-01-02T00:00:00Z"), _pod("b", ready=None)),
    ],
)
def test_pick_pod_follows_reverse_active_pods(loser, winner):
    assert pick_pod([loser, winner]) is winner
    assert pick_pod([winner, loser]) is winner


def test_pick_pod_ties_keep_the_list_order():
    first, second = _pod("a"), _pod("b")
    assert pick_pod([first, second]) is first
    assert pick_pod([]) is None


def _sleeper(name: str, **kwargs: Any) -> Pod:
    return Pod(name=name, containers=[Container("app", ["sleep", "300"], stdin=False)], **kwargs)


@pytest.fixture
def server():
    with ApiServer(with_demo_pod=False) as s:
        s.add_pod(_sleeper("web-pending", labels={"app": "web"}, phase="Pending"))
        s.add_pod(_sleeper("web-unscheduled", labels={"app": "web"}, node_name=""))
        s.add_pod(_sleeper("web-running", labels={"app": "web"}))
        s.add_pod(_sleeper("db-0", labels={"app": "db"}, namespace="data"))
        s.add_workload("Deployment", "web", {"app": "web"})
        s.add_workload("ReplicaSet", "web-abc", {"app": "web"})
        s.add_workload("Service", "web", {"app": "web"})
        s.add_workload("Service", "external", {})
        s.add_workload("StatefulSet", "db", {"app": "db"}, namespace="data")
        s.add_workload("Job", "later", {"job": "later"})
        yield s


@pytest.fixture
def kc(server, tmp_path):
    with Client.from_kubeconfig(server.write_kubeconfig(tmp_path / "kubeconfig")) as c:
        yield c


def test_resolve_workloads_against_the_emulator(server, kc):
    assert resolve_target("deploy/web", client=kc) == "web-running"
    assert resolve_target("rs/web-abc", client=kc) == "web-running"
    assert resolve_target("svc/web", client=kc) == "web-running"
    assert resolve_target("sts/db", client=kc, namespace="data") == "db-0"
    assert kc.check_output(["echo", "hi"], pod=resolve_target("deploy/web", client=kc)) == b"hi\n"


def test_pod_targets_need_no_request(server, kc):
    before = len(server.requests)
    assert resolve_target("pod/anything", client=kc) == "anything"
    assert resolve_target("anything", client=kc) == "anything"
    assert len(server.requests) == before


def test_resolve_errors(server, kc):
    with pytest.raises(ApiError) as info:
        resolve_target("deploy/nope", client=kc)
    assert info.value.status_code == 404
    with pytest.raises(ConfigError, match="without a selector"):
        resolve_target("svc/external", client=kc)
    with pytest.raises(PodStateError, match="no pod matches job/later"):
        resolve_target("job/later", client=kc, timeout=0)


def test_resolve_waits_for_a_pod_to_appear(server, kc):
    timer = threading.Timer(
        0.3, lambda: server.add_pod(_sleeper("later-0", labels={"job": "later"}))
    )
    timer.start()
    try:
        assert resolve_target("job/later", client=kc, timeout=10) == "later-0"
    finally:
        timer.join()


def test_cli_exec_and_cp_accept_workload_targets(server, tmp_path):
    env = dict(os.environ, KUBECONFIG=str(server.write_kubeconfig(tmp_path / "kc")))
    result = subprocess.run(
        [*CLI, "exec", "deploy/web", "--", "sh", "-c", 'basename "$(dirname "$PWD")"'],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"web-running\n"
    result = subprocess.run(
        [*CLI, "exec", "-n", "data", "sts/db", "--", "true"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [*CLI, "exec", "svc/external", "--", "true"], env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == b"error: invalid service 'external': Service is defined without a selector\n"
    )
