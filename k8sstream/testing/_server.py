"""The emulated kube-apiserver: HTTP routing, discovery, pods, and the exec/attach upgrade paths.

Refusal order and wording follow PROTOCOL.md 2.3-3.4: the API server's own checks answer with
Status JSON; on the legacy path (B) the kubelet's checks answer in plain text and the runtime's
WebSocket handshake (golang.org/x/net) answers with raw, header-less responses; on the v5 path
(A) everything after the API server's checks arrives in band after the 101.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import collections
import functools
import itertools
import json
import logging
import os
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from typing import (
    Any,
    Deque,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import yaml

from .._channel import PROTOCOLS, V1, V1_BASE64, V4, V4_BASE64, V5, select_protocol
from .._status import http_error_body, internal_error_status
from ._faults import Faults, RequestRecord
from ._model import (
    WORKLOAD_KINDS,
    Container,
    ContainerState,
    Pod,
    PodRecord,
    Workload,
    match_label_selector,
)
from ._portforward import (
    LEGACY_PROTOCOLS,
    PORT_FORWARD_PROTOCOL,
    TUNNEL_PREFIX,
    TUNNEL_PROTOCOL,
    LegacySession,
    TunnelSession,
    dial_local,
    forward_error,
)
from ._remotecommand import MainProcess, Session, StreamOptions, run_attach, run_exec
from ._runtime import ExecFailure, Process, accept_connections, container_env, spawn_thread
from ._websocket import WebSocket, accept_key
from ._wire import HttpError, Request, Wire, format_response, read_request, reason_phrase

__all__ = ["ApiServer"]

log = logging.getLogger("k8sstream.testing")

GIT_VERSION = "v1.33.1"
_GIT_COMMIT = "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828"
#: Path B subprotocols of the runtime's remote-command server, in its preference-free order.
PATH_B_PROTOCOLS: Tuple[str, ...] = ("", V1.name, V1_BASE64.name, V4.name, V4_BASE64.name)
_BEARER_PROTOCOL_PREFIX = "base64url.bearer.authorization.k8s.io."
_HANDSHAKE_SECONDS = 10.0
_STOP_JOIN_SECONDS = 5.0
_server_ids = itertools.count(1)

_JSON_HEADERS = [("Cache-Control", "no-cache, private"), ("Content-Type", "application/json")]
_TEXT_TYPE = "text/plain; charset=utf-8"


def _bool_param(values: Optional[List[str]]) -> bool:
    """``Convert_Slice_string_To_bool``: absent, "0" or "false" (any case) is false, else true."""
    if not values:
        return False
    return values[0].lower() not in ("0", "false")


class _Upgraded(Exception):
    """The connection was taken over by a WebSocket session or closed; stop serving HTTP."""


class ApiServer:
    """A local kube-apiserver for exec, attach and port-forward, backed by local processes.

    Args:
        ssl_context: a server-side :class:`ssl.SSLContext` for https; ``None`` for http.
        token: require ``Authorization: Bearer <token>`` (401 Status JSON otherwise).
        client_ca: PEM CA data (or a path to a PEM file) for client certificates; a verified
            certificate then authenticates as its subject CN. Needs ``ssl_context``.
        remote_command_protocols: ``None`` routes like a 1.31+ API server (v5 on Path A,
            ``""``/``channel.k8s.io``/``base64.channel.k8s.io``/``v4.channel.k8s.io``/
            ``v4.base64.channel.k8s.io`` on Path B). A list restricts the accepted names, e.g.
            ``["v4.channel.k8s.io"]`` for an old v4-only server.
        host, port: where to listen (port 0 picks a free port).
        root_dir: parent of the per-container working directories (a temporary directory,
            removed on :meth:`stop`, by default).
        with_demo_pod: with no pods added before :meth:`start`, add pod ``default/demo`` with
            containers ``main`` and ``sidecar``.
        max_message_size: the largest output payload per WebSocket message (32 KiB, as the
            real server's copy buffers).
        git_version: the version reported by ``/version`` (``v1.31`` or later makes kubectl
            use WebSocket).
        stream_creation_timeout: how long a port-forward stream waits for its partner
            (the kubelet's 30 s) before the runtime gives up on the pair.
    """

    def __init__(
        self,
        ssl_context: Optional[ssl.SSLContext] = None,
        token: Optional[str] = None,
        client_ca: Union[str, bytes, None] = None,
        remote_command_protocols: Optional[Sequence[str]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        root_dir: Optional[str] = None,
        *,
        with_demo_pod: bool = True,
        max_message_size: int = 32 * 1024,
        git_version: str = GIT_VERSION,
        request_log_size: int = 1000,
        stream_creation_timeout: float = 30.0,
    ) -> None:
        if client_ca is not None and ssl_context is None:
            raise ValueError("client_ca needs ssl_context: client certificates require TLS")
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self.ssl_context = ssl_context
        self.token = token
        self.client_ca = client_ca
        if remote_command_protocols is None:
            self._path_a = True
            self._path_b: Tuple[str, ...] = PATH_B_PROTOCOLS
        else:
            unknown = [p for p in remote_command_protocols if p not in PROTOCOLS]
            if unknown:
                raise ValueError(f"unknown remote-command subprotocols: {unknown}")
            self._path_a = V5.name in remote_command_protocols
            self._path_b = tuple(
                p for p in remote_command_protocols if p != V5.name and p in PATH_B_PROTOCOLS
            )
        self.host = host
        self.port = port
        self.max_message_size = max_message_size
        self.git_version = git_version
        self.with_demo_pod = with_demo_pod
        self.stream_creation_timeout = stream_creation_timeout
        self.faults = Faults()
        self.requests: Deque[RequestRecord] = collections.deque(maxlen=request_log_size)
        self._id = next(_server_ids)
        self._lock = threading.RLock()
        self._pods: Dict[Tuple[str, str], PodRecord] = {}
        # (resource, namespace, name) -> the workload and its JSON (uid, version, timestamps).
        self._workloads: Dict[Tuple[str, str, str], Tuple[Workload, Dict[str, Any]]] = {}
        self._mains: Dict[Tuple[str, str, str], MainProcess] = {}
        self._execs: Set[Process] = set()
        self._wires: Set[Wire] = set()
        self._pf_sessions: Set[Union[TunnelSession, LegacySession]] = set()
        self._root_dir = root_dir
        self._owns_root = False
        self._listener: Optional[socket.socket] = None
        self._wake_r = self._wake_w = -1
        self._accept_thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._conn_ids = itertools.count(1)
        self._started = False
        self._resource_version = itertools.count(2)

    # -- lifecycle --

    def start(self) -> ApiServer:
        """Listen and serve; returns once the socket is listening. Returns ``self``."""
        if self._started:
            raise RuntimeError("the emulator is already running")
        if self.ssl_context is not None:
            try:
                self.ssl_context.set_alpn_protocols(["http/1.1"])
            except NotImplementedError:
                pass
            if self.client_ca is not None:
                self._load_client_ca(self.ssl_context, self.client_ca)
        self._stopping.clear()
        listener = socket.create_server((self.host, self.port), backlog=128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        self._started = True
        self._root()
        if not self._pods and self.with_demo_pod:
            self.add_pod(
                Pod(
                    name="demo",
                    namespace="default",
                    containers=[Container("main"), Container("sidecar")],
                )
            )
        with self._lock:
            for record in list(self._pods.values()):
                self._start_containers(record)
        self._accept_thread = spawn_thread(f"accept@{self._id}", self._accept_loop)
        log.info("k8sstream emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop listening, end every connection, kill every process, remove the temporary root."""
        if not self._started:
            return
        self._stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join(_STOP_JOIN_SECONDS)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            mains = list(self._mains.values())
            execs = list(self._execs)
            wires = list(self._wires)
            pf_sessions = list(self._pf_sessions)
        for session in pf_sessions:
            session.abort()
        for process in execs:
            process.kill()
        for main in mains:
            main.kill()
        for wire in wires:
            wire.abort()
        self._join_threads(time.monotonic() + _STOP_JOIN_SECONDS)
        with self._lock:
            self._mains.clear()
            self._execs.clear()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        if self._owns_root and self._root_dir is not None:
            shutil.rmtree(self._root_dir, ignore_errors=True)
            self._root_dir = None
            self._owns_root = False
        self._started = False
        log.info("k8sstream emulator stopped")

    def _join_threads(self, deadline: float) -> None:
        # Repeat: a connection thread that was mid-way through starting a session can still
        # spawn a pump or waiter after the first pass (it then finds its process killed).
        suffix = f"@{self._id}"
        while time.monotonic() < deadline:
            ours = [
                t
                for t in threading.enumerate()
                if t.name.startswith("k8sstream-emulator-")
                and t.name.endswith(suffix)
                and t is not threading.current_thread()
            ]
            if not ours:
                return
            for thread in ours:
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftover = list(self._execs)
        for process in leftover:
            process.kill()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def root_dir(self) -> str:
        return self._root()

    def _root(self) -> str:
        if self._root_dir is None:
            self._root_dir = tempfile.mkdtemp(prefix="k8sstream-emulator-")
            self._owns_root = True
        return self._root_dir

    @staticmethod
    def _load_client_ca(ctx: ssl.SSLContext, client_ca: Union[str, bytes]) -> None:
        text = client_ca.decode() if isinstance(client_ca, bytes) else client_ca
        if "-----BEGIN" in text:
            ctx.load_verify_locations(cadata=text)
        else:
            ctx.load_verify_locations(cafile=text)
        if ctx.verify_mode == ssl.CERT_NONE:
            ctx.verify_mode = ssl.CERT_OPTIONAL

    # -- pods --

    def add_pod(self, pod: Pod) -> Pod:
        """Register a pod and start its containers' main processes (at :meth:`start` if not
        running yet). Creates each container's directory. Returns the pod."""
        if not pod.containers:
            raise ValueError("a pod needs at least one container")
        names = pod.container_names()
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate container names in pod {pod.name}: {names}")
        pod.validate_ports()
        key = (pod.namespace, pod.name)
        with self._lock:
            if key in self._pods:
                raise ValueError(f'pods "{pod.name}" already exists in namespace {pod.namespace}')
            record = PodRecord(pod, resource_version=str(next(self._resource_version)))
            self._pods[key] = record
            for c in pod.containers:
                os.makedirs(self.container_dir(pod.namespace, pod.name, c.name), exist_ok=True)
            if self._started:
                self._start_containers(record)
        return pod

    def remove_pod(self, namespace: str, name: str) -> None:
        """Unregister a pod and kill its main processes. Raises KeyError if it does not exist."""
        with self._lock:
            record = self._pods.pop((namespace, name))
            mains = [
                self._mains.pop((namespace, name, c.name))
                for c in record.pod.containers
                if (namespace, name, c.name) in self._mains
            ]
        for main in mains:
            main.kill()
        for main in mains:
            main.waiter.join(_STOP_JOIN_SECONDS)

    def get_pod(self, namespace: str, name: str) -> Pod:
        """The registered pod. Raises KeyError if it does not exist."""
        with self._lock:
            return self._pods[(namespace, name)].pod

    # -- workloads --

    def add_workload(
        self,
        kind: Union[str, Workload],
        name: Optional[str] = None,
        selector: Optional[Mapping[str, str]] = None,
        namespace: str = "default",
        **kwargs: Any,
    ) -> Workload:
        """Register a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, Service or
        ReplicationController, served at its API path (and listed in discovery) so that
        ``deploy/web``-style targets resolve as with a real cluster. It creates no pods: add
        pods whose labels match ``selector``. ``kwargs`` go to :class:`Workload`
        (``labels``, ``match_expressions``, ``ports``). Returns the workload.
        """
        if isinstance(kind, Workload):
            workload = kind
        else:
            if name is None:
                raise ValueError("add_workload needs a name")
            workload = Workload(kind, name, dict(selector or {}), namespace, **kwargs)
        key = (workload.resource, workload.namespace, workload.name)
        with self._lock:
            if key in self._workloads:
                raise ValueError(
                    f'{workload.resource} "{workload.name}" already exists in namespace '
                    f"{workload.namespace}"
                )
            obj = workload.to_json(
                str(uuid.uuid4()), str(next(self._resource_version)), time.time()
            )
            self._workloads[key] = (workload, obj)
        return workload

    def remove_workload(self, kind: str, namespace: str, name: str) -> None:
        """Unregister a workload. Raises KeyError if it does not exist."""
        resource = WORKLOAD_KINDS[kind][1] if kind in WORKLOAD_KINDS else kind
        with self._lock:
            del self._workloads[(resource, namespace, name)]

    def container_dir(self, namespace: str, pod: str, container: str) -> str:
        """The directory that is the container's working directory and ``HOME``."""
        return os.path.join(self._root(), namespace, pod, container)

    def _start_containers(self, record: PodRecord) -> None:
        pod = record.pod
        for c in pod.containers:
            key = (pod.namespace, pod.name, c.name)
            if key in self._mains or (c.name in record.states):
                continue
            cwd = self.container_dir(pod.namespace, pod.name, c.name)
            os.makedirs(cwd, exist_ok=True)
            env = container_env(pod.name, cwd, c.tty, c.env)
            container_id = "containerd://" + secrets.token_hex(32)
            try:
                process = Process(
                    c.main_command(),
                    cwd=cwd,
                    env=env,
                    stdin=c.stdin,
                    stdout=True,
                    stderr=True,
                    tty=c.tty,
                )
            except ExecFailure as exc:
                log.warning("container %s/%s/%s failed to start: %s", *key, exc)
                now = time.time()
                record.states[c.name] = ContainerState(container_id, now, 128, now)
                continue
            state = ContainerState(container_id, time.time())
            record.states[c.name] = state

            def on_exit(code: int, state: ContainerState = state) -> None:
                state.exit_code = code
                state.finished_at = time.time()

            self._mains[key] = MainProcess(
                process,
                tag=f"main-{pod.name}-{c.name}@{self._id}",
                max_message_size=self.max_message_size,
                stdin_once=c.stdin_once,
                on_exit=on_exit,
            )

    # -- kubeconfig --

    def write_kubeconfig(
        self,
        path: Union[str, os.PathLike],
        namespace: str = "default",
        user_token: Optional[str] = None,
        ca_data: Union[str, bytes, None] = None,
        client_cert: Union[str, bytes, None] = None,
        client_key: Union[str, bytes, None] = None,
    ) -> str:
        """Write a kubeconfig whose current context ``k8sstream-emulator`` points here.

        ``user_token`` defaults to the server's token. ``ca_data``, ``client_cert`` and
        ``client_key`` are PEM data; an https server without ``ca_data`` gets
        ``insecure-skip-tls-verify``. Returns the path.
        """

        def b64(data: Union[str, bytes]) -> str:
            raw = data.encode() if isinstance(data, str) else data
            return base64.b64encode(raw).decode()

        cluster: Dict[str, Any] = {"server": self.url}
        if self.ssl_context is not None:
            if ca_data is not None:
                cluster["certificate-authority-data"] = b64(ca_data)
            else:
                cluster["insecure-skip-tls-verify"] = True
        user: Dict[str, Any] = {}
        token = user_token if user_token is not None else self.token
        if token:
            user["token"] = token
        if client_cert is not None:
            user["client-certificate-data"] = b64(client_cert)
        if client_key is not None:
            user["client-key-data"] = b64(client_key)
        name = "k8sstream-emulator"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": user}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
            ],
            "current-context": name,
            "preferences": {},
        }
        target = os.fspath(path)
        with open(target, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, default_flow_style=False, sort_keys=False)
        return target

    # -- connections --

    def _accept_loop(self) -> None:
        assert self._listener is not None
        for sock in accept_connections(self._listener, self._wake_r, self._stopping):
            if self._stopping.is_set():
                sock.close()
                return
            conn_id = next(self._conn_ids)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            spawn_thread(
                f"conn-{conn_id}@{self._id}", functools.partial(self._serve, sock, conn_id)
            )

    def _serve(self, sock: socket.socket, conn_id: int) -> None:
        tag = f"{conn_id}@{self._id}"
        wire: Optional[Wire] = None
        try:
            if self.ssl_context is not None:
                sock.settimeout(_HANDSHAKE_SECONDS)
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True)
                except (OSError, ValueError) as exc:
                    log.info("[%s] TLS handshake failed: %s", tag, exc)
                    sock.close()
                    return
                sock.settimeout(None)
            wire = Wire(sock)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._wires.add(wire)
            buffer = bytearray()
            while not self._stopping.is_set():
                try:
                    request = read_request(wire, buffer)
                except HttpError as exc:
                    self._send_quietly(
                        wire,
                        format_response(
                            exc.status,
                            [("Content-Type", _TEXT_TYPE), ("Connection", "close")],
                            exc.message.encode(),
                        ),
                    )
                    return
                if request is None:
                    return
                try:
                    keep_alive = self._handle(wire, request, buffer, tag)
                except _Upgraded:
                    return
                if not keep_alive:
                    return
        except OSError as exc:
            log.debug("[%s] connection ended: %s", tag, exc)
        except Exception:
            log.exception("[%s] internal error while serving a connection", tag)
        finally:
            if wire is not None:
                with self._lock:
                    self._wires.discard(wire)
                wire.close()
            else:
                sock.close()

    @staticmethod
    def _send_quietly(wire: Wire, data: bytes) -> None:
        try:
            wire.sendall(data)
        except OSError:
            pass

    def _record(self, request: Request, subprotocol: Optional[str] = None) -> None:
        self.requests.append(
            RequestRecord(request.method, request.path, request.raw_query, subprotocol)
        )

    # -- responses --

    def _respond_json(
        self, wire: Wire, request: Request, status: int, obj: Any, *, close: bool = False
    ) -> bool:
        body = json.dumps(obj, separators=(",", ":")).encode()
        return self._respond(wire, request, status, body, _JSON_HEADERS, close=close)

    def _respond_status(
        self,
        wire: Wire,
        request: Request,
        code: int,
        reason: str,
        message: str,
        details: Optional[Mapping[str, Any]] = None,
        *,
        close: bool = False,
    ) -> bool:
        body = http_error_body(code, reason, message, details)
        return self._respond(wire, request, code, body, _JSON_HEADERS, close=close)

    def _respond(
        self,
        wire: Wire,
        request: Request,
        status: int,
        body: bytes,
        headers: Sequence[Tuple[str, str]],
        *,
        close: bool = False,
    ) -> bool:
        keep_alive = request.keep_alive and not close
        all_headers = [("Audit-Id", str(uuid.uuid4())), *headers]
        if not keep_alive:
            all_headers.append(("Connection", "close"))
        if request.method == "HEAD":
            data = format_response(status, all_headers, b"")
        else:
            data = format_response(status, all_headers, body)
        wire.sendall(data)
        return keep_alive

    def _refuse_and_close(self, wire: Wire, request: Request, data: bytes) -> bool:
        """A refusal written on the hijacked connection, which is then closed."""
        self._record(request)
        self._send_quietly(wire, data)
        wire.shutdown_write()
        raise _Upgraded()

    # -- routing --

    def _handle(self, wire: Wire, request: Request, buffer: bytearray, tag: str) -> bool:
        if self.faults.take_stall(request.path):
            self._record(request)
            log.info("[%s] stalling %s %s (fault)", tag, request.method, request.path)
            self._stall(wire)
            raise _Upgraded()
        user = self._authenticate(wire, request)
        if user is None:
            self._record(request)
            return self._respond_status(wire, request, 401, "Unauthorized", "Unauthorized")
        segments = [s for s in request.path.split("/") if s]
        if (
            len(segments) == 7
            and segments[:3] == ["api", "v1", "namespaces"]
            and segments[4] == "pods"
            and segments[6] in ("exec", "attach", "portforward")
        ):
            return self._handle_stream(
                wire, request, buffer, tag, segments[3], segments[5], segments[6]
            )
        self._record(request)
        if request.method not in ("GET", "HEAD"):
            return self._respond_status(
                wire,
                request,
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                {},
            )
        return self._handle_get(wire, request, segments)

    def _stall(self, wire: Wire) -> None:
        # Wait until the client leaves or the server stops, reading and discarding.
        while not self._stopping.is_set():
            try:
                if not wire.recv():
                    return
            except OSError:
                return

    def _authenticate(self, wire: Wire, request: Request) -> Optional[str]:
        if self.client_ca is not None and isinstance(wire.sock, ssl.SSLSocket):
            cert = wire.sock.getpeercert()
            if cert:
                subject: Any = cert.get("subject", ())
                for rdn in subject:
                    for key, value in rdn:
                        if key == "commonName":
                            return str(value)
        if self.token is None and self.client_ca is None:
            return "system:anonymous"
        if self.token is None:
            return None
        auth = request.header("Authorization") or ""
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(credential.strip(), self.token):
            return "token-user"
        return self._authenticate_protocol_token(request)

    def _authenticate_protocol_token(self, request: Request) -> Optional[str]:
        # The WebSocket bearer-token subprotocol (PROTOCOL.md 3.1): stripped on success.
        header = request.header("Sec-WebSocket-Protocol")
        if not header or self.token is None:
            return None
        tokens = [p.strip() for p in header.split(",") if p.strip()]
        bearer = [p for p in tokens if p.startswith(_BEARER_PROTOCOL_PREFIX)]
        others = [p for p in tokens if not p.startswith(_BEARER_PROTOCOL_PREFIX)]
        if len(bearer) != 1 or not others:
            return None
        encoded = bearer[0][len(_BEARER_PROTOCOL_PREFIX) :]
        try:
            value = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not secrets.compare_digest(value, self.token):
            return None
        request.headers = [
            (k, v) for k, v in request.headers if k.lower() != "sec-websocket-protocol"
        ] + [("Sec-WebSocket-Protocol", ",".join(others))]
        return "token-user"

    def _handle_get(self, wire: Wire, request: Request, segments: List[str]) -> bool:
        path = "/" + "/".join(segments)
        if path == "/version":
            return self._respond_json(wire, request, 200, self._version())
        if path in ("/healthz", "/livez", "/readyz"):
            return self._respond(wire, request, 200, b"ok", [("Content-Type", _TEXT_TYPE)])
        if path == "/api":
            return self._respond_json(
                wire,
                request,
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                    ],
                },
            )
        if path == "/apis":
            return self._respond_json(
                wire,
                request,
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [_api_group(g, with_kind=False) for g in _GROUPS],
                },
            )
        if len(segments) == 2 and segments[0] == "apis" and segments[1] in _GROUPS:
            return self._respond_json(wire, request, 200, _api_group(segments[1], with_kind=True))
        if len(segments) == 3 and segments[0] == "apis" and segments[1] in _GROUPS:
            if segments[2] != "v1":
                return self._not_found_path(wire, request)
            return self._respond_json(wire, request, 200, _group_resources(segments[1]))
        if path == "/api/v1":
            return self._respond_json(wire, request, 200, _api_v1_resources())
        workload = _workload_path(segments)
        if workload is not None:
            return self._get_workloads(wire, request, *workload)
        if path == "/api/v1/pods":
            return self._list_pods(wire, request, None)
        if path == "/api/v1/namespaces":
            return self._respond_json(
                wire,
                request,
                200,
                {
                    "kind": "NamespaceList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": self._current_rv()},
                    "items": [_namespace_json(ns, with_kind=False) for ns in self._namespaces()],
                },
            )
        if len(segments) == 4 and segments[:3] == ["api", "v1", "namespaces"]:
            ns = segments[3]
            if ns not in self._namespaces():
                return self._not_found(wire, request, "namespaces", ns)
            return self._respond_json(wire, request, 200, _namespace_json(ns, with_kind=True))
        if (
            len(segments) >= 5
            and segments[:3] == ["api", "v1", "namespaces"]
            and segments[4] == "pods"
        ):
            ns = segments[3]
            if len(segments) == 5:
                return self._list_pods(wire, request, ns)
            name = segments[5]
            with self._lock:
                record = self._pods.get((ns, name))
                obj = record.to_json() if record is not None else None
            if obj is None:
                return self._not_found(wire, request, "pods", name)
            if len(segments) == 6:
                if _wants_table(request):
                    return self._respond_json(wire, request, 200, _pod_table([obj], None))
                return self._respond_json(wire, request, 200, obj)
            if len(segments) == 7 and segments[6] == "status":
                return self._respond_json(wire, request, 200, obj)
            if len(segments) == 7 and segments[6] == "log":
                # Main-process output is not kept (it is broadcast to attached sessions only).
                return self._respond(wire, request, 200, b"", [("Content-Type", _TEXT_TYPE)])
        return self._respond_status(
            wire,
            request,
            404,
            "NotFound",
            "the server could not find the requested resource",
            {},
        )

    def _not_found_path(self, wire: Wire, request: Request) -> bool:
        return self._respond_status(
            wire, request, 404, "NotFound", "the server could not find the requested resource", {}
        )

    def _get_workloads(
        self, wire: Wire, request: Request, resource: str, namespace: str, name: Optional[str]
    ) -> bool:
        with self._lock:
            if name is not None:
                entry = self._workloads.get((resource, namespace, name))
                obj = json.loads(json.dumps(entry[1])) if entry is not None else None
            else:
                objs = [
                    json.loads(json.dumps(o))
                    for (r, ns, _), (_, o) in sorted(self._workloads.items())
                    if r == resource and ns == namespace
                ]
        kind = next(k for k, (_, r, _) in WORKLOAD_KINDS.items() if r == resource)
        group = WORKLOAD_KINDS[kind][0]
        if name is not None:
            if obj is None:
                qualified = f"{resource}.{group}" if group else resource
                details = {"name": name, "kind": resource, **({"group": group} if group else {})}
                return self._respond_status(
                    wire, request, 404, "NotFound", f'{qualified} "{name}" not found', details
                )
            return self._respond_json(wire, request, 200, obj)
        for item in objs:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return self._respond_json(
            wire,
            request,
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": f"{group}/v1" if group else "v1",
                "metadata": {"resourceVersion": self._current_rv()},
                "items": objs,
            },
        )

    def _version(self) -> Dict[str, str]:
        parts = self.git_version.lstrip("v").split(".")
        return {
            "major": parts[0],
            "minor": parts[1] if len(parts) > 1 else "0",
            "emulationMajor": parts[0],
            "emulationMinor": parts[1] if len(parts) > 1 else "0",
            "minCompatibilityMajor": parts[0],
            "minCompatibilityMinor": str(max(0, int(parts[1]) - 1)) if len(parts) > 1 else "0",
            "gitVersion": self.git_version,
            "gitCommit": _GIT_COMMIT,
            "gitTreeState": "clean",
            "buildDate": "2025-05-15T08:19:00Z",
            "goVersion": "go1.24.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _namespaces(self) -> List[str]:
        with self._lock:
            names = {ns for ns, _ in self._pods}
            names.update(ns for _, ns, _ in self._workloads)
        names.update(("default", "kube-system", "kube-public", "kube-node-lease"))
        return sorted(names)

    def _current_rv(self) -> str:
        with self._lock:
            return str(max((int(r.resource_version) for r in self._pods.values()), default=1))

    def _not_found(self, wire: Wire, request: Request, kind: str, name: str) -> bool:
        return self._respond_status(
            wire,
            request,
            404,
            "NotFound",
            f'{kind} "{name}" not found',
            {"name": name, "kind": kind},
        )

    def _list_pods(self, wire: Wire, request: Request, namespace: Optional[str]) -> bool:
        selector = (request.query.get("labelSelector") or [""])[0]
        field_selector = (request.query.get("fieldSelector") or [""])[0]
        with self._lock:
            records = sorted(self._pods.values(), key=lambda r: (r.pod.namespace, r.pod.name))
            try:
                items = [
                    r.to_json()
                    for r in records
                    if (namespace is None or r.pod.namespace == namespace)
                    and match_label_selector(selector, r.pod.labels)
                    and _match_field_selector(field_selector, r)
                ]
            except ValueError as exc:
                return self._respond_status(wire, request, 400, "BadRequest", str(exc))
        if _wants_table(request):
            table = _pod_table(items, self._current_rv())
            return self._respond_json(wire, request, 200, table)
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return self._respond_json(
            wire,
            request,
            200,
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": self._current_rv()},
                "items": items,
            },
        )

    def _refuse_non_websocket(
        self, wire: Wire, request: Request, kubectl_version: str, fallback_env: str
    ) -> bool:
        self._record(request)
        # A real server would speak SPDY here; refusing it makes a client's fallback visible.
        return self._respond_status(
            wire,
            request,
            400,
            "BadRequest",
            f"the k8sstream emulator does not implement {request.header('Upgrade') or 'this'}"
            f" streaming; use WebSocket (kubectl {kubectl_version}+ does unless "
            f"{fallback_env}=false)",
            close=True,
        )

    def _complete_upgrade(
        self, wire: Wire, request: Request, buffer: bytearray, tag: str, selected: str
    ) -> WebSocket:
        """Send the 101 for ``selected`` and hand the connection, with any bytes the client
        sent early, to a WebSocket. Raises _Upgraded if a fault drops it right away."""
        self._record(request, selected)
        key = request.header("Sec-WebSocket-Key") or ""
        wire.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
                f"Sec-WebSocket-Protocol: {selected}\r\n"
                "\r\n"
            ).encode("latin-1")
        )
        if self.faults.take_close_after_upgrade(request.path):
            log.info("[%s] closing right after the 101 (fault)", tag)
            wire.abort()
            raise _Upgraded()
        ws = WebSocket(wire, bytes(buffer))
        buffer.clear()
        return ws

    # -- exec / attach --

    def _handle_stream(
        self,
        wire: Wire,
        request: Request,
        buffer: bytearray,
        tag: str,
        namespace: str,
        name: str,
        subresource: str,
    ) -> bool:
        if request.method not in ("GET", "POST"):
            self._record(request)
            return self._respond_status(
                wire,
                request,
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                {},
            )
        if "dryRun" in request.query:
            self._record(request)
            return self._respond_status(wire, request, 400, "BadRequest", "dryRun is not supported")
        ports: List[int] = []
        if subresource == "portforward":
            try:
                ports = _decode_ports(request.query.get("ports", []))
            except ValueError as exc:
                self._record(request)
                return self._respond_status(wire, request, 400, "BadRequest", str(exc))
        with self._lock:
            record = self._pods.get((namespace, name))
        if record is None:
            self._record(request)
            return self._not_found(wire, request, "pods", name)
        pod = record.pod
        container: Optional[Container] = None
        if subresource != "portforward":
            requested = (request.query.get("container") or [""])[0]
            if requested:
                container = pod.container(requested)
                if container is None:
                    self._record(request)
                    return self._respond_status(
                        wire,
                        request,
                        400,
                        "BadRequest",
                        f"container {requested} is not valid for pod {name}",
                    )
            elif len(pod.containers) == 1:
                container = pod.containers[0]
            else:
                self._record(request)
                return self._respond_status(
                    wire,
                    request,
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(pod.container_names())}]",
                )
        if not pod.node_name:
            self._record(request)
            return self._respond_status(
                wire, request, 400, "BadRequest", f"pod {name} does not have a host assigned"
            )
        connection_tokens = [v.lower() for v in request.header_values("Connection")]
        is_upgrade = any("upgrade" in v for v in connection_tokens)
        is_websocket = is_upgrade and (request.header("Upgrade") or "").lower() == "websocket"
        refusal = self.faults.take_refusal(request.path) if is_upgrade else None
        if refusal is not None:
            log.info("[%s] refusing the upgrade with %d (fault)", tag, refusal.status)
            return self._refuse_and_close(
                wire,
                request,
                format_response(
                    refusal.status, [("Content-Type", refusal.content_type)], refusal.body
                ),
            )
        if not is_upgrade:
            self._record(request)
            return self._respond_status(
                wire, request, 400, "BadRequest", "Upgrade request required"
            )
        if subresource == "portforward":
            return self._handle_portforward(
                wire, request, buffer, tag, record, ports, is_websocket=is_websocket
            )
        if not is_websocket:
            return self._refuse_non_websocket(
                wire, request, "1.30", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS"
            )
        assert container is not None
        options = StreamOptions(
            stdin=_bool_param(request.query.get("stdin")),
            stdout=_bool_param(request.query.get("stdout")),
            stderr=_bool_param(request.query.get("stderr")),
            tty=_bool_param(request.query.get("tty")),
        )
        offer = request.header("Sec-WebSocket-Protocol")
        offered = _offered_protocols(offer)
        path_a = self._path_a and V5.name in offered
        with self._lock:
            main = self._mains.get((namespace, name, container.name))
        running = main is not None and main.running
        if not path_a:
            # The kubelet's checks come before the runtime's WebSocket handshake.
            if not options.any_stream:
                return self._refuse_and_close(
                    wire,
                    request,
                    _go_http_error(400, "you must specify at least 1 of stdin, stdout, stderr"),
                )
            if not running:
                return self._refuse_and_close(
                    wire, request, _go_http_error(500, f'container not found ("{container.name}")')
                )
        handshake_error = _xnet_handshake_error(request)
        if handshake_error is not None:
            return self._refuse_and_close(wire, request, handshake_error)
        selected = select_protocol(offer, [V5.name] if path_a else list(self._path_b))
        if selected is None:
            return self._refuse_and_close(wire, request, b"HTTP/1.1 403 Forbidden\r\n\r\n")
        ws = self._complete_upgrade(wire, request, buffer, tag, selected)
        session = Session(
            ws,
            PROTOCOLS[selected],
            options,
            path_a=path_a,
            tag=f"{subresource}-{tag}",
            hold_seconds=self.faults.take_hold(request.path),
            stopping=self._stopping,
        )
        log.info(
            "[%s] %s %s/%s -c %s via %r %s",
            tag,
            subresource,
            namespace,
            name,
            container.name,
            selected,
            options,
        )
        if path_a and (not options.any_stream or not running):
            # Path A: the kubelet is contacted after the 101, so its refusals arrive in band.
            reason = (
                "you must specify at least 1 of stdin, stdout, stderr"
                if not options.any_stream
                else f'container not found ("{container.name}")'
            )
            session.send_initial()
            finisher = session.finish_in_thread(
                internal_error_status(f"unable to upgrade connection: {reason}")
            )
            session.read_loop(lambda _d: None, lambda: None, lambda _w, _h: None)
            finisher.join()
            raise _Upgraded()
        if subresource == "exec":
            cwd = self.container_dir(namespace, name, container.name)
            env = container_env(name, cwd, options.tty, container.env)
            run_exec(
                session,
                request.query.get("command", []),
                cwd=cwd,
                env=env,
                path_a=path_a,
                max_message_size=self.max_message_size,
                track=self._track_exec,
                untrack=self._untrack_exec,
            )
        else:
            assert main is not None
            run_attach(session, main, container.stdin)
        raise _Upgraded()

    # -- port-forward --

    def _handle_portforward(
        self,
        wire: Wire,
        request: Request,
        buffer: bytearray,
        tag: str,
        record: PodRecord,
        ports: List[int],
        *,
        is_websocket: bool,
    ) -> bool:
        if not is_websocket:
            return self._refuse_non_websocket(
                wire, request, "1.31", "KUBECTL_PORT_FORWARD_WEBSOCKETS"
            )
        offer = request.header("Sec-WebSocket-Protocol")
        offered = _offered_protocols(offer)
        tunnel = [
            p[len(TUNNEL_PREFIX) :]
            for p in offered
            if p.startswith(TUNNEL_PREFIX) and p.endswith(".k8s.io")
        ]
        pod = record.pod

        def dial(port: int) -> socket.socket:
            return dial_local(pod.forward_target(port))

        def describe_error(port: int, exc: OSError) -> str:
            return forward_error(record.sandbox_id, record.netns, port, exc)

        session: Union[TunnelSession, LegacySession]
        if tunnel:
            # Path C: the API server upgrades to the runtime with SPDY first; the runtime's
            # httpstream.Handshake speaks only portforward.k8s.io (PROTOCOL.md 10.1).
            if PORT_FORWARD_PROTOCOL not in tunnel:
                message = (
                    "unable to upgrade: unable to negotiate protocol: client supports "
                    f"[{' '.join(tunnel)}], server accepts [{PORT_FORWARD_PROTOCOL}]"
                )
                return self._refuse_and_close(
                    wire,
                    request,
                    format_response(
                        403,
                        [
                            ("Content-Type", _TEXT_TYPE),
                            ("X-Accepted-Stream-Protocol-Versions", PORT_FORWARD_PROTOCOL),
                            ("X-Content-Type-Options", "nosniff"),
                        ],
                        (message + "\n").encode(),
                    ),
                )
            handshake_error = _gorilla_handshake_error(request)
            if handshake_error is not None:
                return self._refuse_and_close(wire, request, handshake_error)
            selected = TUNNEL_PROTOCOL
        else:
            # Path B: the kubelet checks the ports before the runtime's x/net handshake.
            kubelet_error = _kubelet_port_error(request, ports)
            if kubelet_error is not None:
                return self._refuse_and_close(
                    wire,
                    request,
                    format_response(400, [("Content-Type", _TEXT_TYPE)], kubelet_error),
                )
            handshake_error = _xnet_handshake_error(request)
            if handshake_error is not None:
                return self._refuse_and_close(wire, request, handshake_error)
            legacy = select_protocol(offer, list(LEGACY_PROTOCOLS))
            if legacy is None:
                return self._refuse_and_close(wire, request, b"HTTP/1.1 403 Forbidden\r\n\r\n")
            selected = legacy
        ws = self._complete_upgrade(wire, request, buffer, tag, selected)
        if tunnel:
            session = TunnelSession(
                ws,
                dial=dial,
                describe_error=describe_error,
                tag=tag,
                path=request.path,
                faults=self.faults,
                stream_timeout=self.stream_creation_timeout,
                max_message_size=self.max_message_size,
            )
        else:
            session = LegacySession(
                ws,
                selected,
                ports,
                dial=dial,
                describe_error=describe_error,
                tag=tag,
                max_message_size=self.max_message_size,
            )
        log.info(
            "[%s] port-forward %s/%s via %r%s",
            tag,
            pod.namespace,
            pod.name,
            selected,
            f" ports {ports}" if not tunnel else "",
        )
        with self._lock:
            stopping = self._stopping.is_set()
            self._pf_sessions.add(session)
        try:
            if stopping:
                session.abort()
            session.run()
        finally:
            with self._lock:
                self._pf_sessions.discard(session)
        raise _Upgraded()

    def _track_exec(self, process: Process) -> None:
        with self._lock:
            self._execs.add(process)
        if self._stopping.is_set():
            process.kill()

    def _untrack_exec(self, process: Process) -> None:
        with self._lock:
            self._execs.discard(process)


