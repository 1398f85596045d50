"""The subprocess contract, checked against real processes run by the emulator.

Modelled on CPython's test_subprocess: each test states one promise of subprocess.Popen /
run and checks that k8sstream keeps it for a remote command.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time

import pytest

import k8sstream
from k8sstream import (
    DEVNULL,
    PIPE,
    STDOUT,
    ApiError,
    Client,
    LocalProtocolError,
    PodStateError,
    RemoteCommandError,
    StreamClosedError,
)
from k8sstream.testing import ApiServer, Container, Pod

SH = ["sh", "-c"]


def sh(script: str) -> list:
    return [*SH, script]


# --- run / call / check_* ---


def test_run_captures_output_and_exit_code(client):
    result = k8sstream.run(
        sh("echo out; echo err >&2; exit 7"), pod="demo", capture_output=True, client=client
    )
    assert isinstance(result, subprocess.CompletedProcess)
    assert (result.returncode, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert result.args == sh("echo out; echo err >&2; exit 7")


def test_nonzero_exit_is_a_returncode_not_an_exception(client):
    assert k8sstream.call(["false"], pod="demo", client=client, stdout=DEVNULL) == 1


def test_check_raises_a_subprocess_called_process_error(client):
    with pytest.raises(subprocess.CalledProcessError) as info:
        k8sstream.run(
            sh("echo partial; exit 4"), pod="demo", check=True, capture_output=True, client=client
        )
    assert isinstance(info.value, k8sstream.CalledProcessError)
    assert (info.value.returncode, info.value.stdout) == (4, b"partial\n")
    with pytest.raises(subprocess.CalledProcessError):
        k8sstream.check_call(["false"], pod="demo", client=client, stdout=DEVNULL)
    assert k8sstream.check_call(["true"], pod="demo", client=client) == 0


def test_check_output(client):
    assert k8sstream.check_output(["echo", "hi there"], pod="demo", client=client) == b"hi there\n"
    assert k8sstream.check_output(["echo", "é"], pod="demo", client=client, text=True) == "é\n"
    with pytest.raises(ValueError, match="stdout argument not allowed"):
        k8sstream.check_output(["true"], pod="demo", client=client, stdout=PIPE)


def test_input_and_stdin_together_is_a_value_error(client):
    with pytest.raises(ValueError, match="stdin and input"):
        k8sstream.run(["cat"], pod="demo", input=b"x", stdin=PIPE, client=client)
    with pytest.raises(ValueError, match="capture_output"):
        k8sstream.run(["cat"], pod="demo", capture_output=True, stdout=PIPE, client=client)


def test_run_timeout_raises_subprocess_timeout_and_drops_the_session(client):
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as info:
        k8sstream.run(
            sh("echo started; sleep 30"),
            pod="demo",
            timeout=0.5,
            capture_output=True,
            client=client,
        )
    assert isinstance(info.value, k8sstream.TimeoutExpired)
    assert info.value.timeout == 0.5
    assert time.monotonic() - start < 5


def test_binary_data_round_trips_untouched(client):
    data = bytes(range(256)) * 4096 + b"\r\n\r\x00\xff"
    result = k8sstream.run(["cat"], pod="demo", input=data, capture_output=True, client=client)
    assert result.stdout == data
    assert result.returncode == 0


def test_large_input_and_output_at_once_do_not_deadlock(client):
    """32 MiB through cat: stdin is written while stdout is drained (subprocess's promise)."""
    data = os.urandom(32 * 1024 * 1024)
    result = k8sstream.run(
        ["cat"], pod="demo", input=data, capture_output=True, client=client, timeout=60
    )
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(data).digest()


# --- Popen streams ---


def test_closing_stdin_sends_eof(client):
    with k8sstream.Popen(["wc", "-c"], pod="demo", stdin=PIPE, stdout=PIPE, client=client) as proc:
        proc.stdin.write(b"x" * 100_000)
        proc.stdin.close()
        assert proc.stdout.read().strip() == b"100000"
    assert proc.returncode == 0
    assert proc.protocol == "v5.channel.k8s.io"


def test_returncode_is_none_until_exit_and_poll(client):
    proc = k8sstream.Popen(["cat"], pod="demo", stdin=PIPE, stdout=PIPE, client=client)
    assert proc.returncode is None
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    assert proc.poll() == 0
    proc.stdout.close()


def test_communicate_resumes_after_timeout(client):
    proc = k8sstream.Popen(
        sh("echo first; sleep 1; echo second"), pod="demo", stdout=PIPE, client=client
    )
    with pytest.raises(subprocess.TimeoutExpired) as info:
        proc.communicate(timeout=0.3)
    assert info.value.output == b"first\n"
    out, err = proc.communicate(timeout=10)
    assert (out, err) == (b"first\nsecond\n", None)
    assert proc.returncode == 0


def test_communicate_rejects_input_after_it_started(client):
    proc = k8sstream.Popen(sh("sleep 0.5"), pod="demo", stdin=PIPE, stdout=PIPE, client=client)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.communicate(timeout=0.1)
    with pytest.raises(ValueError, match="Cannot send input"):
        proc.communicate(b"more")
    proc.communicate()


def test_text_mode_decodes_and_translates_newlines(client):
    result = k8sstream.run(
        ["printf", "a\\r\\nb\\rc\\n"], pod="demo", capture_output=True, text=True, client=client
    )
    assert result.stdout == "a\nb\nc\n"
    with k8sstream.Popen(
        ["cat"], pod="demo", stdin=PIPE, stdout=PIPE, universal_newlines=True, client=client
    ) as proc:
        out, _ = proc.communicate("héllo\n")
    assert out == "héllo\n"
    result = k8sstream.run(
        ["cat"], pod="demo", input="ü", capture_output=True, encoding="latin-1", client=client
    )
    assert result.stdout == "ü"


def test_stderr_to_stdout_keeps_arrival_order(client):
    # The two streams are separate pipes in the container: only arrival order is defined.
    result = k8sstream.run(
        sh("echo 1; sleep 0.1; echo 2 >&2; sleep 0.1; echo 3"),
        pod="demo",
        stdout=PIPE,
        stderr=STDOUT,
        client=client,
    )
    assert result.stdout == b"1\n2\n3\n"
    assert result.stderr is None


def test_devnull(client):
    result = k8sstream.run(
        ["cat"], pod="demo", stdin=DEVNULL, stdout=PIPE, client=client, timeout=10
    )
    assert result.stdout == b""
    result = k8sstream.run(
        sh("echo gone; echo kept >&2"), pod="demo", stdout=DEVNULL, stderr=PIPE, client=client
    )
    assert (result.stdout, result.stderr) == (None, b"kept\n")


def test_file_objects_and_descriptors(client, tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"line1\nline2\n" * 1000)
    target = tmp_path / "out.bin"
    with open(source, "rb") as fin, open(target, "wb") as fout:
        assert k8sstream.call(["cat"], pod="demo", stdin=fin, stdout=fout, client=client) == 0
    assert target.read_bytes() == source.read_bytes()
    read_fd, write_fd = os.pipe()
    try:
        k8sstream.call(["echo", "via fd"], pod="demo", stdout=write_fd, client=client)
        assert os.read(read_fd, 100) == b"via fd\n"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_stdout_none_goes_to_our_own_stdout(client, capfd):
    k8sstream.call(sh("echo to-out; echo to-err >&2"), pod="demo", client=client)
    captured = capfd.readouterr()
    assert captured.out == "to-out\n"
    assert captured.err == "to-err\n"


def test_stdout_file_object_without_fileno(client):
    sink = io.BytesIO()
    k8sstream.call(["echo", "memory"], pod="demo", stdout=sink, client=client)
    assert sink.getvalue() == b"memory\n"


def test_readline_iteration(client):
    with k8sstream.Popen(
        ["seq", "1", "5"], pod="demo", stdout=PIPE, text=True, client=client
    ) as proc:
        assert [line.strip() for line in proc.stdout] == ["1", "2", "3", "4", "5"]


# --- failures ---


def test_executable_not_found_is_a_remote_command_error(client):
    with pytest.raises(RemoteCommandError) as info:
        k8sstream.run(["no-such-binary-k8sstream"], pod="demo", client=client)
    assert "no-such-binary-k8sstream" in str(info.value)
    assert info.value.status.reason == "InternalError"


def test_missing_pod_is_a_404_api_error(client):
    with pytest.raises(ApiError) as info:
        k8sstream.run(["true"], pod="nope", client=client)
    assert info.value.status_code == 404
    assert 'pods "nope" not found' in str(info.value)


def test_missing_container_is_refused_before_connecting(client):
    with pytest.raises(PodStateError, match="container nope not found in pod demo"):
        k8sstream.run(["true"], pod="demo", container="nope", client=client)


def test_completed_pod_is_refused_like_kubectl(emulator, client):
    emulator.add_pod(Pod(name="done", containers=[Container("c")], phase="Succeeded"))
    with pytest.raises(PodStateError, match="completed pod; current phase is Succeeded"):
        k8sstream.run(["true"], pod="done", client=client)


def test_default_container_annotation(emulator, client):
    emulator.add_pod(
        Pod(
            name="multi",
            containers=[Container("first"), Container("second")],
            annotations={"kubectl.kubernetes.io/default-container": "second"},
        )
    )
    proc = k8sstream.Popen(["true"], pod="multi", client=client)
    assert proc.wait(10) == 0
    assert proc.container == "second"
    assert k8sstream.Popen(["true"], pod="demo", client=client).wait(10) == 0


def test_kill_drops_the_session_at_once(client):
    proc = k8sstream.Popen(["sleep", "30"], pod="demo", stdout=PIPE, client=client)
    start = time.monotonic()
    proc.kill()
    assert proc.wait(5) == -signal.SIGKILL
    assert time.monotonic() - start < 2
    proc.stdout.close()


def test_terminate_without_tty_ends_the_session(client):
    proc = k8sstream.Popen(["cat"], pod="demo", stdin=PIPE, stdout=PIPE, client=client)
    proc.terminate()
    assert proc.wait(5) == -signal.SIGTERM
    proc.stdout.close()


def test_server_holding_the_connection_after_status(emulator, client):
    emulator.faults.hold_after_status(20)
    start = time.monotonic()
    result = k8sstream.run(["echo", "held"], pod="demo", capture_output=True, client=client)
    assert (result.returncode, result.stdout) == (0, b"held\n")
    assert time.monotonic() - start < 3


def test_connection_closed_before_status_is_stream_closed(emulator, client):
    emulator.faults.close_after_upgrade()
    with pytest.raises(StreamClosedError) as info:
        k8sstream.run(["sleep", "5"], pod="demo", client=client)
    assert isinstance(info.value, BrokenPipeError)


# --- protocol versions ---


def test_v4_server_exit_codes_and_refused_eof(tmp_path):
    with ApiServer(remote_command_protocols=["v4.channel.k8s.io"]) as server:
        with Client.from_kubeconfig(server.write_kubeconfig(tmp_path / "kc")) as client:
            result = k8sstream.run(
                sh("echo v4; exit 5"), pod="demo", capture_output=True, client=client
            )
            assert (result.returncode, result.stdout) == (5, b"v4\n")
            proc = k8sstream.Popen(["cat"], pod="demo", stdin=PIPE, stdout=PIPE, client=client)
            assert proc.protocol == "v4.channel.k8s.io"
            with pytest.raises(LocalProtocolError, match=r"v5\.channel\.k8s\.io"):
                proc.stdin.close()
            with pytest.raises(LocalProtocolError, match="cannot signal end of input"):
                proc.communicate(b"data")
            proc.kill()
            proc.wait(5)
            proc.stdout.close()


@pytest.mark.parametrize(
    "protocol",
    ["v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io", "v4.channel.k8s.io"],
)
def test_legacy_protocols(client, protocol):
    result = k8sstream.run(
        sh("printf '\\000\\377bin'; echo err >&2; exit 9"),
        pod="demo",
        capture_output=True,
        client=client,
        subprotocols=[protocol],
    )
    assert (result.returncode, result.stdout, result.stderr) == (9, b"\x00\xffbin", b"err\n")


def test_unknown_subprotocol_name_is_refused(client):
    with pytest.raises(LocalProtocolError, match="unknown remote-command subprotocol"):
        k8sstream.run(["true"], pod="demo", client=client, subprotocols=["v9.channel.k8s.io"])


# --- tty and attach ---


def test_tty_size_and_resize(client):
    with k8sstream.Popen(
        sh("sleep 0.3; stty size; read x; stty size"),  # the size message races the start
        pod="demo",
        stdin=PIPE,
        stdout=PIPE,
        tty=True,
        terminal_size=(100, 30),
        client=client,
    ) as proc:
        first = proc.stdout.readline()
        assert first.strip() == b"30 100"
        proc.resize(120, 40)
        time.sleep(0.2)
        proc.stdin.write(b"go\r")
        proc.stdin.flush()
        rest = proc.stdout.read()
    assert b"40 120" in rest
    assert proc.returncode == 0


def test_tty_ctrl_c_interrupts(client):
    proc = k8sstream.Popen(
        sh("echo ready; exec sleep 30"),
        pod="demo",
        stdin=PIPE,
        stdout=PIPE,
        tty=True,
        client=client,
    )
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.2)  # let exec replace the shell: the interrupt is meant for sleep
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 130
    proc.stdout.close()
    proc.stdin.close()


