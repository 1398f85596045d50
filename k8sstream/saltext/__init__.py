"""Salt support: the ``k8sstream`` execution module (``salt-call k8sstream.run ...``).

Installing k8sstream registers it with Salt through the ``salt.loader`` entry point, which
points at this package; Salt loads ``modules/`` from here. Without the entry point, pass
``--module-dirs $(python -c 'import k8sstream.saltext as s; print(s.module_dir())')`` or copy
``modules/k8sstream_mod.py`` into the file roots' ``_modules``.
"""

from __future__ import annotations

import os

__all__ = ["module_dir"]


def module_dir() -> str:
    """The directory that holds the execution module."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules")
