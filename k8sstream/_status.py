"""``metav1.Status`` values: parsing what the server sends and building what the emulator sends.

Sans-IO: bytes in, frozen values out. See PROTOCOL.md section 5 for the shapes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

from .errors import RemoteProtocolError

__all__ = ["ApiStatus", "ExitStatus"]

_MAX_EXIT_CODE = 255
# v1-style error channels carry only the Status message; the runtime's wording ends in the code.
_TEXT_EXIT_CODE = re.compile(r"exit code ([0-9]{1,3})\s*$")


@dataclass(frozen=True)
class StatusCause:
    """One entry of ``details.causes``: ``reason`` is Go's ``StatusCause.Type``."""

    reason: str = ""
    message: str = ""
    field: str = ""


@dataclass(frozen=True)
class ApiStatus:
    """A parsed ``metav1.Status`` object, from an error channel or an HTTP error body."""

    status: str
    message: str = ""
    reason: str = ""
    code: Optional[int] = None
    # Left out of the hash so that the frozen value stays hashable; still compared.
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    causes: Tuple[StatusCause, ...] = ()

    @property
    def is_success(self) -> bool:
        return self.status == "Success"


@dataclass(frozen=True)
class ExitStatus:
    """How a remote command ended.

    ``returncode`` is the exit code, or ``None`` when the command failed without one (then
    ``status`` says why: executable not found, container gone, attach failure).
    """

    returncode: Optional[int]
    status: Optional[ApiStatus] = None

    @property
    def message(self) -> str:
        return self.status.message if self.status is not None else ""


def parse_status(data: bytes) -> ApiStatus:
    """Parse a JSON ``metav1.Status``.

    Raises:
        RemoteProtocolError: the bytes are not a JSON object with a string ``status``.
    """
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"status is not JSON: {_preview(data)}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("status"), str):
        raise RemoteProtocolError(f"status object has no 'status' field: {_preview(data)}")
    details = obj.get("details")
    if not isinstance(details, dict):
        details = {}
    raw_causes = details.get("causes")
    causes = tuple(
        StatusCause(
            reason=_text(c.get("reason")),
            message=_text(c.get("message")),
            field=_text(c.get("field")),
        )
        for c in (raw_causes if isinstance(raw_causes, list) else [])
        if isinstance(c, dict)
    )
    code = obj.get("code")
    return ApiStatus(
        status=obj["status"],
        message=_text(obj.get("message")),
        reason=_text(obj.get("reason")),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        details=details,
        causes=causes,
    )


def exit_status_from_json(data: bytes) -> ExitStatus:
    """Decode a v4/v5 error channel (the concatenated channel-3 payloads) into an exit status.

    Follows client-go's ``errorDecoderV4``: ``Success`` is exit 0, ``NonZeroExitCode`` must carry an
    ``ExitCode`` cause with a code in 0..255, any other ``Failure`` has no exit code.

    Raises:
        RemoteProtocolError: malformed JSON, an unknown ``status``, or a ``NonZeroExitCode``
            without a usable ``ExitCode`` cause.
    """
    status = parse_status(data)
    if status.status == "Success":
        return ExitStatus(0, status)
    if status.status != "Failure":
        raise RemoteProtocolError(f"unknown status {status.status!r} on the error channel")
    if status.reason != "NonZeroExitCode":
        return ExitStatus(None, status)
    for cause in status.causes:
        if cause.reason == "ExitCode":
            code = _parse_exit_code(cause.message)
            if code is None:
                break
            return ExitStatus(code, status)
    raise RemoteProtocolError(
        f"NonZeroExitCode status without a valid ExitCode cause: {status.message!r}"
    )


def exit_status_from_text(data: bytes) -> ExitStatus:
    """Decode a pre-v4 error channel, which carries only the failure message (empty on success).

    The exit code is recovered from a message ending in ``exit code N``, which is how the
    upstream runtime words a non-zero exit; any other message is a failure without an exit code.
    """
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return ExitStatus(0, ApiStatus(status="Success"))
    match = _TEXT_EXIT_CODE.search(text)
    code = _parse_exit_code(match.group(1)) if match else None
    reason = "NonZeroExitCode" if code is not None else ""
    return ExitStatus(code, ApiStatus(status="Failure", message=text, reason=reason))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _parse_exit_code(text: str) -> Optional[int]:
    # Go's strconv.ParseUint(text, 10, 8): ASCII digits only. Bound the length before int(),
    # which refuses strings of more than 4300 digits.
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > 3:
        return None
    code = int(digits)
    return code if code <= _MAX_EXIT_CODE else None


def _preview(data: bytes, limit: int = 200) -> str:
    text = data[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(data) > limit else ""))


# --- builders: what the API server writes (used by the emulator, tested against the parsers) ---


def success_status() -> bytes:
    """The v4/v5 error-channel payload for a command that exited 0."""
    return _dumps({"metadata": {}, "status": "Success"})


def exit_code_status(code: int) -> bytes:
    """The v4/v5 error-channel payload for a non-zero exit, as the v5 translator writes it."""
    message = (
        f"command terminated with non-zero exit code: command terminated with exit code {code}"
    )
    return _dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    )


def internal_error_status(error: str) -> bytes:
    """The error-channel payload of ``apierrors.NewInternalError``."""
    return _dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {error}",
            "reason": "InternalError",
            "details": {"causes": [{"message": error}]},
            "code": 500,
        }
    )


def http_error_body(
    code: int, reason: str, message: str, details: Optional[Mapping[str, Any]] = None
) -> bytes:
    """An apiserver HTTP error body (a serialized Status, with kind and apiVersion)."""
    obj: dict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        obj["details"] = dict(details)
    obj["code"] = code
    return _dumps(obj)


def status_message(payload: bytes) -> str:
    """The ``message`` of a JSON status payload, for the pre-v4 protocols that send only text."""
    return str(json.loads(payload).get("message", ""))


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
