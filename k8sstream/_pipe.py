"""A bounded, thread-safe byte pipe between the connection's reader thread and its consumers.

The reader thread ``feed``\\ s received data; a full pipe blocks it, which stops it reading the
socket: that is the back-pressure that keeps memory bounded whatever the stream size (paramiko's
``BufferedPipe`` plus the bound that SSH windows give paramiko).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Optional

DEFAULT_LIMIT = 1024 * 1024


class Pipe:
    """A byte queue with a high-water mark, end of file and error propagation.

    Several pipes may share one condition variable so that a consumer can wait on all of them
    at once (``communicate()`` drains stdout and stderr together).
    """

    def __init__(
        self, limit: int = DEFAULT_LIMIT, condition: Optional[threading.Condition] = None
    ) -> None:
        self._limit = limit
        self._cond = condition or threading.Condition()
        self._chunks: Deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: Optional[BaseException] = None
        self._discarding = False

    @property
    def condition(self) -> threading.Condition:
        return self._cond

    def feed(self, data: bytes) -> None:
        """Append data, blocking while the pipe is over its limit.

        Returns without storing anything once the consumer has stopped reading (``discard``)
        or the pipe has ended.
        """
        with self._cond:
            while self._size >= self._limit and not (self._discarding or self._eof):
                self._cond.wait()
            if self._discarding or self._eof:
                return
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()

    def close(self) -> None:
        """Mark end of file: readers get the remaining data, then ``b""``."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """End the pipe with an error that every reader sees once the data is consumed."""
        with self._cond:
            if not self._eof:
                self._error = error
                self._eof = True
            self._cond.notify_all()

    @property
    def error(self) -> Optional[BaseException]:
        """The error given to :meth:`fail`, if any (readers see it after the data)."""
        with self._cond:
            return self._error

    def discard(self) -> None:
        """The consumer has gone: drop what is buffered and everything fed from now on."""
        with self._cond:
            self._discarding = True
            self._eof = True  # a reader still waiting (a copier thread) sees the end
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()

    def at_eof(self) -> bool:
        """True once all data has been read and the pipe has ended."""
        with self._cond:
            return self._eof and not self._chunks

    def read(self, size: int = -1, deadline: Optional[float] = None) -> Optional[bytes]:
        """Read up to ``size`` bytes (everything buffered when ``size < 0``).

        Blocks until data is available, end of file, or the monotonic ``deadline``.

        Returns:
            The data; ``b""`` at end of file; ``None`` when the deadline passed first.

        Raises:
            The error given to :meth:`fail`, after the buffered data has been read.
        """
        with self._cond:
            while not self._chunks:
                if self._eof:
                    if self._error is not None:
                        raise self._error
                    return b""
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            return self._take(size)

    def read_nowait(self, size: int = -1) -> Optional[bytes]:
        """Like :meth:`read` without blocking: ``None`` means no data yet. Hold the condition."""
        if self._chunks:
            return self._take(size)
        if self._eof:
            if self._error is not None:
                raise self._error
            return b""
        return None

    def _take(self, size: int) -> bytes:
        chunks = self._chunks
        if size < 0 or size >= self._size:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        elif len(chunks[0]) <= size:
            # Whole chunks avoid a copy; readers loop for more, as with a socket.
            data = chunks.popleft()
        else:
            head = chunks[0]
            data = head[:size]
            chunks[0] = head[size:]
        was_full = self._size >= self._limit
        self._size -= len(data)
        if was_full and self._size < self._limit:
            self._cond.notify_all()
        return data
