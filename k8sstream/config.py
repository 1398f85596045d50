"""Cluster configuration: kubeconfig files and explicit settings, resolved into one value.

Kubeconfig handling follows kubectl/client-go: ``KUBECONFIG`` may list several files, which are
merged with the first file winning for each named cluster, user and context and for
``current-context``; relative paths resolve against the directory of the file that names them.
Every problem is a :class:`~k8sstream.errors.ConfigError` that names the file and the key.
Secrets (tokens, keys, passwords) never appear in ``repr()`` or in exception text.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import ssl
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Union, overload

import yaml

from ._proxy import parse_proxy_url
from ._secret import Secret, b64decode, lift
from .errors import ConfigError

__all__ = ["ClusterConfig", "ExecConfig", "load_incluster_config", "load_kubeconfig"]

logger = logging.getLogger("k8sstream.config")

DEFAULT_KUBECONFIG = os.path.join("~", ".kube", "config")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")


@dataclass(frozen=True)
class ExecConfig:
    """An exec credential plugin (``users[].user.exec``), as kubectl runs it.

    Args:
        api_version: ``client.authentication.k8s.io/v1`` or ``.../v1beta1``.
        command: the executable; a relative path with a ``/`` is already resolved against the
            kubeconfig's directory.
        args: its arguments.
        env: extra environment variables, in order (values may be secrets: not in ``repr``).
        install_hint: shown when the executable cannot be found.
        provide_cluster_info: pass the cluster in ``KUBERNETES_EXEC_INFO``.
        interactive_mode: ``Never``, ``IfAvailable`` or ``Always``.
        cluster_config: the cluster's ``client.authentication.k8s.io/exec`` extension, passed
            as ``spec.cluster.config`` with ``provide_cluster_info``.
        where: the file and key, for error messages.
    """

    api_version: str
    command: str
    args: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    install_hint: Optional[str] = None
    provide_cluster_info: bool = False
    interactive_mode: str = "IfAvailable"
    cluster_config: Any = field(default=None, repr=False)
    where: str = "<explicit>"


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach one API server as one user.

    Args:
        server: the API server URL, e.g. ``https://10.0.0.1:6443``.
        namespace: the default namespace for calls that do not name one.
        token: a bearer token; kept as a :class:`Secret`, like the password and the key.
        token_file: a file holding the bearer token, re-read when it changes (wins over
            ``token``, as in client-go).
        username, password: HTTP basic credentials (the password is never shown).
        exec_plugin: an exec credential plugin that supplies the token or client certificate.
        ca_data: PEM bytes of the CA bundle to trust; ``None`` means the system store.
        client_cert_data: PEM bytes of a client certificate.
        client_key_data: PEM bytes of its private key.
        insecure_skip_tls_verify: turn off certificate verification (explicit only).
        tls_server_name: the name to verify the server certificate against, if not the host.
        proxy_url: an HTTP(S) proxy URL for this cluster.
        source: where the settings came from, for error messages.
    """

    server: str
    namespace: str = "default"
    token: Union[str, Secret, None] = field(default=None, repr=False)
    token_file: Optional[str] = None
    username: Optional[str] = None
    password: Union[str, Secret, None] = field(default=None, repr=False)
    exec_plugin: Optional[ExecConfig] = field(default=None, repr=False)
    ca_data: Optional[bytes] = field(default=None, repr=False)
    client_cert_data: Optional[bytes] = field(default=None, repr=False)
    client_key_data: Union[bytes, Secret, None] = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    tls_server_name: Optional[str] = None
    proxy_url: Optional[str] = field(default=None, repr=False)
    source: str = "<explicit>"

    def __post_init__(self) -> None:
        # Credentials are kept as Secrets: out of core dumps, wiped when the config goes.
        for name in ("token", "password", "client_key_data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Secret):
                object.__setattr__(self, name, Secret(value))
        if not self.server.startswith(("https://", "http://")):
            raise ConfigError(
                f"{self.source}: server {self.server!r} must start with https:// or http://"
            )
        if (self.client_cert_data is None) != (self.client_key_data is None):
            raise ConfigError(
                f"{self.source}: a client certificate needs both a certificate and a key"
            )
        if self.insecure_skip_tls_verify and self.ca_data is not None:
            # client-go refuses this combination rather than guess which one was meant.
            raise ConfigError(
                f"{self.source}: insecure-skip-tls-verify cannot be combined with "
                "certificate-authority(-data)"
            )
        if self.username is not None and (self.token or self.token_file):
            raise ConfigError(
                f"{self.source}: username/password and a bearer token cannot both be set"
            )
        if self.proxy_url:
            parse_proxy_url(self.proxy_url, f"{self.source}: proxy-url")

    @property
    def uses_tls(self) -> bool:
        return self.server.startswith("https://")


def build_ssl_context(
    config: ClusterConfig, client_cert: Optional[Tuple[bytes, Union[bytes, Secret]]] = None
) -> Optional[ssl.SSLContext]:
    """Build the client SSLContext for a config; ``None`` for plain-HTTP servers.

    Callers build it once and never reconfigure it, so it can be shared between connections.

    Args:
        client_cert: a (certificate, key) PEM pair that replaces the config's own (an exec
            plugin's certificate).
    """
    if not config.uses_tls:
        return None
    cadata = _pem_text(config) if config.ca_data is not None else None
    try:
        ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cadata=cadata)
    except ssl.SSLError:
        raise ConfigError(
            f"{config.source}: certificate-authority does not hold a valid PEM certificate"
        ) from None
    if config.insecure_skip_tls_verify:
        warn_insecure(config.source)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    if client_cert is None and config.client_cert_data is not None:
        client_cert = (config.client_cert_data, config.client_key_data or Secret())
    if client_cert is not None:
        _load_client_certificate(ctx, client_cert[0], client_cert[1], config.source)
    return ctx


