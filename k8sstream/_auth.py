"""Credentials: static and file tokens, basic auth, and exec credential plugins.

An :class:`Authenticator` gives the Authorization value for the next request, as a
:class:`~k8sstream._secret.Secret`, and after a 401 says whether fresh credentials are worth one
retry. Exec plugins follow client-go
(``k8s.io/client-go/plugin/pkg/client/auth/exec``): the plugin's output is cached until its
``expirationTimestamp`` and thrown away after a 401 that used it. Nothing here logs or repeats a
credential, and the plugin's standard output (which holds them) never reaches an exception.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from ._secret import Secret, basic_credentials, json_unescape, lift
from .config import ClusterConfig, ExecConfig
from .errors import ConfigError

logger = logging.getLogger("k8sstream.auth")

Headers = Dict[str, str]


def authorization_headers(credential: Optional[Secret]) -> Headers:
    """Request headers naming ``credential`` by its placeholder (see ``_secret.substitute``).

    The caller keeps ``credential`` referenced until the request has been sent.
    """
    return {"Authorization": credential.placeholder} if credential else {}


class Authenticator:
    """No credentials (client certificates, if any, live in the SSLContext)."""

    def credential(self) -> Optional[Secret]:
        """The Authorization value for the next request; may run a credential plugin."""
        return None

    def client_certificate(self) -> Optional[Tuple[bytes, Secret]]:
        """A (certificate, key) PEM pair supplied at run time (exec plugins), else ``None``."""
        return None

    def refresh_after_unauthorized(self, used: Optional[Secret]) -> bool:
        """After a 401 with ``used``: forget it; True if a retry may use a different one."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class StaticToken(Authenticator):
    def __init__(self, token: Union[str, Secret]) -> None:
        self._credential = Secret.join("Bearer ", token)

    def credential(self) -> Optional[Secret]:
        return self._credential


class BasicAuth(Authenticator):
    def __init__(self, username: str, password: Union[str, Secret]) -> None:
        self._credential = basic_credentials(username, password)

    def credential(self) -> Optional[Secret]:
        return self._credential


