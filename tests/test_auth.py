"""Credentials against the emulator: exec credential plugins (real executable scripts), token
files that rotate, in-cluster service accounts, and the retry after a 401."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import k8sstream
from k8sstream import Client, ConfigError
from k8sstream._request import pod_path, remote_command_query
from k8sstream.testing import ApiServer, Container, Pod
from tests.test_tls import server_context, write_kubeconfig

trustme = pytest.importorskip("trustme")

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"

# A credential plugin as kubectl runs one: it reads KUBERNETES_EXEC_INFO, writes an
# ExecCredential to stdout, and here also keeps a record of each run for the test to read.
PLUGIN = r"""
import datetime, json, os, sys
state = os.environ["PLUGIN_STATE"]
runs = sorted(p for p in os.listdir(state) if p.startswith("run-"))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
record = {"info": info, "argv": sys.argv[1:], "color": os.environ.get("PLUGIN_COLOR")}
with open(os.path.join(state, "run-%03d.json" % len(runs)), "w") as f:
    json.dump(record, f)
mode = open(os.path.join(state, "mode")).read().strip() if os.path.exists(
    os.path.join(state, "mode")) else "token"
if mode == "fail":
    print("secret-in-stdout-of-failing-plugin")
    sys.exit(3)
if mode == "garbage":
    print("not json but a secret-token-in-garbage")
    sys.exit(0)
status = {}
if mode == "cert":
    status["clientCertificateData"] = open(os.path.join(state, "cert.pem")).read()
    status["clientKeyData"] = open(os.path.join(state, "key.pem")).read()
else:
    status["token"] = open(os.path.join(state, "token")).read().strip()
ttl = os.environ.get("PLUGIN_TTL")
if ttl:
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float(ttl))
    status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


