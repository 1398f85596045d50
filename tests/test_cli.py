"""The command line as a user runs it: subprocesses, and a real pty for the interactive path."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

CLI = [sys.executable, "-m", "k8sstream"]


@pytest.fixture
def env(emulator, tmp_path):
    path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    environment = dict(os.environ, KUBECONFIG=str(path))
    return environment


def run_cli(env, *args, input=None, timeout=30):
    return subprocess.run([*CLI, *args], env=env, input=input, capture_output=True, timeout=timeout)


def test_exec_exit_code_and_streams(env):
    result = run_cli(
        env, "exec", "demo", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 7"
    )
    assert (result.returncode, result.stdout, result.stderr) == (7, b"out\n", b"err\n")


def test_exec_defaulted_container_message_and_quiet(env):
    result = run_cli(env, "exec", "demo", "--", "true")
    assert result.stderr.decode().strip() == 'Defaulted container "main" out of: main, sidecar'
    assert run_cli(env, "exec", "-q", "demo", "--", "true").stderr == b""


def test_exec_stdin_reaches_eof(env):
    data = os.urandom(300_000)
    result = run_cli(env, "exec", "-i", "demo", "-c", "main", "--", "wc", "-c", input=data)
    assert result.stdout.strip() == b"300000"


def test_errors_are_one_line_without_traceback(env):
    result = run_cli(env, "exec", "nope", "--", "true")
    assert result.returncode == 1
    assert result.stderr.decode() == 'error: 404 NotFound: pods "nope" not found\n'
    result = run_cli(env, "exec", "demo")
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    result = run_cli(env, "cp", "a", "b")
    assert result.returncode == 1 and result.stderr.startswith(b"error: one of src or dest")


def test_tty_requested_without_a_terminal_is_dropped_like_kubectl(env):
    result = run_cli(
        env, "exec", "-it", "demo", "-c", "main", "--", "sh", "-c", "test -t 0; echo $?", input=b""
    )
    assert b"Unable to use a TTY" in result.stderr
    assert result.stdout == b"1\n"


def test_cp_round_trip(env, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.bin").write_bytes(os.urandom(100_000))
    assert run_cli(env, "cp", str(src), "demo:copied").returncode == 0
    back = tmp_path / "back"
    result = run_cli(env, "cp", "-c", "main", "demo:copied", str(back))
    assert result.returncode == 0, result.stderr
    assert (back / "sub" / "f.bin").read_bytes() == (src / "sub" / "f.bin").read_bytes()
    assert result.stderr == b""  # no progress display when stderr is not a terminal


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} not seen in {seen!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.parametrize("verb", ["exec"])
def test_interactive_tty_resize_ctrl_c_and_terminal_restored(env, verb):
    master, slave = os.openpty()
    _set_size(slave, 30, 100)
    before = termios.tcgetattr(slave)

    def make_controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [*CLI, verb, "-it", "demo", "-c", "main", "--", "sh"],
        env=dict(env, PS1="$ ", TERM="dumb"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=make_controlling_tty,
    )
    try:
        os.write(master, b"stty size\r")
        assert b"30 100" in _read_until(master, b"30 100")
        _set_size(master, 40, 120)  # the kernel sends SIGWINCH to the CLI
        time.sleep(0.3)
        os.write(master, b"stty size\r")
        assert b"40 120" in _read_until(master, b"40 120")
        os.write(master, b"sleep 30\r")
        time.sleep(0.3)
        os.write(master, b"\x03")  # Ctrl-C goes to the remote command, not to the CLI
        os.write(master, b"echo after-interrupt\r")
        _read_until(master, b"after-interrupt\r\n")
        os.write(master, b"exit 3\r")
        assert proc.wait(15) == 3
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_port_forward_command(emulator, env):
    import signal
    import socket

    from k8sstream.testing import EchoServer, Pod

    with EchoServer() as echo:
        emulator.add_pod(Pod(name="web", ports={7: echo.port}))
        proc = subprocess.Popen(
            [*CLI, "port-forward", "--address", "127.0.0.1", "web", ":7"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            line = proc.stdout.readline().decode()
            assert line.startswith("Forwarding from 127.0.0.1:") and line.endswith(" -> 7\n"), line
            port = int(line.split(":")[1].split()[0])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"through the cli")
                sock.shutdown(socket.SHUT_WR)
                assert _recv_all(sock) == b"through the cli"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


def _recv_all(sock) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_demo_runs_the_main_job():
    result = subprocess.run([*CLI, "demo"], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    for expected in (
        "exit 3",
        "match",
        "v5.channel.k8s.io",
        "half-closed",
        "identical",
        "demo finished",
    ):
        assert expected in out


def _spawn_on_pty(args, env, rows=24, cols=80):
    master, slave = os.openpty()
    _set_size(slave, rows, cols)

    def make_controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [*CLI, *args],
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=make_controlling_tty,
    )
    return proc, master, slave


def test_attach_it_to_a_tty_container(emulator, env):
    from k8sstream.testing import Container, Pod

    emulator.add_pod(
        Pod(name="shell", containers=[Container("sh", command=["sh"], tty=True, stdin=True)])
    )
    proc, master, slave = _spawn_on_pty(["attach", "-it", "shell"], dict(env, TERM="dumb"), 33, 101)
    before = termios.tcgetattr(slave)
    try:
        _read_until(master, b"try pressing enter")
        os.write(master, b"stty size\r")
        assert b"33 101" in _read_until(master, b"33 101")
        os.write(master, b"exit\r")
        assert proc.wait(15) == 0
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_cp_shows_progress_on_a_terminal(env, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(4 * 1024 * 1024))
    proc, master, slave = _spawn_on_pty(["cp", str(src), "demo:big.bin"], env)
    try:
        assert proc.wait(30) == 0
        output = _read_until(master, b"\n")
        assert b"MiB/s" in output and b"4.0 MiB" in output
    finally:
        os.close(master)
        os.close(slave)