def _offered_protocols(offer: Optional[str]) -> List[str]:
    return [p.strip() for p in (offer or "").split(",") if p.strip()]


def _go_http_error(status: int, text: str) -> bytes:
    """A kubelet error as Go's net/http writes it, relayed verbatim by the API server."""
    return format_response(
        status,
        [("Content-Type", _TEXT_TYPE), ("X-Content-Type-Options", "nosniff")],
        text.encode(),
    )


def _decode_ports(values: List[str]) -> List[int]:
    """The API server's ``ports`` decoding (``Convert_Slice_string_To_Slice_int32``).

    Raises:
        ValueError: with the text of the 400 Status.
    """
    ports = []
    for value in values:
        for item in value.split(","):
            if not item.isdigit() or not item.isascii():
                raise ValueError(
                    f'cannot convert to []int32: strconv.ParseUint: parsing "{item}": '
                    "invalid syntax"
                )
            if int(item) > 0xFFFF:
                raise ValueError(
                    f'cannot convert to []int32: strconv.ParseUint: parsing "{item}": '
                    "value out of range"
                )
            ports.append(int(item))
    return ports


def _kubelet_port_error(request: Request, ports: List[int]) -> Optional[bytes]:
    """The kubelet's ``NewV4Options`` checks of the ``port`` list it is handed."""
    if not ports:
        return b'query parameter "port" is required'
    if any(p < 1 for p in ports):
        joined = ",".join(str(p) for p in ports)
        return f'port "{joined}" must be > 0'.encode()
    return None