class TokenFile(Authenticator):
    """A token file, re-read whenever it changes (bound service-account tokens rotate).

    The last successfully read token stays in use if a later read fails, as in client-go.
    """

    def __init__(self, path: str, fallback: Union[str, Secret, None] = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: Optional[Tuple[int, int, int]] = None
        self._credential = Secret.join("Bearer ", fallback) if fallback else None

    def _read(self, force: bool) -> Optional[Secret]:
        with self._lock:
            try:
                st = os.stat(self._path)
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                if force or stamp != self._stamp:
                    token = Secret.read_file(self._path)
                    if token:
                        fresh = Secret.join("Bearer ", token)
                        if fresh != self._credential:
                            self._credential = fresh
                    token.wipe()
                    self._stamp = stamp
            except OSError as exc:
                logger.warning("cannot re-read token file %s: %s", self._path, exc.strerror or exc)
            return self._credential

    def credential(self) -> Optional[Secret]:
        return self._read(force=False)

    def refresh_after_unauthorized(self, used: Optional[Secret]) -> bool:
        # A rotation within the file's mtime granularity is caught by the forced read.
        current = self._read(force=True)
        return current is not None and current is not used


@dataclass(frozen=True)
class _Credential:
    token: Optional[Secret] = field(repr=False)  # the whole Authorization value
    cert: Optional[Tuple[bytes, Secret]] = field(repr=False)
    expires: Optional[float]  # wall-clock seconds: the plugin's expiry is a calendar time


class ExecPlugin(Authenticator):
    """Runs an exec credential plugin and caches its credential until it expires.

    Calls block while the plugin runs (with ``interactiveMode`` it may prompt on the
    terminal); concurrent callers wait for the same run.
    """

    def __init__(self, plugin: ExecConfig, cluster: ClusterConfig) -> None:
        self._plugin = plugin
        self._cluster = cluster
        self._lock = threading.Lock()
        self._cached: Optional[_Credential] = None

    def __repr__(self) -> str:
        return f"ExecPlugin(command={self._plugin.command!r})"

    def _credential(self) -> _Credential:
        with self._lock:
            cached = self._cached
            # time.time(), not monotonic: expirationTimestamp is a point in calendar time.
            if cached is None or (cached.expires is not None and time.time() >= cached.expires):
                cached = self._cached = self._run()
            return cached

    def credential(self) -> Optional[Secret]:
        return self._credential().token

    def client_certificate(self) -> Optional[Tuple[bytes, Secret]]:
        return self._credential().cert

    def refresh_after_unauthorized(self, used: Optional[Secret]) -> bool:
        with self._lock:
            cached = self._cached
            if cached is None:
                return True
            if cached.token is not None and cached.token is not used:
                return True  # another thread already fetched newer credentials
            self._cached = None
        return True

    def _exec_info(self, interactive: bool) -> Dict[str, Any]:
        spec: Dict[str, Any] = {"interactive": interactive}
        if self._plugin.provide_cluster_info:
            cluster = self._cluster
            info: Dict[str, Any] = {"server": cluster.server}
            if cluster.tls_server_name:
                info["tls-server-name"] = cluster.tls_server_name
            if cluster.insecure_skip_tls_verify:
                info["insecure-skip-tls-verify"] = True
            if cluster.ca_data is not None:
                info["certificate-authority-data"] = base64.b64encode(cluster.ca_data).decode()
            if cluster.proxy_url:
                info["proxy-url"] = cluster.proxy_url
            if self._plugin.cluster_config is not None:
                info["config"] = self._plugin.cluster_config
            spec["cluster"] = info
        return {"apiVersion": self._plugin.api_version, "kind": "ExecCredential", "spec": spec}

    def _interactive(self) -> bool:
        mode = self._plugin.interactive_mode
        if mode == "Never":
            return False
        try:
            tty = sys.stdin is not None and sys.stdin.isatty()
        except (ValueError, OSError):
            tty = False
        if mode == "Always" and not tty:
            raise ConfigError(
                f"{self._plugin.where}: the credential plugin {self._plugin.command!r} needs "
                "an interactive terminal (interactiveMode: Always), and standard input is not one"
            )
        return tty

    def _run(self) -> _Credential:
        plugin = self._plugin
        interactive = self._interactive()
        env = dict(os.environ)
        env.update(plugin.env)
        env["KUBERNETES_EXEC_INFO"] = json.dumps(self._exec_info(interactive))
        logger.debug("running the credential plugin %s", plugin.command)
        try:
            # stderr goes to the user (prompts, errors), as kubectl does; stdout is the secret,
            # read straight into a Secret.
            with subprocess.Popen(
                [plugin.command, *plugin.args],
                env=env,
                stdin=None if interactive else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                bufsize=0,
            ) as proc:
                assert proc.stdout is not None
                try:
                    output = Secret.read_stream(proc.stdout, _PLUGIN_OUTPUT_LIMIT, what="output")
                except OSError:
                    proc.kill()
                    raise ConfigError(
                        f"{plugin.where}: the credential plugin {plugin.command!r} wrote more "
                        f"than {_PLUGIN_OUTPUT_LIMIT} bytes"
                    ) from None
                returncode = proc.wait()
        except FileNotFoundError:
            hint = f"\n\n{plugin.install_hint.strip()}" if plugin.install_hint else ""
            raise ConfigError(
                f"{plugin.where}.command: executable {plugin.command!r} was not found{hint}"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{plugin.where}.command: cannot run {plugin.command!r}: {exc.strerror or exc}"
            ) from None
        try:
            if returncode != 0:
                raise ConfigError(
                    f"{plugin.where}: the credential plugin {plugin.command!r} failed with exit "
                    f"code {returncode}"
                )
            return self._parse(output)
        finally:
            output.wipe()

    def _parse(self, output: Secret) -> _Credential:
        where = f"{self._plugin.where}: the output of {self._plugin.command!r}"
        # json leaves copies of what it parses in freed memory: credentials go first.
        lifted = lift(output, _PLUGIN_CREDENTIAL, json_unescape)
        lifted_secrets: Dict[str, Secret] = lifted[1] if lifted is not None else {}
        try:
            doc = json.loads(bytes(output.view()) if lifted is None else lifted[0])
        except ValueError:
            raise ConfigError(f"{where} is not an ExecCredential JSON object") from None
        if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
            raise ConfigError(f"{where} is not an ExecCredential (kind must be ExecCredential)")
        if doc.get("apiVersion") != self._plugin.api_version:
            raise ConfigError(
                f"{where} has apiVersion {str(doc.get('apiVersion'))[:80]!r}, but the kubeconfig "
                f"asks for {self._plugin.api_version!r}"
            )
        status = doc.get("status")
        if not isinstance(status, dict):
            raise ConfigError(f"{where} has no status")
        token = status.get("token")
        cert = status.get("clientCertificateData")
        key = status.get("clientKeyData")
        if token is not None and not isinstance(token, str):
            raise ConfigError(f"{where}: status.token must be a string")
        if (cert is None) != (key is None) or not all(
            isinstance(v, str) for v in (cert, key) if v is not None
        ):
            raise ConfigError(
                f"{where}: status.clientCertificateData and status.clientKeyData must both be "
                "set, as PEM strings"
            )
        if not token and cert is None:
            raise ConfigError(f"{where}: status has neither a token nor a client certificate")
        expires = None
        stamp = status.get("expirationTimestamp")
        if stamp is not None:
            expires = _parse_rfc3339(stamp, f"{where}: status.expirationTimestamp")
        pair = None
        if cert is not None and key is not None:
            lifted_key = lifted_secrets.get(key)
            pair = (cert.encode(), lifted_key if lifted_key is not None else Secret(key))
        credential = Secret.join("Bearer ", lifted_secrets.get(token, token)) if token else None
        return _Credential(token=credential, cert=pair, expires=expires)


# ExecCredential's secret fields; the value group is the string literal's content.
_PLUGIN_CREDENTIAL = re.compile(rb'"(?:token|clientKeyData)"\s*:\s*"(?P<value>(?:[^"\\]|\\.)*)"')
_PLUGIN_OUTPUT_LIMIT = 1 << 20


def _parse_rfc3339(value: Any, where: str) -> float:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be an RFC 3339 time")
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes up to nine fractional digits; Python's parser takes six at most.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[:digits][:6].ljust(6, "0") + rest[digits:]
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{where} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{where} has no time zone")
    return parsed.timestamp()


def make_authenticator(config: ClusterConfig) -> Authenticator:
    """The authenticator for a config: static credentials win over an exec plugin (client-go)."""
    if config.token_file:
        return TokenFile(config.token_file, fallback=config.token)
    if config.token:
        return StaticToken(config.token)
    if config.username is not None:
        return BasicAuth(config.username, config.password or Secret())
    if config.exec_plugin is not None:
        return ExecPlugin(config.exec_plugin, config)
    return Authenticator()
