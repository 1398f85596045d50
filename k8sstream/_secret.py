"""Credentials kept out of the Python heap and out of core dumps.

A bearer token or private key held in a ``str`` or ``bytes`` object stays readable in the
process's memory, and so in any core dump, and every request that formats it into a header
leaves more copies behind in freed heap blocks. A :class:`Secret` instead lives in its own
anonymous memory mapping, marked ``MADV_DONTDUMP`` where the platform has it (the kernel and
gdb's ``gcore`` both leave such mappings out of a dump) and overwritten with zeros when it is
released.

Headers never carry the credential itself: they carry the secret's :attr:`Secret.placeholder`,
and :func:`substitute` swaps the real value in on the way to the socket, assembling the
outgoing bytes in another :class:`Secret` that is wiped as soon as they are sent. Everything
that formats, logs or traces a request (websocket-client's handshake dump, urllib3's debug
log) therefore only ever sees the placeholder.
"""

from __future__ import annotations

import hmac
import mmap
import re
import secrets
import weakref
from typing import IO, Callable, Dict, List, Optional, Pattern, Tuple, Union

_PLACEHOLDER_PREFIX = b"k8sstream-secret-"
_PLACEHOLDER = re.compile(re.escape(_PLACEHOLDER_PREFIX) + rb"[0-9a-f]{32}")
_registry: weakref.WeakValueDictionary[bytes, Secret] = weakref.WeakValueDictionary()
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_WHITESPACE = b" \t\r\n\x0b\x0c"

Chunk = Union[str, bytes, bytearray, memoryview, "Secret"]


def _new_mapping(size: int) -> mmap.mmap:
    mapping = mmap.mmap(-1, max(size, 1))
    dont_dump = getattr(mmap, "MADV_DONTDUMP", None)
    if dont_dump is not None:
        try:
            mapping.madvise(dont_dump)
        except OSError:  # pragma: no cover - kernels without it still work, just dumpable
            pass
    return mapping


def _wipe(mapping: mmap.mmap, extent: List[int]) -> None:
    # Only the written extent: a read buffer maps its whole limit, mostly never touched.
    if not mapping.closed:
        mapping[: extent[0]] = bytes(extent[0])
        try:
            mapping.close()
        except BufferError:
            pass  # a view outlived its Secret: unmapped when that view goes


