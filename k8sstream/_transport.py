"""The WebSocket transport: the only module that owns sockets and imports websocket-client.

websocket-client does the upgrade handshake and parses and formats frames; this module adds
what it lacks for a long-lived, full-duplex stream (STYLE.md, "Limitations that matter"):

* **One I/O lock.** Every call into the socket (``recv`` and ``send``) happens under
  ``_io_lock``, because on TLS one thread in ``SSL_read`` while another is in ``SSL_write`` on the
  same ``SSLSocket`` breaks OpenSSL's rules. websocket-client's separate send and receive locks do
  not prevent that.
* **Nobody waits while holding the I/O lock.** The socket is non-blocking; the reader waits for
  readability and writers wait for writability *outside* the lock, then take it for one
  non-blocking call. A writer blocked by a server that is not reading therefore never stops the
  reader, which is what avoids the classic deadlock: remote process blocked writing stdout, server
  blocked feeding it stdin, our send blocked, our reader unable to drain stdout.
* **Whole frames.** ``_send_lock`` is held for a whole outgoing frame, so frames from different
  threads never interleave on the wire. The reader never waits for it: control frames it must
  send (pong, close reply) go out when the lock is free, or are flushed by the writer holding it.
* **One reader thread** per connection; it hands each data message to a callback outside every
  lock, so a callback that blocks on a full pipe is the back-pressure.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import websocket
from websocket._abnf import continuous_frame, frame_buffer

from . import _proxy
from ._masking import client_frame
from ._proxy import ProxySettings
from ._secret import substitute
from ._status import parse_status
from .errors import (
    ApiError,
    ConnectError,
    K8sStreamError,
    RemoteProtocolError,
    StreamClosedError,
    StreamTimeout,
    TLSError,
)

logger = logging.getLogger("k8sstream.transport")

_READ_SIZE = 256 * 1024
_CLOSE_NORMAL = 1000
_CLOSE_PROTOCOL_ERROR = 1002
DEFAULT_PING_INTERVAL = 5.0
# client-go gives up after 12 missed 5-second pings (PROTOCOL.md 8.2).
DEFAULT_DEAD_AFTER = 61.0

MessageHandler = Callable[[bool, bytes], None]
CloseHandler = Callable[[Optional[int], str, Optional[BaseException]], None]


@dataclass(frozen=True)
class DialOptions:
    """Everything needed to open one WebSocket to the API server.

    Args:
        ssl_context: the client context for ``wss://``; it decides the CA, the client
            certificate and whether the hostname is checked.
        server_hostname: the name the certificate must match (kubeconfig ``tls-server-name``);
            default: the URL's host.
        proxy: a proxy already chosen for this server (see ``_proxy.select_proxy``).
        proxy_ssl_context: makes the context for an ``https://`` proxy, when one is used.
        sock: an already connected socket (TLS done, if any) to upgrade instead of dialling.
    """

    url: str
    subprotocols: Sequence[str]
    headers: Dict[str, str]
    ssl_context: Optional[ssl.SSLContext] = None
    server_hostname: Optional[str] = None
    proxy: Optional[ProxySettings] = None
    connect_timeout: Optional[float] = 30.0
    sock: Optional[socket.socket] = None
    proxy_ssl_context: Optional[Callable[[], ssl.SSLContext]] = None

    def __repr__(self) -> str:
        # Headers carry the bearer token: never part of a repr.
        return f"DialOptions(url={self.url!r}, subprotocols={list(self.subprotocols)!r})"


def open_connection(
    host: str,
    port: int,
    *,
    ssl_context: Optional[ssl.SSLContext],
    server_hostname: Optional[str] = None,
    proxy: Optional[ProxySettings] = None,
    timeout: Optional[float] = 30.0,
    proxy_ssl_context: Optional[Callable[[], ssl.SSLContext]] = None,
) -> socket.socket:
    """TCP (through ``proxy`` if given), then TLS with ``ssl_context`` if given.

    The certificate is verified against ``server_hostname`` or else ``host`` by the context's
    own ``check_hostname``: the socket is never handed to a library that might skip it.

    Raises:
        ConnectError, ProxyError, TLSError: as :func:`dial`.
    """
    sock = _proxy.open_socket(host, port, proxy, timeout, proxy_ssl_context)
    if ssl_context is None:
        return sock
    name = server_hostname or host
    try:
        return ssl_context.wrap_socket(sock, server_hostname=name)
    except ssl.SSLError as exc:
        sock.close()
        raise tls_error(exc, f"https://{_authority(host, port)}", name) from exc
    except OSError as exc:
        sock.close()
        what = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise ConnectError(
            f"TLS handshake with https://{_authority(host, port)} failed: {what}"
        ) from exc


def tls_error(exc: BaseException, target: str, server_name: Optional[str]) -> TLSError:
    """A TLSError that says what did not match: the CA, the name, or the client certificate."""
    server_name = server_name or urlsplit(target).hostname
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        detail = exc.verify_message or str(exc)
        if code in (_X509_HOSTNAME_MISMATCH, _X509_IP_MISMATCH):
            return TLSError(
                f"TLS verification of {target} failed: the server certificate is not valid for "
                f"the name {server_name!r} ({detail}); set tls-server-name if the server's "
                "certificate is issued for another name"
            )
        if code in _X509_UNTRUSTED:
            return TLSError(
                f"TLS verification of {target} failed: the server certificate is not signed by "
                f"a trusted certificate authority ({detail}); check certificate-authority(-data)"
            )
        if code == _X509_CERT_HAS_EXPIRED:
            return TLSError(
                f"TLS verification of {target} failed: the server certificate has expired"
            )
        return TLSError(f"TLS verification of {target} failed: {detail}")
    if isinstance(exc, ssl.SSLEOFError):
        # With TLS 1.3 the server checks the client certificate after our side has finished
        # the handshake; a refusal without an alert then shows up as this EOF.
        return TLSError(
            f"TLS handshake with {target} failed: the server closed the connection (it may have "
            "rejected the client certificate, or it does not speak TLS)"
        )
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if "CERTIFICATE_REQUIRED" in reason or "BAD_CERTIFICATE" in reason:
            return TLSError(
                f"TLS handshake with {target} failed: the server rejected or required a client "
                f"certificate ({exc.reason})"
            )
        if "UNKNOWN_CA" in reason:
            return TLSError(
                f"TLS handshake with {target} failed: the server does not trust the client "
                f"certificate's CA ({exc.reason})"
            )
        return TLSError(f"TLS handshake with {target} failed: {exc.reason or exc}")
    return TLSError(f"TLS connection to {target} failed: {exc}")


# OpenSSL X509_V_ERR_* codes.
_X509_CERT_HAS_EXPIRED = 10
_X509_HOSTNAME_MISMATCH = 62
_X509_IP_MISMATCH = 64
_X509_UNTRUSTED = (2, 18, 19, 20, 21, 27)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dial(options: DialOptions) -> Tuple[websocket.WebSocket, Optional[str]]:
    """Open the TCP/TLS connection (through the proxy, if any) and perform the upgrade.

    The socket is opened here and handed to websocket-client, which then does neither proxy
    nor TLS work of its own: its environment proxy handling and ``sslopt`` are never involved.

    Returns:
        The connected websocket-client object and the subprotocol the server chose (``None``
        when it chose none). The caller checks the choice against its offer.

    Raises:
        ApiError: the server answered with an HTTP error instead of upgrading.
        TLSError, ProxyError, ConnectError: the connection could not be made.
        ConfigError: a proxy that needs a missing optional package.
    """
    parts = urlsplit(options.url)
    target = _describe_url(options.url)
    secure = parts.scheme in ("wss", "https")
    sock = options.sock
    if sock is None:
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            raise ConnectError(f"{target}: not a valid port") from None
        sock = open_connection(
            parts.hostname or "",
            port,
            ssl_context=options.ssl_context if secure else None,
            server_hostname=options.server_hostname,
            proxy=options.proxy,
            timeout=options.connect_timeout,
            proxy_ssl_context=options.proxy_ssl_context,
        )
    ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False)
    kwargs: dict = {
        # The offer goes in one header line of our own; we check the answer ourselves so
        # the error can say what was offered and what came back (websocket-client only
        # says "Invalid WebSocket Header").
        "header": [f"{k}: {v}" for k, v in options.headers.items()]
        + [f"Sec-WebSocket-Protocol: {', '.join(options.subprotocols)}"],
        "redirect_limit": 0,  # a redirect would resend the Authorization header elsewhere
        "timeout": options.connect_timeout,
        "suppress_origin": True,
        # With socket= websocket-client skips its own proxy and TLS code entirely. The headers
        # name credentials by placeholder; the wrapper sends the real value (``_secret``).
        "socket": _CredentialSocket(sock),
    }
    try:
        ws.connect(options.url, **kwargs)
        ws.sock = sock  # the handshake is over: frames go to the socket itself
    except websocket.WebSocketBadStatusException as exc:
        raise _api_error(exc) from None
    except ssl.SSLError as exc:
        raise tls_error(exc, target, options.server_hostname) from exc
    except websocket.WebSocketTimeoutException as exc:
        raise ConnectError(f"timed out upgrading the connection to {target}") from exc
    except websocket.WebSocketException as exc:
        raise ConnectError(f"WebSocket upgrade with {target} failed: {exc}") from exc
    except socket.timeout as exc:
        raise ConnectError(f"timed out upgrading the connection to {target}") from exc
    except OSError as exc:
        raise ConnectError(
            f"connection to {target} lost during the upgrade: {exc.strerror or exc}"
        ) from exc
    finally:
        if ws.sock is None:
            # websocket-client closes the socket on a handshake failure; make sure of it.
            sock.close()
    headers = ws.getheaders() or {}
    return ws, headers.get("sec-websocket-protocol")


class _CredentialSocket:
    """The socket as websocket-client sees it during the upgrade: sends swap in credentials.

    The request websocket-client formats (and traces, when its tracing is on) carries only
    placeholders; the bytes with the real credential exist only in a wiped ``Secret``.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: bytes) -> int:
        send_with_credentials(self._sock, data)
        return len(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def send_with_credentials(sock: socket.socket, data: Union[bytes, bytearray]) -> None:
    """``sock.sendall(data)`` with the credential placeholders in ``data`` replaced."""
    request = substitute(data)
    if request is None:
        sock.sendall(data)
        return
    try:
        with request.view() as view:
            sock.sendall(view)
    finally:
        request.wipe()


def _describe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _api_error(exc: websocket.WebSocketBadStatusException) -> ApiError:
    body = exc.resp_body or b""
    if isinstance(body, str):
        body = body.encode("utf-8", "replace")
    return api_error_from_response(exc.status_code, body)


def api_error_from_response(status_code: int, body: bytes, reason_phrase: str = "") -> ApiError:
    """Turn a refused request into an ApiError, using the Status body when there is one."""
    status = None
    try:
        status = parse_status(body) if body.lstrip().startswith(b"{") else None
    except RemoteProtocolError:
        status = None
    if status is not None:
        message, reason = status.message, status.reason
    else:
        message = body.decode("utf-8", "replace").strip()[:1024] or "(no response body)"
        reason = reason_phrase
    if status_code == 403:
        message += (
            " (exec, attach and port-forward over WebSocket need RBAC 'get' on the pods/exec, "
            "pods/attach or pods/portforward subresource, and from Kubernetes 1.35 also 'create')"
        )
    return ApiError(status_code, message, reason, status)


class WebSocketConnection:
    """A connected WebSocket with its reader thread.

    Args:
        ws: a websocket-client ``WebSocket`` that has completed the upgrade.
        on_message: called from the reader thread with ``(is_text, payload)`` for each data
            message, outside every lock; blocking in it applies back-pressure.
        on_close: called once from the reader thread when the connection has ended, with the
            peer's close code (``None`` if no close frame arrived), reason and the error that
            ended it (``None`` for a clean close).
        tag: a short label for thread names and log lines.
    """

    def __init__(
        self,
        ws: websocket.WebSocket,
        on_message: MessageHandler,
        on_close: CloseHandler,
        *,
        tag: str = "",
        ping_interval: Optional[float] = DEFAULT_PING_INTERVAL,
        dead_after: Optional[float] = DEFAULT_DEAD_AFTER,
    ) -> None:
        self._sock: socket.socket = ws.sock  # type: ignore[assignment]  # connected, not None
        self._sock.setblocking(False)
        self._on_message = on_message
        self._on_close = on_close
        self._tag = tag
        self._io_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._outgoing: Deque[memoryview] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._buffer = b""
        self._buffer_pos = 0
        self._frames = frame_buffer(self._buffered_recv, True)
        self._fragments = continuous_frame(False, True)
        self._close_sent = False
        self._closing_deadline: Optional[float] = None
        self._aborted = False
        self._finished = threading.Event()
        self._ping_interval = ping_interval
        self._dead_after = dead_after
        now = time.monotonic()
        self._last_received = now
        self._last_ping = now
        self._thread = threading.Thread(
            target=self._run, name=f"k8sstream-reader-{tag}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def wait_finished(self, timeout: Optional[float] = None) -> bool:
        return self._finished.wait(timeout)

    # --- sending ---
    #
    # Outgoing frames are queued whole, in order, and written by whoever holds _send_lock:
    # a writer waits (outside _io_lock) until its own frame is on the wire; the reader only
    # ever tries a non-blocking flush, so a pong or close reply never makes it wait.

    def send_message(self, is_text: bool, payload: bytes, deadline: Optional[float] = None) -> None:
        """Send one data message as a single frame; blocks while the socket is not writable.

        Raises:
            StreamClosedError: the connection is closed or closing.
            StreamTimeout: the monotonic ``deadline`` passed first. If part of the frame was
                already written the connection is aborted, since the stream cannot continue.
        """
        opcode = websocket.ABNF.OPCODE_TEXT if is_text else websocket.ABNF.OPCODE_BINARY
        frame = client_frame(opcode, payload)
        with self._state_lock:
            if self._close_sent or self._aborted:
                raise StreamClosedError("the connection is closed")
        view = self._enqueue(frame)
        with self._send_lock:
            self._flush(view, deadline)

    def close(self, code: int = _CLOSE_NORMAL, reason: str = "", timeout: float = 2.0) -> None:
        """Start the close handshake; the reader ends on the peer's reply, EOF or ``timeout``."""
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
        with self._state_lock:
            if self._close_sent or self._aborted or self._wake_w < 0:
                return
            self._closing_deadline = time.monotonic() + timeout
        self._send_control(websocket.ABNF.OPCODE_CLOSE, payload)
        self._wake()

    def close_after(self, delay: float) -> None:
        """Close unless the peer has closed within ``delay`` seconds (from now)."""
        with self._state_lock:
            deadline = time.monotonic() + delay
            if self._closing_deadline is None or deadline < self._closing_deadline:
                self._closing_deadline = deadline
        self._wake()

    def abort(self) -> None:
        """Stop now without a close handshake; the reader thread closes the socket."""
        self._aborted = True
        self._wake()

    def _wake(self) -> None:
        with self._state_lock:
            if self._wake_w < 0:
                return  # the reader has ended and closed the pipe
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # a full wake pipe wakes the reader all the same

    def _enqueue(self, frame: Union[bytes, bytearray]) -> memoryview:
        view = memoryview(frame)
        with self._state_lock:
            self._outgoing.append(view)
        return view

    def _send_control(self, opcode: int, payload: bytes) -> None:
        frame = client_frame(opcode, payload)
        with self._state_lock:
            if self._close_sent:
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._close_sent = True
            self._outgoing.append(memoryview(frame))
        self.try_flush()

    def try_flush(self) -> None:
        """Write queued frames without waiting, unless another thread is already writing."""
        if self._send_lock.acquire(blocking=False):
            try:
                self._flush(None, None)
            except K8sStreamError:
                pass  # the reader learns about a broken socket from its own next read
            finally:
                self._send_lock.release()

    def _flush(self, target: Optional[memoryview], deadline: Optional[float]) -> None:
        """Write queued frames; with a ``target``, wait until that frame has been written."""
        # Caller holds _send_lock, so no other thread takes frames off the queue meanwhile.
        while True:
            with self._state_lock:
                if not self._outgoing:
                    return
                head = self._outgoing[0]
                target_pending = target is not None and any(
                    v.obj is target.obj for v in self._outgoing
                )
            if target is not None and not target_pending:
                return
            if self._aborted or self._finished.is_set():
                raise StreamClosedError("the connection was closed while sending")
            sent = 0
            with self._io_lock:
                try:
                    sent = self._sock.send(head)
                except (
                    BlockingIOError,
                    InterruptedError,
                    ssl.SSLWantWriteError,
                    ssl.SSLWantReadError,
                ):
                    sent = 0
                except OSError as exc:
                    self.abort()
                    raise StreamClosedError(f"send failed: {exc}") from exc
            with self._state_lock:
                if sent == len(head):
                    self._outgoing.popleft()
                elif sent:
                    self._outgoing[0] = head[sent:]
            if sent:
                continue
            if target is None:
                return
            self._wait_writable(target, deadline)

    def _wait_writable(self, target: memoryview, deadline: Optional[float]) -> None:
        # Bounded waits: the reader may close the socket meanwhile, and a closed socket never
        # becomes writable.
        timeout = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self._sock, selectors.EVENT_WRITE)
                if sel.select(timeout) or deadline is None or time.monotonic() < deadline:
                    return
        except (OSError, ValueError) as exc:
            raise StreamClosedError("the connection was closed while sending") from exc
        with self._state_lock:
            untouched = any(view is target for view in self._outgoing)
            if untouched:
                self._outgoing.remove(target)
        if not untouched:
            self.abort()
        raise StreamTimeout("timed out writing to the connection")

    # --- reading ---

    def _buffered_recv(self, size: int) -> bytes:
        # frame_buffer asks for small pieces; one large recv serves many of them.
        pos = self._buffer_pos
        if pos < len(self._buffer):
            data = self._buffer[pos : pos + size]
            self._buffer_pos = pos + len(data)
            return data
        data = self._sock.recv(_READ_SIZE)
        if not data:
            raise websocket.WebSocketConnectionClosedException("connection closed by the server")
        if len(data) <= size:
            self._buffer, self._buffer_pos = b"", 0
            return data
        self._buffer, self._buffer_pos = data, size
        return data[:size]

    def _has_buffered(self) -> bool:
        if self._buffer_pos < len(self._buffer):
            return True
        # TLS may hold decrypted bytes that select() cannot see.
        return isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0

    def _run(self) -> None:
        close_code: Optional[int] = None
        close_reason = ""
        error: Optional[BaseException] = None
        selector = selectors.DefaultSelector()
        try:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._aborted:
                if not self._has_buffered() and not self._wait_readable(selector):
                    break
                with self._io_lock:
                    try:
                        frame = self._frames.recv_frame()
                    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                        continue
                    except ssl.SSLWantWriteError:
                        frame = None
                if frame is None:
                    time.sleep(0.001)  # TLS renegotiation wants to write; let it
                    continue
                self._last_received = time.monotonic()
                if frame.mask_value:
                    raise RemoteProtocolError("the server sent a masked frame")
                opcode = frame.opcode
                if opcode >= websocket.ABNF.OPCODE_CLOSE and (
                    not frame.fin or len(frame.data) > 125
                ):
                    # RFC 6455 5.5; websocket-client checks it only for close and unfinished pings,
                    # and would otherwise echo a peer's oversized ping back as our pong.
                    raise RemoteProtocolError(
                        "the server sent a fragmented or oversized (>125 bytes) control frame"
                    )
                if opcode in (
                    websocket.ABNF.OPCODE_TEXT,
                    websocket.ABNF.OPCODE_BINARY,
                    websocket.ABNF.OPCODE_CONT,
                ):
                    self._fragments.validate(frame)
                    self._fragments.add(frame)
                    if self._fragments.is_fire(frame):
                        opcode, frame = self._fragments.extract(frame)
                        self._on_message(opcode == websocket.ABNF.OPCODE_TEXT, frame.data)
                        # Time spent blocked on a full pipe is back-pressure, not a dead peer.
                        self._last_received = time.monotonic()
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    close_code, close_reason = _parse_close(_as_bytes(frame.data))
                    if not self._close_sent:
                        echo = struct.pack("!H", close_code) if close_code is not None else b""
                        self._send_control(websocket.ABNF.OPCODE_CLOSE, echo)
                    break
                elif opcode == websocket.ABNF.OPCODE_PING:
                    self._send_control(websocket.ABNF.OPCODE_PONG, _as_bytes(frame.data))
        except websocket.WebSocketConnectionClosedException:
            pass  # EOF without a close frame: close_code stays None (1006)
        except websocket.WebSocketProtocolException as exc:
            error = RemoteProtocolError(f"invalid WebSocket frame from the server: {exc}")
        except websocket.WebSocketPayloadException as exc:
            error = RemoteProtocolError(f"invalid WebSocket payload from the server: {exc}")
        except K8sStreamError as exc:
            error = exc
        except (ssl.SSLError, OSError) as exc:
            if getattr(exc, "errno", None) not in (errno.ECONNRESET, errno.EPIPE):
                error = StreamClosedError(f"connection error: {exc}")
        except Exception as exc:  # a bug in a callback must still end the connection cleanly
            logger.exception("[%s] reader thread failed", self._tag)
            error = exc
        finally:
            if isinstance(error, RemoteProtocolError) and not self._close_sent:
                self._send_control(
                    websocket.ABNF.OPCODE_CLOSE, struct.pack("!H", _CLOSE_PROTOCOL_ERROR)
                )
            selector.close()
            self._shutdown()
            try:
                self._on_close(close_code, close_reason, error)
            finally:
                self._finished.set()

    def _wait_readable(self, selector: selectors.BaseSelector) -> bool:
        """Wait until the socket is readable; run keepalive and deadlines. False means stop."""
        while not self._aborted:
            now = time.monotonic()
            timeouts = []
            if self._closing_deadline is not None:
                if now >= self._closing_deadline:
                    if self._close_sent:
                        return False
                    self.close(timeout=0.5)
                    continue
                timeouts.append(self._closing_deadline - now)
            if self._ping_interval:
                due = self._last_ping + self._ping_interval
                if now >= due:
                    self._last_ping = now
                    if not self._close_sent:
                        self._send_control(websocket.ABNF.OPCODE_PING, b"")
                    due = now + self._ping_interval
                timeouts.append(due - now)
            if self._outgoing:
                self.try_flush()
                if self._outgoing:
                    timeouts.append(0.05)  # control frames wait for a writable socket
            events = selector.select(min(timeouts) if timeouts else None)
            for key, _ in events:
                if key.fileobj != self._wake_r:
                    return True
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            if (
                not events
                and self._dead_after
                and time.monotonic() - self._last_received > self._dead_after
            ):
                raise StreamClosedError(
                    f"no data or pong from the server for {self._dead_after:.0f} s; "
                    "the connection is dead"
                )
        return False

    def _shutdown(self) -> None:
        with self._io_lock:
            try:
                self._sock.close()
            except OSError:
                pass
        with self._state_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1


def _as_bytes(data: Union[str, bytes]) -> bytes:
    # websocket-client types frame data as str or bytes; with utf-8 validation off it is bytes.
    return data.encode() if isinstance(data, str) else data


def _parse_close(payload: bytes) -> Tuple[Optional[int], str]:
    if len(payload) < 2:
        return None, ""
    code = struct.unpack("!H", payload[:2])[0]
    return code, payload[2:].decode("utf-8", "replace")


def connection_tag(url: str) -> str:
    path = urlsplit(url).path.rstrip("/").split("/")
    return "/".join(path[-3:]) if len(path) >= 3 else url