def _gorilla_handshake_error(request: Request) -> Optional[bytes]:
    """gorilla/websocket ``Upgrader.Upgrade`` refusals, as the API server's tunnel answers."""

    def error(status: int) -> bytes:
        return format_response(
            status,
            [
                ("Content-Type", _TEXT_TYPE),
                ("Sec-Websocket-Version", "13"),
                ("X-Content-Type-Options", "nosniff"),
            ],
            (reason_phrase(status) + "\n").encode(),
        )

    if request.method != "GET":
        return error(405)
    if request.header("Sec-WebSocket-Version") != "13":
        return error(400)
    if not request.header("Sec-WebSocket-Key"):
        return error(400)
    return None


def _xnet_handshake_error(request: Request) -> Optional[bytes]:
    """golang.org/x/net/websocket ``ReadHandshake`` refusals: raw status line, no headers."""

    def raw(status: str, message: str, extra: str = "") -> bytes:
        return f"HTTP/1.1 {status}\r\n{extra}\r\n{message}".encode("latin-1")

    if request.method != "GET":
        return raw("405 Method Not Allowed", "bad method")
    if (request.header("Upgrade") or "").lower() != "websocket" or "upgrade" not in (
        request.header("Connection") or ""
    ).lower():
        return raw("400 Bad Request", "not websocket protocol")
    if not request.header("Sec-WebSocket-Key"):
        return raw("400 Bad Request", "mismatch challenge/response")
    if request.header("Sec-WebSocket-Version") != "13":
        return raw(
            "400 Bad Request", "missing or bad WebSocket Version", "Sec-WebSocket-Version: 13\r\n"
        )
    return None