class Secret:
    """Bytes held in a private, non-dumpable mapping and zeroed when released.

    Built from ``str``/``bytes`` pieces or other secrets (:meth:`join`), or read straight from
    a file (:meth:`read_file`), so the value never passes through a Python ``bytes`` object.
    ``repr()`` shows no content, and a secret cannot be pickled.
    """

    __slots__ = ("__weakref__", "_extent", "_finalizer", "_mapping", "_placeholder", "_size")

    def __init__(self, value: Chunk = b"") -> None:
        self._init_empty(_chunk_length(value))
        _copy_into(self._mapping, 0, value)

    def _init_empty(self, size: int, extent: Optional[int] = None) -> None:
        self._mapping = _new_mapping(size)
        self._size = size
        self._extent = [size if extent is None else extent]  # how much may hold data
        self._placeholder: Optional[str] = None
        self._finalizer = weakref.finalize(self, _wipe, self._mapping, self._extent)

    @classmethod
    def _blank(cls, size: int, extent: Optional[int] = None) -> Secret:
        """A zeroed secret of ``size`` bytes, for the functions here to fill in place."""
        secret = cls.__new__(cls)
        secret._init_empty(size, extent)
        return secret

    @classmethod
    def join(cls, *parts: Chunk) -> Secret:
        """The concatenation of ``parts`` (str parts are UTF-8)."""
        secret = cls._blank(sum(_chunk_length(part) for part in parts))
        offset = 0
        for part in parts:
            offset = _copy_into(secret._mapping, offset, part)
        return secret

    @classmethod
    def read_file(cls, path: str, limit: int = 1 << 20, strip: bool = True) -> Secret:
        """A file's content (without surrounding whitespace if ``strip``), read straight into
        the mapping.

        Raises:
            OSError: the file cannot be read, or it is larger than ``limit``.
        """
        with open(path, "rb", buffering=0) as f:
            return cls.read_stream(f, limit, strip, what=path)

    @classmethod
    def read_stream(
        cls, stream: IO[bytes], limit: int, strip: bool = True, what: str = "the stream"
    ) -> Secret:
        """Everything an unbuffered stream gives until end of file, as :meth:`read_file`."""
        raw = cls._blank(limit + 1, extent=0)
        try:
            with memoryview(raw._mapping) as view:
                filled = 0
                while filled <= limit:
                    with view[filled:] as free:
                        n = stream.readinto(free)  # type: ignore[attr-defined]
                    if not n:
                        break
                    filled += n
                    raw._extent[0] = filled
            if filled > limit:
                raise OSError(f"{what}: larger than {limit} bytes")
            start, end = 0, filled
            mapping = raw._mapping
            while strip and start < end and mapping[start] in _WHITESPACE:
                start += 1
            while strip and end > start and mapping[end - 1] in _WHITESPACE:
                end -= 1
            with memoryview(mapping)[start:end] as content:
                return cls(content)
        finally:
            raw.wipe()

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def view(self) -> memoryview:
        """A read-only view of the value, for as long as this Secret is referenced and not
        wiped (the value is zeroed when the Secret goes, whatever views remain)."""
        return memoryview(self._mapping).toreadonly()[: self._size]

    def reveal(self) -> str:
        """The value as a ``str``: a copy on the ordinary heap, for callers that need one."""
        return self._mapping[: self._size].decode("utf-8", "replace")

    @property
    def placeholder(self) -> str:
        """A stand-in for the value in headers; :func:`substitute` swaps the value back in."""
        if self._placeholder is None:
            token = _PLACEHOLDER_PREFIX + secrets.token_hex(16).encode()
            _registry[token] = self
            self._placeholder = token.decode()
        return self._placeholder

    def wipe(self) -> None:
        """Zero and unmap the value now rather than when the object is collected."""
        if self._placeholder is not None:
            _registry.pop(self._placeholder.encode(), None)
        self._finalizer()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        with self.view() as mine, other.view() as theirs:
            return hmac.compare_digest(mine, theirs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


def _chunk_length(chunk: Chunk) -> int:
    if isinstance(chunk, str):
        return len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
    return len(chunk)


def _copy_into(mapping: mmap.mmap, offset: int, chunk: Chunk) -> int:
    if isinstance(chunk, Secret):
        with chunk.view() as view:
            mapping[offset : offset + len(view)] = view
        return offset + len(chunk)
    if isinstance(chunk, str):
        if not chunk.isascii():
            chunk = chunk.encode("utf-8")  # rare: tokens and PEM text are ASCII
        else:
            # Character by character: ``chunk.encode()`` would leave a heap copy behind.
            for i, char in enumerate(chunk):
                mapping[offset + i] = ord(char)
            return offset + len(chunk)
    mapping[offset : offset + len(chunk)] = chunk
    return offset + len(chunk)


def basic_credentials(username: str, password: Union[str, Secret]) -> Secret:
    """The ``Basic`` Authorization value, base64-encoded inside the mapping."""
    pair = Secret.join(username, ":", password)
    try:
        with pair.view() as raw:
            length = len(raw)
            out = Secret._blank(len("Basic ") + 4 * ((length + 2) // 3))
            target = out._mapping
            target[: len("Basic ")] = b"Basic "
            at = len("Basic ")
            for i in range(0, length, 3):
                block = raw[i : i + 3]
                n = len(block)
                word = block[0] << 16
                if n > 1:
                    word |= block[1] << 8
                if n > 2:
                    word |= block[2]
                target[at] = _B64[word >> 18]
                target[at + 1] = _B64[(word >> 12) & 63]
                target[at + 2] = _B64[(word >> 6) & 63] if n > 1 else 61  # "="
                target[at + 3] = _B64[word & 63] if n > 2 else 61
                at += 4
                block.release()
            return out
    finally:
        pair.wipe()


_B64_VALUES = {char: value for value, char in enumerate(_B64)}


def b64decode(encoded: Secret) -> Secret:
    """Strict base64 decoding (as ``base64.b64decode(..., validate=True)``) inside the mapping.

    Raises:
        ValueError: ``encoded`` is not canonical base64.
    """
    with encoded.view() as text:
        length = len(text)
        padding = 2 if text[-2:] == b"==" else 1 if text[-1:] == b"=" else 0
        if length % 4:
            raise ValueError("base64 length is not a multiple of 4")
        out = Secret._blank(length // 4 * 3 - padding)
        target = out._mapping
        at = 0
        for i in range(0, length, 4):
            word = 0
            for j in range(4):
                char = text[i + j]
                if char == 61 and i + j >= length - padding:  # "=" only as the final padding
                    value = 0
                elif char in _B64_VALUES:
                    value = _B64_VALUES[char]
                else:
                    out.wipe()
                    raise ValueError("not a base64 character")
                word = (word << 6) | value
            for shift in (16, 8, 0):
                if at < len(out):
                    target[at] = (word >> shift) & 255
                    at += 1
        return out


ValueDecoder = Callable[[memoryview], Optional[Secret]]


def lift(
    raw: Secret, pattern: Pattern[bytes], decode: ValueDecoder
) -> Optional[Tuple[str, Dict[str, Secret]]]:
    """``raw`` as text with every ``pattern`` match's ``value`` group replaced by a placeholder.

    Parsers (PyYAML, json) leave copies of what they parse in memory they free without
    clearing, so credentials are taken out of a document before it is parsed. ``decode`` turns
    the matched bytes into the credential (unquoting, unescaping), or ``None`` to leave them in
    place. Returns the text and the lifted secrets by placeholder, or ``None`` if ``raw`` is
    not UTF-8.
    """
    pieces: List[str] = []
    found: Dict[str, Secret] = {}
    position = 0
    with raw.view() as text:
        try:
            for match in pattern.finditer(text):
                start, end = match.span("value")
                with text[start:end] as value:
                    credential = decode(value)
                if credential is None:
                    continue
                pieces.append(str(text[position:start], "utf-8-sig" if not pieces else "utf-8"))
                pieces.append(credential.placeholder)
                found[credential.placeholder] = credential
                position = end
            pieces.append(str(text[position:], "utf-8-sig" if not pieces else "utf-8"))
        except UnicodeDecodeError:
            return None
    return "".join(pieces), found


_JSON_ESCAPES = {ord(k): ord(v) for k, v in zip('"\\/bfnrt', '"\\/\b\f\n\r\t')}


def json_unescape(value: memoryview) -> Optional[Secret]:
    """The content of a JSON string literal (without its quotes), unescaped into a Secret;
    ``None`` for ``\\u`` escapes, which tokens and PEM never need, and for an empty string
    (json then handles them)."""
    if not value:
        return None  # an empty string carries no credential: json reads it as ""
    out = Secret._blank(len(value))
    target = out._mapping
    at = i = 0
    while i < len(value):
        char = value[i]
        if char == 92:  # backslash
            escaped = _JSON_ESCAPES.get(value[i + 1]) if i + 1 < len(value) else None
            if escaped is None:
                out.wipe()
                return None
            target[at] = escaped
            i += 2
        else:
            target[at] = char
            i += 1
        at += 1
    out._size = at  # escapes made it shorter; the wipe still covers every byte written
    return out


def substitute(data: Union[bytes, bytearray, memoryview]) -> Optional[Secret]:
    """``data`` with every placeholder replaced by its secret, or ``None`` if it has none.

    An unknown placeholder (its secret already released) stays as it is: the server then
    refuses a meaningless credential, and nothing secret was sent.
    """
    raw = bytes(data) if not isinstance(data, bytes) else data
    if _PLACEHOLDER_PREFIX not in raw:
        return None
    parts: list = []
    position = 0
    for match in _PLACEHOLDER.finditer(raw):
        secret = _registry.get(match.group())
        if secret is None or secret._mapping.closed:
            continue
        parts.append(memoryview(raw)[position : match.start()])
        parts.append(secret)
        position = match.end()
    if not parts:
        return None
    parts.append(memoryview(raw)[position:])
    return Secret.join(*parts)
