"""Proxy selection and tunnelled sockets, as kubectl (Go's ``net/http``) does them.

Selection: a kubeconfig ``proxy-url`` always wins (and ignores ``NO_PROXY``, as client-go does);
otherwise ``HTTPS_PROXY``/``https_proxy`` for https servers and ``HTTP_PROXY``/``http_proxy`` for
http servers, unless ``NO_PROXY``/``no_proxy`` matches. ``NO_PROXY`` entries follow
``golang.org/x/net/http/httpproxy``: ``*``, IP addresses, CIDR ranges, ``domain`` (the domain and
its subdomains), ``.domain`` and ``*.domain`` (subdomains only), each with an optional ``:port``.
Like Go, a proxy from the environment is never used for ``localhost`` or a loopback address.

Tunnels: ``CONNECT`` through ``http://`` and ``https://`` proxies (Basic credentials from the
URL), and ``socks5://``/``socks5h://`` through the optional ``python-socks`` package. An https
proxy carries a second TLS session inside its own; Python cannot layer one ``SSLSocket`` on
another, so a relay thread moves the bytes between the proxy's TLS session and one end of a
socket pair, and the caller gets the other end as an ordinary socket.
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
import logging
import os
import selectors
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

from .errors import ConfigError, ConnectError, ProxyError, TLSError

logger = logging.getLogger("k8sstream.proxy")

SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_MAX_RESPONSE_HEAD = 64 * 1024


@dataclass(frozen=True)
class ProxySettings:
    """A proxy to reach the API server through, already chosen from config or environment.

    ``username`` and ``password`` come from the proxy URL and never appear in ``repr``.
    """

    host: str
    port: int
    username: Optional[str] = field(default=None, repr=False)
    password: Optional[str] = field(default=None, repr=False)
    scheme: str = "http"

    def __repr__(self) -> str:
        auth = "<credentials>@" if self.username is not None else ""
        return f"ProxySettings({self.scheme}://{auth}{self.host}:{self.port})"

    @property
    def display(self) -> str:
        """The proxy as a URL without credentials, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL, credentials included: hand it to libraries, never to a log line."""
        auth = ""
        if self.username is not None:
            auth = urllib.parse.quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + urllib.parse.quote(self.password, safe="")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"


def parse_proxy_url(url: str, where: str, *, default_scheme: bool = False) -> ProxySettings:
    """Parse a proxy URL; ``where`` names its origin (file and key, or variable) for errors.

    Args:
        default_scheme: accept ``host:port`` without a scheme as ``http://`` (Go does this for
            the environment variables, not for kubeconfig ``proxy-url``).

    Raises:
        ConfigError: not a URL, an unsupported scheme, or a bad port. The message never
            repeats the URL, which may hold a password.
    """
    text = url.strip()
    if default_scheme and "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: not a valid proxy URL (bad port or address)") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{where}: proxy scheme {scheme or '(none)'!r} is not supported "
            f"(use one of {', '.join(s + '://' for s in SCHEMES)})"
        )
    if not parts.hostname:
        raise ConfigError(f"{where}: the proxy URL has no host")
    return ProxySettings(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[scheme],
        username=urllib.parse.unquote(parts.username) if parts.username is not None else None,
        password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        scheme=scheme,
    )


def _getenv(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name.upper()) or environ.get(name.lower()) or ""


def proxy_from_environment(
    server: str, environ: Optional[Mapping[str, str]] = None
) -> Optional[ProxySettings]:
    """The proxy Go would use for ``server`` from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``."""
    env = os.environ if environ is None else environ
    parts = urllib.parse.urlsplit(server)
    scheme = "https" if parts.scheme in ("https", "wss") else "http"
    variable = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
    value = _getenv(env, variable)
    if not value:
        return None
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS[scheme]
    if not use_proxy(host, port, _getenv(env, "NO_PROXY")):
        return None
    return parse_proxy_url(value, f"environment variable {variable}", default_scheme=True)


def use_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether Go's proxy rules send a connection to ``host:port`` through the env proxy."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return False
    ip: Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return False
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return False
        if _no_proxy_entry_matches(entry, host, str(port), ip):
            return False
    return True


def _no_proxy_entry_matches(
    entry: str,
    host: str,
    port: str,
    ip: Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]],
) -> bool:
    if "/" in entry:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
        return ip is not None and ip.version == network.version and ip in network
    entry_host, entry_port = _split_host_port(entry)
    try:
        entry_ip = ipaddress.ip_address(entry_host)
    except ValueError:
        entry_ip = None
    if entry_ip is not None:
        return ip is not None and ip == entry_ip and entry_port in ("", port)
    if not entry_host:
        return False
    if entry_host.startswith("*."):
        entry_host = entry_host[1:]
    match_host = not entry_host.startswith(".")
    if match_host:
        entry_host = "." + entry_host
    if host.endswith(entry_host) or (match_host and host == entry_host[1:]):
        return entry_port in ("", port)
    return False


def _split_host_port(entry: str) -> Tuple[str, str]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


def select_proxy(
    server: str, proxy_url: Optional[str], source: str, environ: Optional[Mapping[str, str]] = None
) -> Optional[ProxySettings]:
    """The proxy for ``server``: the kubeconfig ``proxy-url`` if set, else the environment's."""
    if proxy_url:
        return parse_proxy_url(proxy_url, f"{source}: proxy-url")
    return proxy_from_environment(server, environ)


# --- opening sockets --------------------------------------------------------------------------


def open_socket(
    host: str,
    port: int,
    proxy: Optional[ProxySettings],
    timeout: Optional[float],
    proxy_ssl_context: Optional[Callable[[], ssl.SSLContext]] = None,
) -> socket.socket:
    """A connected TCP socket to ``host:port``, directly or through ``proxy``.

    The socket is in blocking mode with ``timeout``. TLS to the API server is the caller's.

    Args:
        proxy_ssl_context: makes the SSLContext for an ``https://`` proxy when one is needed.

    Raises:
        ConnectError: the server (or, without a proxy, its address) cannot be reached.
        ProxyError: the proxy cannot be reached or refused the tunnel.
        TLSError: the TLS session with an https proxy failed.
        ConfigError: a socks5 proxy without the optional ``python-socks`` package.
    """
    if proxy is None:
        try:
            return socket.create_connection((host, port), timeout=timeout)
        except socket.gaierror as exc:
            raise ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        except socket.timeout as exc:
            raise ConnectError(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    if proxy.scheme in ("socks5", "socks5h"):
        return _open_socks(host, port, proxy, timeout)
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise ProxyError(f"cannot connect to the proxy {proxy.display}: {reason}") from exc
    try:
        if proxy.scheme == "https":
            context = proxy_ssl_context() if proxy_ssl_context else ssl.create_default_context()
            tls = _wrap_proxy_tls(sock, context, proxy)
            sock = tls
            _connect_tunnel(tls, host, port, proxy)
            return _relay_through(tls, timeout)
        _connect_tunnel(sock, host, port, proxy)
        return sock
    except BaseException:
        sock.close()
        raise


def _wrap_proxy_tls(
    sock: socket.socket, context: ssl.SSLContext, proxy: ProxySettings
) -> ssl.SSLSocket:
    try:
        return context.wrap_socket(sock, server_hostname=proxy.host)
    except ssl.SSLCertVerificationError as exc:
        raise TLSError(
            f"TLS verification of the proxy {proxy.display} failed: {exc.verify_message}"
        ) from exc
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(f"TLS handshake with the proxy {proxy.display} failed: {exc}") from exc


def _connect_tunnel(sock: socket.socket, host: str, port: int, proxy: ProxySettings) -> None:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username is not None:
        pair = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append(f"Proxy-Authorization: Basic {base64.b64encode(pair).decode()}")
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = _read_head(sock)
    except socket.timeout as exc:
        raise ProxyError(f"the proxy {proxy.display} did not answer CONNECT in time") from exc
    except OSError as exc:
        raise ProxyError(
            f"the proxy {proxy.display} closed the connection during CONNECT: {exc}"
        ) from exc
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    fields = status_line.split(" ", 2)
    code = int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else 0
    if 200 <= code < 300:
        return
    if code in (401, 407):  # some proxies (tinyproxy) answer a CONNECT with 401
        hint = (
            "the credentials in the proxy URL were rejected"
            if proxy.username is not None
            else "it needs credentials (put them in the proxy URL)"
        )
        raise ProxyError(f"the proxy {proxy.display} refused the tunnel to {authority}: {hint}")
    answer = status_line or "(no answer)"
    raise ProxyError(f"the proxy {proxy.display} refused the tunnel to {authority}: {answer}")


def _read_head(sock: socket.socket) -> bytes:
    # One byte at a time: whatever follows the proxy's answer belongs to the tunnel, and the
    # answer is short.
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionResetError("connection closed")
        head += byte
        if len(head) > _MAX_RESPONSE_HEAD:
            raise ConnectionResetError("the answer to CONNECT is too long")
    return bytes(head)


def _open_socks(
    host: str, port: int, proxy: ProxySettings, timeout: Optional[float]
) -> socket.socket:
    try:
        # Imported by name: an optional package, typed or not, present or not.
        socks = importlib.import_module("python_socks")
        socks_sync = importlib.import_module("python_socks.sync")
    except ImportError:
        raise ConfigError(
            f"the proxy {proxy.display} is a SOCKS proxy, which needs the optional "
            "'python-socks' package (pip install python-socks)"
        ) from None
    # socks5h resolves names at the proxy; plain socks5 resolves them here (as Go does).
    url = proxy.url.replace("socks5h://", "socks5://", 1)
    try:
        connector = socks_sync.Proxy.from_url(url, rdns=proxy.scheme == "socks5h")
        sock: socket.socket = connector.connect(host, port, timeout=timeout)
    except socks.ProxyTimeoutError as exc:
        raise ProxyError(f"the SOCKS proxy {proxy.display} timed out") from exc
    except socks.ProxyError as exc:
        raise ProxyError(f"the SOCKS proxy {proxy.display} refused {host}:{port}: {exc}") from exc
    except OSError as exc:
        raise ProxyError(
            f"cannot connect to the SOCKS proxy {proxy.display}: {exc.strerror or exc}"
        ) from exc
    sock.settimeout(timeout)
    return sock


# --- TLS inside TLS ------------------------------------------------------------------------------


def _relay_through(outer: ssl.SSLSocket, timeout: Optional[float]) -> socket.socket:
    """Return one end of a socket pair whose other end is relayed through ``outer``."""
    mine, theirs = socket.socketpair()
    try:
        mine.settimeout(timeout)
        relay = _Relay(theirs, outer)
        threading.Thread(target=relay.run, name="k8sstream-proxy-relay", daemon=True).start()
    except BaseException:
        mine.close()
        theirs.close()
        raise
    return mine


class _Relay:
    """Moves bytes both ways between a socket-pair end and an https proxy's TLS session.

    Non-blocking on both sides with one bounded buffer per direction, so neither direction can
    stall the other. Ends (closing both sockets) when either side closes or fails.
    """

    _CHUNK = 64 * 1024

    def __init__(self, plain: socket.socket, tls: ssl.SSLSocket) -> None:
        self._plain = plain
        self._tls = tls

    def run(self) -> None:
        plain, tls = self._plain, self._tls
        to_tls = bytearray()
        to_plain = bytearray()
        plain_eof = tls_eof = False
        selector = selectors.DefaultSelector()
        try:
            plain.setblocking(False)
            tls.setblocking(False)
            registered: Dict[socket.socket, int] = {}
            while True:
                if (plain_eof and not to_tls) or (tls_eof and not to_plain):
                    return
                for sock, reading, pending in (
                    (plain, not plain_eof and len(to_tls) < self._CHUNK, to_plain),
                    (tls, not tls_eof and len(to_plain) < self._CHUNK, to_tls),
                ):
                    events = (selectors.EVENT_READ if reading else 0) | (
                        selectors.EVENT_WRITE if pending else 0
                    )
                    if registered.get(sock) != events:
                        if sock in registered:
                            selector.unregister(sock)
                            del registered[sock]
                        if events:
                            selector.register(sock, events)
                            registered[sock] = events
                has_pending = tls.pending() > 0 and not tls_eof and len(to_plain) < self._CHUNK
                # TLS may hold decrypted bytes that select() cannot see.
                ready = {
                    key.fileobj: mask for key, mask in selector.select(0 if has_pending else None)
                }
                if has_pending:
                    ready[tls] = ready.get(tls, 0) | selectors.EVENT_READ
                if ready.get(tls, 0) & selectors.EVENT_READ and len(to_plain) < self._CHUNK:
                    data = _nb_recv(tls)
                    if data == b"":
                        tls_eof = True
                    elif data:
                        to_plain += data
                if ready.get(plain, 0) & selectors.EVENT_READ and len(to_tls) < self._CHUNK:
                    data = _nb_recv(plain)
                    if data == b"":
                        plain_eof = True
                    elif data:
                        to_tls += data
                if to_tls:
                    del to_tls[: _nb_send(tls, to_tls)]
                if to_plain:
                    del to_plain[: _nb_send(plain, to_plain)]
        except OSError as exc:
            logger.debug("proxy relay ended: %s", exc)
        finally:
            selector.close()
            for sock in (plain, tls):
                try:
                    sock.close()
                except OSError:
                    pass


def _nb_recv(sock: socket.socket) -> Optional[bytes]:
    """``None`` when nothing can be read now, ``b""`` at end of stream."""
    try:
        return sock.recv(_Relay._CHUNK)
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    except ssl.SSLZeroReturnError:
        return b""
    except ConnectionResetError:
        return b""


def _nb_send(sock: socket.socket, data: bytearray) -> int:
    try:
        return sock.send(data)
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return 0
