"""Fault injection for the emulator (``ApiServer.faults``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Union

__all__ = ["Faults", "Refusal", "RequestRecord"]


class RequestRecord(NamedTuple):
    """One request as the emulator saw it (``ApiServer.requests``)."""

    method: str
    path: str
    query: str
    #: The negotiated WebSocket subprotocol ("" for none), or None if there was no upgrade.
    subprotocol: Optional[str]


@dataclass(frozen=True)
class Refusal:
    """How to refuse an upgrade: a complete HTTP response with this status and body."""

    status: int
    body: bytes
    content_type: str


@dataclass
class _Armed:
    remaining: int
    match: str
    value: object = None


class Faults:
    """Faults armed for the next matching requests. Thread-safe.

    Each ``arm``-style method takes ``count`` (how many requests it applies to) and ``match`` (a
    substring the request path must contain; empty matches any request the fault applies to).
    Upgrade faults apply only to exec/attach/portforward requests that pass the API server's
    checks (authentication, pod and container lookup).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refuse: List[_Armed] = []
        self._close_after_upgrade: List[_Armed] = []
        self._hold: List[_Armed] = []
        self._stall: List[_Armed] = []
        self._reset_data: List[_Armed] = []
        self._goaway: List[_Armed] = []
        self._ignore_syn: List[_Armed] = []

    def refuse_next_upgrade(
        self,
        status: int = 500,
        body: Union[bytes, str] = b"emulated failure",
        content_type: str = "text/plain; charset=utf-8",
        *,
        count: int = 1,
        match: str = "",
    ) -> None:
        """Answer the next upgrade request with ``status`` and ``body`` instead of a 101."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        self._arm(self._refuse, count, match, Refusal(status, data, content_type))

    def close_after_upgrade(self, *, count: int = 1, match: str = "") -> None:
        """Send the 101, then close the TCP connection at once (no message, no Close frame)."""
        self._arm(self._close_after_upgrade, count, match)

    def hold_after_status(self, seconds: float, *, count: int = 1, match: str = "") -> None:
        """After the final status, keep the connection open ``seconds`` before closing it."""
        self._arm(self._hold, count, match, float(seconds))

    def stall(self, *, count: int = 1, match: str = "") -> None:
        """Read the next request and never answer it (until the client leaves or stop())."""
        self._arm(self._stall, count, match)

    # -- port-forward over the SPDY tunnel (Path C); ``count`` counts streams or sessions --

    def reset_next_data_stream(self, *, count: int = 1, match: str = "") -> None:
        """Answer the next ``count`` port-forward data streams with SYN_REPLY and then at once
        RST_STREAM CANCEL (no connection to the pod port is made; the error stream gets FIN)."""
        self._arm(self._reset_data, count, match)

    def send_goaway(self, *, after_connections: int = 0, count: int = 1, match: str = "") -> None:
        """In the next ``count`` tunnel sessions, once ``after_connections`` connections have
        been paired (0: right after the 101), send GOAWAY (status OK), refuse later streams
        with RST_STREAM REFUSED_STREAM, and close the WebSocket once the open ones end."""
        if after_connections < 0:
            raise ValueError("after_connections must not be negative")
        self._arm(self._goaway, count, match, after_connections)

    def ignore_next_syn_stream(self, *, count: int = 1, match: str = "") -> None:
        """Never reply to the next ``count`` SYN_STREAM frames (and drop their data)."""
        self._arm(self._ignore_syn, count, match)

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            for armed in (
                self._refuse,
                self._close_after_upgrade,
                self._hold,
                self._stall,
                self._reset_data,
                self._goaway,
                self._ignore_syn,
            ):
                armed.clear()

    def _arm(self, armed: List[_Armed], count: int, match: str, value: object = None) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            armed.append(_Armed(count, match, value))

    def _take(self, armed: List[_Armed], path: str) -> Optional[_Armed]:
        with self._lock:
            for entry in armed:
                if entry.match in path:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        armed.remove(entry)
                    return entry
        return None

    # -- used by the server --

    def take_refusal(self, path: str) -> Optional[Refusal]:
        entry = self._take(self._refuse, path)
        return entry.value if entry is not None else None  # type: ignore[return-value]

    def take_close_after_upgrade(self, path: str) -> bool:
        return self._take(self._close_after_upgrade, path) is not None

    def take_hold(self, path: str) -> float:
        entry = self._take(self._hold, path)
        return float(entry.value) if entry is not None else 0.0  # type: ignore[arg-type]

    def take_stall(self, path: str) -> bool:
        return self._take(self._stall, path) is not None

    def take_reset_data(self, path: str) -> bool:
        return self._take(self._reset_data, path) is not None

    def take_goaway(self, path: str) -> Optional[int]:
        entry = self._take(self._goaway, path)
        return int(entry.value) if entry is not None else None  # type: ignore[call-overload]

    def take_ignore_syn(self, path: str) -> bool:
        return self._take(self._ignore_syn, path) is not None
