"""Run commands in Kubernetes pods and copy files to and from them, without kubectl.

Unlike ``kubernetes.*`` execution modules built on the official client, stdin is sent with a
real end of file (the ``v5.channel.k8s.io`` protocol), and input and output are binary-safe:
``stdin_b64``/``stdin_file`` for binary input, ``output_encoding="base64"`` (or the automatic
fallback) for binary output.

Configuration (minion config, grains or pillar, read with ``config.get``)::

    k8sstream:
      kubeconfig: /etc/salt/kubeconfig
      context: prod
      namespace: web

CLI examples::

    salt-call k8sstream.run 'uname -a' pod=web-0
    salt-call k8sstream.run '["sh", "-c", "wc -c"]' pod=deploy/web stdin='hello'
    salt-call k8sstream.cp_to /srv/app.tar.gz web-0 /tmp/app.tar.gz
    salt-call k8sstream.cp_from web-0 /var/log/app.log /tmp/app.log
"""

# Salt ships no type information.
# mypy: disable-error-code="import-untyped,import-not-found"
from __future__ import annotations

import base64
import binascii
import shlex
from typing import Any, Dict, List, Optional, Tuple, Union

try:
    import k8sstream

    HAS_K8SSTREAM = True
except ImportError:  # pragma: no cover - Salt asks __virtual__ first
    HAS_K8SSTREAM = False

__virtualname__ = "k8sstream"

# Injected by Salt's loader; these defaults let the module be imported (and tested) alone.
__salt__: Dict[str, Any] = {}
__opts__: Dict[str, Any] = {}
__context__: Dict[str, Any] = {}


def __virtual__() -> Union[str, Tuple[bool, str]]:
    if not HAS_K8SSTREAM:
        return False, "the k8sstream Python package is not installed"
    return __virtualname__


class _Error(Exception):
    """Stands in for salt.exceptions.CommandExecutionError outside Salt."""


def _raise(message: str) -> None:
    try:
        from salt.exceptions import CommandExecutionError
    except ImportError:
        raise _Error(message) from None
    raise CommandExecutionError(message)


def _config(key: str) -> Any:
    getter = __salt__.get("config.get")
    if getter is not None:
        value = getter(f"k8sstream:{key}")
        if value not in (None, ""):
            return value
    section = __opts__.get("k8sstream")
    return section.get(key) if isinstance(section, dict) else None


def _client(kubeconfig: Optional[str], context: Optional[str], namespace: Optional[str]) -> Any:
    try:
        return k8sstream.Client.from_kubeconfig(
            kubeconfig or _config("kubeconfig"),
            context=context or _config("context"),
            namespace=namespace or _config("namespace"),
        )
    except k8sstream.K8sStreamError as exc:
        _raise(f"k8sstream: {exc}")
        raise


def _argv(cmd: Union[str, List[Any]]) -> List[str]:
    if isinstance(cmd, str):
        return shlex.split(cmd)
    if isinstance(cmd, (list, tuple)):
        return [str(a) for a in cmd]
    _raise(f"cmd must be a string or a list, not {type(cmd).__name__}")
    raise AssertionError("unreachable")


def _encode(data: bytes, encoding: str) -> Tuple[str, str]:
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii"), "base64"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        # Never mangle: output that is not text comes back as base64, and says so.
        return base64.b64encode(data).decode("ascii"), "base64"


