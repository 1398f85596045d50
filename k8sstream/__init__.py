"""k8sstream: run commands in Kubernetes pods and forward their ports over WebSocket."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger("k8sstream").addHandler(logging.NullHandler())
