"""Read a tar stream straight from a pipe, copying member data with as few copies as possible.

``tarfile.open(mode="r|")`` reads through a ``_Stream`` layer that joins and slices its buffer
for every read, then hands member data out through ``extractfile`` (another buffered object),
so each byte is copied several times before it reaches the file. :class:`TarStream` keeps one
reused buffer: the source ``readinto``\\ s it, and member data goes from it straight to
``os.write``. Headers are still parsed by :meth:`tarfile.TarInfo.fromtarfile` (the documented
entry point), so PAX extended headers, global headers, GNU long names and sparse maps, and the
errors for bad or truncated headers, are exactly tarfile's; :meth:`TarStream.next` turns them
into the results ``TarFile.next`` gives in stream mode.
"""

from __future__ import annotations

import os
import struct
import tarfile
from typing import Any, Callable, Dict, List, Optional, Tuple

_BUFSIZE = 1024 * 1024
_BLOCK = 512
# name mode uid gid size mtime chksum type linkname magic+version uname gname devmajor devminor
# prefix: the fields ``TarInfo.frombuf`` reads, at the same offsets.
_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s8x32s32s8s8s155s")
# Plain members whose headers the fast path parses; anything else goes through tarfile.
_PLAIN = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)


def _number(field: bytes) -> int:
    """``tarfile.nti`` for an octal field (the caller routes base-256 fields to tarfile)."""
    end = field.find(b"\0")
    text = (field if end == -1 else field[:end]).decode("ascii")
    return int(text.strip() or "0", 8)


def _string(field: bytes, encoding: str, errors: str) -> str:
    end = field.find(b"\0")
    return (field if end == -1 else field[:end]).decode(encoding, errors)


def _plain_header(block: bytes, encoding: str, errors: str) -> Optional[tarfile.TarInfo]:
    """``TarInfo.frombuf`` for the common case, or ``None`` to let tarfile parse the block.

    The common case: a plain file, directory or link with octal numbers and the unsigned
    checksum. Every other header (end of archive, PAX, GNU long names, sparse files, base-256
    numbers, a bad checksum) returns ``None``, and tarfile then parses or refuses it itself.
    """
    fields: Tuple[bytes, ...] = _FIELDS.unpack_from(block)
    kind = fields[7]
    if kind not in _PLAIN:
        return None
    numbers = fields[1:7] + fields[12:14]
    for field in numbers:
        if field[0] in (0o200, 0o377):
            return None
    try:
        mode, uid, gid, size, mtime, chksum, devmajor, devminor = map(_number, numbers)
    except ValueError:
        return None
    if chksum != 256 + sum(block) - sum(block[148:156]):
        return None
    info = tarfile.TarInfo()
    name = _string(fields[0], encoding, errors)
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.size = size
    info.mtime = mtime
    info.chksum = chksum
    info.linkname = _string(fields[8], encoding, errors)
    info.uname = _string(fields[9], encoding, errors)
    info.gname = _string(fields[10], encoding, errors)
    info.devmajor = devmajor
    info.devminor = devminor
    prefix = _string(fields[13], encoding, errors)
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        kind = tarfile.DIRTYPE
    info.type = kind
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    if prefix:
        name = prefix + "/" + name
    info.name = name
    return info


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


class TarStream:
    """A tar archive read once, in order, from ``readinto`` (returns 0 only at the end).

    It has the attributes ``TarInfo.fromtarfile`` uses of a ``TarFile`` (``fileobj``,
    ``offset``, ``encoding``, ``errors``, ``pax_headers``), its ``fileobj`` being itself.
    """

    def __init__(self, readinto: Callable[[memoryview], int], bufsize: int = _BUFSIZE) -> None:
        self._readinto = readinto
        self._view = memoryview(bytearray(bufsize))
        self._start = 0
        self._end = 0
        self._position = 0  # archive bytes consumed from the buffer
        self.fileobj = self
        self.offset = 0  # where the next header starts (TarFile.offset)
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: Dict[str, str] = {}

    # --- the file object tarfile's header parsing reads from ---

    def tell(self) -> int:
        return self._position

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the stream)."""
        available = self._end - self._start
        if available >= size:
            start = self._start
            self._start = start + size
            self._position += size
            return bytes(self._view[start : start + size])
        parts: List[bytes] = []
        while size > 0:
            if self._start == self._end and not self._fill():
                break
            take = min(size, self._end - self._start)
            parts.append(bytes(self._view[self._start : self._start + take]))
            self._start += take
            self._position += take
            size -= take
        return b"".join(parts)

    def _fill(self) -> bool:
        count = self._readinto(self._view)
        self._start = 0
        self._end = count
        return count > 0

    # --- members ---

    def next(self) -> Optional[tarfile.TarInfo]:
        """The next member, or ``None`` at the end of the archive, as ``TarFile.next``.

        Raises:
            tarfile.ReadError: the stream is empty, not a tar archive, or ends inside a member.
        """
        self._skip(self.offset - self._position)
        start = self._start
        if self._end - start >= _BLOCK and not self.pax_headers:
            info = _plain_header(
                self._view[start : start + _BLOCK].tobytes(), self.encoding, self.errors
            )
            if info is not None:
                # TarInfo._proc_builtin, without global PAX headers to apply.
                info.offset = self._position
                self._start = start + _BLOCK
                self._position += _BLOCK
                info.offset_data = self._position
                self.offset = self._position
                if info.isreg():
                    self.offset += -(-info.size // _BLOCK) * _BLOCK
                return info
        try:
            return tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except tarfile.SubsequentHeaderError as exc:  # type: ignore[attr-defined]
            raise tarfile.ReadError(str(exc)) from None
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            return None
        except tarfile.HeaderError as exc:
            # Garbage or a short block after valid members ends the archive, as in tarfile.
            if self.offset == 0:
                empty = isinstance(exc, tarfile.EmptyHeaderError)  # type: ignore[attr-defined]
                raise tarfile.ReadError("empty file" if empty else str(exc)) from None
            return None

    def write_member(self, member: tarfile.TarInfo, fd: int) -> None:
        """Write the data of ``member`` (just returned by :meth:`next`) to ``fd``."""
        end = self.offset  # the end of its data blocks, padding included
        sparse: Any = member.sparse
        if sparse is None:
            self._copy(fd, min(member.size, end - self._position))
            return
        for offset, length in sparse:
            if self._position + length > end:
                raise tarfile.ReadError("sparse map beyond the member's data")
            if offset >= member.size:
                self._skip(length)
                continue
            os.lseek(fd, offset, os.SEEK_SET)
            wanted = min(length, member.size - offset)
            self._copy(fd, wanted)
            self._skip(length - wanted)
        os.ftruncate(fd, member.size)

    def drain(self) -> None:
        """Read to the end of the stream (the end-of-archive blocks and record padding)."""
        self._position += self._end - self._start
        self._start = self._end
        while self._fill():
            self._position += self._end
            self._start = self._end

    def _copy(self, fd: int, size: int) -> None:
        view = self._view
        while size > 0:
            if self._start == self._end and not self._fill():
                raise tarfile.ReadError("unexpected end of data")
            take = min(size, self._end - self._start)
            _write_all(fd, view[self._start : self._start + take])
            self._start += take
            self._position += take
            size -= take

    def _skip(self, size: int) -> None:
        while size > 0:
            if self._start == self._end and not self._fill():
                raise tarfile.ReadError("unexpected end of data")
            take = min(size, self._end - self._start)
            self._start += take
            self._position += take
            size -= take
