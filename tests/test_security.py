"""Secrets never leak (logs at every level, reprs, exception text) and TLS verification
cannot be turned off by accident."""

from __future__ import annotations

import base64
import io
import logging
import ssl
import warnings
from typing import Any, Iterator, List

import pytest
import yaml

import k8sstream
from k8sstream import ApiError, Client, ConfigError, TLSError
from k8sstream.testing import ApiServer, EchoServer, Pod
from tests.reliability import record

trustme = pytest.importorskip("trustme")

TOKEN = "tok-3f9a1c77e0b24d5a9c41-SECRET"
WRONG = "tok-0000wrong0000-SECRET"


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


def server_context(ca: Any, name: str = "127.0.0.1") -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    return ctx


def kubeconfig(path: Any, cluster: dict, user: dict) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def all_logs() -> Iterator[io.StringIO]:
    """Everything k8sstream, websocket-client, urllib3 and the root logger say, at DEBUG."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("", "k8sstream", "websocket", "urllib3")]
    saved = [(lg, lg.level) for lg in loggers]
    root = logging.getLogger()
    root.addHandler(handler)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        for lg, level in saved:
            lg.setLevel(level)


def secret_forms(secret: str) -> List[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


def key_fragments(pem: bytes) -> List[str]:
    """Lines from the middle of a PEM key: any of them in a log means key material leaked."""
    body = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    return body[1:-1] or body


def test_tokens_and_keys_never_in_logs_reprs_or_errors(ca, tmp_path, all_logs):
    client_cert = ca.issue_cert("client@example")
    key_pem = client_cert.private_key_pem.bytes()
    texts: List[str] = []
    with (
        ApiServer(
            ssl_context=server_context(ca), token=TOKEN, client_ca=ca.cert_pem.bytes()
        ) as server,
        EchoServer() as echo,
    ):
        server.add_pod(Pod(name="web", ports={7: echo.port}))
        cluster = {
            "server": server.url,
            "certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode(),
        }
        user = {
            "token": TOKEN,
            "client-certificate-data": base64.b64encode(
                client_cert.cert_chain_pems[0].bytes()
            ).decode(),
            "client-key-data": base64.b64encode(key_pem).decode(),
        }
        good = kubeconfig(tmp_path / "good", cluster, user)
        bad = kubeconfig(tmp_path / "bad", cluster, {**user, "token": WRONG})
        with Client.from_kubeconfig(good) as client:
            texts += [repr(client), str(client), repr(client.config), str(client.config)]
            result = k8sstream.run(
                ["sh", "-c", "echo ok; exit 3"], pod="demo", client=client, capture_output=True
            )
            assert (result.returncode, result.stdout) == (3, b"ok\n")
            with k8sstream.Popen(
                ["cat"], pod="demo", client=client, stdin=k8sstream.PIPE, stdout=k8sstream.PIPE
            ) as proc:
                texts.append(repr(proc))
                proc.communicate(b"x")
            with k8sstream.port_forward("web", 7, client=client, timeout=5) as sock:
                texts.append(repr(sock))
                sock.sendall(b"ping")
                assert sock.recv(4) == b"ping"
            for failing in (
                lambda: k8sstream.run(["true"], pod="missing", client=client),
                lambda: k8sstream.run(["true"], pod="demo", container="nope", client=client),
            ):
                with pytest.raises(k8sstream.K8sStreamError) as info:
                    failing()
                texts += [str(info.value), repr(info.value), repr(info.value.args)]
        with Client.from_kubeconfig(bad) as client, pytest.raises(ApiError) as info:
            k8sstream.run(["true"], pod="demo", client=client)
        assert info.value.status_code == 401
        texts += [str(info.value), repr(info.value), repr(info.value.__reduce__())]
    logs = all_logs.getvalue()
    assert "DEBUG" in logs  # the capture works: there is something to grep
    everything = logs + "\n".join(texts)
    for secret in secret_forms(TOKEN) + secret_forms(WRONG):
        assert secret not in everything, f"{secret[:8]}... leaked"
    for fragment in key_fragments(key_pem):
        assert fragment not in everything, "client key material leaked"
    record(
        "security",
        "bearer token and client key with DEBUG on k8sstream/websocket/urllib3/root",
        "absent from logs, reprs, exception text (raw and base64 forms)",
        log_lines=logs.count("\n"),
        texts_checked=len(texts),
    )


def test_exception_pickles_do_not_carry_the_token(tmp_path):
    """Errors cross process boundaries (multiprocessing, Ansible): the pickle is text too."""
    import pickle

    with ApiServer(token=TOKEN) as server:
        path = server.write_kubeconfig(tmp_path / "kc", user_token=WRONG)
        with Client.from_kubeconfig(path) as client, pytest.raises(ApiError) as info:
            k8sstream.run(["true"], pod="demo", client=client)
    blob = pickle.dumps(info.value)
    assert WRONG.encode() not in blob
    assert pickle.loads(blob).status_code == 401


# --- TLS verification ---------------------------------------------------------------------------


def test_verification_is_on_by_default_and_env_cannot_turn_it_off(ca, tmp_path, monkeypatch):
    other_ca = trustme.CA()
    # Variables that turn verification off or redirect it in other tools must change nothing.
    for name, value in {
        "PYTHONHTTPSVERIFY": "0",
        "CURL_CA_BUNDLE": "",
        "REQUESTS_CA_BUNDLE": "",
        "SSL_CERT_FILE": "/dev/null",
        "K8S_INSECURE_SKIP_TLS_VERIFY": "true",
    }.items():
        monkeypatch.setenv(name, value)
    outcomes = {}
    with ApiServer(ssl_context=server_context(ca)) as server:
        cases = {
            "no CA configured (system roots)": {"server": server.url},
            "another CA": {
                "server": server.url,
                "certificate-authority-data": base64.b64encode(other_ca.cert_pem.bytes()).decode(),
            },
            "right CA, wrong name": {
                "server": server.url.replace("127.0.0.1", "localhost"),
                "certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode(),
            },
        }
        for label, cluster in cases.items():
            path = kubeconfig(tmp_path / "kc", cluster, {})
            with Client.from_kubeconfig(path) as client, pytest.raises(TLSError):
                k8sstream.run(["true"], pod="demo", client=client)
            outcomes[label] = "TLSError"
    record(
        "security",
        "TLS verification by default (with PYTHONHTTPSVERIFY=0, empty CA bundles)",
        "TLSError in every case",
        **outcomes,
    )


@pytest.mark.parametrize("value", ["true", "yes", 1, "false", "", None])
def test_only_a_real_boolean_disables_verification(ca, tmp_path, value):
    """A string or number in insecure-skip-tls-verify is a ConfigError, never 'truthy'."""
    with ApiServer(ssl_context=server_context(ca)) as server:
        path = kubeconfig(
            tmp_path / "kc", {"server": server.url, "insecure-skip-tls-verify": value}, {}
        )
        with pytest.raises(ConfigError, match="insecure-skip-tls-verify"):
            with Client.from_kubeconfig(path) as client:
                k8sstream.run(["true"], pod="demo", client=client)
    record("security", f"insecure-skip-tls-verify: {value!r}", "ConfigError")


def test_explicit_insecure_skip_tls_verify_warns(ca, tmp_path, caplog):
    with ApiServer(ssl_context=server_context(ca)) as server:
        path = kubeconfig(
            tmp_path / "kc", {"server": server.url, "insecure-skip-tls-verify": True}, {}
        )
        with warnings.catch_warnings(record=True) as caught, Client.from_kubeconfig(path) as client:
            warnings.simplefilter("always")
            caplog.set_level(logging.WARNING, logger="k8sstream")
            assert k8sstream.run(["true"], pod="demo", client=client).returncode == 0
    assert any("insecure-skip-tls-verify" in str(w.message) for w in caught)
    assert "insecure-skip-tls-verify" in caplog.text
    record("security", "insecure-skip-tls-verify: true", "connects, with a warning and a log line")


def test_websocket_client_trace_dumps_show_a_placeholder_not_the_token(tmp_path):
    """``websocket.enableTrace(True)`` dumps every upgrade request; it must not dump the token."""
    websocket = pytest.importorskip("websocket")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    trace_logger = logging.getLogger("websocket")
    saved_level = trace_logger.level
    websocket.enableTrace(True, handler=handler)
    try:
        with ApiServer(token=TOKEN) as server:
            path = server.write_kubeconfig(tmp_path / "kubeconfig")
            with Client.from_kubeconfig(path) as client:
                result = k8sstream.run(
                    ["echo", "ok"], pod="demo", client=client, stdout=k8sstream.PIPE
                )
    finally:
        websocket.enableTrace(False)
        trace_logger.removeHandler(handler)
        trace_logger.setLevel(saved_level)
    assert result.stdout == b"ok\n"
    dump = buffer.getvalue()
    assert "--- request header ---" in dump and "Authorization: k8sstream-secret-" in dump
    for secret in secret_forms(TOKEN):
        assert secret not in dump
    record(
        "security",
        "websocket-client's handshake trace (enableTrace) on an authenticated exec",
        "the dumped request names the credential by placeholder; the token is absent",
        trace_lines=dump.count("\n"),
    )
