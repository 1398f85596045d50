# Copyright k8sstream authors. Apache-2.0.
# Ansible reads DOCUMENTATION before the imports; ansible-core has no type information.
# ruff: noqa: E402
# mypy: disable-error-code="import-untyped,import-not-found"
"""Ansible connection plugin: run tasks in Kubernetes pods with k8sstream, without kubectl."""

from __future__ import annotations

DOCUMENTATION = r"""
    name: k8sstream
    author: k8sstream
    short_description: Run tasks in Kubernetes pods over the API server's streams, without kubectl
    description:
        - Runs commands in a pod's container with the WebSocket remote-command protocol (C(stdin)
          with end of file, binary-safe), and puts/fetches files by streaming tar over exec (or
          C(cat) when the container has no C(tar)). No kubectl binary is needed.
        - Takes the variables of C(kubernetes.core.kubectl), so switching is a change of
          C(ansible_connection) only.
        - The pod may be any target kubectl accepts (C(deploy/web), C(sts/db), C(svc/web) ...);
          it is resolved to one running pod as kubectl does, once per task.
        - The container needs C(/bin/sh) (or C(ansible_executable)) and a Python for modules.
    version_added: "0.1.0"
    requirements:
        - the k8sstream Python package on the controller (C(pip install k8sstream))
    extends_documentation_fragment:
        - connection_pipelining
    notes:
        - Commands run as the container's user; C(become) works where the container allows it
          without a password prompt (C(su) or passwordless C(sudo) as root). Becoming with a
          password is refused with a clear error.
    options:
      kubectl_pod:
        description:
          - Pod name, or a target such as C(deploy/web); default the inventory host name.
        default: ''
        vars:
          - name: ansible_kubectl_pod
        env:
          - name: K8S_AUTH_POD
      kubectl_container:
        description:
          - Container name; default as kubectl picks it (annotation, else the first).
        default: ''
        vars:
          - name: ansible_kubectl_container
        env:
          - name: K8S_AUTH_CONTAINER
      kubectl_namespace:
        description:
          - The namespace of the pod; default the context's.
        default: ''
        vars:
          - name: ansible_kubectl_namespace
        env:
          - name: K8S_AUTH_NAMESPACE
      kubectl_kubeconfig:
        description:
          - Path to a kubeconfig file (default C(KUBECONFIG) or C(~/.kube/config)), or the
            configuration itself as a dictionary.
        default: ''
        vars:
          - name: ansible_kubectl_kubeconfig
          - name: ansible_kubectl_config
        env:
          - name: K8S_AUTH_KUBECONFIG
      kubectl_context:
        description:
          - The name of a context in the kubeconfig.
        default: ''
        vars:
          - name: ansible_kubectl_context
        env:
          - name: K8S_AUTH_CONTEXT
      kubectl_host:
        description:
          - URL of the API server, overriding the kubeconfig's.
        default: ''
        vars:
          - name: ansible_kubectl_host
          - name: ansible_kubectl_server
        env:
          - name: K8S_AUTH_HOST
          - name: K8S_AUTH_SERVER
      kubectl_username:
        description:
          - Username for basic authentication.
        default: ''
        vars:
          - name: ansible_kubectl_username
          - name: ansible_kubectl_user
        env:
          - name: K8S_AUTH_USERNAME
      kubectl_password:
        description:
          - Password for basic authentication.
        default: ''
        vars:
          - name: ansible_kubectl_password
        env:
          - name: K8S_AUTH_PASSWORD
      kubectl_token:
        description:
          - Bearer token (never logged).
        vars:
          - name: ansible_kubectl_token
          - name: ansible_kubectl_api_key
        env:
          - name: K8S_AUTH_TOKEN
          - name: K8S_AUTH_API_KEY
      client_cert:
        description:
          - Path to a client certificate.
        default: ''
        vars:
          - name: ansible_kubectl_cert_file
          - name: ansible_kubectl_client_cert
        env:
          - name: K8S_AUTH_CERT_FILE
        aliases: [ kubectl_cert_file ]
      client_key:
        description:
          - Path to the client certificate's key.
        default: ''
        vars:
          - name: ansible_kubectl_key_file
          - name: ansible_kubectl_client_key
        env:
          - name: K8S_AUTH_KEY_FILE
        aliases: [ kubectl_key_file ]
      ca_cert:
        description:
          - Path to a CA certificate to verify the API server with.
        default: ''
        vars:
          - name: ansible_kubectl_ssl_ca_cert
          - name: ansible_kubectl_ca_cert
        env:
          - name: K8S_AUTH_SSL_CA_CERT
        aliases: [ kubectl_ssl_ca_cert ]
      validate_certs:
        description:
          - Whether to verify the API server's certificate (default true).
        default: ''
        vars:
          - name: ansible_kubectl_verify_ssl
          - name: ansible_kubectl_validate_certs
        env:
          - name: K8S_AUTH_VERIFY_SSL
        aliases: [ kubectl_verify_ssl ]
      pod_running_timeout:
        description:
          - Seconds to wait for a pod when the target is a workload with no pod yet.
        default: 60
        type: float
        vars:
          - name: ansible_k8sstream_pod_running_timeout
"""

