"""Tests of the exception hierarchy (``k8sstream.errors``, STYLE principle 12).

Every class must be catchable as the stdlib type callers already handle, must pickle with its
attributes (exceptions cross process boundaries in multiprocessing and concurrent.futures), and
must carry structured attributes rather than only a message.
"""

from __future__ import annotations

import errno
import inspect
import pickle
import socket
import subprocess

import pytest

from k8sstream import errors
from k8sstream._status import ApiStatus, parse_status
from k8sstream.errors import (
    ApiError,
    CalledProcessError,
    ConfigError,
    ConnectError,
    K8sStreamError,
    LocalProtocolError,
    ProtocolError,
    ProxyError,
    RemoteCommandError,
    RemoteProtocolError,
    StreamClosedError,
    StreamTimeout,
    TimeoutExpired,
    TLSError,
)

# class -> the stdlib types it must also be (beyond Exception).
STDLIB_BASES = {
    K8sStreamError: (),
    ConfigError: (ValueError,),
    ConnectError: (ConnectionError, OSError),
    ProxyError: (ConnectionError, OSError),
    TLSError: (ConnectionError, OSError),
    ApiError: (),
    ProtocolError: (),
    LocalProtocolError: (),
    RemoteProtocolError: (),
    StreamClosedError: (BrokenPipeError, ConnectionError, OSError),
    RemoteCommandError: (),
    StreamTimeout: (socket.timeout, OSError),
    TimeoutExpired: (subprocess.TimeoutExpired, subprocess.SubprocessError),
    CalledProcessError: (subprocess.CalledProcessError, subprocess.SubprocessError),
}

NOT_FOUND = parse_status(
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods '
    b'\\"web-0\\" not found","reason":"NotFound","details":{"name":"web-0","kind":"pods"},'
    b'"code":404}'
)


def samples():
    """One instance of every concrete class, with every attribute set."""
    return [
        K8sStreamError("base"),
        ConfigError("no current-context in kubeconfig"),
        ConnectError("connection refused"),
        ProxyError("CONNECT refused: 407"),
        TLSError("certificate verify failed"),
        ApiError(404, 'pods "web-0" not found', "NotFound", NOT_FOUND),
        ApiError(500, "boom"),
        LocalProtocolError("cannot resize a session without a tty"),
        RemoteProtocolError("bad channel 7"),
        StreamClosedError("connection lost (close code 1006)", 1006, ""),
        StreamClosedError("going away", 1001, "server shutting down"),
        StreamClosedError("reset"),
        RemoteCommandError("executable not found", ApiStatus("Failure", message="nf")),
        RemoteCommandError("gone"),
        StreamTimeout("timed out"),
        TimeoutExpired(["sh", "-c", "sleep 9"], 1.5, output=b"partial", stderr=b"err"),
        TimeoutExpired("sleep 9", 0.25),
        CalledProcessError(3, ["false"], output=b"out", stderr=b"err"),
        CalledProcessError(1, "false"),
    ]


def _ids(exc: BaseException) -> str:
    return f"{type(exc).__name__}-{exc.args!r}"[:60]


ALL_CLASSES = [getattr(errors, name) for name in errors.__all__]


def test_all_lists_every_exception_class():
    classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }
    assert set(errors.__all__) == classes
    assert set(STDLIB_BASES) <= set(ALL_CLASSES)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_every_class_has_a_docstring_and_the_base(cls):
    assert cls.__doc__ and cls.__doc__.strip()
    assert cls.__name__.endswith("Error") or cls in (StreamTimeout, TimeoutExpired)
    assert issubclass(cls, K8sStreamError)


def test_classes_added_later_pickle_with_a_message():
    for cls in ALL_CLASSES:
        if cls in STDLIB_BASES:
            continue  # covered with full attributes by test_pickle_round_trip
        exc = cls("message")
        clone = pickle.loads(pickle.dumps(exc))
        assert type(clone) is cls
        assert str(clone) == str(exc)
        assert vars(clone) == vars(exc)


@pytest.mark.parametrize("cls", list(STDLIB_BASES), ids=lambda c: c.__name__)
def test_every_class_is_a_k8sstream_error_and_its_stdlib_bases(cls):
    assert issubclass(cls, K8sStreamError)
    for base in STDLIB_BASES[cls]:
        assert issubclass(cls, base), base


@pytest.mark.parametrize("exc", samples(), ids=_ids)
def test_catchable_as_stdlib_base(exc):
    for base in (K8sStreamError, *STDLIB_BASES[type(exc)]):
        with pytest.raises(base):
            raise exc