def build_proxy_ssl_context(config: ClusterConfig) -> ssl.SSLContext:
    """The SSLContext for an ``https://`` proxy: the system CAs plus the cluster's own CA.

    Like Go, ``insecure-skip-tls-verify`` applies to the proxy's certificate too.
    """
    ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    if config.ca_data is not None:
        ctx.load_verify_locations(cadata=_pem_text(config))
    if config.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def warn_insecure(source: str) -> None:
    """Say loudly that certificate checks are off: a warning and a log line."""
    message = (
        f"{source}: insecure-skip-tls-verify is set: the API server's certificate is not "
        "checked, so anyone on the path can read and change the traffic"
    )
    warnings.warn(message, stacklevel=4)
    logger.warning("%s", message)


def _pem_text(config: ClusterConfig) -> str:
    try:
        return (config.ca_data or b"").decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{config.source}: certificate-authority data is not PEM text") from None


def _load_client_certificate(
    ctx: ssl.SSLContext, cert: bytes, key: Union[bytes, Secret], source: str
) -> None:
    """Load the pair into ``ctx``, leaving no copy of the key in freed C memory.

    ssl can only load a key from a file: it goes to a private temporary directory, readable by
    this user alone, and removed at once. OpenSSL reads it with ``fread`` and decodes it through
    buffers of its own, all freed without being cleared, which would leave the PEM text in a
    core dump. So the same certificate is loaded again at once, into a context made
    beforehand, with a decoy key of exactly the same shape (same lines, every base64 character
    an ``A``): with nothing allocated in between, the allocator hands the same blocks back in
    the same order and the decoy overwrites them.
    """
    with tempfile.TemporaryDirectory(prefix="k8sstream-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path = os.path.join(tmp, "client.crt")
        key_path = os.path.join(tmp, "client.key")
        decoy_path = os.path.join(tmp, "decoy.key")
        for path, data in ((cert_path, cert), (key_path, key), (decoy_path, _decoy_key(key))):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb", buffering=0) as f:
                if isinstance(data, Secret):
                    with data.view() as view:
                        f.write(view)  # unbuffered: no copy of the key on the heap
                else:
                    f.write(data)
        decoy_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{source}: the client certificate and key cannot be loaded ({exc.reason})"
            ) from None
        finally:
            try:
                decoy_ctx.load_cert_chain(cert_path, decoy_path)
            except ssl.SSLError:
                pass  # expected: the decoy decodes to zeros, which is no key