EXAMPLES = r"""
# inventory.yml: change "kubernetes.core.kubectl" to "k8sstream" and keep everything else
all:
  hosts:
    web:
      ansible_connection: k8sstream
      ansible_kubectl_pod: deploy/web
      ansible_kubectl_namespace: prod
      ansible_kubectl_container: app
      ansible_pipelining: true
"""

import dataclasses
import json
import os
import posixpath
import tempfile
from typing import Any, Dict, Optional, Tuple

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

_OUT_OF_BAND = "copy: the container has no tar, using cat"


def _bool(value: Any) -> Optional[bool]:
    if value in ("", None):
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y", "t")


class Connection(ConnectionBase):
    """Run commands and move files in a pod's container with k8sstream."""

    transport = "k8sstream"
    has_pipelining = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: Any = None
        self._pod: Optional[str] = None
        self._temp_kubeconfig: Optional[str] = None

    # --- configuration ---

    def _option(self, name: str) -> Any:
        try:
            return self.get_option(name)
        except KeyError:
            return None

    def _build_client(self) -> Any:
        from k8sstream import Client, ConfigError
        from k8sstream.config import load_kubeconfig

        kubeconfig = self._option("kubectl_kubeconfig") or None
        if isinstance(kubeconfig, dict):
            fd, path = tempfile.mkstemp(prefix="k8sstream-kubeconfig-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(kubeconfig, f)
            self._temp_kubeconfig = kubeconfig = path
        namespace = self._option("kubectl_namespace") or None
        host = self._option("kubectl_host") or None
        try:
            config = load_kubeconfig(
                kubeconfig, context=self._option("kubectl_context") or None, namespace=namespace
            )
        except ConfigError:
            if not host:
                raise
            from k8sstream import ClusterConfig

            config = ClusterConfig(server=host, namespace=namespace or "default")
        changes: Dict[str, Any] = {}
        if host:
            changes["server"] = host
        token = self._option("kubectl_token")
        if token:
            changes.update(token=token, token_file=None, exec_plugin=None)
        if self._option("kubectl_username"):
            changes.update(
                username=self._option("kubectl_username"),
                password=self._option("kubectl_password") or None,
            )
        for option, field in (
            ("ca_cert", "ca_data"),
            ("client_cert", "client_cert_data"),
            ("client_key", "client_key_data"),
        ):
            path = self._option(option)
            if path:
                with open(os.path.expanduser(path), "rb") as f:
                    changes[field] = f.read()
        verify = _bool(self._option("validate_certs"))
        if verify is not None:
            changes["insecure_skip_tls_verify"] = not verify
        if changes:
            config = dataclasses.replace(config, **changes)
        return Client(config)

    def _connect(self) -> Connection:
        super()._connect()
        if not getattr(self, "_connected", False):
            from k8sstream import K8sStreamError, resolve_target

            target = self._option("kubectl_pod") or self._play_context.remote_addr
            display.vvv(f"ESTABLISH K8SSTREAM CONNECTION to {target}", host=target)
            try:
                self._client = self._build_client()
                self._pod = resolve_target(
                    target,
                    client=self._client,
                    timeout=float(self._option("pod_running_timeout") or 60),
                )
            except (K8sStreamError, OSError) as exc:
                self.close()
                raise AnsibleConnectionFailure(f"k8sstream: {target}: {exc}") from exc
            self._connected = True
        return self

    def _where(self) -> Dict[str, Any]:
        return {
            "pod": self._pod,
            "container": self._option("kubectl_container") or None,
            "client": self._client,
        }

    # --- the connection API ---

    def exec_command(
        self, cmd: str, in_data: Optional[bytes] = None, sudoable: bool = True
    ) -> Tuple[int, bytes, bytes]:
        """Run ``cmd`` with the shell; ``in_data`` (pipelining) goes to stdin, then EOF."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        from k8sstream import PIPE, K8sStreamError, Popen

        if sudoable and self.become is not None and self.become.expect_prompt():
            raise AnsibleError(
                "k8sstream: become with a password is not supported (no prompt exchange); "
                "use su or passwordless sudo"
            )
        executable = self._play_context.executable or "/bin/sh"
        argv = [executable, "-c", cmd]
        display.vvv(f"EXEC {argv!r}", host=self._pod)
        try:
            with Popen(argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, **self._where()) as proc:
                stdout, stderr = proc.communicate(in_data or b"")
                return proc.wait(), stdout, stderr
        except K8sStreamError as exc:
            raise AnsibleConnectionFailure(f"k8sstream: {self._pod}: {exc}") from exc

    @staticmethod
    def _remote_path(path: str) -> str:
        # As kubectl's plugin: a relative path is taken from "/", not from the home directory.
        return posixpath.normpath(path if path.startswith("/") else "/" + path)

    def put_file(self, in_path: str, out_path: str) -> None:
        """Copy a local file into the container (tar over exec, else ``cat``)."""
        super().put_file(in_path, out_path)
        from k8sstream import CalledProcessError, K8sStreamError, RemoteCommandError, copy_to_pod

        out_path = self._remote_path(out_path)
        display.vvv(f"PUT {in_path} TO {out_path}", host=self._pod)
        if not os.path.exists(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound(f"file or module does not exist: {in_path}")
        where = self._where()
        try:
            try:
                copy_to_pod(in_path, where.pop("pod"), out_path, **where)
            except RemoteCommandError:
                display.vvv(_OUT_OF_BAND, host=self._pod)
                self._cat_to(in_path, out_path)
        except CalledProcessError as exc:
            raise AnsibleError(
                f"failed to transfer file {in_path} to {out_path}: {to_text(exc.stderr)}"
            ) from exc
        except K8sStreamError as exc:
            raise AnsibleConnectionFailure(f"k8sstream: {self._pod}: {exc}") from exc

    def _cat_to(self, in_path: str, out_path: str) -> None:
        from k8sstream import PIPE, CalledProcessError, Popen

        argv = ["/bin/sh", "-c", 'cat > "$0"', out_path]
        with open(in_path, "rb") as source:
            with Popen(argv, stdin=source, stdout=PIPE, stderr=PIPE, **self._where()) as proc:
                _, stderr = proc.communicate()
        if proc.returncode:
            raise CalledProcessError(proc.returncode, argv, stderr=stderr)

    def fetch_file(self, in_path: str, out_path: str) -> None:
        """Copy a file out of the container (tar over exec, else ``cat``)."""
        super().fetch_file(in_path, out_path)
        from k8sstream import CalledProcessError, K8sStreamError, RemoteCommandError, copy_from_pod

        in_path = self._remote_path(in_path)
        display.vvv(f"FETCH {in_path} TO {out_path}", host=self._pod)
        where = self._where()
        try:
            try:
                copy_from_pod(where.pop("pod"), in_path, out_path, **where)
            except RemoteCommandError:
                display.vvv(_OUT_OF_BAND, host=self._pod)
                self._cat_from(in_path, out_path)
        except CalledProcessError as exc:
            raise AnsibleError(
                f"failed to fetch file {in_path} to {out_path}: {to_text(exc.stderr)}"
            ) from exc
        except K8sStreamError as exc:
            raise AnsibleConnectionFailure(f"k8sstream: {self._pod}: {exc}") from exc

    def _cat_from(self, in_path: str, out_path: str) -> None:
        from k8sstream import PIPE, CalledProcessError, Popen

        argv = ["cat", in_path]
        with open(out_path, "wb") as target:
            with Popen(argv, stdout=target, stderr=PIPE, **self._where()) as proc:
                _, stderr = proc.communicate()
        if proc.returncode:
            raise CalledProcessError(proc.returncode, argv, stderr=stderr)

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        """Release the REST connections; every exec has its own, already closed, WebSocket."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._temp_kubeconfig is not None:
            try:
                os.remove(self._temp_kubeconfig)
            except OSError:
                pass
            self._temp_kubeconfig = None
        super().close()
        self._connected = False
