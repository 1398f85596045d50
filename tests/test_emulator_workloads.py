"""The emulator's workloads and Services: discovery, GET/list, 404s and set-based selectors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from k8sstream import ApiError, Client
from k8sstream.testing import ApiServer, Container, Pod, Workload
from k8sstream.testing._model import match_label_selector


def _pod(name: str, **labels: str) -> Pod:
    return Pod(
        name=name, labels=labels, containers=[Container("app", ["sleep", "300"], stdin=False)]
    )


@pytest.fixture
def server():
    with ApiServer(with_demo_pod=False) as s:
        s.add_pod(_pod("web-0", app="web", track="stable"))
        s.add_pod(_pod("web-1", app="web", track="canary"))
        s.add_pod(_pod("db-0", app="db"))
        yield s


@pytest.fixture
def kc(server, tmp_path):
    with Client.from_kubeconfig(server.write_kubeconfig(tmp_path / "kubeconfig")) as c:
        yield c


def test_discovery_lists_the_groups_and_short_names(server, kc):
    groups = kc.get_json("/apis")["groups"]
    assert [g["name"] for g in groups] == ["apps", "batch"]
    assert kc.get_json("/apis/apps")["preferredVersion"]["groupVersion"] == "apps/v1"
    apps = {r["name"]: r for r in kc.get_json("/apis/apps/v1")["resources"]}
    assert apps["deployments"]["shortNames"] == ["deploy"]
    assert apps["statefulsets"]["shortNames"] == ["sts"]
    assert apps["daemonsets"]["kind"] == "DaemonSet"
    assert [r["name"] for r in kc.get_json("/apis/batch/v1")["resources"]] == ["jobs"]
    core = {r["name"]: r for r in kc.get_json("/api/v1")["resources"]}
    assert core["services"]["shortNames"] == ["svc"]
    assert core["pods"]["shortNames"] == ["po"]


def test_workloads_are_served_with_their_selectors(server, kc):
    server.add_workload("Deployment", "web", {"app": "web"}, labels={"team": "a"})
    server.add_workload(
        "StatefulSet",
        "canary",
        {"app": "web"},
        match_expressions=[{"key": "track", "operator": "In", "values": ["canary"]}],
    )
    server.add_workload("Job", "once", {"job": "once"}, namespace="batch-ns")
    server.add_workload(Workload("Service", "web", {"app": "web"}, ports=[{"port": 80}]))
    deploy = kc.get_json("/apis/apps/v1/namespaces/default/deployments/web")
    assert deploy["kind"] == "Deployment" and deploy["apiVersion"] == "apps/v1"
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert deploy["metadata"]["labels"] == {"team": "a"}
    sts = kc.get_json("/apis/apps/v1/namespaces/default/statefulsets/canary")
    assert sts["spec"]["selector"]["matchExpressions"][0]["operator"] == "In"
    job = kc.get_json("/apis/batch/v1/namespaces/batch-ns/jobs/once")
    assert job["apiVersion"] == "batch/v1"
    svc = kc.get_json("/api/v1/namespaces/default/services/web")
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["ports"] == [{"port": 80}]
    listed = kc.get_json("/apis/apps/v1/namespaces/default/deployments")
    assert listed["kind"] == "DeploymentList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    assert "batch-ns" in [n["metadata"]["name"] for n in kc.get_json("/api/v1/namespaces")["items"]]
    server.remove_workload("Deployment", "default", "web")
    with pytest.raises(ApiError) as info:
        kc.get_json("/apis/apps/v1/namespaces/default/deployments/web")
    assert info.value.status_code == 404
    assert info.value.message == 'deployments.apps "web" not found'
    with pytest.raises(ApiError) as info:
        kc.get_json("/api/v1/namespaces/default/services/nope")
    assert info.value.message == 'services "nope" not found'


def test_bad_workloads_are_refused(server):
    with pytest.raises(ValueError, match="unknown workload kind"):
        server.add_workload("CronJob", "x", {})
    with pytest.raises(ValueError, match="matchExpressions"):
        server.add_workload("Service", "x", {}, match_expressions=[{"key": "a"}])
    server.add_workload("Deployment", "web", {"app": "web"})
    with pytest.raises(ValueError, match="already exists"):
        server.add_workload("Deployment", "web", {"app": "web"})


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("app=web", ["web-0", "web-1"]),
        ("app in (web,db)", ["db-0", "web-0", "web-1"]),
        ("app=web,track notin (canary)", ["web-0"]),
        ("track notin (canary)", ["db-0", "web-0"]),
        ("track", ["web-0", "web-1"]),
        ("!track", ["db-0"]),
        ("app!=web", ["db-0"]),
        ("", ["db-0", "web-0", "web-1"]),
    ],
)
def test_pod_lists_take_set_based_selectors(kc, selector, expected):
    pods = kc.get_json("/api/v1/namespaces/default/pods", {"labelSelector": selector})
    assert [p["metadata"]["name"] for p in pods["items"]] == expected


def test_unparsable_selectors_are_a_400(kc):
    with pytest.raises(ApiError) as info:
        kc.get_json("/api/v1/namespaces/default/pods", {"labelSelector": "app in (web"})
    assert info.value.status_code == 400


def test_selector_matcher_edges():
    assert match_label_selector("a in (x, y)", {"a": "y"})
    assert not match_label_selector("a in (x,y)", {})
    assert match_label_selector("a notin (x)", {})
    assert match_label_selector("a==x, b", {"a": "x", "b": ""})


@pytest.mark.kubectl
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on the PATH")
def test_kubectl_resolves_workloads_against_the_emulator(server, tmp_path: Path):
    """The real kubectl finds the workloads through discovery and picks the pods we pick."""
    from k8sstream import resolve_target

    server.add_workload("Deployment", "web", {"app": "web"})
    server.add_workload("Service", "db", {"app": "db"})
    server.add_workload(
        "StatefulSet",
        "canary",
        {},
        match_expressions=[{"key": "track", "operator": "In", "values": ["canary"]}],
    )
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    with Client.from_kubeconfig(kubeconfig) as kc:
        for target in ("deploy/web", "deployments.apps/web", "svc/db", "sts/canary"):
            result = subprocess.run(
                ["kubectl", "--kubeconfig", kubeconfig, "exec", target, "--", "sh", "-c", "pwd"],
                capture_output=True,
                env=env,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            picked = Path(result.stdout.decode().strip()).parent.name
            assert picked == resolve_target(target, client=kc)
        result = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "exec", "ds/nope", "--", "true"],
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 1
        assert b'daemonsets.apps "nope" not found' in result.stderr