def _match_field_selector(selector: str, record: PodRecord) -> bool:
    for raw in selector.split(","):
        req = raw.strip()
        if not req:
            continue
        negate = "!=" in req
        key, value = (s.strip() for s in req.replace("!=", "=").replace("==", "=").split("=", 1))
        actual = {
            "metadata.name": record.pod.name,
            "metadata.namespace": record.pod.namespace,
            "status.phase": record.pod.phase,
            "spec.nodeName": record.pod.node_name,
        }.get(key)
        if actual is None:
            raise ValueError(f"field label not supported: {key}")
        if (actual == value) == negate:
            return False
    return True


def _namespace_json(name: str, *, with_kind: bool) -> Dict[str, Any]:
    obj: Dict[str, Any] = {
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "k8sstream-ns-" + name)),
            "resourceVersion": "1",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
    if with_kind:
        return {"kind": "Namespace", "apiVersion": "v1", **obj}
    return obj


_GROUPS = ("apps", "batch")


def _api_group(group: str, *, with_kind: bool) -> Dict[str, Any]:
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    obj: Dict[str, Any] = {"name": group, "versions": [version], "preferredVersion": version}
    if with_kind:
        return {"kind": "APIGroup", "apiVersion": "v1", **obj}
    return obj


def _workload_resource(kind: str) -> Dict[str, Any]:
    _, resource, short_names = WORKLOAD_KINDS[kind]
    entry: Dict[str, Any] = {
        "name": resource,
        "singularName": kind.lower(),
        "namespaced": True,
        "kind": kind,
        "verbs": [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        "categories": ["all"],
    }
    if short_names:
        entry["shortNames"] = list(short_names)
    return entry


def _group_resources(group: str) -> Dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/v1",
        "resources": [
            _workload_resource(kind) for kind, (g, _, _) in WORKLOAD_KINDS.items() if g == group
        ],
    }


