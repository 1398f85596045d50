"""TLS against the emulator with certificates made at test time (trustme).

Every case goes through both paths that open connections: the REST pod lookup (requests) and
the WebSocket upgrade (``Client.dial``), so both report the same, specific TLSError.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any, Dict, Optional

import pytest
import yaml

import k8sstream
from k8sstream import ApiError, Client, ConfigError, TLSError
from k8sstream._request import pod_path, remote_command_query
from k8sstream.testing import ApiServer

trustme = pytest.importorskip("trustme")

TOKEN = "tls-test-token"


def server_context(ca: Any, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def write_kubeconfig(
    path: Any, cluster: Dict[str, Any], user: Optional[Dict[str, Any]] = None, **context: Any
) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", **context}}],
        "current-context": "ctx",
    }
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return str(path)


def exec_roundtrip(client: Client) -> None:
    result = k8sstream.run(
        ["sh", "-c", "tr a-z A-Z; exit 3"],
        pod="demo",
        input=b"over tls",
        capture_output=True,
        client=client,
    )
    assert (result.returncode, result.stdout) == (3, b"OVER TLS")


def dial_directly(client: Client) -> None:
    query = remote_command_query(["true"], "main", stdin=False, stdout=True, stderr=True, tty=False)
    ws, _ = client.dial(pod_path("default", "demo", "exec"), query, ["v5.channel.k8s.io"])
    ws.shutdown()


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


def test_good_ca_from_a_relative_file(ca, tmp_path):
    with ApiServer(ssl_context=server_context(ca, "127.0.0.1"), token=TOKEN) as server:
        (tmp_path / "certs").mkdir()
        ca.cert_pem.write_to_path(str(tmp_path / "certs" / "ca.pem"))
        path = write_kubeconfig(
            tmp_path / "kc",
            {"server": server.url, "certificate-authority": "certs/ca.pem"},
            {"token": TOKEN},
        )
        with Client.from_kubeconfig(path) as client:
            exec_roundtrip(client)
            dial_directly(client)


def test_wrong_ca_says_the_ca_is_not_trusted(ca, tmp_path):
    other = trustme.CA()
    with ApiServer(ssl_context=server_context(ca, "127.0.0.1"), token=TOKEN) as server:
        path = write_kubeconfig(
            tmp_path / "kc",
            {"server": server.url, "certificate-authority-data": _b64(other.cert_pem.bytes())},
            {"token": TOKEN},
        )
        with Client.from_kubeconfig(path) as client:
            for attempt in (exec_roundtrip, dial_directly):
                with pytest.raises(TLSError, match="not signed by a trusted certificate") as info:
                    attempt(client)
                assert "certificate-authority" in str(info.value)
                assert isinstance(info.value, ConnectionError)
                assert TOKEN not in str(info.value)


def test_wrong_hostname_says_the_name_does_not_match(ca, tmp_path):
    with ApiServer(ssl_context=server_context(ca, "api.example.test"), token=TOKEN) as server:
        path = write_kubeconfig(
            tmp_path / "kc",
            {"server": server.url, "certificate-authority-data": _b64(ca.cert_pem.bytes())},
            {"token": TOKEN},
        )
        with Client.from_kubeconfig(path) as client:
            for attempt in (exec_roundtrip, dial_directly):
                with pytest.raises(TLSError, match=r"for the name '127\.0\.0\.1'") as info:
                    attempt(client)
                assert "tls-server-name" in str(info.value)


def test_tls_server_name_overrides_the_checked_name(ca, tmp_path):
    ctx = server_context(ca, "kubernetes.default.svc")
    with ApiServer(ssl_context=ctx, token=TOKEN) as server:
        cluster = {"server": server.url, "certificate-authority-data": _b64(ca.cert_pem.bytes())}
        right = write_kubeconfig(
            tmp_path / "right",
            {**cluster, "tls-server-name": "kubernetes.default.svc"},
            {"token": TOKEN},
        )
        wrong = write_kubeconfig(
            tmp_path / "wrong",
            {**cluster, "tls-server-name": "kubernetes.other.svc"},
            {"token": TOKEN},
        )
        with Client.from_kubeconfig(right) as client:
            exec_roundtrip(client)
            dial_directly(client)
        with Client.from_kubeconfig(wrong) as client:
            with pytest.raises(TLSError, match=r"'kubernetes\.other\.svc'"):
                exec_roundtrip(client)


def test_client_certificate_from_relative_files(ca, tmp_path, monkeypatch):
    alice = ca.issue_cert("alice", common_name="alice")
    ctx = server_context(ca, "127.0.0.1")
    with ApiServer(ssl_context=ctx, client_ca=ca.cert_pem.bytes()) as server:
        alice.cert_chain_pems[0].write_to_path(str(tmp_path / "alice.crt"))
        alice.private_key_pem.write_to_path(str(tmp_path / "alice.key"))
        cluster = {"server": server.url, "certificate-authority-data": _b64(ca.cert_pem.bytes())}
        with_cert = write_kubeconfig(
            tmp_path / "kc",
            cluster,
            {"client-certificate": "alice.crt", "client-key": "alice.key"},
        )
        without = write_kubeconfig(tmp_path / "anon", cluster, {})

        # The key reaches OpenSSL through a private file that is gone right after loading.
        seen = []
        real_load = ssl.SSLContext.load_cert_chain

        def spy(self, certfile, keyfile=None, password=None):
            seen.append((os.stat(os.path.dirname(keyfile)).st_mode, os.stat(keyfile).st_mode))
            seen.append(keyfile)
            return real_load(self, certfile, keyfile, password)

        monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
        with Client.from_kubeconfig(with_cert) as client:
            exec_roundtrip(client)
            dial_directly(client)
        (dir_mode, key_mode), key_path = seen[0], seen[1]
        assert dir_mode & 0o077 == 0 and key_mode & 0o077 == 0
        assert not os.path.exists(key_path) and not os.path.exists(os.path.dirname(key_path))
        assert os.path.dirname(os.path.dirname(key_path)) == tempfile.gettempdir()

        with Client.from_kubeconfig(without) as client, pytest.raises(ApiError) as info:
            exec_roundtrip(client)
        assert info.value.status_code == 401


def test_client_certificate_from_another_ca_is_refused(ca, tmp_path):
    mallory = trustme.CA().issue_cert("mallory", common_name="mallory")
    with ApiServer(
        ssl_context=server_context(ca, "127.0.0.1"), client_ca=ca.cert_pem.bytes()
    ) as server:
        path = write_kubeconfig(
            tmp_path / "kc",
            {"server": server.url, "certificate-authority-data": _b64(ca.cert_pem.bytes())},
            {
                "client-certificate-data": _b64(mallory.cert_chain_pems[0].bytes()),
                "client-key-data": _b64(mallory.private_key_pem.bytes()),
            },
        )
        with Client.from_kubeconfig(path) as client:
            with pytest.raises((TLSError, ApiError)) as info:
                exec_roundtrip(client)
        if isinstance(info.value, ApiError):
            assert info.value.status_code == 401
        else:
            assert "client certificate" in str(info.value)


def test_insecure_skip_tls_verify_warns_and_connects(ca, tmp_path, caplog):
    with ApiServer(ssl_context=server_context(ca, "elsewhere.test"), token=TOKEN) as server:
        path = write_kubeconfig(
            tmp_path / "kc",
            {"server": server.url, "insecure-skip-tls-verify": True},
            {"token": TOKEN},
        )
        with pytest.warns(UserWarning, match="insecure-skip-tls-verify"):
            client = Client.from_kubeconfig(path)
        with client:
            exec_roundtrip(client)
        assert any("insecure-skip-tls-verify" in r.getMessage() for r in caplog.records)


def test_insecure_is_never_on_by_accident(ca, tmp_path):
    with pytest.raises(ConfigError, match=r"insecure-skip-tls-verify must be true or false"):
        k8sstream.load_kubeconfig(
            write_kubeconfig(
                tmp_path / "a", {"server": "https://x", "insecure-skip-tls-verify": "false"}
            )
        )
    with pytest.raises(ConfigError, match="cannot be combined"):
        k8sstream.load_kubeconfig(
            write_kubeconfig(
                tmp_path / "b",
                {
                    "server": "https://x",
                    "insecure-skip-tls-verify": True,
                    "certificate-authority-data": _b64(ca.cert_pem.bytes()),
                },
            )
        )


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