class Plugin:
    """The plugin script and its state directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "plugin"
        self.dir.mkdir()
        (tmp_path / "bin").mkdir()
        self.path = tmp_path / "bin" / "get-token"
        self.path.write_text(f"#!{sys.executable}\n{PLUGIN}")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def set_token(self, token: str) -> None:
        (self.dir / "token").write_text(token)

    def set_mode(self, mode: str) -> None:
        (self.dir / "mode").write_text(mode)

    def runs(self) -> List[Dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.dir.glob("run-*.json"))]


@pytest.fixture
def plugin(tmp_path) -> Plugin:
    return Plugin(tmp_path)


def exec_kubeconfig(
    tmp_path: Path,
    server: ApiServer,
    plugin: Plugin,
    *,
    api_version: str = V1,
    ttl: Optional[float] = None,
    cluster: Optional[Dict[str, Any]] = None,
    **exec_extra: Any,
) -> str:
    env = [{"name": "PLUGIN_STATE", "value": str(plugin.dir)}]
    env.append({"name": "PLUGIN_COLOR", "value": "teal"})
    if ttl is not None:
        env.append({"name": "PLUGIN_TTL", "value": str(ttl)})
    exec_conf: Dict[str, Any] = {
        "apiVersion": api_version,
        "command": "./bin/get-token",  # relative to the kubeconfig's directory
        "args": ["--audience", "k8s"],
        "env": env,
        "interactiveMode": "Never",
        **exec_extra,
    }
    return write_kubeconfig(
        tmp_path / "kubeconfig", {"server": server.url, **(cluster or {})}, {"exec": exec_conf}
    )


def echo(client: Client, text: str = "hi") -> None:
    assert client.check_output(["echo", text], pod="demo") == f"{text}\n".encode()


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_exec_plugin_token_is_cached_and_gets_args_env_and_cluster_info(
    tmp_path, plugin, api_version
):
    with ApiServer(token="plugin-token-1") as server:
        plugin.set_token("plugin-token-1")
        extension = {"name": "client.authentication.k8s.io/exec", "extension": {"aud": "x"}}
        path = exec_kubeconfig(
            tmp_path,
            server,
            plugin,
            api_version=api_version,
            provideClusterInfo=True,
            cluster={"extensions": [extension]},
        )
        with Client.from_kubeconfig(path) as client:
            echo(client)
            echo(client)
            assert "plugin-token-1" not in repr(client) + repr(client.config)
            assert "teal" not in repr(client.config)
    runs = plugin.runs()
    assert len(runs) == 1  # no expirationTimestamp: cached until a 401
    info = runs[0]["info"]
    assert info["apiVersion"] == api_version and info["kind"] == "ExecCredential"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == server.url
    assert info["spec"]["cluster"]["config"] == {"aud": "x"}
    assert runs[0]["argv"] == ["--audience", "k8s"] and runs[0]["color"] == "teal"


def test_exec_plugin_without_cluster_info(tmp_path, plugin):
    with ApiServer(token="t") as server:
        plugin.set_token("t")
        with Client.from_kubeconfig(exec_kubeconfig(tmp_path, server, plugin)) as client:
            echo(client)
    assert "cluster" not in plugin.runs()[0]["info"]["spec"]


def test_expiring_token_is_fetched_again_after_expiry(tmp_path, plugin):
    with ApiServer(token="short-lived-1") as server:
        plugin.set_token("short-lived-1")
        path = exec_kubeconfig(tmp_path, server, plugin, ttl=1.0)
        with Client.from_kubeconfig(path) as client:
            echo(client)
            echo(client)
            assert len(plugin.runs()) == 1  # still valid: cached
            time.sleep(1.05)
            # The old token has expired; the server now only accepts the new one.
            server.token = "short-lived-2"
            plugin.set_token("short-lived-2")
            echo(client)
            assert len(plugin.runs()) == 2


def test_401_on_the_rest_call_retries_once_with_fresh_credentials(tmp_path, plugin):
    with ApiServer(token="rotating-1") as server:
        plugin.set_token("rotating-1")
        path = exec_kubeconfig(tmp_path, server, plugin, ttl=3600)
        with Client.from_kubeconfig(path) as client:
            echo(client)
            server.token = "rotating-2"  # revoked early, despite the expiry
            plugin.set_token("rotating-2")
            echo(client)
            assert len(plugin.runs()) == 2
            # Still refused with the fresh credentials: one retry only, then the 401.
            server.token = "something-else"
            with pytest.raises(k8sstream.ApiError) as info:
                echo(client)
            assert info.value.status_code == 401 and "rotating-2" not in str(info.value)
            assert len(plugin.runs()) == 3


def test_401_on_the_websocket_upgrade_retries_once_with_fresh_credentials(tmp_path, plugin):
    with ApiServer(token="ws-1") as server:
        plugin.set_token("ws-1")
        path = exec_kubeconfig(tmp_path, server, plugin)
        with Client.from_kubeconfig(path) as client:
            echo(client)
            server.token = "ws-2"
            plugin.set_token("ws-2")
            query = remote_command_query(
                ["true"], "main", stdin=False, stdout=True, stderr=True, tty=False
            )
            ws, chosen = client.dial(
                pod_path("default", "demo", "exec"), query, ["v5.channel.k8s.io"]
            )
            ws.shutdown()
            assert chosen == "v5.channel.k8s.io"
    assert len(plugin.runs()) == 2


def test_exec_plugin_client_certificate(tmp_path, plugin):
    ca = trustme.CA()
    bob = ca.issue_cert("bob", common_name="bob")
    (plugin.dir / "cert.pem").write_bytes(bob.cert_chain_pems[0].bytes())
    (plugin.dir / "key.pem").write_bytes(bob.private_key_pem.bytes())
    plugin.set_mode("cert")
    ctx = server_context(ca, "127.0.0.1")
    with ApiServer(ssl_context=ctx, client_ca=ca.cert_pem.bytes()) as server:
        import base64

        cluster = {"certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode()}
        path = exec_kubeconfig(tmp_path, server, plugin, cluster=cluster)
        with Client.from_kubeconfig(path) as client:
            echo(client)
            echo(client)
    assert len(plugin.runs()) == 1


def test_missing_plugin_shows_the_install_hint(tmp_path, emulator):
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": emulator.url},
        {
            "exec": {
                "apiVersion": V1,
                "command": "k8sstream-no-such-plugin",
                "interactiveMode": "Never",
                "installHint": "Install it with: brew install no-such-plugin",
            }
        },
    )
    with Client.from_kubeconfig(path) as client, pytest.raises(ConfigError) as info:
        echo(client)
    text = str(info.value)
    assert "k8sstream-no-such-plugin" in text and "was not found" in text
    assert "brew install no-such-plugin" in text
    assert path in text and "users[u].user.exec" in text


@pytest.mark.parametrize(
    "mode, expected",
    [("fail", "failed with exit code 3"), ("garbage", "is not an ExecCredential")],
)
def test_failing_plugin_errors_never_show_its_output(tmp_path, plugin, emulator, mode, expected):
    plugin.set_mode(mode)
    with Client.from_kubeconfig(exec_kubeconfig(tmp_path, emulator, plugin)) as client:
        with pytest.raises(ConfigError, match=expected) as info:
            echo(client)
    assert "secret" not in str(info.value)


def test_interactive_mode_always_needs_a_terminal(tmp_path, plugin, emulator, monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 (closed below)
    try:
        path = exec_kubeconfig(tmp_path, emulator, plugin, interactiveMode="Always")
        with Client.from_kubeconfig(path) as client:
            with pytest.raises(ConfigError, match="interactive terminal"):
                echo(client)
    finally:
        sys.stdin.close()
    assert plugin.runs() == []


def test_interactive_mode_if_available_without_a_terminal(tmp_path, plugin, monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 (closed below)
    try:
        with ApiServer(token="t") as server:
            plugin.set_token("t")
            path = exec_kubeconfig(tmp_path, server, plugin, interactiveMode="IfAvailable")
            with Client.from_kubeconfig(path) as client:
                echo(client)
    finally:
        sys.stdin.close()
    assert plugin.runs()[0]["info"]["spec"]["interactive"] is False


def test_plugin_answering_with_another_api_version_is_refused(tmp_path, plugin, emulator):
    path = exec_kubeconfig(tmp_path, emulator, plugin, api_version=V1)
    plugin.path.write_text(
        plugin.path.read_text().replace('info["apiVersion"], "kind"', '"v999", "kind"')
    )
    plugin.set_token("t")
    with Client.from_kubeconfig(path) as client, pytest.raises(ConfigError, match="v999"):
        echo(client)


# --- token files and in-cluster -------------------------------------------------------------


def test_token_file_is_re_read_when_it_changes(tmp_path):
    with ApiServer(token="file-token-1") as server:
        (tmp_path / "secrets").mkdir()
        token_file = tmp_path / "secrets" / "token"
        token_file.write_text("file-token-1\n")
        path = write_kubeconfig(
            tmp_path / "kc", {"server": server.url}, {"tokenFile": "secrets/token"}
        )
        with Client.from_kubeconfig(path) as client:
            echo(client)
            server.token = "file-token-2"
            token_file.write_text("file-token-2\n")
            echo(client)
            assert "file-token" not in repr(client.config)


def test_in_cluster_service_account(tmp_path, monkeypatch):
    ca = trustme.CA()
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("sa-token-1")
    (sa / "namespace").write_text("team-a\n")
    ca.cert_pem.write_to_path(str(sa / "ca.crt"))
    with ApiServer(ssl_context=server_context(ca, "127.0.0.1"), token="sa-token-1") as server:
        server.add_pod(Pod(name="web", namespace="team-a", containers=[Container("app")]))
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
        monkeypatch.delenv("POD_NAMESPACE", raising=False)
        with Client.in_cluster(service_account_dir=str(sa)) as client:
            assert client.namespace == "team-a"
            assert client.check_output(["echo", "in"], pod="web") == b"in\n"
            # The kubelet rotates the projected token: the file is re-read.
            server.token = "sa-token-2"
            (sa / "token").write_text("sa-token-2")
            assert client.check_output(["echo", "rotated"], pod="web") == b"rotated\n"

        # Without any kubeconfig, the default loader picks the in-cluster configuration.
        monkeypatch.setattr("k8sstream.config.SERVICE_ACCOUNT_DIR", str(sa))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "does-not-exist"))
        monkeypatch.setenv("POD_NAMESPACE", "default")
        with Client.from_kubeconfig() as client:
            assert client.namespace == "default"
            echo(client, "fallback")


def test_in_cluster_errors_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        Client.in_cluster(service_account_dir=str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match="service-account token"):
        Client.in_cluster(service_account_dir=str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    (tmp_path / "token").write_text("x")
    (tmp_path / "ca.crt").write_text("")
    config = k8sstream.config.load_incluster_config(service_account_dir=str(tmp_path))
    assert config.server == "https://[fd00::1]:443" and config.namespace == "default"
