"""The emulator against raw clients: what goes over the wire must match PROTOCOL.md."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest
import websocket

from k8sstream.testing import ApiServer, Container, Pod
from tests.emulator_helpers import (
    TIMEOUT,
    V4,
    V5,
    HttpResult,
    connect,
    http_request,
    raw_exchange,
    read_until_close,
    send_channel,
    split_response,
    stream_path,
    upgrade_request,
)

STATUS_SUCCESS = {"metadata": {}, "status": "Success"}


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer() as srv:
        yield srv


def get(server: ApiServer, path: str, **kw: object) -> HttpResult:
    return http_request(server, path, **kw)  # type: ignore[arg-type]


def exec_v(server: ApiServer, command: list, protocols: tuple = (V5,), **kw: object):
    ws = connect(server, stream_path(command=command, **kw), protocols)  # type: ignore[arg-type]
    return ws, read_until_close(ws)


# --- discovery and pods ----------------------------------------------------------------------


def test_discovery(server: ApiServer) -> None:
    version = get(server, "/version").json()
    assert version["gitVersion"].startswith("v1.33.")
    assert (version["major"], version["minor"]) == ("1", "33")
    assert get(server, "/api").json()["versions"] == ["v1"]
    assert get(server, "/apis").json()["kind"] == "APIGroupList"
    resources = {r["name"]: r for r in get(server, "/api/v1").json()["resources"]}
    for name in ("pods", "pods/exec", "pods/attach", "pods/portforward", "pods/log"):
        assert name in resources
    assert "get" in resources["pods/exec"]["verbs"]
    missing = get(server, "/nope")
    assert missing.status_code == 404
    assert missing.json()["reason"] == "NotFound"


def test_pod_get_list_and_404(server: ApiServer) -> None:
    server.add_pod(Pod("web", labels={"app": "web", "tier": "front"}, containers=[Container("c")]))
    pod = get(server, "/api/v1/namespaces/default/pods/demo").json()
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == "demo" and pod["metadata"]["uid"]
    assert pod["metadata"]["creationTimestamp"] and pod["metadata"]["resourceVersion"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["main", "sidecar"]
    assert pod["spec"]["nodeName"]
    assert pod["status"]["phase"] == "Running"
    assert all(s["ready"] and "running" in s["state"] for s in pod["status"]["containerStatuses"])

    listed = get(server, "/api/v1/namespaces/default/pods").json()
    assert listed["kind"] == "PodList"
    assert sorted(p["metadata"]["name"] for p in listed["items"]) == ["demo", "web"]
    selected = get(server, "/api/v1/pods", params={"labelSelector": "app=web,tier!=back"}).json()
    assert [p["metadata"]["name"] for p in selected["items"]] == ["web"]
    none = get(server, "/api/v1/pods", params={"labelSelector": "app!=web,app=web"}).json()
    assert none["items"] == []

    missing = get(server, "/api/v1/namespaces/default/pods/x")
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"},
        "code": 404,
    }
    server.remove_pod("default", "web")
    assert get(server, "/api/v1/namespaces/default/pods/web").status_code == 404
    with pytest.raises(KeyError):
        server.get_pod("default", "web")


# --- refusals before the upgrade -------------------------------------------------------------


def _bad_status(server: ApiServer, path: str, protocols=(V5,), **kw):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, path, protocols, **kw)
    return info.value


def test_token_required() -> None:
    with ApiServer(token="s3cret") as server:
        assert get(server, "/version").status_code == 401
        err = _bad_status(server, stream_path(command=["true"]))
        assert err.status_code == 401
        assert json.loads(err.resp_body)["reason"] == "Unauthorized"
        bad = get(server, "/version", headers={"Authorization": "Bearer nope"})
        assert bad.json()["code"] == 401
        ok = get(server, "/version", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        _ws, t = exec_v_with_header(server, ["true"], ["Authorization: Bearer s3cret"])
        assert t.status == STATUS_SUCCESS


def exec_v_with_header(server, command, header):
    ws = connect(server, stream_path(command=command), (V5,), header=header)
    return ws, read_until_close(ws)


def test_refusals_pod_and_container(server: ApiServer) -> None:
    err = _bad_status(server, stream_path(pod="nope", command=["true"]))
    assert err.status_code == 404
    assert json.loads(err.resp_body)["message"] == 'pods "nope" not found'

    err = _bad_status(server, stream_path(container="zzz", command=["true"]))
    assert err.status_code == 400
    body = json.loads(err.resp_body)
    assert body["message"] == "container zzz is not valid for pod demo"
    assert body["reason"] == "BadRequest"

    err = _bad_status(server, stream_path(container=None, command=["true"]))
    assert err.status_code == 400
    assert json.loads(err.resp_body)["message"] == (
        "a container name must be specified for pod demo, choose one of: [main sidecar]"
    )


def test_single_container_is_the_default(server: ApiServer) -> None:
    server.add_pod(Pod("solo", containers=[Container("only")]))
    ws = connect(server, stream_path(pod="solo", container=None, command=["pwd"]))
    t = read_until_close(ws)
    expected = os.path.realpath(server.container_dir("default", "solo", "only"))
    assert t.stdout.decode().strip() == expected


def test_non_upgrade_get_and_bad_methods(server: ApiServer) -> None:
    plain = get(server, stream_path(command=["true"]))
    assert plain.status_code == 400
    assert plain.json()["message"] == "Upgrade request required"

    put = http_request(server, stream_path(command=["true"]), method="PUT")
    assert put.status_code == 405 and put.json()["reason"] == "MethodNotAllowed"

    raw = raw_exchange(server, upgrade_request(stream_path(command=["true"]), method="POST"))
    assert raw == b"HTTP/1.1 405 Method Not Allowed\r\n\r\nbad method"

    raw = raw_exchange(server, upgrade_request(stream_path(command=["true"]), version="8"))
    assert raw == (
        b"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: 13\r\n\r\n"
        b"missing or bad WebSocket Version"
    )

    spdy = (
        f"POST {stream_path(command=['true'])} HTTP/1.1\r\nHost: x\r\n"
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    status_line, _headers, body = split_response(raw_exchange(server, spdy))
    assert status_line == "HTTP/1.1 400 Bad Request"
    assert "SPDY" in json.loads(body)["message"]


def test_no_streams_path_b_is_plain_400(server: ApiServer) -> None:
    path = stream_path(command=["true"], stdout=False, stderr=False)
    status_line, headers, body = split_response(
        raw_exchange(server, upgrade_request(path, protocols=V4))
    )
    assert status_line == "HTTP/1.1 400 Bad Request"
    assert headers["content-type"].startswith("text/plain")
    assert body == b"you must specify at least 1 of stdin, stdout, stderr"


def test_no_streams_path_a_is_in_band(server: ApiServer) -> None:
    ws = connect(server, stream_path(command=["true"], stdout=False, stderr=False))
    t = read_until_close(ws)
    assert t.data_messages[0] == b"\x03"  # the initial message goes to the error channel
    assert t.status["reason"] == "InternalError"
    assert t.status["message"] == (
        "Internal error occurred: unable to upgrade connection: "
        "you must specify at least 1 of stdin, stdout, stderr"
    )
    assert t.close_code == 1000


# --- subprotocol selection -------------------------------------------------------------------


@pytest.mark.parametrize(
    "offer, expected",
    [
        ((V5,), V5),
        ((V5, V4), V5),
        ((V4, V5), V5),  # v5 anywhere in the first header line routes to Path A
        ((V4,), V4),
        (("v4.base64.channel.k8s.io", V4), "v4.base64.channel.k8s.io"),
        (("channel.k8s.io",), "channel.k8s.io"),
        (("base64.channel.k8s.io",), "base64.channel.k8s.io"),
        (("bogus", V4), V4),
    ],
)
def test_subprotocol_selection(server: ApiServer, offer, expected) -> None:
    ws = connect(server, stream_path(command=["true"]), offer)
    assert ws.subprotocol == expected
    read_until_close(ws)
    assert server.requests[-1].subprotocol == expected


def test_no_match_is_raw_403(server: ApiServer) -> None:
    path = stream_path(command=["true"])
    raw = raw_exchange(server, upgrade_request(path, protocols="v3.channel.k8s.io, nope"))
    assert raw == b"HTTP/1.1 403 Forbidden\r\n\r\n"


def test_v4_only_server_refuses_v5_offer() -> None:
    with ApiServer(remote_command_protocols=[V4]) as server:
        path = stream_path(command=["true"])
        raw = raw_exchange(server, upgrade_request(path, protocols=V5))
        assert raw == b"HTTP/1.1 403 Forbidden\r\n\r\n"
        ws = connect(server, path, (V5, V4))
        assert ws.subprotocol == V4
        assert read_until_close(ws).status == STATUS_SUCCESS


def test_unnamed_protocol_has_empty_header(server: ApiServer) -> None:
    path = stream_path(command=["echo", "hi"])
    data = raw_exchange(server, upgrade_request(path, protocols=None))
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Protocol: \r\n" in head + b"\r\n"
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    # initial message, stdout, then (v1 style) no status on success, then Close 1000
    assert frames == b"\x82\x01\x01" + b"\x82\x04\x01hi\n" + b"\x88\x02\x03\xe8"


# --- channel traffic -------------------------------------------------------------------------


def test_initial_message_and_exit_statuses(server: ApiServer) -> None:
    _, ok = exec_v(server, ["sh", "-c", "echo out; echo err >&2"])
    assert ok.data_messages[0] == b"\x01"
    assert ok.stdout == b"out\n" and ok.stderr == b"err\n"
    assert ok.status == STATUS_SUCCESS
    assert ok.close_code == 1000
    # status is the last data message
    assert ok.data_messages[-1][0] == 3

    _, stderr_only = exec_v(server, ["true"], stdout=False)
    assert stderr_only.data_messages[0] == b"\x02"

    _, failed = exec_v(server, ["sh", "-c", "exit 7"])
    assert failed.status == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: "
        "command terminated with exit code 7",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
    }

    _, killed = exec_v(server, ["sh", "-c", "kill -9 $$"])
    assert killed.status["details"]["causes"][0]["message"] == "137"


def test_executable_not_found(server: ApiServer) -> None:
    _, v5 = exec_v(server, ["no-such-binary"])
    assert v5.status["reason"] == "InternalError" and v5.status["code"] == 500
    message = v5.status["message"]
    assert message.startswith(
        "Internal error occurred: Internal error occurred: error executing command in container: "
        'failed to exec in container: failed to start exec "'
    )
    assert message.endswith('exec: "no-such-binary": executable file not found in $PATH: unknown')
    _, v4 = exec_v(server, ["no-such-binary"], protocols=(V4,))
    assert v4.status["message"].startswith(
        "Internal error occurred: error executing command in container: "
    )


def test_v1_text_status(server: ApiServer) -> None:
    _, ok = exec_v(server, ["true"], protocols=("channel.k8s.io",))
    assert ok.channel(3) == b""
    _, bad = exec_v(server, ["sh", "-c", "exit 2"], protocols=("channel.k8s.io",))
    assert bad.channel(3) == (
        b"command terminated with non-zero exit code: command terminated with exit code 2"
    )


def test_base64_text_frames(server: ApiServer) -> None:
    proto = "v4.base64.channel.k8s.io"
    ws = connect(server, stream_path(command=["cat"], stdin=True), (proto,))
    ws.send("0" + "aGkK")  # stdin "hi\n", base64, as a text message
    time.sleep(0.2)
    ws.send_close()
    t = read_until_close(ws)
    first_opcode, first = t.messages[0]
    assert first_opcode == websocket.ABNF.OPCODE_TEXT and first == b"1"
    assert t.channel(1, base64=True) == b"hi\n"
    assert all(op == websocket.ABNF.OPCODE_TEXT for op, _ in t.messages)


def test_v5_close_stdin_reaches_cat(server: ApiServer) -> None:
    ws = connect(server, stream_path(command=["sh", "-c", "cat; echo done"], stdin=True))
    payload = os.urandom(300_000)
    for i in range(0, len(payload), 32 * 1024):
        send_channel(ws, 0, payload[i : i + 32 * 1024])
    ws.send_bytes(b"\xff\x00")
    t = read_until_close(ws)
    assert t.stdout == payload + b"done\n"
    assert t.status == STATUS_SUCCESS


def test_stray_messages_are_ignored(server: ApiServer) -> None:
    ws = connect(server, stream_path(command=["cat"], stdin=True))
    ws.send_bytes(b"")  # empty message
    send_channel(ws, 1, b"to stdout?")  # client data on server-write channels is discarded
    send_channel(ws, 3, b"to error?")
    send_channel(ws, 9, b"unknown channel")
    for _ in range(3):  # resize without a tty: ignored without stalling the receive loop
        send_channel(ws, 4, b'{"Width":80,"Height":24}\n')
    send_channel(ws, 0, b"")  # zero-length stdin is not EOF
    send_channel(ws, 0, b"real\n")
    ws.send_bytes(b"\xff\x00")
    t = read_until_close(ws)
    assert t.stdout == b"real\n"
    assert t.status == STATUS_SUCCESS


def test_invalid_close_signal_closes_connection(server: ApiServer) -> None:
    ws = connect(server, stream_path(command=["cat"], stdin=True))
    ws.send_bytes(b"\xff\x00\x00")
    t = read_until_close(ws)
    assert t.close_code == 1000
    assert t.channel(3) == b""


def test_unmasked_frame_closes_with_1002(server: ApiServer) -> None:
    ws = connect(server, stream_path(command=["cat"], stdin=True))
    frame = websocket.ABNF(1, 0, 0, 0, websocket.ABNF.OPCODE_BINARY, 0, b"\x00hi")
    ws.sock.sendall(frame.format())
    assert read_until_close(ws).close_code == 1002


def test_client_close_gets_close_1000_without_status(server: ApiServer) -> None:
    ws = connect(server, stream_path(command=["cat"], stdin=True))
    ws.ping(b"are you there")
    frame = ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_BINARY and frame.data == b"\x01"
    pong = ws.recv_frame()
    assert pong.opcode == websocket.ABNF.OPCODE_PONG and pong.data == b"are you there"
    ws.send_close()
    t = read_until_close(ws)
    assert t.close_code == 1000
    assert t.channel(3) == b""


def test_tty_resize_and_ctrl_c(server: ApiServer) -> None:
    # "ready" comes after stty has exited and no shell is left waiting for a child: a shell
    # that is waiting ignores a ^C its child survived, which would make this test racy.
    script = "read x; stty size; exec sh -c 'echo ready; exec sleep 30'"
    ws = connect(server, stream_path(command=["sh", "-c", script], stdin=True, tty=True))
    send_channel(ws, 4, b'{"Width":120,"Height":40}\n')
    send_channel(ws, 0, b"go\n")
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while b"ready" not in out and time.monotonic() < deadline:
        frame = ws.recv_frame()
        if frame.data[:1] == b"\x01":
            out += frame.data[1:]
    assert b"40 120" in out
    send_channel(ws, 0, b"\x03")  # ^C through the line discipline: SIGINT
    t = read_until_close(ws)
    assert t.status["reason"] == "NonZeroExitCode"
    assert t.status["details"]["causes"][0]["message"] == str(128 + signal.SIGINT)
    assert t.stderr == b""


# --- attach ----------------------------------------------------------------------------------


def test_attach_to_main(server: ApiServer) -> None:
    path = stream_path("attach", stdin=True)
    first = connect(server, path)
    second = connect(server, stream_path("attach"))
    assert first.recv() == b"\x01" and second.recv() == b"\x01"
    send_channel(first, 0, b"hello\n")
    assert first.recv() == b"\x01main: hello\n"
    assert second.recv() == b"\x01main: hello\n"  # output is broadcast
    first.send_close()
    assert read_until_close(first).close_code == 1000
    second.send_close()
    read_until_close(second)
    # the container keeps running after its sessions leave
    assert get(server, "/api/v1/namespaces/default/pods/demo").json()["status"][
        "containerStatuses"
    ][0]["ready"]


def test_attach_ends_when_main_exits(server: ApiServer) -> None:
    server.add_pod(Pod("once", containers=[Container("c", command=["head", "-n", "1"])]))
    ws = connect(server, stream_path("attach", pod="once", container="c", stdin=True))
    send_channel(ws, 0, b"bye\n")
    t = read_until_close(ws)
    assert t.stdout == b"bye\n"
    assert t.status == STATUS_SUCCESS  # attach never reports an exit code

    state = get(server, "/api/v1/namespaces/default/pods/once").json()["status"]
    assert state["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0

    path = stream_path("attach", pod="once", container="c")
    status_line, _, body = split_response(raw_exchange(server, upgrade_request(path, protocols=V4)))
    assert status_line == "HTTP/1.1 500 Internal Server Error"
    assert body == b'container not found ("c")'
    in_band = read_until_close(connect(server, path))
    assert in_band.status["message"] == (
        'Internal error occurred: unable to upgrade connection: container not found ("c")'
    )
    exec_in_band = read_until_close(
        connect(server, stream_path(pod="once", container="c", command=["true"]))
    )
    assert exec_in_band.status["reason"] == "InternalError"


# --- faults ----------------------------------------------------------------------------------


def test_fault_refuse_next_upgrade(server: ApiServer) -> None:
    server.faults.refuse_next_upgrade(503, b'{"kind":"Status"}', "application/json")
    err = _bad_status(server, stream_path(command=["true"]))
    assert err.status_code == 503 and err.resp_body == b'{"kind":"Status"}'
    _ws, t = exec_v(server, ["true"])  # only the next one
    assert t.status == STATUS_SUCCESS


def test_fault_close_after_upgrade(server: ApiServer) -> None:
    server.faults.close_after_upgrade()
    ws = connect(server, stream_path(command=["true"]))
    t = read_until_close(ws)
    assert t.messages == [] and t.close_code is None


def test_fault_hold_after_status(server: ApiServer) -> None:
    server.faults.hold_after_status(0.6)
    ws = connect(server, stream_path(command=["true"]))
    started = time.monotonic()
    t = read_until_close(ws)
    assert t.status == STATUS_SUCCESS and t.close_code == 1000
    assert time.monotonic() - started >= 0.5


def test_fault_stall(server: ApiServer) -> None:
    server.faults.stall(match="/version")
    with pytest.raises(socket.timeout):
        http_request(server, "/version", timeout=0.3)
    assert get(server, "/version").status_code == 200


# --- TLS, client certificates, request log, CLI -----------------------------------------------


def test_tls_and_client_certificates() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_cert = ca.issue_cert("alice@example.com", common_name="alice")
    with ApiServer(ssl_context=server_ctx, token="t0k", client_ca=ca.cert_pem.bytes()) as server:
        assert server.url.startswith("https://")
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        path = stream_path(command=["sh", "-c", "head -c 200000 /dev/zero"])
        ws = connect(
            server, path, header=["Authorization: Bearer t0k"], sslopt={"context": client_ctx}
        )
        t = read_until_close(ws)
        assert t.stdout == b"\0" * 200_000 and t.status == STATUS_SUCCESS
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            connect(server, path, sslopt={"context": client_ctx})
        assert info.value.status_code == 401
        client_cert.configure_cert(client_ctx)  # now authenticate with the certificate
        t = read_until_close(connect(server, path, sslopt={"context": client_ctx}))
        assert t.status == STATUS_SUCCESS


def test_request_log_and_kubeconfig(server: ApiServer, tmp_path) -> None:
    read_until_close(connect(server, stream_path(command=["true"]), (V4,)))
    method, path, query, subprotocol = server.requests[-1]
    assert (method, subprotocol) == ("GET", V4)
    assert path == "/api/v1/namespaces/default/pods/demo/exec" and "command=true" in query
    import yaml

    with open(server.write_kubeconfig(tmp_path / "kc", user_token="x")) as f:
        kubeconfig = yaml.safe_load(f)
    assert kubeconfig["current-context"] == "k8sstream-emulator"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == server.url
    assert kubeconfig["users"][0]["user"] == {"token": "x"}


def test_cli_prints_one_line_and_exits_cleanly(tmp_path) -> None:
    kubeconfig = tmp_path / "kc"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "k8sstream.testing", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("k8sstream emulator listening on http://127.0.0.1:")
        assert line.rstrip().endswith(f"kubeconfig written to {kubeconfig}")
        assert kubeconfig.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
        assert proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_malformed_requests_do_not_crash(server: ApiServer) -> None:
    for junk in (b"\x16\x03\x01garbage\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nbad\r\n\r\n"):
        assert raw_exchange(server, junk).startswith(b"HTTP/1.1 400")
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(b"GET /version HTTP/1.1\r\nHost")
    sock.close()
    assert get(server, "/version").status_code == 200


def test_stop_kills_processes_and_threads() -> None:
    server = ApiServer().start()
    ws = connect(server, stream_path(command=["sleep", "60"]))
    assert ws.recv() == b"\x01"
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            ws.recv_frame()
    ws.shutdown()
    assert not [t for t in threading.enumerate() if t.name.startswith("k8sstream-emulator")]


def test_attach_to_tty_container(server: ApiServer) -> None:
    server.add_pod(Pod("term", containers=[Container("sh", command=["sh"], tty=True)]))
    ws = connect(server, stream_path("attach", pod="term", container="sh", stdin=True, tty=True))
    assert ws.recv() == b"\x01"
    send_channel(ws, 4, b'{"Width":90,"Height":21}\n')
    send_channel(ws, 0, b"stty size; exit 3\n")
    t = read_until_close(ws)
    assert b"21 90" in t.stdout
    assert t.stderr == b""
    assert t.status == STATUS_SUCCESS  # attach reports no exit code