def _decoy_key(key: Union[bytes, Secret]) -> bytes:
    decoy = bytearray()
    with memoryview(key.view() if isinstance(key, Secret) else key) as pem:
        line_start, marker_line = True, False
        for char in pem:  # byte by byte: slicing the key would copy it onto the heap
            if line_start:
                marker_line = char == 45  # "-----BEGIN/END ...-----" lines are kept
            line_start = char == 10
            decoy.append(char if marker_line or char not in _BASE64_CHARS else 65)
    return bytes(decoy)


_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


# --- kubeconfig --------------------------------------------------------------------------------


def kubeconfig_paths(explicit: Optional[str] = None) -> List[str]:
    """The files to merge, as kubectl chooses them: explicit, else ``KUBECONFIG``, else default."""
    if explicit:
        return [os.path.expanduser(explicit)]
    env = os.environ.get("KUBECONFIG")
    if env:
        paths = [os.path.expanduser(p) for p in env.split(os.pathsep) if p]
        # Missing files in KUBECONFIG are skipped, as kubectl does.
        return [p for p in dict.fromkeys(paths) if os.path.exists(p)]
    return [os.path.expanduser(DEFAULT_KUBECONFIG)]


@dataclass
class _Merged:
    current_context: Optional[Tuple[str, str]] = None  # (value, file)
    sections: Dict[str, Dict[str, Tuple[Mapping[str, Any], str]]] = field(
        default_factory=lambda: {"clusters": {}, "users": {}, "contexts": {}}
    )
    # Credentials lifted out of the text before YAML saw it, by their placeholder.
    lifted: Dict[str, Secret] = field(default_factory=dict)

    def secret(self, value: Optional[str]) -> Union[str, Secret, None]:
        return self.lifted.get(value, value) if value is not None else None