def test_hierarchy_shape():
    assert issubclass(ProxyError, ConnectError)
    assert issubclass(TLSError, ConnectError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    # Protocol errors are bugs on one side or the other, not I/O conditions.
    assert not issubclass(ProtocolError, OSError)
    assert not issubclass(ProtocolError, ValueError)


def test_legacy_except_clauses_still_work():
    # Scripts written against subprocess and socket keep working unchanged.
    try:
        raise TimeoutExpired("cmd", 1.0)
    except subprocess.TimeoutExpired as exc:
        assert exc.timeout == 1.0
    try:
        raise CalledProcessError(2, "cmd")
    except subprocess.CalledProcessError as exc:
        assert exc.returncode == 2
    try:
        raise StreamTimeout("timed out")
    except socket.timeout as exc:
        assert str(exc) == "timed out"
    try:
        raise StreamClosedError("lost", 1006)
    except BrokenPipeError as exc:
        assert exc.close_code == 1006  # type: ignore[attr-defined]


@pytest.mark.parametrize("exc", samples(), ids=_ids)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(exc, protocol):
    clone = pickle.loads(pickle.dumps(exc, protocol=protocol))
    assert type(clone) is type(exc)
    if not isinstance(exc, subprocess.SubprocessError):
        # The subprocess classes rebuild from positional arguments, so args may grow; what
        # matters for them is the attributes below.
        assert clone.args == exc.args
    assert str(clone) == str(exc)
    assert vars(clone) == vars(exc)
    for name in (
        "status_code",
        "message",
        "reason",
        "status",
        "close_code",
        "close_reason",
        "cmd",
        "timeout",
        "output",
        "stdout",
        "stderr",
        "returncode",
    ):
        if hasattr(exc, name):
            assert getattr(clone, name) == getattr(exc, name), name


@pytest.mark.parametrize("args", [(), ("message",), ("a", "b")])
def test_protocol_error_is_abstract(args):
    with pytest.raises(TypeError, match="abstract"):
        ProtocolError(*args)


def test_protocol_error_subclasses_can_be_instantiated():
    for cls in (LocalProtocolError, RemoteProtocolError):
        exc = cls("x")
        assert isinstance(exc, ProtocolError)
        assert str(exc) == "x"

    class Custom(RemoteProtocolError):
        pass

    assert str(Custom("y")) == "y"


def test_api_error_str_shows_code_reason_and_message():
    exc = ApiError(404, 'pods "web-0" not found', "NotFound", NOT_FOUND)
    assert str(exc) == '404 NotFound: pods "web-0" not found'
    assert exc.status_code == 404
    assert exc.reason == "NotFound"
    assert exc.message == 'pods "web-0" not found'
    assert exc.status is NOT_FOUND


def test_api_error_str_without_reason():
    exc = ApiError(500, "container not found")
    assert str(exc) == "500: container not found"
    assert exc.reason == ""
    assert exc.status is None


def test_api_error_without_body():
    assert str(ApiError(403, "")) == "403: "


def test_stream_closed_error_attributes():
    exc = StreamClosedError("connection lost", 1011, "internal error")
    assert exc.close_code == 1011
    assert exc.close_reason == "internal error"
    assert str(exc) == "connection lost"
    default = StreamClosedError("reset")
    assert default.close_code is None
    assert default.close_reason == ""
    assert str(default) == "reset"


def test_stream_closed_error_os_error_fields():
    exc = StreamClosedError("connection lost", 1006, "abnormal")
    assert exc.errno in (None, errno.EPIPE)
    assert exc.strerror in (None, "connection lost")
    assert exc.filename is None


def test_remote_command_error_attributes():
    status = ApiStatus("Failure", message="executable file not found", reason="InternalError")
    exc = RemoteCommandError("executable file not found", status)
    assert str(exc) == "executable file not found"
    assert exc.message == "executable file not found"
    assert exc.status is status
    assert RemoteCommandError("x").status is None


def test_timeout_expired_matches_subprocess():
    exc = TimeoutExpired(["sleep", "9"], 1.5, output=b"partial", stderr=b"err")
    reference = subprocess.TimeoutExpired(["sleep", "9"], 1.5, output=b"partial", stderr=b"err")
    assert str(exc) == str(reference)
    assert (exc.cmd, exc.timeout, exc.output, exc.stdout, exc.stderr) == (
        ["sleep", "9"],
        1.5,
        b"partial",
        b"partial",
        b"err",
    )
    bare = TimeoutExpired("sleep", 2)
    assert bare.output is None
    assert bare.stderr is None


def test_called_process_error_matches_subprocess():
    exc = CalledProcessError(3, ["false"], output=b"out", stderr=b"err")
    assert (exc.returncode, exc.cmd, exc.output, exc.stdout, exc.stderr) == (
        3,
        ["false"],
        b"out",
        b"out",
        b"err",
    )


@pytest.mark.parametrize(
    "cmd",
    [
        pytest.param("false", id="str"),
        pytest.param(["false"], id="list"),
        pytest.param(("sh", "-c", "exit 3"), id="tuple"),
    ],
)
@pytest.mark.parametrize("returncode", [1, 3, 255])
def test_called_process_error_str_matches_subprocess(cmd, returncode):
    reference = subprocess.CalledProcessError(returncode, cmd)
    assert str(CalledProcessError(returncode, cmd)) == str(reference)


def test_called_process_error_str_has_no_signal_wording():
    # There are no local signals for a remote command: a negative code is just a number.
    assert str(CalledProcessError(-9, "x")) == "Command 'x' returned non-zero exit status -9."


def test_chaining_is_preserved():
    cause = OSError(errno.ECONNRESET, "reset")
    try:
        try:
            raise cause
        except OSError as exc:
            raise StreamClosedError("lost", None) from exc
    except StreamClosedError as exc:
        assert exc.__cause__ is cause