def _workload_path(segments: List[str]) -> Optional[Tuple[str, str, Optional[str]]]:
    """``(resource, namespace, name or None)`` for a workload GET path, else None."""
    if segments[:2] == ["api", "v1"]:
        rest = segments[2:]
        groups: Tuple[str, ...] = ("",)
    elif len(segments) >= 3 and segments[0] == "apis" and segments[2] == "v1":
        rest = segments[3:]
        groups = (segments[1],)
    else:
        return None
    if len(rest) not in (3, 4) or rest[0] != "namespaces":
        return None
    resources = {r for g, r, _ in WORKLOAD_KINDS.values() if g in groups}
    if rest[2] not in resources:
        return None
    return rest[2], rest[1], rest[3] if len(rest) == 4 else None


def _api_v1_resources() -> Dict[str, Any]:
    def sub(name: str, kind: str, verbs: List[str]) -> Dict[str, Any]:
        return {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}

    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": ["ns"],
                "storageVersionHash": "Q3oi5N2YM8M=",
            },
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": [
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ],
                "shortNames": ["po"],
                "categories": ["all"],
                "storageVersionHash": "xPOwRZ+Yhw8=",
            },
            sub("pods/attach", "PodAttachOptions", ["create", "get"]),
            sub("pods/exec", "PodExecOptions", ["create", "get"]),
            sub("pods/log", "Pod", ["get"]),
            sub("pods/portforward", "PodPortForwardOptions", ["create", "get"]),
            sub("pods/status", "Pod", ["get", "patch", "update"]),
            _workload_resource("Service"),
            _workload_resource("ReplicationController"),
        ],
    }


