"""Decide where each member of an untrusted tar archive may be written, without I/O.

An archive produced by a pod is hostile input: ``kubectl cp`` had four path-traversal CVEs
(CVE-2018-1002100, CVE-2019-1002101, CVE-2019-11246, CVE-2019-11249) through absolute names,
``..`` components, symlinks pointing outside the destination and entries written through an
earlier symlink. :class:`ExtractionPlan` checks member metadata against the destination and
the links seen so far, and returns the relative path to write, or raises.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
from dataclasses import dataclass
from typing import Dict, Optional

from .errors import RemoteProtocolError


class UnsafeArchiveError(RemoteProtocolError):
    """Raised when an archive from a pod tries to write outside the destination."""


@dataclass(frozen=True)
class PlannedMember:
    """Where and how to write one member: ``path`` is relative to the destination."""

    path: str
    kind: str  # "file", "dir" or "symlink"
    mode: int
    link_target: Optional[str] = None


# Beyond these, a tar stream is treated as an attempt to exhaust the disk or memory.
DEFAULT_MAX_MEMBERS = 1_000_000
DEFAULT_MAX_NAME = 4096


class ExtractionPlan:
    """Validates members in archive order and maps them below the destination.

    Args:
        prefix: the remote path the archive was made from (its member names start with it,
            without a leading slash); it is stripped so the remote path maps to the destination.
        keep_symlinks: extract symlinks whose target stays inside the destination (kubectl
            skips every symlink; so does this by default).
    """

    def __init__(
        self, prefix: str, *, keep_symlinks: bool = False, max_members: int = DEFAULT_MAX_MEMBERS
    ) -> None:
        self.prefix = _clean_prefix(prefix)
        self.keep_symlinks = keep_symlinks
        self.max_members = max_members
        self._count = 0
        self._symlinks: Dict[str, str] = {}
        self.skipped: list = []

    def plan(self, member: tarfile.TarInfo) -> Optional[PlannedMember]:
        """The safe placement of ``member``, or ``None`` to skip it.

        Raises:
            UnsafeArchiveError: the member would land outside the destination, or the
                archive is beyond the size limits.
        """
        self._count += 1
        if self._count > self.max_members:
            raise UnsafeArchiveError(f"archive has more than {self.max_members} members")
        name = member.name
        if len(name) > DEFAULT_MAX_NAME or "\x00" in name:
            raise UnsafeArchiveError(f"invalid member name {name[:80]!r}")
        if name.startswith("/") or _is_windows_absolute(name):
            raise UnsafeArchiveError(f"absolute path in archive: {name!r}")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UnsafeArchiveError(f"'..' in archive path: {name!r}")
        relative = self._strip_prefix("/".join(parts))
        if relative is None:
            self.skipped.append(name)
            return None
        self._check_not_through_symlink(relative, name)
        mode = stat.S_IMODE(member.mode) & 0o777  # never setuid, setgid or sticky
        if member.isdir():
            return PlannedMember(relative, "dir", mode)
        if member.isreg():
            if relative == "":
                return PlannedMember("", "file", mode)
            return PlannedMember(relative, "file", mode)
        if member.issym() or member.islnk():
            return self._plan_link(member, relative, mode)
        # Devices, FIFOs and other special files are never created.
        self.skipped.append(name)
        return None

    def _plan_link(
        self, member: tarfile.TarInfo, relative: str, mode: int
    ) -> Optional[PlannedMember]:
        target = member.linkname
        if member.islnk():
            # A hard link names another member of the archive; it must resolve inside too.
            resolved = self._strip_prefix(
                "/".join(p for p in target.split("/") if p not in ("", "."))
            )
            if target.startswith("/") or ".." in target.split("/") or resolved is None:
                raise UnsafeArchiveError(f"hard link {member.name!r} points outside: {target!r}")
            self.skipped.append(member.name)
            return None
        base = posixpath.dirname(relative)
        joined = posixpath.normpath(posixpath.join(base, target))
        escapes = target.startswith("/") or joined == ".." or joined.startswith("../")
        # Remember every symlink, safe or not: later entries must not be written through it.
        self._symlinks[relative] = target
        if escapes:
            self.skipped.append(member.name)
            return None
        if not self.keep_symlinks:
            self.skipped.append(member.name)
            return None
        return PlannedMember(relative, "symlink", mode, target)

    def _check_not_through_symlink(self, relative: str, name: str) -> None:
        parts = relative.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self._symlinks:
                raise UnsafeArchiveError(
                    f"archive entry {name!r} goes through the symlink {'/'.join(parts[:i])!r}"
                )
        if relative in self._symlinks:
            raise UnsafeArchiveError(
                f"archive entry {name!r} would overwrite the symlink it named earlier"
            )

    def _strip_prefix(self, path: str) -> Optional[str]:
        if not self.prefix:
            return path
        if path == self.prefix:
            return ""
        if path.startswith(self.prefix + "/"):
            return path[len(self.prefix) + 1 :]
        return None


def _clean_prefix(prefix: str) -> str:
    parts = [p for p in prefix.split("/") if p not in ("", ".")]
    while parts and parts[0] == "..":
        parts.pop(0)  # tar itself strips leading ../ (kubectl's stripPathShortcuts)
    return "/".join(parts)


def _is_windows_absolute(name: str) -> bool:
    return (len(name) > 1 and name[1] == ":") or name.startswith("\\")
