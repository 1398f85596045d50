"""Figures for RELIABILITY.md: tests record what they observed, tools/reliability_report.py
renders the table.

Recording is off unless ``K8SSTREAM_RELIABILITY_OUT`` names a file; each record is one JSON
line appended to it, so parallel or repeated runs never corrupt each other's records. A test
records only after its assertions passed, so a record is always an observed outcome, never a
hope; the report takes pass/fail/xfail from pytest's JUnit XML.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Dict, Iterator, Optional

#: The heavy variants (1,000 sequential execs, 200 concurrent sessions, 1 GiB slow reader,
#: long fuzzing) run only with K8SSTREAM_SLOW=1.
SLOW = os.environ.get("K8SSTREAM_SLOW") == "1"
OUT_ENV = "K8SSTREAM_RELIABILITY_OUT"

_lock = threading.Lock()


def record(area: str, case: str, outcome: str, **figures: Any) -> None:
    """Append one observed outcome (and its figures) for the current test."""
    path = os.environ.get(OUT_ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    entry: Dict[str, Any] = {
        "test": test,
        "area": area,
        "case": case,
        "outcome": outcome,
        "figures": {k: _plain(v) for k, v in figures.items()},
        "slow": SLOW,
    }
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    return value if isinstance(value, (int, str, bool, type(None))) else str(value)


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.elapsed`` (monotonic seconds)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.end: Optional[float] = None

    def __enter__(self) -> Stopwatch:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end = time.monotonic()

    @property
    def elapsed(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


def proc_status(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM), or threads (Threads)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def iter_records(path: str) -> Iterator[Dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
