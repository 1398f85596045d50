"""Ansible support: the ``k8sstream`` connection plugin, shipped inside the package.

Two ways to install it (k8sstream must be importable by the Python that runs Ansible):

- ``ANSIBLE_CONNECTION_PLUGINS=$(python -m k8sstream.ansible_plugins path)`` (or
  ``connection_plugins = ...`` in ``ansible.cfg``), then ``ansible_connection: k8sstream``;
- as a collection: ``python -m k8sstream.ansible_plugins collection DIR`` writes the
  collection ``k8sstream.kubernetes`` under ``DIR/ansible_collections``; put ``DIR`` on
  ``ANSIBLE_COLLECTIONS_PATH`` (or build and install it with ``ansible-galaxy``), then
  ``ansible_connection: k8sstream.kubernetes.k8sstream``.

The inventory variables are those of ``kubernetes.core.kubectl`` (``ansible_kubectl_pod``,
``ansible_kubectl_namespace``, ``ansible_kubectl_container``, ``ansible_kubectl_context``,
``ansible_kubectl_kubeconfig`` ...), so switching is a change of ``ansible_connection`` only.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

__all__ = ["COLLECTION", "connection_plugin_dir", "write_collection"]

#: The collection's ``namespace.name``.
COLLECTION = "k8sstream.kubernetes"


def connection_plugin_dir() -> str:
    """The directory to put on ``ANSIBLE_CONNECTION_PLUGINS``."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "connection")


def write_collection(directory: str, version: Optional[str] = None) -> str:
    """Write the collection under ``directory/ansible_collections/k8sstream/kubernetes``.

    Returns:
        The collection's root (where ``galaxy.yml`` is), ready for ``ANSIBLE_COLLECTIONS_PATH``
        (pass ``directory``) or ``ansible-galaxy collection build``.
    """
    from .. import __version__

    namespace, name = COLLECTION.split(".")
    root = os.path.join(directory, "ansible_collections", namespace, name)
    plugins = os.path.join(root, "plugins", "connection")
    os.makedirs(plugins, exist_ok=True)
    shutil.copyfile(
        os.path.join(connection_plugin_dir(), "k8sstream.py"), os.path.join(plugins, "k8sstream.py")
    )
    with open(os.path.join(root, "galaxy.yml"), "w", encoding="utf-8") as f:
        f.write(
            f"namespace: {namespace}\n"
            f"name: {name}\n"
            f"version: {version or __version__}\n"
            "readme: README.md\n"
            "authors: [k8sstream]\n"
            "description: Run tasks in Kubernetes pods over the API server's streams, "
            "without kubectl (needs the k8sstream Python package on the controller)\n"
            "license: [Apache-2.0]\n"
            "dependencies: {}\n"
        )
    with open(os.path.join(root, "README.md"), "w", encoding="utf-8") as f:
        f.write(
            "# k8sstream.kubernetes\n\nThe `k8sstream.kubernetes.k8sstream` connection plugin; "
            "`pip install k8sstream` on the controller.\n"
        )
    os.makedirs(os.path.join(root, "meta"), exist_ok=True)
    with open(os.path.join(root, "meta", "runtime.yml"), "w", encoding="utf-8") as f:
        f.write('requires_ansible: ">=2.14"\n')
    return root
