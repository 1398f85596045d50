"""exec and attach sessions over an upgraded WebSocket (PROTOCOL.md 4-8).

Threads per exec session: the connection thread reads frames (and writes stdin into the process,
so a process that does not read its stdin stalls the reader, as on a real server), one pump per
output stream, and one waiter that sends the status once the process has exited and every pump
has drained. Writers share the WebSocket under its write lock.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional

from .._channel import (
    CHANNEL_COUNT,
    CLOSE_SIGNAL,
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    ChannelProtocol,
    decode_message,
    decode_resize_stream,
    encode_message,
)
from .._status import (
    exit_code_status,
    internal_error_status,
    status_message,
    success_status,
)
from ..errors import RemoteProtocolError
from ._runtime import ExecFailure, Process, pump, spawn_thread
from ._websocket import CLOSE_NORMAL, WebSocket

__all__ = ["MainProcess", "Session", "StreamOptions", "run_attach", "run_exec"]

log = logging.getLogger("k8sstream.testing")

# How long the server keeps reading after its Close so the client's last frames do not meet a
# closed socket (which would turn into an RST that can destroy data the client has not read).
DRAIN_SECONDS = 2.0
_CHANNEL_OF = {"stdout": STDOUT, "stderr": STDERR}


@dataclass(frozen=True)
class StreamOptions:
    """The stream flags of an exec/attach request (``stdin``, ``stdout``, ``stderr``, ``tty``)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @property
    def any_stream(self) -> bool:
        return self.stdin or self.stdout or self.stderr


class Session:
    """One upgraded exec/attach connection: channel framing, status, and the close sequence."""

    def __init__(
        self,
        ws: WebSocket,
        protocol: ChannelProtocol,
        options: StreamOptions,
        *,
        path_a: bool,
        tag: str,
        hold_seconds: float = 0.0,
        stopping: Optional[threading.Event] = None,
    ) -> None:
        self.ws = ws
        self.protocol = protocol
        self.options = options
        self.tag = tag
        self.hold_seconds = hold_seconds
        self.stopping = stopping or threading.Event()
        self.write_stdout = options.stdout
        # Path B's runtime does not create a stderr stream under a TTY; the v5 translator does,
        # but nothing is written to it (PROTOCOL.md 4.2).
        self.write_stderr = options.stderr and (path_a or not options.tty)
        self._lock = threading.Lock()
        self.finished = False
        self.client_gone = False
        self.stdin_closed = not options.stdin
        self.reader_done = threading.Event()
        self._resize_buffer = b""
        self._resize_failed = False
        self._resize_ignored_logged = False

    # -- server to client --

    def send_initial(self) -> None:
        """The empty "connected" message on the lowest writable stream (PROTOCOL.md 4.4)."""
        if self.write_stdout:
            channel = STDOUT
        elif self.write_stderr:
            channel = STDERR
        else:
            channel = ERROR
        self._send(channel, b"")

    def send_output(self, channel: int, data: bytes) -> None:
        if channel == STDOUT and not self.write_stdout:
            return
        if channel == STDERR and not self.write_stderr:
            return
        if self.client_gone:
            return
        self._send(channel, data)

    def _send(self, channel: int, data: bytes) -> None:
        is_text, payload = encode_message(self.protocol, channel, data)
        self.ws.send_message(is_text, payload)

    def finish(self, status: bytes) -> None:
        """Send the final status (JSON or v1 text), then Close 1000, then drain. Blocks."""
        with self._lock:
            if self.finished or self.client_gone:
                return
            self.finished = True
        if self.protocol.json_status:
            self._send(ERROR, status)
        else:
            obj = json.loads(status)
            if obj.get("status") != "Success":
                self._send(ERROR, status_message(status).encode())
        if self.hold_seconds > 0:
            log.debug("[%s] holding the connection open for %.1fs", self.tag, self.hold_seconds)
            deadline_hit = self.reader_done.wait(self.hold_seconds)
            if deadline_hit or self.stopping.is_set():
                return
        self.ws.send_close(CLOSE_NORMAL)
        self.ws.wire.shutdown_write()
        if not self.reader_done.wait(DRAIN_SECONDS):
            self.ws.wire.abort()

    def finish_in_thread(self, status: bytes) -> threading.Thread:
        return spawn_thread(f"finish-{self.tag}", lambda: self.finish(status))

    # -- client to server --

    def read_loop(
        self,
        on_stdin: Callable[[bytes], None],
        on_close_stdin: Callable[[], None],
        on_resize: Callable[[int, int], None],
    ) -> None:
        """Read frames until the connection ends (x/net's ``Conn.handle``, PROTOCOL.md 4.2-7)."""
        try:
            self._read_loop(on_stdin, on_close_stdin, on_resize)
        finally:
            with self._lock:
                if not self.finished:
                    self.client_gone = True
            self.reader_done.set()

    def _read_loop(
        self,
        on_stdin: Callable[[bytes], None],
        on_close_stdin: Callable[[], None],
        on_resize: Callable[[int, int], None],
    ) -> None:
        def on_message(_opcode: int, data: bytes) -> bool:
            return self._on_message(data, on_stdin, on_close_stdin, on_resize)

        self.ws.read_client_frames(self.tag, on_message, self._end_by_client)

    def _on_message(
        self,
        data: bytes,
        on_stdin: Callable[[bytes], None],
        on_close_stdin: Callable[[], None],
        on_resize: Callable[[int, int], None],
    ) -> bool:
        """One data message; False once it has ended the session."""
        if not data or self.finished:
            return True
        if self.protocol.can_close_stdin and data[0] == CLOSE_SIGNAL:
            if len(data) != 2 or data[1] >= CHANNEL_COUNT:
                log.info("[%s] invalid CLOSE signal %r; closing", self.tag, bytes(data[:8]))
                self._end_by_client(CLOSE_NORMAL)
                return False
            if data[1] == STDIN and not self.stdin_closed:
                self.stdin_closed = True
                on_close_stdin()
            elif data[1] == RESIZE:
                self._resize_failed = True
            return True
        try:
            channel, payload = decode_message(self.protocol, data)
        except RemoteProtocolError as exc:
            log.info("[%s] dropped a message: %s", self.tag, exc)
            return True
        if channel == STDIN:
            if not self.stdin_closed and payload:
                on_stdin(payload)
        elif channel == RESIZE:
            self._resize(payload, on_resize)
        elif channel >= CHANNEL_COUNT:
            log.debug("[%s] dropped a message for unknown channel %d", self.tag, channel)
        return True

    def _end_by_client(self, code: int) -> None:
        with self._lock:
            if not self.finished:
                self.client_gone = True
        self.ws.send_close(code)

    def _resize(self, payload: bytes, on_resize: Callable[[int, int], None]) -> None:
        if self._resize_failed:
            return
        if not self.options.tty:
            # A real server would stall its receive loop on the second such message
            # (PROTOCOL.md 6); the emulator only notes it so that tests can go on.
            if not self._resize_ignored_logged:
                self._resize_ignored_logged = True
                log.warning("[%s] resize message on a session without a tty: ignored", self.tag)
            return
        self._resize_buffer += payload
        try:
            sizes, self._resize_buffer = decode_resize_stream(self._resize_buffer)
        except RemoteProtocolError as exc:
            log.info("[%s] %s; resize handling stops", self.tag, exc)
            self._resize_failed = True
            return
        for width, height in sizes:
            on_resize(width, height)


# --- exec ------------------------------------------------------------------------------------


def exec_error_status(runtime_error: str, *, path_a: bool) -> bytes:
    """The status for a command the runtime could not start (PROTOCOL.md 5.2).

    On Path A the translator wraps the kubelet's already-wrapped message once more, because
    client-go's v4 decoder turns the Status into a plain error (``fmt.Errorf(status.Message)``).
    """
    error = f"error executing command in container: {runtime_error}"
    if path_a:
        return internal_error_status(f"Internal error occurred: {error}")
    return internal_error_status(error)