def load_kubeconfig(
    path: Optional[str] = None, context: Optional[str] = None, namespace: Optional[str] = None
) -> ClusterConfig:
    """Resolve a kubeconfig into a :class:`ClusterConfig`.

    Without ``path``, and when neither ``KUBECONFIG`` nor ``~/.kube/config`` names an existing
    file, a process running in a pod (``KUBERNETES_SERVICE_HOST`` set) gets the in-cluster
    configuration, as kubectl does.

    Args:
        path: one kubeconfig file; default ``KUBECONFIG`` (merged) or ``~/.kube/config``.
        context: the context to use instead of ``current-context``.
        namespace: overrides the context's namespace.

    Raises:
        ConfigError: no usable file, or a missing or malformed entry (named with its file).
    """
    paths = kubeconfig_paths(path)
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if path is None and in_pod and not any(os.path.exists(p) for p in paths):
        return load_incluster_config(namespace=namespace)
    if not paths:
        raise ConfigError("KUBECONFIG names no existing file")
    merged = _Merged()
    for p in paths:
        _merge_file(merged, p)
    if context is None:
        if merged.current_context is None:
            raise ConfigError(
                f"{', '.join(paths)}: no current-context is set and no context was given"
            )
        context, ctx_file = merged.current_context
    else:
        ctx_file = ", ".join(paths)
    ctx_entry = merged.sections["contexts"].get(context)
    if ctx_entry is None:
        raise ConfigError(f"{ctx_file}: context {context!r} is not defined")
    ctx, ctx_file = ctx_entry
    cwhere = f"contexts[{context}].context"
    cluster_name = _required_str(ctx, "cluster", ctx_file, cwhere)
    user_name = _optional_str(ctx, "user", ctx_file, cwhere)
    cluster_entry = merged.sections["clusters"].get(cluster_name)
    if cluster_entry is None:
        raise ConfigError(
            f"{ctx_file}: cluster {cluster_name!r} (from context {context!r}) is not defined"
        )
    cluster, cluster_file = cluster_entry
    where = f"clusters[{cluster_name}].cluster"
    user: Mapping[str, Any] = {}
    user_file = cluster_file
    if user_name:
        user_entry = merged.sections["users"].get(user_name)
        if user_entry is None:
            raise ConfigError(
                f"{ctx_file}: user {user_name!r} (from context {context!r}) is not defined"
            )
        user, user_file = user_entry
    uwhere = f"users[{user_name}].user"

    token = merged.secret(_optional_str(user, "token", user_file, uwhere) or None)
    token_file = _optional_str(user, "tokenFile", user_file, uwhere)
    if token_file:
        token_file = _resolve(token_file, user_file)
        # Open now so that a bad path is a ConfigError at load time, as kubectl reports it.
        _read_file(token_file, user_file, f"{uwhere}.tokenFile", secret=True).wipe()
    cert = _data_or_file(user, "client-certificate", user_file, uwhere)
    key = _data_or_file(user, "client-key", user_file, uwhere, secret=True, lifted=merged.lifted)
    if (cert is None) != (key is None):
        missing = "client-key" if key is None else "client-certificate"
        raise ConfigError(f"{user_file}: {uwhere}.{missing}(-data) is missing")
    username = _optional_str(user, "username", user_file, uwhere)
    password = merged.secret(_optional_str(user, "password", user_file, uwhere))
    if password is not None and username is None:
        raise ConfigError(f"{user_file}: {uwhere}.password is set without username")
    if user.get("auth-provider") is not None:
        raise ConfigError(
            f"{user_file}: {uwhere}.auth-provider: auth-provider plugins were removed from "
            "kubectl; use an exec credential plugin (e.g. kubelogin) instead"
        )
    exec_plugin = None
    if user.get("exec") is not None:
        extension = _exec_extension(cluster, cluster_file, where)
        exec_plugin = _parse_exec(user["exec"], user_file, f"{uwhere}.exec", extension)
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"{cluster_file}: {where}.insecure-skip-tls-verify must be true or false")
    source = f"{cluster_file} (context {context!r})"
    proxy_url = _optional_str(cluster, "proxy-url", cluster_file, where) or None
    if proxy_url:
        parse_proxy_url(proxy_url, f"{cluster_file}: {where}.proxy-url")
    ca = _data_or_file(cluster, "certificate-authority", cluster_file, where)
    if insecure and ca is not None:
        raise ConfigError(
            f"{cluster_file}: {where}.insecure-skip-tls-verify cannot be combined with "
            "certificate-authority(-data)"
        )
    server = _required_str(cluster, "server", cluster_file, where)
    if not server.startswith(("https://", "http://")):
        raise ConfigError(f"{cluster_file}: {where}.server must start with https:// or http://")
    if username is not None and (token or token_file):
        raise ConfigError(
            f"{user_file}: {uwhere}: username/password and token(File) cannot both be set"
        )
    return ClusterConfig(
        server=server,
        namespace=namespace or _optional_str(ctx, "namespace", ctx_file, cwhere) or "default",
        token=token,
        token_file=token_file,
        username=username,
        password=password,
        exec_plugin=exec_plugin,
        ca_data=ca,
        client_cert_data=cert,
        client_key_data=key,
        insecure_skip_tls_verify=insecure,
        tls_server_name=_optional_str(cluster, "tls-server-name", cluster_file, where) or None,
        proxy_url=proxy_url,
        source=source,
    )


def _exec_extension(cluster: Mapping[str, Any], source: str, where: str) -> Any:
    extensions = cluster.get("extensions") or []
    if not isinstance(extensions, list):
        raise ConfigError(f"{source}: {where}.extensions must be a list")
    for entry in extensions:
        if isinstance(entry, dict) and entry.get("name") == "client.authentication.k8s.io/exec":
            return entry.get("extension")
    return None