def test_resize_without_tty_is_refused(client):
    with k8sstream.Popen(["true"], pod="demo", client=client) as proc:
        with pytest.raises(LocalProtocolError, match="without a tty"):
            proc.resize(80, 24)


def test_attach_to_the_main_process(client):
    with k8sstream.attach("demo", container="main", stdin=PIPE, stdout=PIPE, client=client) as proc:
        proc.stdin.write(b"hello attach\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"main: hello attach\n"
        proc.kill()


def test_module_and_client_calls_match(client, monkeypatch, tmp_path, emulator):
    monkeypatch.setenv("KUBECONFIG", emulator.write_kubeconfig(tmp_path / "env-kc"))
    monkeypatch.setattr("k8sstream.client._default", None)
    assert k8sstream.check_output(["echo", "default"], pod="demo") == b"default\n"
    assert client.check_output(["echo", "bound"], pod="demo") == b"bound\n"
    k8sstream.client.default_client().close()
    monkeypatch.setattr("k8sstream.client._default", None)


def test_repr_has_no_secrets(tmp_path):
    with ApiServer(token="tok-SECRET-123") as server:
        with Client.from_kubeconfig(server.write_kubeconfig(tmp_path / "kc")) as client:
            proc = k8sstream.Popen(["true"], pod="demo", client=client)
            proc.wait(10)
            for text in (repr(proc), repr(client), repr(client.config)):
                assert "tok-SECRET-123" not in text


def test_wrong_token_is_a_401(tmp_path):
    with ApiServer(token="right") as server:
        path = server.write_kubeconfig(tmp_path / "kc", user_token="wrong")
        with Client.from_kubeconfig(path) as client, pytest.raises(ApiError) as info:
            k8sstream.run(["true"], pod="demo", client=client)
    assert info.value.status_code == 401
    assert "wrong" not in str(info.value)


def test_tls_with_client_certificate(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    user_cert = ca.issue_cert("alice@example.com", common_name="alice")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    with ApiServer(ssl_context=ctx, client_ca=ca.cert_pem.bytes(), token=None) as server:
        path = server.write_kubeconfig(
            tmp_path / "kc",
            ca_data=ca.cert_pem.bytes(),
            client_cert=user_cert.cert_chain_pems[0].bytes(),
            client_key=user_cert.private_key_pem.bytes(),
        )
        with Client.from_kubeconfig(path) as client:
            result = k8sstream.run(
                ["echo", "over tls"], pod="demo", capture_output=True, client=client
            )
    assert result.stdout == b"over tls\n"


def test_python_version_is_supported():
    assert sys.version_info >= (3, 9)