def _wants_table(request: Request) -> bool:
    return "as=table" in (request.header("Accept") or "").replace(" ", "").lower()


def _human_duration(seconds: float) -> str:
    """apimachinery ``duration.HumanDuration``, the AGE column's format."""
    s = int(seconds)
    if s < 120:
        return f"{max(s, 0)}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 192:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d" if d < 365 * 8 and d % 365 else f"{d // 365}y"


def _pod_table(pods: List[Dict[str, Any]], resource_version: Optional[str]) -> Dict[str, Any]:
    """The server-side printing kubectl asks for (``Accept: ...;as=Table``)."""

    def column(name: str, description: str, priority: int = 0, fmt: str = "") -> Dict[str, Any]:
        return {
            "name": name,
            "type": "string",
            "format": fmt,
            "description": description,
            "priority": priority,
        }

    rows = []
    now = time.time()
    for pod in pods:
        statuses = pod["status"].get("containerStatuses", [])
        ready = sum(1 for c in statuses if c.get("ready"))
        created = calendar.timegm(
            time.strptime(pod["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
        )
        metadata = dict(pod["metadata"])
        rows.append(
            {
                "cells": [
                    pod["metadata"]["name"],
                    f"{ready}/{len(pod['spec']['containers'])}",
                    pod["status"]["phase"],
                    "0",
                    _human_duration(now - created),
                    pod["status"].get("podIP", "<none>"),
                    pod["spec"].get("nodeName", "<none>"),
                    "<none>",
                    "<none>",
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version} if resource_version else {},
        "columnDefinitions": [
            column("Name", "Name must be unique within a namespace.", fmt="name"),
            column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            column("Status", "The aggregate status of the containers in this pod."),
            column(
                "Restarts", "The number of times the containers in this pod have been restarted."
            ),
            column("Age", "CreationTimestamp is a timestamp representing the server time."),
            column("IP", "IP address allocated to the pod.", 1),
            column("Node", "Name of the node the pod is scheduled on.", 1),
            column("Nominated Node", "Nominated node name.", 1),
            column("Readiness Gates", "Pod readiness gates.", 1),
        ],
        "rows": rows,
    }
