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
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from .errors import ConfigError

__all__ = ["ClusterConfig", "load_kubeconfig"]

DEFAULT_KUBECONFIG = os.path.join("~", ".kube", "config")


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach one API server as one user.

    Args:
        server: the API server URL, e.g. ``https://10.0.0.1:6443``.
        namespace: the default namespace for calls that do not name one.
        token: a bearer token (never shown in ``repr``).
        ca_data: PEM bytes of the CA bundle to trust; ``None`` means the system store.
        client_cert_data: PEM bytes of a client certificate.
        client_key_data: PEM bytes of its private key (never shown in ``repr``).
        insecure_skip_tls_verify: turn off certificate verification (explicit only).
        tls_server_name: the name to verify the server certificate against, if not the host.
        proxy_url: an HTTP(S) proxy URL for this cluster.
        source: where the settings came from, for error messages.
    """

    server: str
    namespace: str = "default"
    token: Optional[str] = field(default=None, repr=False)
    ca_data: Optional[bytes] = field(default=None, repr=False)
    client_cert_data: Optional[bytes] = field(default=None, repr=False)
    client_key_data: Optional[bytes] = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    tls_server_name: Optional[str] = None
    proxy_url: Optional[str] = field(default=None, repr=False)
    source: str = "<explicit>"

    def __post_init__(self) -> None:
        if not self.server.startswith(("https://", "http://")):
            raise ConfigError(
                f"{self.source}: server {self.server!r} must start with https:// or http://"
            )
        if (self.client_cert_data is None) != (self.client_key_data is None):
            raise ConfigError(
                f"{self.source}: a client certificate needs both a certificate and a key"
            )

    @property
    def uses_tls(self) -> bool:
        return self.server.startswith("https://")


def build_ssl_context(config: ClusterConfig) -> Optional[ssl.SSLContext]:
    """Build the client SSLContext for a config; ``None`` for plain-HTTP servers.

    Callers build it once and never reconfigure it, so it can be shared between connections.
    """
    if not config.uses_tls:
        return None
    cadata = _pem_text(config) if config.ca_data is not None else None
    ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cadata=cadata)
    if config.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    if config.client_cert_data is not None and config.client_key_data is not None:
        _load_client_certificate(
            ctx, config.client_cert_data, config.client_key_data, config.source
        )
    return ctx


def _pem_text(config: ClusterConfig) -> str:
    try:
        return (config.ca_data or b"").decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{config.source}: certificate-authority data is not PEM text") from None


def _load_client_certificate(ctx: ssl.SSLContext, cert: bytes, key: bytes, source: str) -> None:
    # ssl can only load a key from a file: write it to a private temporary directory, readable
    # by this user alone, and remove it at once.
    with tempfile.TemporaryDirectory(prefix="k8sstream-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path = os.path.join(tmp, "client.crt")
        key_path = os.path.join(tmp, "client.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{source}: the client certificate and key cannot be loaded ({exc.reason})"
            ) from None


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


def load_kubeconfig(
    path: Optional[str] = None, context: Optional[str] = None, namespace: Optional[str] = None
) -> ClusterConfig:
    """Resolve a kubeconfig into a :class:`ClusterConfig`.

    Args:
        path: one kubeconfig file; default ``KUBECONFIG`` (merged) or ``~/.kube/config``.
        context: the context to use instead of ``current-context``.
        namespace: overrides the context's namespace.

    Raises:
        ConfigError: no usable file, or a missing or malformed entry (named with its file).
    """
    paths = kubeconfig_paths(path)
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
    cluster_name = _required_str(ctx, "cluster", ctx_file, f"contexts[{context}].context")
    user_name = ctx.get("user")
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
        user_entry = merged.sections["users"].get(str(user_name))
        if user_entry is None:
            raise ConfigError(
                f"{ctx_file}: user {user_name!r} (from context {context!r}) is not defined"
            )
        user, user_file = user_entry
    uwhere = f"users[{user_name}].user"

    token = _optional_str(user, "token", user_file, uwhere)
    token_file = _optional_str(user, "tokenFile", user_file, uwhere)
    if token is None and token_file:
        token = (
            _read_file(_resolve(token_file, user_file), user_file, f"{uwhere}.tokenFile")
            .decode()
            .strip()
        )
    cert = _data_or_file(user, "client-certificate", user_file, uwhere)
    key = _data_or_file(user, "client-key", user_file, uwhere)
    if user.get("exec") is not None or user.get("auth-provider") is not None:
        raise ConfigError(
            f"{user_file}: {uwhere} uses an exec or auth-provider plugin, which this version "
            "of k8sstream does not run yet"
        )
    return ClusterConfig(
        server=_required_str(cluster, "server", cluster_file, where),
        namespace=namespace or _optional_str(ctx, "namespace", ctx_file, "context") or "default",
        token=token,
        ca_data=_data_or_file(cluster, "certificate-authority", cluster_file, where),
        client_cert_data=cert,
        client_key_data=key,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=_optional_str(cluster, "tls-server-name", cluster_file, where),
        proxy_url=_optional_str(cluster, "proxy-url", cluster_file, where),
        source=f"{cluster_file} (context {context!r})",
    )


def _merge_file(merged: _Merged, path: str) -> None:
    raw = _read_file(path, path, "")
    try:
        doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a kubeconfig must be a mapping at the top level")
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


def _read_file(path: str, source: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        what = f"{key} refers to " if key else ""
        raise ConfigError(
            f"{source}: {what}{path!r}, which cannot be read ({exc.strerror})"
        ) from None


def _resolve(path: str, source: str) -> str:
    path = os.path.expanduser(path)
    return (
        path
        if os.path.isabs(path)
        else os.path.join(os.path.dirname(os.path.abspath(source)), path)
    )


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


def _data_or_file(obj: Mapping[str, Any], key: str, source: str, where: str) -> Optional[bytes]:
    data = _optional_str(obj, f"{key}-data", source, where)
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{source}: {where}.{key}-data is not valid base64") from None
    path = _optional_str(obj, key, source, where)
    if path:
        return _read_file(_resolve(path, source), source, f"{where}.{key}")
    return None
