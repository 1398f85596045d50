"""File objects over pipes and channels, wrapped the way ``socket.makefile`` and
``subprocess.Popen`` wrap file descriptors."""

from __future__ import annotations

import io
from typing import Any, Callable, List, Optional

from ._pipe import Pipe


class PipeReader(io.RawIOBase):
    """The raw reading end of a :class:`Pipe`. Closing it tells the reader thread to drop data."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._pipe.read(len(view))
        assert data is not None  # no deadline, so read() blocks until data or EOF
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        parts: List[bytes] = []
        while True:
            data = self._pipe.read()
            if not data:
                return b"".join(parts)
            parts.append(data)

    def close(self) -> None:
        if not self.closed:
            self._pipe.discard()
        super().close()


class ChannelWriter(io.RawIOBase):
    """The raw writing end of an outgoing channel. Closing it half-closes the channel."""

    def __init__(self, send: Callable[[bytes], None], close_write: Callable[[], None]) -> None:
        self._send = send
        self._close_write = close_write

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._send(data)
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._close_write()
        finally:
            super().close()


def wrap_reader(
    raw: io.RawIOBase, bufsize: int, text: bool, encoding: Optional[str], errors: Optional[str]
) -> Any:
    """Wrap a raw reader as subprocess does: buffered, then decoded in text mode."""
    stream: Any = (
        raw
        if bufsize == 0 and not text
        else io.BufferedReader(
            raw,
            bufsize if bufsize > 1 else io.DEFAULT_BUFFER_SIZE,
        )
    )
    if text:
        stream = io.TextIOWrapper(stream, encoding=encoding, errors=errors)
    return stream


def wrap_writer(
    raw: io.RawIOBase, bufsize: int, text: bool, encoding: Optional[str], errors: Optional[str]
) -> Any:
    """Wrap a raw writer as subprocess wraps a child's stdin."""
    stream: Any = (
        raw
        if bufsize == 0 and not text
        else io.BufferedWriter(
            raw,
            bufsize if bufsize > 1 else io.DEFAULT_BUFFER_SIZE,
        )
    )
    if text:
        stream = io.TextIOWrapper(
            stream,
            encoding=encoding,
            errors=errors,
            write_through=True,
            line_buffering=bufsize == 1,
        )
    return stream
