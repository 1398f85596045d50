"""The Client: one cluster configuration, one REST session, and the streaming calls bound to it."""

from __future__ import annotations

import logging
import ssl
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import requests
from requests.adapters import HTTPAdapter

from . import _transport
from ._request import join_url, pod_path
from .config import ClusterConfig, build_ssl_context, load_kubeconfig
from .errors import ConfigError, ConnectError, PodStateError, TLSError

if TYPE_CHECKING:
    import websocket

    from .process import CompletedProcess, RemoteProcess

__all__ = ["Client", "default_client"]

logger = logging.getLogger("k8sstream.client")


class _ContextAdapter(HTTPAdapter):
    """Makes requests use the client's own SSLContext instead of certifi's bundle."""

    def __init__(
        self, ssl_context: Optional[ssl.SSLContext], server_hostname: Optional[str]
    ) -> None:
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The SSLContext already holds the CA and client certificate; requests' default would
        # add certifi's public CAs to it.
        return None


class Client:
    """A connection configuration for one API server and user.

    Offers the same calls as the module level (``Popen``, ``run``, ``check_output``,
    ``attach`` ...) bound to this configuration. Thread-safe; close it to release the REST
    session's connections (also a context manager).
    """

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._ssl_context = build_ssl_context(config)
        self._session: Optional[requests.Session] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client(server={self.config.server!r}, namespace={self.config.namespace!r})"

    @classmethod
    def from_kubeconfig(
        cls,
        path: Optional[str] = None,
        context: Optional[str] = None,
        namespace: Optional[str] = None,
    ) -> Client:
        """A client from a kubeconfig file (default: ``KUBECONFIG`` or ``~/.kube/config``)."""
        return cls(load_kubeconfig(path, context=context, namespace=namespace))

    @property
    def namespace(self) -> str:
        return self.config.namespace

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- REST ---

    def _auth_headers(self) -> Dict[str, str]:
        if self.config.token:
            return {"Authorization": f"Bearer {self.config.token}"}
        return {}

    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                session = requests.Session()
                session.trust_env = False  # proxies are decided from the config, not by requests
                session.verify = not self.config.insecure_skip_tls_verify
                adapter = _ContextAdapter(self._ssl_context, self.config.tls_server_name)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._session

    def get_json(
        self, path: str, params: Optional[Dict[str, str]] = None, timeout: float = 30.0
    ) -> Any:
        """GET an API path and return the decoded JSON.

        Raises:
            ApiError: the server answered with an error status.
            ConnectError, TLSError: the server could not be reached.
        """
        url = join_url(self.config.server, path, list((params or {}).items()))
        try:
            response = self.session().get(url, headers=self._auth_headers(), timeout=timeout)
        except requests.exceptions.SSLError as exc:
            raise TLSError(
                f"TLS connection to {self.config.server} failed: {_root_cause(exc)}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ConnectError(f"cannot reach {self.config.server}: {_root_cause(exc)}") from None
        with response:
            if response.status_code >= 400:
                raise _transport.api_error_from_response(
                    response.status_code, response.content, response.reason or ""
                )
            return response.json()

    def get_pod(self, pod: str, namespace: Optional[str] = None) -> Dict[str, Any]:
        """The pod object, as ``kubectl get pod -o json`` shows it."""
        result: Dict[str, Any] = self.get_json(pod_path(namespace or self.namespace, pod))
        return result

    def resolve_container(
        self, pod: str, namespace: str, container: Optional[str], *, attach: bool = False
    ) -> Tuple[str, Dict[str, Any]]:
        """Check the pod the way kubectl does and choose the container (PROTOCOL.md 11.1).

        Returns:
            The container name and its spec.

        Raises:
            PodStateError: the pod has completed or the container does not exist.
        """
        obj = self.get_pod(pod, namespace)
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
        self, path: str, query: Sequence[Tuple[str, str]], subprotocols: Sequence[str]
    ) -> Tuple[websocket.WebSocket, Optional[str]]:
        """Open a WebSocket to an API path; returns the socket and the chosen subprotocol."""
        options = _transport.DialOptions(
            url=join_url(self.config.server, path, query, websocket=True),
            subprotocols=subprotocols,
            headers=self._auth_headers(),
            ssl_context=self._ssl_context,
            server_hostname=self.config.tls_server_name,
            proxy=self._proxy(),
        )
        return _transport.dial(options)

    def _proxy(self) -> Optional[_transport.ProxySettings]:
        if not self.config.proxy_url:
            return None
        parts = urllib.parse.urlsplit(self.config.proxy_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"{self.config.source}: proxy-url {parts.scheme}://... is not supported yet "
                "(only http:// proxies)"
            )
        return _transport.ProxySettings(
            host=parts.hostname,
            port=parts.port or 80,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
        )

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