def _parse_exec(raw: Any, source: str, where: str, cluster_config: Any) -> ExecConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping")
    api_version = _required_str(raw, "apiVersion", source, where)
    if api_version not in EXEC_API_VERSIONS:
        raise ConfigError(
            f"{source}: {where}.apiVersion {api_version!r} is not supported "
            f"(use {' or '.join(EXEC_API_VERSIONS)})"
        )
    command = _required_str(raw, "command", source, where)
    # client-go resolves a command that contains a path separator against the file's directory;
    # a bare name is looked up on PATH.
    if os.sep in command or "/" in command:
        command = _resolve(command, source)
    args = raw.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{source}: {where}.args must be a list of strings")
    env_raw = raw.get("env") or []
    if not isinstance(env_raw, list):
        raise ConfigError(f"{source}: {where}.env must be a list of name/value mappings")
    env: List[Tuple[str, str]] = []
    for i, item in enumerate(env_raw):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise ConfigError(f"{source}: {where}.env[{i}] must have a string name and value")
        env.append((item["name"], item["value"]))
    mode = _optional_str(raw, "interactiveMode", source, where)
    if mode is None:
        if api_version.endswith("/v1"):
            raise ConfigError(
                f"{source}: {where}.interactiveMode must be set for {api_version} "
                f"(one of {', '.join(INTERACTIVE_MODES)})"
            )
        mode = "IfAvailable"
    if mode not in INTERACTIVE_MODES:
        raise ConfigError(
            f"{source}: {where}.interactiveMode {mode!r} is not one of "
            f"{', '.join(INTERACTIVE_MODES)}"
        )
    provide = raw.get("provideClusterInfo", False)
    if not isinstance(provide, bool):
        raise ConfigError(f"{source}: {where}.provideClusterInfo must be true or false")
    return ExecConfig(
        api_version=api_version,
        command=command,
        args=tuple(args),
        env=tuple(env),
        install_hint=_optional_str(raw, "installHint", source, where),
        provide_cluster_info=provide,
        interactive_mode=mode,
        cluster_config=cluster_config,
        where=f"{source}: {where}",
    )


