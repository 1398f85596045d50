"""Remote commands with the :mod:`subprocess` contract: ``Popen``, ``run``, ``check_output`` ...

A :class:`RemoteProcess` is one exec or attach WebSocket. Its reader thread feeds bounded pipes
behind ``.stdout`` and ``.stderr``; writes to ``.stdin`` go straight to the socket. Threads beyond
the reader exist only to copy to or from file objects the caller passes in, and to feed
``communicate(input)`` while output is drained.

Where the protocol cannot do what a local process can, the difference is documented at the
method: there is no pid, ``kill()`` can only drop the connection, and closing stdin needs the
``v5.channel.k8s.io`` protocol (Kubernetes 1.30+).
"""

from __future__ import annotations

import io
import locale
import logging
import os
import signal
import subprocess
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _channel
from ._channel import RemoteCommandConnection, StatusReceived, StreamData
from ._pipe import Pipe
from ._request import pod_path, remote_command_query
from ._status import ExitStatus
from ._streams import ChannelWriter, PipeReader, wrap_reader, wrap_writer
from ._transport import WebSocketConnection, connection_tag
from .errors import (
    CalledProcessError,
    ConnectError,
    K8sStreamError,
    LocalProtocolError,
    RemoteCommandError,
    StreamClosedError,
    TimeoutExpired,
)

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CompletedProcess",
    "Popen",
    "RemoteProcess",
    "attach",
    "call",
    "check_call",
    "check_output",
    "run",
]

logger = logging.getLogger("k8sstream.process")

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL
CompletedProcess = subprocess.CompletedProcess

# How long to wait for the server's close after the exit status has arrived. The real server
# closes at once; a proxy that holds the connection open must not hold the caller too.
STATUS_CLOSE_GRACE = 0.5
_CHUNK = 64 * 1024
# Terminal control characters for the signals a tty's line discipline generates.
_TTY_SIGNAL_CHARS = {signal.SIGINT: b"\x03", signal.SIGQUIT: b"\x1c", signal.SIGTSTP: b"\x1a"}

StreamArg = Union[None, int, Any]


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _connect_left(deadline: float) -> float:
    # A zero timeout would mean "non-blocking" to sockets: keep a small positive floor.
    return max(0.01, deadline - time.monotonic())