def run_exec(
    session: Session,
    argv: List[str],
    *,
    cwd: str,
    env: dict,
    path_a: bool,
    max_message_size: int,
    track: Callable[[Process], None],
    untrack: Callable[[Process], None],
) -> None:
    """Run one exec session on the calling (connection) thread until the connection ends."""
    opts = session.options
    session.send_initial()
    try:
        process = Process(
            argv,
            cwd=cwd,
            env=env,
            stdin=opts.stdin,
            stdout=opts.stdout,
            stderr=opts.stderr and not opts.tty,
            tty=opts.tty,
        )
    except ExecFailure as exc:
        log.info("[%s] exec failed: %s", session.tag, exc)
        waiter = session.finish_in_thread(exec_error_status(str(exc), path_a=path_a))
        session.read_loop(lambda _d: None, lambda: None, lambda _w, _h: None)
        waiter.join()
        return
    track(process)
    pumps = [
        spawn_thread(
            f"{name}-{session.tag}",
            _pump_target(fd, max_message_size, session, _CHANNEL_OF[name]),
        )
        for name, fd in process.outputs
    ]

    def wait_and_report() -> None:
        code = process.wait()
        for thread in pumps:
            thread.join()
        process.release()
        untrack(process)
        session.finish(success_status() if code == 0 else exit_code_status(code))

    waiter = spawn_thread(f"wait-{session.tag}", wait_and_report)

    def stdin_data(data: bytes) -> None:
        process.write_stdin(data)

    session.read_loop(stdin_data, process.close_stdin, process.resize)
    if session.client_gone:
        # The client left: the process sees end of input (a hang-up under a TTY) and runs on;
        # its output is discarded (PROTOCOL.md 8.1).
        if opts.tty:
            import signal

            process.signal_group(signal.SIGHUP)
        else:
            process.close_stdin()
    else:
        waiter.join()


def _pump_target(fd: int, size: int, session: Session, channel: int) -> Callable[[], None]:
    def sink(data: bytes) -> None:
        session.send_output(channel, data)

    return lambda: pump(fd, size, sink)


# --- attach ----------------------------------------------------------------------------------


class MainProcess:
    """A container's main process: attach sessions share its stdin and receive its output."""

    def __init__(
        self,
        process: Process,
        *,
        tag: str,
        max_message_size: int,
        stdin_once: bool,
        on_exit: Callable[[int], None],
    ) -> None:
        self.process = process
        self.tag = tag
        self.stdin_once = stdin_once
        self._lock = threading.Lock()
        self._sessions: List[Session] = []
        self.exit_code: Optional[int] = None
        self._on_exit = on_exit
        self._pumps = [
            spawn_thread(f"{name}-{tag}", self._pump_target(fd, max_message_size, name))
            for name, fd in process.outputs
        ]
        self.waiter = spawn_thread(f"wait-{tag}", self._wait)

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def _pump_target(self, fd: int, size: int, name: str) -> Callable[[], None]:
        channel = _CHANNEL_OF[name]

        def sink(data: bytes) -> None:
            with self._lock:
                sessions = list(self._sessions)
            # Output while nobody is attached is dropped, like a log nobody reads.
            for session in sessions:
                session.send_output(channel, data)

        return lambda: pump(fd, size, sink)

    def _wait(self) -> None:
        code = self.process.wait()
        for thread in self._pumps:
            thread.join()
        self.process.release()
        with self._lock:
            self.exit_code = code
            sessions, self._sessions = self._sessions, []
        self._on_exit(code)
        # Attach never reports an exit code: the runtime's attach just returns (Success).
        finishers = [s.finish_in_thread(success_status()) for s in sessions]
        for thread in finishers:
            thread.join()

    def attach(self, session: Session) -> bool:
        with self._lock:
            if self.exit_code is not None:
                return False
            self._sessions.append(session)
            return True

    def detach(self, session: Session) -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)

    def kill(self) -> None:
        self.process.kill()


def run_attach(session: Session, main: MainProcess, container_stdin: bool) -> None:
    """Run one attach session on the calling (connection) thread."""
    opts = session.options
    session.send_initial()
    if not main.attach(session):
        waiter = session.finish_in_thread(
            internal_error_status("error attaching to container: container is not running")
        )
        session.read_loop(lambda _d: None, lambda: None, lambda _w, _h: None)
        waiter.join()
        return
    use_stdin = opts.stdin and container_stdin

    def stdin_data(data: bytes) -> None:
        if use_stdin:
            main.process.write_stdin(data)

    def close_stdin() -> None:
        if use_stdin and main.stdin_once:
            main.process.close_stdin()

    def resize(width: int, height: int) -> None:
        main.process.resize(width, height)

    try:
        session.read_loop(stdin_data, close_stdin, resize)
    finally:
        main.detach(session)
    if session.client_gone:
        if use_stdin and main.stdin_once and not session.stdin_closed:
            main.process.close_stdin()
    else:
        # The main process ended; its waiter is finishing this session.
        session.reader_done.wait()