def load_incluster_config(
    namespace: Optional[str] = None,
    service_account_dir: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> ClusterConfig:
    """The configuration of a process running in a pod, as client-go's ``InClusterConfig``.

    The server is ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``; the token
    file (re-read when the kubelet rotates it), CA and namespace come from the service-account
    directory. ``POD_NAMESPACE`` overrides the namespace file, as in kubectl.

    Raises:
        ConfigError: not in a cluster (the variables are unset), or a file cannot be read.
    """
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError(
            "in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
            "must be set (is this process running in a pod?)"
        )
    if not port.isdigit():
        raise ConfigError(
            f"in-cluster configuration: KUBERNETES_SERVICE_PORT {port!r} is not a port"
        )
    if service_account_dir is None:
        service_account_dir = SERVICE_ACCOUNT_DIR
    token_file = os.path.join(service_account_dir, "token")
    source = f"in-cluster configuration ({service_account_dir})"
    _read_file(token_file, source, "the service-account token")
    ca = _read_file(os.path.join(service_account_dir, "ca.crt"), source, "the cluster CA")
    if namespace is None:
        namespace = env.get("POD_NAMESPACE") or None
    if namespace is None:
        try:
            with open(os.path.join(service_account_dir, "namespace"), encoding="utf-8") as f:
                namespace = f.read().strip() or None
        except OSError:
            namespace = None
    server_host = f"[{host}]" if ":" in host else host
    return ClusterConfig(
        server=f"https://{server_host}:{port}",
        namespace=namespace or "default",
        token_file=token_file,
        ca_data=ca,
        source=source,
    )


# A user's credential on a line of its own, as kubectl writes it (block or JSON style, the
# value plain or quoted, from the characters tokens and base64 use).
_INLINE_CREDENTIAL = re.compile(
    rb"""^[ \t]*(?:-[ \t]+)?(?P<q>["']?)(?P<key>token|password|client-key-data)(?P=q)"""
    rb"""[ \t]*:[ \t]*"""
    rb"""(?P<value>"[^"\\\r\n]+"|'[^'\r\n]+'|[\w.~+/=-]+)[ \t]*,?[ \t]*\r?$""",
    re.MULTILINE | re.ASCII,
)
_LIFTED_KEYS = ("token", "password", "client-key-data")
_KUBECONFIG_LIMIT = 64 << 20


# Plain scalars YAML reads as null or a boolean, not as the characters written.
_YAML_WORDS = {b"~", b"null", b"true", b"false", b"yes", b"no", b"on", b"off", b"y", b"n"}


def _unquote(value: memoryview) -> Optional[Secret]:
    quoted = value[:1] in (b'"', b"'")
    if not quoted and len(value) <= 5 and bytes(value).lower() in _YAML_WORDS:
        return None  # left for YAML to read
    with value[1:-1] if quoted else value[:] as content:
        return Secret(content)


def _restore_placeholders(node: Any, lifted: Dict[str, Secret], path: Tuple[str, ...] = ()) -> Any:
    """Put back lifted values found anywhere but a user's credential fields (extensions...)."""
    if isinstance(node, str) and node in lifted:
        if len(path) == 4 and path[::2] == ("users", "user") and path[3] in _LIFTED_KEYS:
            return node  # resolved from ``_Merged.lifted`` when the user is chosen
        return lifted[node].reveal()
    if isinstance(node, list):
        return [_restore_placeholders(item, lifted, (*path, "*")) for item in node]
    if isinstance(node, dict):
        return {k: _restore_placeholders(v, lifted, (*path, str(k))) for k, v in node.items()}
    return node


def _merge_file(merged: _Merged, path: str) -> None:
    raw = _read_file(path, path, "", secret=True)
    try:
        # PyYAML leaves copies of what it parses in freed memory: credentials go first.
        lifted = lift(raw, _INLINE_CREDENTIAL, _unquote)
        source: Union[str, bytes] = bytes(raw.view()) if lifted is None else lifted[0]
        merged.lifted.update(lifted[1] if lifted is not None else {})
    finally:
        raw.wipe()
    try:
        doc = yaml.safe_load(source) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a kubeconfig must be a mapping at the top level")
    if merged.lifted:
        doc = _restore_placeholders(doc, merged.lifted)
    current = doc.get("current-context")
    if current and merged.current_context is None:
        merged.current_context = (str(current), path)
    for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
        entries = doc.get(section) or []
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: {section} must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ConfigError(f"{path}: {section}[{i}] must be a mapping with a string name")
            body = entry.get(inner) or {}
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: {section}[{entry['name']}].{inner} must be a mapping")
            merged.sections[section].setdefault(entry["name"], (body, path))


@overload
def _read_file(path: str, source: str, key: str) -> bytes: ...


@overload
def _read_file(path: str, source: str, key: str, secret: Literal[True]) -> Secret: ...


def _read_file(path: str, source: str, key: str, secret: bool = False) -> Union[bytes, Secret]:
    try:
        if secret:
            # A kubeconfig is read whole (its indentation matters); credentials are trimmed.
            if not key:
                return Secret.read_file(path, _KUBECONFIG_LIMIT, strip=False)
            return Secret.read_file(path)
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        what = f"{key} refers to " if key else ""
        raise ConfigError(
            f"{source}: {what}{path!r}, which cannot be read ({exc.strerror or exc})"
        ) from None


def _resolve(path: str, source: str) -> str:
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(source)), path))


def _required_str(obj: Mapping[str, Any], key: str, source: str, where: str) -> str:
    value = _optional_str(obj, key, source, where)
    if not value:
        raise ConfigError(f"{source}: {where}.{key} is missing")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, source: str, where: str) -> Optional[str]:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {where}.{key} must be a string")
    return value


@overload
def _data_or_file(obj: Mapping[str, Any], key: str, source: str, where: str) -> Optional[bytes]: ...


@overload
def _data_or_file(
    obj: Mapping[str, Any],
    key: str,
    source: str,
    where: str,
    secret: Literal[True],
    lifted: Mapping[str, Secret] = ...,
) -> Optional[Secret]: ...


def _data_or_file(
    obj: Mapping[str, Any],
    key: str,
    source: str,
    where: str,
    secret: bool = False,
    lifted: Mapping[str, Secret] = {},
) -> Union[bytes, Secret, None]:
    data = _optional_str(obj, f"{key}-data", source, where)
    if data:
        try:
            if data in lifted:
                return b64decode(lifted[data])
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{source}: {where}.{key}-data is not valid base64") from None
        return Secret(decoded) if secret else decoded
    path = _optional_str(obj, key, source, where)
    if not path:
        return None
    if secret:
        return _read_file(_resolve(path, source), source, f"{where}.{key}", secret=True)
    return _read_file(_resolve(path, source), source, f"{where}.{key}")