def _argv(args: Any) -> List[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        return [os.fsdecode(args)]
    return [os.fsdecode(a) for a in args]


class RemoteProcess:
    """A command running in a container, with the interface of :class:`subprocess.Popen`.

    Args:
        args: the command as an argv list (not run through a shell, as in the pod spec).
        pod: the pod name. namespace: default the client's. container: default as kubectl
            chooses (the ``kubectl.kubernetes.io/default-container`` annotation, else the first).
        stdin: ``None`` (no stdin, like ``kubectl exec`` without ``-i``), ``PIPE``, ``DEVNULL``,
            a file object or a file descriptor.
        stdout, stderr: ``None`` (this process's own stdout/stderr), ``PIPE``, ``DEVNULL``, a
            file object or descriptor; ``stderr=STDOUT`` merges stderr into stdout.
        tty: allocate a terminal (stderr is then merged by the terminal).
        text, universal_newlines, encoding, errors, bufsize: as for ``subprocess.Popen``.
        client: the :class:`~k8sstream.Client` to use; default from ``KUBECONFIG``.
        subprotocols: the subprotocols to offer, most preferred first.
        terminal_size: ``(columns, rows)`` sent at start when ``tty`` is set.
        connect_timeout: seconds allowed for the pod lookup and the upgrade together
            (default 30; ``run(timeout=...)`` passes what the caller allowed).

    The constructor blocks until the WebSocket is open: it raises
    :class:`~k8sstream.ApiError` when the server refuses (pod or container not found,
    forbidden), :class:`~k8sstream.PodStateError` for a completed pod, and
    :class:`~k8sstream.ConnectError` when the server cannot be reached.
    """

    def __init__(
        self,
        args: Any,
        *,
        pod: str,
        namespace: Optional[str] = None,
        container: Optional[str] = None,
        stdin: StreamArg = None,
        stdout: StreamArg = None,
        stderr: StreamArg = None,
        tty: Optional[bool] = False,
        text: Optional[bool] = None,
        universal_newlines: Optional[bool] = None,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        bufsize: int = -1,
        client: Any = None,
        subprotocols: Optional[Sequence[str]] = None,
        terminal_size: Optional[Tuple[int, int]] = None,
        connect_timeout: Optional[float] = None,
        _attach: bool = False,
    ) -> None:
        from .client import default_client

        self.args: Any = None if _attach else (args if isinstance(args, str) else _argv(args))
        self.returncode: Optional[int] = None
        self.pid = None  # there is no remote pid in the protocol
        self.stdin: Any = None
        self.stdout: Any = None
        self.stderr: Any = None
        self._done = threading.Event()
        self._exit: Optional[ExitStatus] = None
        self._error: Optional[BaseException] = None
        self._killed_with: Optional[int] = None
        self._threads: List[threading.Thread] = []
        self._pump_errors: List[BaseException] = []
        self._send_lock = threading.Lock()
        self._communication_started = False
        self._feeder: Optional[threading.Thread] = None
        self._partial: Dict[int, io.BytesIO] = {}
        self._conn: Optional[WebSocketConnection] = None

        self.text_mode = bool(text or universal_newlines or encoding or errors)
        self._encoding = encoding or (
            locale.getpreferredencoding(False) if self.text_mode else None
        )
        self._errors = errors or "strict"
        self.client = client or default_client()
        self.namespace = namespace or self.client.namespace
        self.pod = pod
        self.container: str
        connect_deadline = time.monotonic() + (30.0 if connect_timeout is None else connect_timeout)
        self.container, spec = self.client.resolve_container(
            pod, self.namespace, container, attach=_attach, timeout=_connect_left(connect_deadline)
        )
        if tty is None:
            tty = bool(spec.get("tty", False))
        self.tty = bool(tty)

        want_stdin = stdin is not None and stdin != DEVNULL
        want_stdout = stdout != DEVNULL
        want_stderr = (
            not self.tty and stderr != DEVNULL and not (stderr == STDOUT and stdout == DEVNULL)
        )
        if not (want_stdin or want_stdout or want_stderr):
            want_stdout = True  # the server needs at least one stream; the output is dropped
        offer = list(subprotocols or _channel.DEFAULT_OFFER)
        for name in offer:
            _channel.protocol_named(name)
        command = None if _attach else _argv(args)
        query = remote_command_query(
            command,
            self.container,
            stdin=want_stdin,
            stdout=want_stdout,
            stderr=want_stderr,
            tty=self.tty,
        )
        subresource = "attach" if _attach else "exec"
        ws, chosen = self.client.dial(
            pod_path(self.namespace, pod, subresource),
            query,
            offer,
            timeout=_connect_left(connect_deadline),
        )
        try:
            protocol = _channel.negotiated_protocol(offer, chosen)
        except K8sStreamError:
            ws.shutdown()
            raise
        self.protocol = protocol.name
        self._rc = RemoteCommandConnection(protocol, stdin=want_stdin, tty=self.tty)

        condition = threading.Condition()
        self._sinks: Dict[int, Pipe] = {}
        out_pipe = Pipe(condition=condition) if want_stdout else None
        err_pipe = Pipe(condition=condition) if want_stderr and stderr != STDOUT else None
        if out_pipe is not None:
            self._sinks[_channel.STDOUT] = out_pipe
            if want_stderr and stderr == STDOUT:
                self._sinks[_channel.STDERR] = out_pipe
        if err_pipe is not None:
            self._sinks[_channel.STDERR] = err_pipe
        self._condition = condition
        self._pipes: Dict[int, Pipe] = {}

        self._conn = WebSocketConnection(
            ws,
            self._on_message,
            self._on_close,
            tag=connection_tag(f"{self.namespace}/{pod}/{subresource}"),
        )
        try:
            self._setup_streams(stdin, stdout, stderr, out_pipe, err_pipe, bufsize)
            self._conn.start()
            if self.tty and terminal_size is not None:
                self.resize(*terminal_size)
            self._start_threads()
        except BaseException:
            self._conn.abort()
            if not self._conn._thread.is_alive():
                ws.shutdown()
            raise

    # --- wiring ---

    def _setup_streams(
        self,
        stdin: StreamArg,
        stdout: StreamArg,
        stderr: StreamArg,
        out_pipe: Optional[Pipe],
        err_pipe: Optional[Pipe],
        bufsize: int,
    ) -> None:
        text, enc, errs = self.text_mode, self._encoding, self._errors
        if self._rc.stdin_open:
            if stdin == PIPE:
                raw = ChannelWriter(self._write_stdin, self._close_stdin)
                self.stdin = wrap_writer(raw, bufsize, text, enc, errs)
            else:
                self._add_thread("stdin", self._pump_in, stdin)
        for channel, arg, pipe, local in (
            (_channel.STDOUT, stdout, out_pipe, 1),
            (_channel.STDERR, stderr, err_pipe, 2),
        ):
            if arg == PIPE:
                assert pipe is not None or self.tty
                # Under a tty stderr is merged by the terminal: an empty, finished pipe.
                pipe = pipe or _ended_pipe()
                self._pipes[channel] = pipe
                stream = wrap_reader(PipeReader(pipe), bufsize, text, enc, errs)
                if channel == _channel.STDOUT:
                    self.stdout = stream
                else:
                    self.stderr = stream
            elif pipe is not None:
                self._add_thread(
                    f"ch{channel}", self._pump_out, pipe, local if arg is None else arg
                )

    def _add_thread(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(
            target=self._guard,
            args=(target, *args),
            name=f"k8sstream-{name}-{self.pod}",
            daemon=True,
        )
        self._threads.append(thread)

    def _start_threads(self) -> None:
        for thread in self._threads:
            thread.start()

    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:
            self._pump_errors.append(exc)
            logger.warning("[%s] %s failed: %s", self.pod, threading.current_thread().name, exc)

    def _pump_out(self, pipe: Pipe, target: Any) -> None:
        write = _binary_writer(target)
        while True:
            data = pipe.read(_CHUNK)
            if not data:
                return
            write(data)

    def _pump_in(self, source: Any) -> None:
        read = _binary_reader(source)
        try:
            while True:
                data = read(_CHUNK)
                if not data:
                    break
                self._write_stdin(data)
            self._close_stdin()
        except BrokenPipeError:
            pass  # the remote side finished first, as subprocess tolerates

    # --- reader-thread callbacks ---

    def _on_message(self, is_text: bool, data: bytes) -> None:
        event = self._rc.receive(is_text, data)
        if isinstance(event, StreamData):
            sink = self._sinks.get(event.channel)
            if sink is not None:
                sink.feed(event.data)
        elif isinstance(event, StatusReceived) and self._conn is not None:
            self._conn.close_after(STATUS_CLOSE_GRACE)

    def _on_close(self, code: Optional[int], reason: str, error: Optional[BaseException]) -> None:
        try:
            if self._rc.exit_status is not None:
                # The status is final: what goes wrong after it (a reset, or the server breaking
                # the protocol, which leaves _rc in ERROR) cannot change the command's result.
                self._exit = self._rc.exit_status
                if error is not None:
                    logger.debug("[%s] error after the exit status: %s", self.pod, error)
            elif error is None:
                self._exit = self._rc.connection_lost(code, reason)
            else:
                self._error = error
        except K8sStreamError as exc:
            self._error = exc
        finally:
            for pipe in self._sinks.values():
                pipe.close()
            self._done.set()

    # --- sending ---

    def _write_stdin(self, data: bytes) -> None:
        if self._done.is_set():
            raise StreamClosedError("the remote command has finished; stdin is closed")
        with self._send_lock:
            messages = self._rc.stdin_messages(data)
        assert self._conn is not None
        for is_text, message in messages:
            self._conn.send_message(is_text, message)

    def _close_stdin(self) -> None:
        if self._done.is_set():
            return  # nothing to tell a session that has ended, as with a pipe to a dead child
        with self._send_lock:
            if not self._rc.stdin_open:
                return
            is_text, message = self._rc.close_stdin_message()
        assert self._conn is not None
        try:
            self._conn.send_message(is_text, message)
        except StreamClosedError:
            pass  # the session ended meanwhile; EOF no longer matters

    def resize(self, columns: int, rows: int) -> None:
        """Tell the remote terminal its new size (``tty`` sessions only).

        Raises:
            LocalProtocolError: the session has no tty, or the size is out of range.
        """
        with self._send_lock:
            is_text, message = self._rc.resize_message(columns, rows)
        assert self._conn is not None
        self._conn.send_message(is_text, message)

    # --- the subprocess contract ---

    def poll(self) -> Optional[int]:
        """The exit code if the command has finished, else ``None``.

        Raises:
            RemoteCommandError, StreamClosedError, RemoteProtocolError: it finished without an
                exit code (see :meth:`wait`).
        """
        if self.returncode is None and self._done.is_set():
            return self.wait(0)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the command to finish and return its exit code.

        Returns once the exit status has arrived and output copying to file objects is done;
        a server that holds the connection open after the status delays this by about a
        second at most (half a second of grace, then a close handshake bounded the same way).

        Raises:
            TimeoutExpired: ``timeout`` seconds passed first (the command keeps running).
            RemoteCommandError: the command ended without an exit code (for example the
                executable was not found in the container, or the container went away).
            StreamClosedError: the connection was lost before the status arrived.
            RemoteProtocolError: the server broke the protocol.
        """
        if self.returncode is not None:
            return self.returncode
        deadline = _deadline(timeout)
        if not self._done.wait(_remaining(deadline)):
            raise TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        for thread in self._threads:
            if thread.name.startswith("k8sstream-stdin"):
                continue  # a stdin pump may still be blocked reading its source; it is a daemon
            thread.join(_remaining(deadline))
            if thread.is_alive():
                raise TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        return self._result()

    def _result(self) -> int:
        if self._exit is not None and self._exit.returncode is not None:
            self.returncode = self._exit.returncode
        elif self._killed_with is not None:
            self.returncode = -self._killed_with
        elif self._exit is not None:
            raise RemoteCommandError(self._exit.message, self._exit.status)
        else:
            assert self._error is not None
            raise self._error
        return self.returncode

    def communicate(self, input: Any = None, timeout: Optional[float] = None) -> Tuple[Any, Any]:
        """Send ``input``, close stdin, read stdout and stderr to the end, and wait.

        Like :meth:`subprocess.Popen.communicate`, including resuming after
        :class:`TimeoutExpired` (which carries the output so far) with another call.

        Raises:
            LocalProtocolError: stdin is a pipe but the server's protocol cannot signal end of
                input (only ``v5.channel.k8s.io`` can); the command would never see EOF.
        """
        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        deadline = _deadline(timeout)
        if not self._communication_started:
            self._communication_started = True
            # BytesIO, not a list to join: the join would copy every byte a second time.
            self._partial = {ch: io.BytesIO() for ch in self._pipes}
            self._start_stdin(input)
        with self._condition:
            pending = [ch for ch in self._partial if ch in self._pipes]
            while pending:
                progress = False
                for channel in list(pending):
                    data = self._pipes[channel].read_nowait()
                    if data == b"":
                        pending.remove(channel)
                    elif data is not None:
                        self._partial[channel].write(data)
                        progress = True
                if not pending:
                    break
                remaining = _remaining(deadline)
                if remaining == 0:
                    self._raise_timeout(timeout)
                if not progress:  # after a read, look again first: the pipe may have ended
                    self._condition.wait(remaining)
        if self._feeder is not None:
            self._feeder.join(_remaining(deadline))
            if self._feeder.is_alive():
                self._raise_timeout(timeout)
        try:
            self.wait(_remaining(deadline))
        except TimeoutExpired:
            self._raise_timeout(timeout)
        except K8sStreamError as exc:
            # The output so far stays available to the caller with the error.
            exc.output = self._collected(_channel.STDOUT)
            exc.stderr = self._collected(_channel.STDERR)
            raise
        return self._collected(_channel.STDOUT), self._collected(_channel.STDERR)

    def _start_stdin(self, input: Any) -> None:
        if self.stdin is None:
            return
        if not self._rc.protocol.can_close_stdin:
            raise LocalProtocolError(
                f"communicate() must close stdin, but the server negotiated {self.protocol}, "
                "which cannot signal end of input; only v5.channel.k8s.io (Kubernetes 1.30+) can"
            )
        try:
            self.stdin.flush()
        except BrokenPipeError:
            pass
        if not input:
            try:
                self.stdin.close()
            except BrokenPipeError:
                pass
            return
        if isinstance(input, str):
            if not self.text_mode:
                raise TypeError("input must be bytes when not in text mode")
            input = input.encode(self._encoding or "utf-8", self._errors)
        data = memoryview(input)

        def feed() -> None:
            try:
                for start in range(0, len(data), _CHUNK):
                    self._write_stdin(bytes(data[start : start + _CHUNK]))
                self.stdin.close()
            except BrokenPipeError:
                pass  # the remote command stopped reading; subprocess ignores this too

        self._feeder = threading.Thread(
            target=feed, name=f"k8sstream-stdin-{self.pod}", daemon=True
        )
        self._feeder.start()

    def _collected(self, channel: int) -> Any:
        if channel not in self._partial:
            return None
        data = self._partial[channel].getvalue()
        if not self.text_mode:
            return data
        text = data.decode(self._encoding or "utf-8", self._errors)
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def _raise_timeout(self, timeout: Optional[float]) -> None:
        raise TimeoutExpired(
            self.args,
            timeout,  # type: ignore[arg-type]
            output=self._collected(_channel.STDOUT),
            stderr=self._collected(_channel.STDERR),
        )

    def send_signal(self, sig: int) -> None:
        """Deliver a signal as far as the protocol allows.

        With a tty, SIGINT, SIGQUIT and SIGTSTP are sent as the terminal characters (Ctrl-C,
        Ctrl-\\, Ctrl-Z), which the remote terminal turns into the signal. SIGTERM and SIGKILL
        map to :meth:`terminate` and :meth:`kill`. Nothing else can be delivered.

        Raises:
            LocalProtocolError: the signal cannot be delivered over the protocol.
        """
        if self._done.is_set():
            return
        if sig == signal.SIGKILL:
            self.kill()
        elif sig == signal.SIGTERM:
            self.terminate()
        elif self.tty and sig in _TTY_SIGNAL_CHARS and self._rc.stdin_open:
            self._write_stdin(_TTY_SIGNAL_CHARS[signal.Signals(sig)])
        else:
            raise LocalProtocolError(
                f"signal {sig} cannot be sent to a remote command (only SIGINT/SIGQUIT/SIGTSTP "
                "with a tty and stdin, SIGTERM and SIGKILL)"
            )

    def terminate(self) -> None:
        """Ask the command to stop: Ctrl-C with a tty, otherwise end the session politely.

        Without a tty, the WebSocket is closed with a close handshake: the server closes the
        command's stdin and stops relaying. The Kubernetes protocols cannot kill a remote
        process; a command that ignores end of input keeps running in the container. If no
        exit status arrives, ``returncode`` becomes ``-SIGTERM``.
        """
        if self._done.is_set():
            return
        if self.tty and self._rc.stdin_open:
            self._write_stdin(_TTY_SIGNAL_CHARS[signal.SIGINT])
            return
        self._killed_with = signal.SIGTERM
        assert self._conn is not None
        self._conn.close(timeout=1.0)

    def kill(self) -> None:
        """Drop the connection at once. ``returncode`` becomes ``-SIGKILL``.

        As with :meth:`terminate`, the remote command itself cannot be killed by the protocol.
        """
        if self._done.is_set():
            return
        self._killed_with = signal.SIGKILL
        for pipe in self._sinks.values():
            pipe.close()
        assert self._conn is not None
        self._conn.abort()

    def __enter__(self) -> RemoteProcess:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        try:
            if self.stdin is not None:
                self.stdin.close()
        except (BrokenPipeError, LocalProtocolError):
            pass  # nothing more can be sent; the command's own status still decides
        finally:
            if exc_type is KeyboardInterrupt:
                self.kill()
            try:
                self.wait()
            except K8sStreamError:
                if exc_type is None:
                    raise

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None and not self._done.is_set():
            warnings.warn(
                f"remote command in pod {self.pod} is still running",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            conn.abort()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}: pod={self.namespace}/{self.pod} container={self.container} "
            f"args={self.args!r} returncode={self.returncode}>"
        )


Popen = RemoteProcess


def _ended_pipe() -> Pipe:
    pipe = Pipe()
    pipe.close()
    return pipe


def _binary_writer(target: Any) -> Callable[[bytes], None]:
    fd = target if isinstance(target, int) else _fileno(target)
    if fd is not None:
        if not isinstance(target, int):
            target.flush()  # what Python has buffered must come out before our bytes

        def write_fd(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        return write_fd
    binary = getattr(target, "buffer", target)

    def write_file(data: bytes) -> None:
        binary.write(data)
        binary.flush()

    return write_file


def _binary_reader(source: Any) -> Callable[[int], bytes]:
    if isinstance(source, int):
        return lambda size: os.read(source, size)
    binary = getattr(source, "buffer", source)
    read1 = getattr(binary, "read1", None)
    if read1 is not None:
        return read1  # type: ignore[no-any-return,unused-ignore]

    def read(size: int) -> bytes:
        data = binary.read(size)
        return data.encode() if isinstance(data, str) else data

    return read


def _fileno(stream: Any) -> Optional[int]:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


# --- module-level functions, as in subprocess ---


def attach(pod: str, **kwargs: Any) -> RemoteProcess:
    """Attach to the main process of a running container; returns a :class:`RemoteProcess`.

    ``tty`` defaults to the container's own ``tty`` setting, as ``kubectl attach`` does.
    """
    kwargs.setdefault("tty", None)
    return RemoteProcess(None, pod=pod, _attach=True, **kwargs)


def run(
    args: Any,
    *,
    input: Any = None,
    capture_output: bool = False,
    timeout: Optional[float] = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess:
    """Run a command in a pod and wait for it, like :func:`subprocess.run`.

    Raises:
        CalledProcessError: ``check`` is true and the exit code is non-zero.
        TimeoutExpired: ``timeout`` passed; the session is dropped first.
    """
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = PIPE
        kwargs["stderr"] = PIPE
    deadline = _deadline(timeout)
    if timeout is not None:
        kwargs.setdefault("connect_timeout", timeout)
    try:
        process = RemoteProcess(args, **kwargs)
    except ConnectError:
        if deadline is not None and time.monotonic() >= deadline:
            # The caller's time ran out while connecting: the same error as for a slow command.
            raise TimeoutExpired(_argv(args), timeout) from None  # type: ignore[arg-type]
        raise
    with process:
        try:
            stdout, stderr = process.communicate(input, timeout=_remaining(deadline))
        except TimeoutExpired as exc:
            if timeout is not None:
                exc.timeout = timeout  # the caller's figure, not what was left after connecting
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.wait()
        if check and retcode:
            raise CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, retcode, stdout, stderr)


def call(args: Any, *, timeout: Optional[float] = None, **kwargs: Any) -> int:
    """Run a command and return its exit code, like :func:`subprocess.call`."""
    with RemoteProcess(args, **kwargs) as process:
        try:
            return process.wait(timeout=timeout)
        except BaseException:
            process.kill()
            raise


def check_call(args: Any, **kwargs: Any) -> int:
    """Run a command; raise :class:`CalledProcessError` on a non-zero exit code."""
    retcode = call(args, **kwargs)
    if retcode:
        raise CalledProcessError(retcode, _argv(args))
    return 0


def check_output(args: Any, *, timeout: Optional[float] = None, **kwargs: Any) -> Any:
    """Run a command and return its stdout, like :func:`subprocess.check_output`."""
    if "stdout" in kwargs:
        raise ValueError("stdout argument not allowed, it will be overridden.")
    return run(args, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout
