"""The Client: one cluster configuration, one REST session, and the streaming calls bound to it."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
)

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import _auth, _proxy, _transport
from ._request import join_url, pod_path
from ._secret import Secret
from .config import (
    ClusterConfig,
    build_proxy_ssl_context,
    build_ssl_context,
    load_incluster_config,
    load_kubeconfig,
)
from .errors import ApiError, ConnectError, K8sStreamError, PodStateError

if TYPE_CHECKING:
    import websocket

    from .process import CompletedProcess, RemoteProcess

__all__ = ["Client", "default_client"]

logger = logging.getLogger("k8sstream.client")


class _DialAdapter(HTTPAdapter):
    """Makes requests connect exactly as the WebSocket does.

    The TCP connection (direct or through the chosen proxy) comes from ``_proxy.open_socket``,
    the same code the WebSocket uses; urllib3 then adds TLS with the client's own SSLContext
    (never certifi's bundle) and verifies the name against ``tls-server-name`` or the host.
    """

    def __init__(
        self,
        ssl_context: Optional[ssl.SSLContext],
        server_hostname: Optional[str],
        open_socket: Callable[[str, int, Optional[float]], socket.socket],
    ) -> None:
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname
        self._open_socket = open_socket
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        super().init_poolmanager(*args, **kwargs)
        opener = self._open_socket

        def new_conn(conn: Any) -> socket.socket:
            timeout = conn.timeout if isinstance(conn.timeout, (int, float)) else None
            return opener(conn.host, conn.port, timeout)

        def send(conn: Any, data: Any) -> None:
            # http.client sends each request's header block in one call; the header names
            # the credential by placeholder and the real value is swapped in here.
            if not isinstance(data, (bytes, bytearray)):
                HTTPConnection.send(conn, data)
                return
            if conn.sock is None:
                conn.connect()  # as http.client's own send() would
            _transport.send_with_credentials(conn.sock, data)

        methods = {"_new_conn": new_conn, "send": send}
        http_conn = type("_HTTPConnection", (HTTPConnection,), methods)
        https_conn = type("_HTTPSConnection", (HTTPSConnection,), methods)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("_HTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("_HTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The SSLContext already holds the CA and client certificate; requests' default would
        # add certifi's public CAs to it.
        return None


class Client:
    """A connection configuration for one API server and user.

    Offers the same calls as the module level (``Popen``, ``run``, ``check_output``,
    ``attach`` ...) bound to this configuration. Thread-safe; close it to release the REST
    session's connections (also a context manager).

    The proxy is chosen once, when the client is created: the kubeconfig ``proxy-url``, else
    ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment. REST calls and WebSockets
    share the TLS settings, the credentials and the proxy. A request refused with 401 is
    retried once when the credentials can be refreshed (exec plugin, token file).
    """

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._auth = _auth.make_authenticator(config)
        self._proxy = _proxy.select_proxy(config.server, config.proxy_url, config.source)
        self._lock = threading.Lock()
        # The SSLContext depends on the client certificate, which an exec plugin may change.
        self._cert_key: Optional[Tuple[bytes, Secret]] = None
        self._ssl_context = build_ssl_context(config)
        self._proxy_context: Optional[ssl.SSLContext] = None
        self._session: Optional[requests.Session] = None
        if self._proxy is not None:
            logger.debug("connecting to %s through %s", config.server, self._proxy.display)

    def __repr__(self) -> str:
        return f"Client(server={self.config.server!r}, namespace={self.config.namespace!r})"

    @classmethod
    def from_kubeconfig(
        cls,
        path: Optional[str] = None,
        context: Optional[str] = None,
        namespace: Optional[str] = None,
    ) -> Client:
        """A client from a kubeconfig file (default: ``KUBECONFIG`` or ``~/.kube/config``).

        Without ``path`` and without any kubeconfig file, a process in a pod gets the
        in-cluster configuration, as with kubectl.
        """
        return cls(load_kubeconfig(path, context=context, namespace=namespace))

    @classmethod
    def in_cluster(
        cls,
        namespace: Optional[str] = None,
        service_account_dir: Optional[str] = None,
    ) -> Client:
        """A client for the cluster this process runs in (service account, CA, namespace).

        ``service_account_dir`` defaults to ``/var/run/secrets/kubernetes.io/serviceaccount``.
        """
        return cls(load_incluster_config(namespace, service_account_dir))

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def proxy(self) -> Optional[_proxy.ProxySettings]:
        """The proxy this client uses, or ``None`` for direct connections."""
        return self._proxy

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- connections ---

    def _tls(self) -> Tuple[Optional[ssl.SSLContext], requests.Session]:
        """The SSLContext and REST session for the current credentials (built on first use)."""
        cert = self._auth.client_certificate()
        with self._lock:
            if cert is not None and cert != self._cert_key:
                self._ssl_context = build_ssl_context(self.config, client_cert=cert)
                self._cert_key = cert
                if self._session is not None:
                    self._session.close()
                    self._session = None
            if self._session is None:
                session = requests.Session()
                session.trust_env = False  # proxies are decided from the config, not by requests
                session.verify = not self.config.insecure_skip_tls_verify
                adapter = _DialAdapter(
                    self._ssl_context, self.config.tls_server_name, self._open_socket
                )
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._ssl_context, self._session

    def _proxy_ssl_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._proxy_context is None:
                self._proxy_context = build_proxy_ssl_context(self.config)
            return self._proxy_context

    def _open_socket(self, host: str, port: int, timeout: Optional[float]) -> socket.socket:
        return _proxy.open_socket(host, port, self._proxy, timeout, self._proxy_ssl_context)

    # --- REST ---

    def session(self) -> requests.Session:
        """The shared REST session (TLS, proxy); credentials are added per request."""
        return self._tls()[1]

    def get_json(
        self, path: str, params: Optional[Dict[str, str]] = None, timeout: float = 30.0
    ) -> Any:
        """GET an API path and return the decoded JSON.

        Blocks for the request (and for a credential plugin, if one must run).

        Raises:
            ApiError: the server answered with an error status.
            ConnectError, TLSError, ProxyError: the server could not be reached.
            ConfigError: the credentials cannot be obtained (e.g. a failing exec plugin).
        """
        url = join_url(self.config.server, path, list((params or {}).items()))
        for attempt in (1, 2):
            credential = self._auth.credential()
            session = self.session()
            try:
                response = session.get(
                    url, headers=_auth.authorization_headers(credential), timeout=timeout
                )
            except requests.exceptions.RequestException as exc:
                raise self._request_error(exc) from None
            with response:
                if (
                    response.status_code == 401
                    and attempt == 1
                    and self._auth.refresh_after_unauthorized(credential)
                ):
                    logger.debug("401 from %s: retrying with fresh credentials", path)
                    continue
                if response.status_code >= 400:
                    raise _transport.api_error_from_response(
                        response.status_code, response.content, response.reason or ""
                    )
                return response.json()
        raise AssertionError("unreachable")  # pragma: no cover

    def _request_error(self, exc: BaseException) -> K8sStreamError:
        ours = _find_cause(exc, K8sStreamError)
        if ours is not None:
            return ours
        ssl_exc = _find_cause(exc, ssl.SSLError)
        if ssl_exc is not None or isinstance(exc, requests.exceptions.SSLError):
            return _transport.tls_error(
                ssl_exc or exc, self.config.server, self.config.tls_server_name
            )
        return ConnectError(f"cannot reach {self.config.server}: {_root_cause(exc)}")

    def get_pod(
        self, pod: str, namespace: Optional[str] = None, timeout: float = 30.0
    ) -> Dict[str, Any]:
        """The pod object, as ``kubectl get pod -o json`` shows it."""
        path = pod_path(namespace or self.namespace, pod)
        result: Dict[str, Any] = self.get_json(path, timeout=timeout)
        return result

    def resolve_container(
        self,
        pod: str,
        namespace: str,
        container: Optional[str],
        *,
        attach: bool = False,
        timeout: float = 30.0,
    ) -> Tuple[str, Dict[str, Any]]:
        """Check the pod the way kubectl does and choose the container (PROTOCOL.md 11.1).

        Returns:
            The container name and its spec.

        Raises:
            PodStateError: the pod has completed or the container does not exist.
        """
        obj = self.get_pod(pod, namespace, timeout=timeout)
        phase = (obj.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            verb = "attach a container" if attach else "exec into a container"
            raise PodStateError(f"cannot {verb} in a completed pod; current phase is {phase}")
        spec = obj.get("spec") or {}
        containers: List[Dict[str, Any]] = list(spec.get("containers") or [])
        everything = (
            containers
            + list(spec.get("initContainers") or [])
            + list(spec.get("ephemeralContainers") or [])
        )
        by_name = {c.get("name"): c for c in everything}
        if container:
            if container not in by_name:
                raise PodStateError(f"container {container} not found in pod {pod}")
            return container, dict(by_name[container])
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        default = annotations.get("kubectl.kubernetes.io/default-container")
        if isinstance(default, str) and default in by_name:
            return default, by_name[default]
        if not containers:
            raise PodStateError(f"pod {pod} has no containers")
        chosen = containers[0]
        if len(everything) > 1:
            logger.info(
                'Defaulted container "%s" out of: %s',
                chosen.get("name"),
                ", ".join(str(c.get("name")) for c in everything),
            )
        return str(chosen.get("name")), chosen

    # --- streaming ---

    def dial(
        self,
        path: str,
        query: Sequence[Tuple[str, str]],
        subprotocols: Sequence[str],
        timeout: float = 30.0,
    ) -> Tuple[websocket.WebSocket, Optional[str]]:
        """Open a WebSocket to an API path; returns the socket and the chosen subprotocol.

        Blocks for the connection and upgrade; a 401 is retried once with fresh credentials.
        """
        url = join_url(self.config.server, path, query, websocket=True)
        for attempt in (1, 2):
            credential = self._auth.credential()
            ssl_context, _ = self._tls()
            options = _transport.DialOptions(
                url=url,
                subprotocols=subprotocols,
                headers=_auth.authorization_headers(credential),
                ssl_context=ssl_context,
                server_hostname=self.config.tls_server_name,
                proxy=self._proxy,
                proxy_ssl_context=self._proxy_ssl_context,
                connect_timeout=timeout,
            )
            try:
                return _transport.dial(options)
            except ApiError as exc:
                if (
                    exc.status_code == 401
                    and attempt == 1
                    and self._auth.refresh_after_unauthorized(credential)
                ):
                    logger.debug("401 on the upgrade of %s: retrying with fresh credentials", path)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the subprocess-like calls, bound to this client ---

    def Popen(self, args: Any, **kwargs: Any) -> RemoteProcess:
        from .process import RemoteProcess

        return RemoteProcess(args, client=self, **kwargs)

    def attach(self, pod: str, **kwargs: Any) -> RemoteProcess:
        from .process import attach

        return attach(pod, client=self, **kwargs)

    def run(self, args: Any, **kwargs: Any) -> CompletedProcess:
        from .process import run

        return run(args, client=self, **kwargs)

    def call(self, args: Any, **kwargs: Any) -> int:
        from .process import call

        return call(args, client=self, **kwargs)

    def check_call(self, args: Any, **kwargs: Any) -> int:
        from .process import check_call

        return check_call(args, client=self, **kwargs)

    def check_output(self, args: Any, **kwargs: Any) -> Any:
        from .process import check_output

        return check_output(args, client=self, **kwargs)


_E = TypeVar("_E", bound=BaseException)


def _find_cause(exc: BaseException, kind: Type[_E]) -> Optional[_E]:
    """The first ``kind`` in an exception's chain, urllib3's ``reason`` and ``args`` included."""
    seen = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        for nxt in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        ):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    return str(exc) or type(exc).__name__


_default: Optional[Client] = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client for ``KUBECONFIG`` / ``~/.kube/config``, created on first use.

    Raises:
        ConfigError: no usable kubeconfig was found.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = Client.from_kubeconfig()
        return _default
