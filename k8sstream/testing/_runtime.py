"""The emulator's container runtime: local processes standing in for container processes.

Commands run as the emulator's own user, without a shell, from the container's directory. They
are not isolated in any way: absolute paths are host paths.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

__all__ = ["ExecFailure", "Process", "accept_connections", "pump", "spawn_thread"]

log = logging.getLogger("k8sstream.testing")

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# ^D: what a terminal turns into end-of-file for a reader in canonical mode.
_VEOF = b"\x04"


class ExecFailure(Exception):
    """The runtime could not start a process; the text is containerd/runc's wording."""


def container_env(pod_name: str, home: str, tty: bool, extra: Mapping[str, str]) -> Dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH") or _DEFAULT_PATH,
        "HOME": home,
        "HOSTNAME": pod_name,
    }
    if tty:
        env["TERM"] = "xterm"  # what containerd sets for a tty process
    env.update(extra)
    return env


def _runtime_error(argv: Sequence[str], exc: OSError) -> str:
    name = argv[0] if argv else ""
    if exc.errno == errno.ENOENT and getattr(exc, "filename", None) not in (None, name):
        inner = (
            f"chdir to cwd ({exc.filename!r}) set in config.json failed: no such file or directory"
        )
    elif exc.errno == errno.ENOENT and "/" not in name:
        inner = f'exec: "{name}": executable file not found in $PATH'
    elif exc.errno == errno.ENOENT:
        inner = f'exec: "{name}": stat {name}: no such file or directory'
    elif exc.errno in (errno.EACCES, errno.EPERM):
        inner = f'exec: "{name}": permission denied'
    else:
        inner = f'exec: "{name}": {os.strerror(exc.errno or errno.EIO).lower()}'
    exec_id = secrets.token_hex(32)
    return (
        f'failed to exec in container: failed to start exec "{exec_id}": OCI runtime exec '
        f"failed: exec failed: unable to start container process: {inner}: unknown"
    )


_RESET_SIGNALS = (signal.SIGINT, signal.SIGQUIT)


def _child_setup(tty: bool) -> Optional[Callable[[], None]]:
    """What must run in the child between fork and exec, or None (then no fork is forced).

    A container process starts with default signal dispositions; ours would inherit SIG_IGN
    for SIGINT/SIGQUIT when the emulator runs as a background job of a non-interactive shell,
    and then ^C in a TTY would do nothing.
    """
    ignored = [s for s in _RESET_SIGNALS if signal.getsignal(s) == signal.SIG_IGN]
    if not tty and not ignored:
        return None

    def setup() -> None:
        # Only a few syscalls: no locks, no imports (the parent has other threads).
        for sig in ignored:
            signal.signal(sig, signal.SIG_DFL)
        if tty:
            # The terminal becomes the controlling terminal of the new session, so that ^C
            # typed into it becomes SIGINT for the foreground process group.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return setup


