"""kubeconfig loading as kubectl does it, checked against the emulator where it matters."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

import k8sstream
from k8sstream import Client, ClusterConfig, ConfigError, load_kubeconfig
from k8sstream.testing import ApiServer, Container, Pod
from tests.test_tls import server_context

trustme = pytest.importorskip("trustme")


def dump(path: Path, doc: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


def test_kubeconfig_merge_first_file_wins_relative_paths_and_context(tmp_path, monkeypatch):
    ca = trustme.CA()
    with (
        ApiServer(ssl_context=server_context(ca, "127.0.0.1"), token="right") as good,
        ApiServer(token="other") as decoy,
    ):
        good.add_pod(Pod(name="api-0", namespace="prod", containers=[Container("app")]))
        # Second file, another directory: the real cluster, its CA by a relative path.
        (tmp_path / "b" / "pki").mkdir(parents=True)
        ca.cert_pem.write_to_path(str(tmp_path / "b" / "pki" / "ca.pem"))
        second = dump(
            tmp_path / "b" / "config",
            {
                "current-context": "decoy",  # loses: the first file sets current-context
                "clusters": [
                    {
                        "name": "prod",
                        "cluster": {"server": good.url, "certificate-authority": "pki/ca.pem"},
                    },
                    {"name": "shared", "cluster": {"server": "http://127.0.0.1:1"}},
                ],
                "users": [{"name": "admin", "user": {"token": "right"}}],
                "contexts": [
                    {
                        "name": "prod",
                        "context": {"cluster": "prod", "user": "admin", "namespace": "prod"},
                    },
                    {"name": "decoy", "context": {"cluster": "shared"}},
                ],
            },
        )
        first = dump(
            tmp_path / "a" / "config",
            {
                "current-context": "prod",
                # Same names as in the second file: the first file's entries win.
                "clusters": [{"name": "shared", "cluster": {"server": decoy.url}}],
                "users": [{"name": "ops", "user": {"token": "other"}}],
                "contexts": [{"name": "decoy", "context": {"cluster": "shared", "user": "ops"}}],
            },
        )
        missing = str(tmp_path / "missing")
        monkeypatch.setenv("KUBECONFIG", os.pathsep.join([missing, first, second]))
        with Client.from_kubeconfig() as client:
            assert client.namespace == "prod"  # current-context from the first file
            assert client.config.source.startswith(second)
            assert client.check_output(["echo", "merged"], pod="api-0") == b"merged\n"
        with Client.from_kubeconfig(context="decoy", namespace="default") as client:
            # "shared" is defined in both files: the first one's server is used.
            assert client.config.server == decoy.url
            assert client.check_output(["echo", "decoy"], pod="demo") == b"decoy\n"
        with pytest.raises(ConfigError, match="context 'nope' is not defined"):
            load_kubeconfig(context="nope")


def test_explicit_path_and_default_path(tmp_path, monkeypatch, emulator):
    path = emulator.write_kubeconfig(tmp_path / "kc", namespace="ns1")
    assert load_kubeconfig(path).namespace == "ns1"
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match=r"\.kube/config"):
        load_kubeconfig()
    emulator.write_kubeconfig(dump(tmp_path / "home" / ".kube" / "config", ""), namespace="ns2")
    assert load_kubeconfig().namespace == "ns2"


GOOD_CLUSTER = {"name": "c", "cluster": {"server": "https://k8s.example:6443"}}
GOOD_CONTEXT = {"name": "x", "context": {"cluster": "c", "user": "u"}}


def config_with(cluster: Any = None, user: Any = None) -> Any:
    return {
        "current-context": "x",
        "clusters": [{"name": "c", "cluster": {**GOOD_CLUSTER["cluster"], **(cluster or {})}}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [GOOD_CONTEXT],
    }


@pytest.mark.parametrize(
    "doc, expected",
    [
        ("clusters: [\n", "not valid YAML at line"),
        ("- a\n- b\n", "must be a mapping at the top level"),
        ({"clusters": {"c": {}}}, "clusters must be a list"),
        ({"users": [{"user": {}}]}, r"users\[0\] must be a mapping with a string name"),
        ({"current-context": "x", "contexts": [GOOD_CONTEXT]}, "cluster 'c'"),
        (
            {
                "current-context": "x",
                "clusters": [{"name": "c", "cluster": {}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [GOOD_CONTEXT],
            },
            r"clusters\[c\]\.cluster\.server is missing",
        ),
        (config_with({"server": "k8s:6443"}), r"clusters\[c\]\.cluster\.server must start"),
        (
            config_with({"certificate-authority-data": "not base64!"}),
            r"certificate-authority-data is not valid base64",
        ),
        (
            config_with({"certificate-authority": "nowhere/ca.pem"}),
            r"certificate-authority refers to .*nowhere/ca\.pem",
        ),
        (config_with({"insecure-skip-tls-verify": "yes"}), "insecure-skip-tls-verify must be"),
        (config_with({"proxy-url": "ftp://p"}), r"proxy-url: proxy scheme 'ftp'"),
        (config_with({"tls-server-name": 5}), r"tls-server-name must be a string"),
        (config_with(user={"tokenFile": "missing-token"}), r"tokenFile refers to"),
        (config_with(user={"client-certificate-data": "QQ=="}), r"client-key\(-data\) is missing"),
        (config_with(user={"password": "pw"}), "password is set without username"),
        (
            config_with(user={"username": "a", "password": "b", "token": "c"}),
            "cannot both be set",
        ),
        (config_with(user={"auth-provider": {"name": "gcp"}}), "auth-provider"),
        (config_with(user={"exec": {"command": "x"}}), r"exec\.apiVersion is missing"),
        (
            config_with(
                user={
                    "exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}
                }
            ),
            "is not supported",
        ),
        (
            config_with(
                user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}}
            ),
            "interactiveMode must be set",
        ),
        (
            config_with(
                user={
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "x",
                        "interactiveMode": "Sometimes",
                    }
                }
            ),
            "interactiveMode 'Sometimes'",
        ),
        (
            config_with(
                user={
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "x",
                        "env": [{"name": "A"}],
                    }
                }
            ),
            r"exec\.env\[0\] must have a string name and value",
        ),
        (
            config_with(
                user={
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "x",
                        "args": "--one",
                    }
                }
            ),
            r"exec\.args must be a list of strings",
        ),
    ],
)
def test_every_bad_config_is_a_config_error_naming_file_and_key(tmp_path, doc, expected):
    path = dump(tmp_path / "bad-kubeconfig", doc)
    with pytest.raises(ConfigError, match=expected) as info:
        load_kubeconfig(path)
    assert path in str(info.value)
    assert isinstance(info.value, ValueError)


def test_secrets_never_in_repr_or_errors(tmp_path):
    doc = config_with(
        {"proxy-url": "http://proxyuser:proxy-SECRET@proxy:3128"},
        {
            "username": "admin",
            "password": "pw-SECRET",
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "x",
                "env": [{"name": "API_KEY", "value": "env-SECRET"}],
            },
        },
    )
    config = load_kubeconfig(dump(tmp_path / "kc", doc))
    with Client(config) as client:
        text = repr(config) + repr(client) + repr(client.proxy) + str(config.exec_plugin is None)
    assert "SECRET" not in text
    assert config.username == "admin" and config.exec_plugin is not None

    token_config = ClusterConfig(server="https://k", token="tok-SECRET")
    assert "SECRET" not in repr(token_config)


def test_exec_command_paths_resolve_like_kubectl(tmp_path):
    def command(value: str) -> str:
        doc = config_with(
            user={
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": value,
                }
            }
        )
        config = load_kubeconfig(dump(tmp_path / "dir" / "kc", doc))
        assert config.exec_plugin is not None
        return config.exec_plugin.command

    assert command("aws") == "aws"  # looked up on PATH
    assert command("./bin/plugin") == str(tmp_path / "dir" / "bin" / "plugin")
    assert command("/opt/plugin") == "/opt/plugin"


def test_certificate_data_is_decoded(tmp_path):
    ca = trustme.CA()
    pem = ca.cert_pem.bytes()
    doc = config_with({"certificate-authority-data": base64.b64encode(pem).decode()})
    assert load_kubeconfig(dump(tmp_path / "kc", doc)).ca_data == pem
    garbage = config_with({"certificate-authority-data": base64.b64encode(b"nope").decode()})
    with pytest.raises(ConfigError, match="certificate-authority"):
        Client(load_kubeconfig(dump(tmp_path / "kc2", garbage)))


def test_module_level_default_client_uses_kubeconfig(tmp_path, monkeypatch, emulator):
    monkeypatch.setenv("KUBECONFIG", emulator.write_kubeconfig(tmp_path / "kc"))
    monkeypatch.setattr("k8sstream.client._default", None)
    try:
        assert k8sstream.check_output(["echo", "env"], pod="demo") == b"env\n"
    finally:
        k8sstream.client.default_client().close()
        monkeypatch.setattr("k8sstream.client._default", None)
