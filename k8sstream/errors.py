"""The k8sstream exception hierarchy.

Every class derives from :class:`K8sStreamError` and, where callers already catch a stdlib type
for the same situation, from that type too, so that code written for :mod:`subprocess` and
:mod:`socket` keeps working. Messages never contain credentials.
"""

from __future__ import annotations

import errno
import socket
import subprocess
from typing import Any, Optional

__all__ = [
    "ApiError",
    "CalledProcessError",
    "ConfigError",
    "ConnectError",
    "K8sStreamError",
    "LocalProtocolError",
    "PodStateError",
    "PortForwardError",
    "ProtocolError",
    "ProxyError",
    "RemoteCommandError",
    "RemoteProtocolError",
    "StreamClosedError",
    "StreamTimeout",
    "TLSError",
    "TimeoutExpired",
]


class K8sStreamError(Exception):
    """Base class of every error raised by k8sstream.

    Attributes:
        output, stderr: when ``communicate()`` or ``run()`` fails, what the command wrote
            before the failure (``None`` otherwise), as ``subprocess`` errors carry it.
    """

    output: Any = None
    stderr: Any = None


class ConfigError(K8sStreamError, ValueError):
    """Raised when a kubeconfig, an argument or a combination of arguments is invalid."""


class ConnectError(K8sStreamError, ConnectionError):
    """Raised when the API server could not be reached or the WebSocket upgrade did not happen."""


class ProxyError(ConnectError):
    """Raised when an HTTP proxy refused or dropped the CONNECT tunnel."""


class TLSError(ConnectError):
    """Raised when the TLS handshake failed, e.g. on an untrusted or mismatched certificate."""


class ApiError(K8sStreamError):
    """Raised when the API server answered an upgrade or REST request with an error status.

    Attributes:
        status_code: the HTTP status code (for example 403 or 404).
        reason: the ``reason`` of the ``metav1.Status`` body, or the HTTP reason phrase.
        message: the human-readable message, from the Status body when there is one.
        status: the parsed :class:`k8sstream.ApiStatus`, or ``None`` when the body was not one.
    """

    def __init__(
        self, status_code: int, message: str, reason: str = "", status: Optional[Any] = None
    ) -> None:
        super().__init__(status_code, message, reason, status)
        self.status_code = status_code
        self.message = message
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return (
            f"{self.status_code} {self.reason}: {self.message}"
            if self.reason
            else (f"{self.status_code}: {self.message}")
        )


class PodStateError(K8sStreamError):
    """Raised before connecting when the pod cannot be used: it has completed, or the container
    does not exist (kubectl's own checks)."""


class PortForwardError(K8sStreamError, ConnectionRefusedError):
    """Raised on a forwarded socket when the server could not reach the pod's port; the
    message is the server's (for example ``... connect: connection refused``)."""


class ProtocolError(K8sStreamError):
    """Base of protocol violations; raise one of its two subclasses instead."""

    def __init__(self, *args: Any) -> None:
        if type(self) is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract; raise LocalProtocolError or RemoteProtocolError"
            )
        super().__init__(*args)


class LocalProtocolError(ProtocolError):
    """Raised when the caller asked for something the negotiated protocol cannot do."""


class RemoteProtocolError(ProtocolError):
    """Raised when the server sent something the protocol does not allow."""


class StreamClosedError(K8sStreamError, BrokenPipeError):
    """Raised when the connection was lost before the remote command reported its status.

    Attributes:
        close_code: the WebSocket close code when one was received, else ``None``.
        close_reason: the close reason text, possibly empty.
    """

    def __init__(
        self, message: str, close_code: Optional[int] = None, close_reason: str = ""
    ) -> None:
        # Two arguments, so OSError sets errno/strerror instead of treating the close code and
        # reason as strerror and filename.
        super().__init__(errno.EPIPE, message)
        self.close_code = close_code
        self.close_reason = close_reason

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> Any:
        return (type(self), (self.strerror, self.close_code, self.close_reason))


class RemoteCommandError(K8sStreamError):
    """Raised when the remote command failed without an exit code (not found, container gone).

    Attributes:
        status: the :class:`k8sstream.ApiStatus` reported on the error channel.
    """

    def __init__(self, message: str, status: Optional[Any] = None) -> None:
        super().__init__(message, status)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class StreamTimeout(K8sStreamError, socket.timeout):
    """Raised when a socket-like operation did not complete within its timeout."""


class TimeoutExpired(K8sStreamError, subprocess.TimeoutExpired):
    """Raised when ``wait()`` or ``communicate()`` ran out of time; carries the output so far."""

    def __init__(
        self,
        cmd: Any,
        timeout: float,
        output: Optional[Any] = None,
        stderr: Optional[Any] = None,
    ) -> None:
        subprocess.TimeoutExpired.__init__(self, cmd, timeout, output, stderr)

    def __reduce__(self) -> Any:
        return (type(self), (self.cmd, self.timeout, self.output, self.stderr))


class CalledProcessError(K8sStreamError, subprocess.CalledProcessError):
    """Raised by ``check_call``, ``check_output`` and ``run(check=True)`` on a non-zero exit."""

    def __init__(
        self,
        returncode: int,
        cmd: Any,
        output: Optional[Any] = None,
        stderr: Optional[Any] = None,
    ) -> None:
        subprocess.CalledProcessError.__init__(self, returncode, cmd, output, stderr)

    def __str__(self) -> str:
        return f"Command '{self.cmd}' returned non-zero exit status {self.returncode}."

    def __reduce__(self) -> Any:
        return (type(self), (self.returncode, self.cmd, self.output, self.stderr))