class Process:
    """One running process with the stdio a container runtime would give it.

    Without a TTY: pipes for the requested streams, ``/dev/null`` for the others. With a TTY:
    one pseudo-terminal for all three, stderr merged into stdout, and this process as its
    session leader with the terminal as its controlling terminal.

    Raises:
        ExecFailure: the executable could not be started.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    ) -> None:
        self.tty = tty
        self._stdin_lock = threading.Lock()
        self._stdin_fd: Optional[int] = None
        self._stdin_closed = False
        # (stream name, fd): the reader of each takes ownership and closes it at EOF.
        self.outputs: List[Tuple[str, int]] = []
        if not argv:
            raise ExecFailure(_runtime_error([""], OSError(errno.ENOENT, "not found")))
        try:
            if tty:
                self.proc = self._spawn_tty(argv, cwd, env, stdin)
            else:
                self.proc = self._spawn_pipes(argv, cwd, env, stdin, stdout, stderr)
        except OSError as exc:
            raise ExecFailure(_runtime_error(argv, exc)) from exc
        self.pid = self.proc.pid

    def _spawn_pipes(
        self,
        argv: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> subprocess.Popen:
        pipe_or_null = {True: subprocess.PIPE, False: subprocess.DEVNULL}
        proc = subprocess.Popen(
            list(argv),
            stdin=pipe_or_null[stdin],
            stdout=pipe_or_null[stdout],
            stderr=pipe_or_null[stderr],
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
            preexec_fn=_child_setup(False),
        )
        # Raw fds from here on: pumps use os.read/os.write, and the file objects must not
        # close them behind our back when garbage-collected.
        if proc.stdin is not None:
            self._stdin_fd = os.dup(proc.stdin.fileno())
            proc.stdin.close()
            proc.stdin = None
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if stream is not None:
                self.outputs.append((name, os.dup(stream.fileno())))
                stream.close()
        proc.stdout = proc.stderr = None
        return proc

    def _spawn_tty(
        self, argv: Sequence[str], cwd: str, env: Mapping[str, str], stdin: bool
    ) -> subprocess.Popen:
        master, slave = os.openpty()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                close_fds=True,
                preexec_fn=_child_setup(True),
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        # Separate descriptors for the output reader and for stdin/resize, so that each owner
        # can close its own without racing the other on a reused fd number.
        self.outputs.append(("stdout", master))
        self._stdin_fd = os.dup(master)
        if not stdin:
            self._stdin_closed = True  # keep the fd for resize, refuse input
        return proc

    # -- input --

    def write_stdin(self, data: bytes) -> bool:
        """Write all of ``data``; blocks while the process is not reading (as the real pipe does).

        Returns False if stdin is closed or the process has gone away.
        """
        with self._stdin_lock:
            fd = self._stdin_fd
            if fd is None or self._stdin_closed:
                return False
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError:
                return False
            return True

    def close_stdin(self) -> None:
        """End of input. Under a TTY the terminal's EOF character is typed instead."""
        if self.tty:
            if not self._stdin_closed:
                self.write_stdin(_VEOF)
                self._stdin_closed = True
            return
        with self._stdin_lock:
            self._stdin_closed = True
            if self._stdin_fd is not None:
                os.close(self._stdin_fd)
                self._stdin_fd = None

    def resize(self, width: int, height: int) -> None:
        with self._stdin_lock:
            if self.tty and self._stdin_fd is not None:
                try:
                    winsize = struct.pack("HHHH", height, width, 0, 0)
                    fcntl.ioctl(self._stdin_fd, termios.TIOCSWINSZ, winsize)
                except OSError as exc:
                    log.debug("resize failed: %s", exc)

    # -- lifetime --

    def wait(self) -> int:
        """Wait for exit; the code as a runtime reports it (128+N for a signal)."""
        code = self.proc.wait()
        return 128 - code if code < 0 else code

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)

    def release(self) -> None:
        """Close what is left of the stdin side (call once the process has exited)."""
        with self._stdin_lock:
            self._stdin_closed = True
            if self._stdin_fd is not None:
                os.close(self._stdin_fd)
                self._stdin_fd = None


def pump(fd: int, size: int, sink: Callable[[bytes], None]) -> None:
    """Copy ``fd`` into ``sink`` until EOF (EIO on a pty whose slave is gone), then close it."""
    try:
        while True:
            try:
                data = os.read(fd, size)
            except OSError:
                break
            if not data:
                break
            sink(data)
    finally:
        os.close(fd)


def spawn_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, name=f"k8sstream-emulator-{name}", daemon=True)
    thread.start()
    return thread


def accept_connections(
    listener: socket.socket, wake_fd: int, stopping: threading.Event
) -> Iterator[socket.socket]:
    """Accepted sockets until ``stopping`` is set; a byte on ``wake_fd`` makes it look.

    Polling the wake pipe too is what lets ``stop()`` interrupt a blocked accept.
    """
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    poller.register(wake_fd, select.POLLIN)
    while not stopping.is_set():
        events = poller.poll()
        if any(fd == wake_fd for fd, _ in events) or stopping.is_set():
            return
        try:
            sock, _addr = listener.accept()
        except OSError:
            continue
        yield sock