def run(
    cmd: Union[str, List[Any]],
    pod: str,
    namespace: Optional[str] = None,
    container: Optional[str] = None,
    stdin: Optional[str] = None,
    stdin_b64: Optional[str] = None,
    stdin_file: Optional[str] = None,
    timeout: Optional[float] = None,
    output_encoding: str = "utf-8",
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
) -> Dict[str, Any]:
    """Run a command in a pod and return its exit code and output, like ``cmd.run_all``.

    cmd
        An argv list, or a string split like a shell would (no shell runs; use
        ``["sh", "-c", "..."]`` for one).
    pod
        A pod name or a target as kubectl takes it (``deploy/web``, ``sts/db``, ``svc/web``).
    stdin / stdin_b64 / stdin_file
        Text, base64-encoded bytes, or a file on the minion, sent to the command's stdin
        followed by end of file. At most one.
    timeout
        Seconds; the remote command is ended when they pass.
    output_encoding
        ``utf-8`` (default; output that is not valid UTF-8 is returned base64-encoded) or
        ``base64``. ``stdout_encoding``/``stderr_encoding`` in the result say which was used.

    CLI Example:

    .. code-block:: bash

        salt-call k8sstream.run 'cat /etc/os-release' pod=web-0 namespace=prod
    """
    given = [
        name
        for name, value in (("stdin", stdin), ("stdin_b64", stdin_b64), ("stdin_file", stdin_file))
        if value is not None
    ]
    if len(given) > 1:
        _raise(f"pass at most one of stdin, stdin_b64 and stdin_file, not {' and '.join(given)}")
    data: Optional[bytes] = None
    if stdin is not None:
        data = str(stdin).encode("utf-8")
    elif stdin_b64 is not None:
        try:
            data = base64.b64decode(stdin_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            _raise(f"stdin_b64 is not valid base64: {exc}")
    argv = _argv(cmd)
    client = _client(kubeconfig, context, namespace)
    try:
        target = k8sstream.resolve_target(pod, client=client)
        if stdin_file is not None:
            with open(stdin_file, "rb") as source:
                result = client.run(
                    argv,
                    pod=target,
                    container=container,
                    stdin=source,
                    stdout=k8sstream.PIPE,
                    stderr=k8sstream.PIPE,
                    timeout=timeout,
                )
        else:
            result = client.run(
                argv,
                pod=target,
                container=container,
                input=data,
                capture_output=True,
                timeout=timeout,
            )
    except k8sstream.TimeoutExpired as exc:
        _raise(f"k8sstream: {' '.join(argv)} in {pod}: timed out after {exc.timeout} s")
        raise
    except (k8sstream.K8sStreamError, OSError) as exc:
        _raise(f"k8sstream: {' '.join(argv)} in {pod}: {exc}")
        raise
    finally:
        client.close()
    stdout, stdout_encoding = _encode(result.stdout or b"", output_encoding)
    stderr, stderr_encoding = _encode(result.stderr or b"", output_encoding)
    __context__["retcode"] = result.returncode
    return {
        "pod": target,
        "retcode": result.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_encoding": stdout_encoding,
        "stderr_encoding": stderr_encoding,
    }


def _copy(direction: str, pod: str, src: str, dest: str, **kwargs: Any) -> Dict[str, Any]:
    client = _client(kwargs.pop("kubeconfig"), kwargs.pop("context"), kwargs.pop("namespace"))
    try:
        target = k8sstream.resolve_target(pod, client=client)
        if direction == "to":
            k8sstream.copy_to_pod(src, target, dest, client=client, **kwargs)
        else:
            k8sstream.copy_from_pod(target, src, dest, client=client, **kwargs)
    except k8sstream.CalledProcessError as exc:
        detail = (
            exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr
        )
        _raise(f"k8sstream: copy {src} -> {dest} ({pod}) failed: {(detail or '').strip() or exc}")
    except (k8sstream.K8sStreamError, OSError) as exc:
        _raise(f"k8sstream: copy {src} -> {dest} ({pod}) failed: {exc}")
    finally:
        client.close()
    return {"result": True, "pod": target, "src": src, "dest": dest}


def cp_to(
    src: str,
    pod: str,
    dest: str,
    namespace: Optional[str] = None,
    container: Optional[str] = None,
    preserve: bool = True,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
) -> Dict[str, Any]:
    """Copy a file or directory from the minion into a container, like ``kubectl cp``.

    CLI Example:

    .. code-block:: bash

        salt-call k8sstream.cp_to /srv/site web-0 /usr/share/nginx/html
    """
    return _copy(
        "to",
        pod,
        src,
        dest,
        namespace=namespace,
        container=container,
        preserve=preserve,
        kubeconfig=kubeconfig,
        context=context,
    )


def cp_from(
    pod: str,
    src: str,
    dest: str,
    namespace: Optional[str] = None,
    container: Optional[str] = None,
    preserve: bool = True,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
) -> Dict[str, Any]:
    """Copy a file or directory out of a container onto the minion, like ``kubectl cp``.
    Archives from the pod are checked: nothing is written outside ``dest``.

    CLI Example:

    .. code-block:: bash

        salt-call k8sstream.cp_from web-0 /var/log/app /tmp/app-logs
    """
    return _copy(
        "from",
        pod,
        src,
        dest,
        namespace=namespace,
        container=container,
        preserve=preserve,
        kubeconfig=kubeconfig,
        context=context,
    )
