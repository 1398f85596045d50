"""Copy files and directories to and from containers, streaming tar over exec like ``kubectl cp``.

Nothing is buffered whole: the archive is produced in pieces of at most 64 KiB and consumed
through one reused 1 MiB buffer (:mod:`k8sstream._tarread`), so a multi-GiB tree copies with
bounded memory. Unlike kubectl, the remote ``tar``'s exit status is checked (a failed copy
raises, it is never a silent partial copy), and an archive from a pod is treated as hostile
(see :mod:`k8sstream._tarstream`).
"""

from __future__ import annotations

import grp
import logging
import os
import posixpath
import pwd
import shlex
import stat
import tarfile
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ._tarread import TarStream
from ._tarstream import ExtractionPlan, UnsafeArchiveError
from .errors import (
    CalledProcessError,
    ConnectError,
    K8sStreamError,
    RemoteCommandError,
    StreamClosedError,
)
from .process import DEVNULL, PIPE, RemoteProcess

__all__ = ["UnsafeArchiveError", "copy_from_pod", "copy_to_pod"]

Progress = Callable[[int], None]
# One stdin message each: tarfile writes whole blocks of this size (a multiple of 512).
_TAR_BLOCK = 126 * 512
_STDERR_LIMIT = 64 * 1024
# Only a lost connection is worth another exec; a refusal or a failed tar would fail again.
_RETRYABLE = (StreamClosedError, ConnectError)

logger = logging.getLogger(__name__)


class _StderrTail:
    """Keeps the last 64 KiB of the remote tar's error output (its messages are short)."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data = (self.data + data)[-_STDERR_LIMIT:]
        return len(data)

    def flush(self) -> None:
        return None

    def text(self) -> str:
        return self.data.decode("utf-8", "replace").strip()


class _CountingWriter:
    def __init__(self, target: Any, progress: Optional[Progress]) -> None:
        self._target = target
        self._progress = progress
        self.count = 0

    def write(self, data: bytes) -> int:
        self._target.write(data)
        self.count += len(data)
        if self._progress is not None:
            self._progress(self.count)
        return len(data)


class _CountingReader:
    def __init__(self, source: Any, progress: Optional[Progress]) -> None:
        self._source = source
        self._progress = progress
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._source.read(size)
        self.count += len(data)
        if self._progress is not None and data:
            self._progress(self.count)
        return data


class _Owners:
    """uid/gid to user/group names, looked up once each (tarfile asks for every file)."""

    def __init__(self) -> None:
        self._users: Dict[int, str] = {}
        self._groups: Dict[int, str] = {}

    def user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = ""
            self._users[uid] = name
        return name

    def group(self, gid: int) -> str:
        name = self._groups.get(gid)
        if name is None:
            try:
                name = grp.getgrgid(gid).gr_name
            except KeyError:
                name = ""
            self._groups[gid] = name
        return name


def _tarinfo(
    path: str, arcname: str, owners: _Owners, inodes: Dict[Tuple[int, int], str]
) -> Optional[tarfile.TarInfo]:
    """``TarFile.gettarinfo`` with whole-second mtimes and cached owner names.

    A float mtime makes tarfile write a PAX header (two more 512-byte blocks) for every
    member, which for small files is a fifth of the stream; the remote tar keeps whole
    seconds anyway unless asked otherwise, as does kubectl (Go's archive/tar rounds).
    """
    st = os.lstat(path)
    info = tarfile.TarInfo(arcname)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        key = (st.st_ino, st.st_dev)
        if st.st_nlink > 1 and key in inodes:
            info.type = tarfile.LNKTYPE
            info.linkname = inodes[key]
        else:
            info.size = st.st_size
            if st.st_nlink > 1:
                inodes[key] = arcname
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor = os.major(st.st_rdev)
        info.devminor = os.minor(st.st_rdev)
    else:
        return None  # sockets and the like cannot be archived (tarfile skips them too)
    info.mode = stat.S_IMODE(mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.mtime = int(st.st_mtime)
    info.uname = owners.user(st.st_uid)
    info.gname = owners.group(st.st_gid)
    return info


def _add_tree(archive: tarfile.TarFile, src: str, arcname: str) -> None:
    """``TarFile.add(src, arcname)``: the same order (depth first, names sorted), no recursion."""
    owners = _Owners()
    inodes: Dict[Tuple[int, int], str] = {}
    pending = [(src, arcname)]
    while pending:
        path, name = pending.pop()
        info = _tarinfo(path, name, owners, inodes)
        if info is None:
            continue
        if info.isreg():
            with open(path, "rb") as f:
                archive.addfile(info, f)
            continue
        archive.addfile(info)
        if info.isdir():
            children = sorted(os.listdir(path), reverse=True)
            pending += [(os.path.join(path, c), posixpath.join(name, c)) for c in children]


def _remote_error(exc: RemoteCommandError) -> RemoteCommandError:
    if "executable file not found" in exc.message or "not found" in exc.message.lower():
        return RemoteCommandError(f"cp needs 'tar' in the container: {exc.message}", exc.status)
    return exc


def _resumable_command(src: str, offset: int) -> List[str]:
    """kubectl's ``tar cf - SRC | tail -c+OFFSET``, but exiting with tar's status.

    A plain pipeline exits with tail's status, so a tar that fails (no such file) would look
    like a complete, empty copy. The exit code of the first command of a pipeline is only
    reachable in POSIX sh through an extra descriptor: tar's ``$?`` goes to fd 3 (captured),
    while tail writes to fd 4, the real stdout.
    """
    script = (
        "exec 4>&1; "
        f"status=$( {{ {{ tar cf - {shlex.quote(src)} 4>&-; echo $? >&3; }}"
        f" | tail -c +{offset} >&4 4>&-; }} 3>&1 ); "
        'exit "${status:-1}"'
    )
    return ["sh", "-c", script]


class _TarReader:
    """The remote ``tar cf -`` output as one file object, resumed across lost connections.

    With ``retries`` (negative: unlimited, as kubectl's ``--retries``) every exec runs through
    :func:`_resumable_command`, and when the connection is lost before the exit status
    arrives, the stream is started again after the bytes already returned, so the reader
    (:class:`~k8sstream._tarread.TarStream`) sees one continuous archive. This relies, as
    kubectl does, on the remote tar writing the same bytes again: a tree that changes
    meanwhile gives a corrupt archive, which the tar reader then refuses.
    """

    def __init__(
        self,
        start: Callable[[List[str]], RemoteProcess],
        src: str,
        retries: int,
        progress: Optional[Progress],
    ) -> None:
        self._start = start
        self._src = src
        self._retries = retries
        self._progress = progress
        self.attempts = 0
        self.count = 0
        self.command = self._command()
        self.proc = self._exec()

    def _command(self) -> List[str]:
        if self._retries == 0:
            return ["tar", "cf", "-", self._src]
        return _resumable_command(self._src, self.count + 1)

    def _exec(self) -> RemoteProcess:
        while True:
            try:
                return self._start(self.command)
            except _RETRYABLE as exc:
                self._use_retry(exc)

    def _use_retry(self, exc: BaseException) -> None:
        if 0 <= self._retries <= self.attempts:
            if self._retries:
                logger.warning("cp: giving up after %d retries: %s", self.attempts, exc)
            raise exc
        self.attempts += 1
        logger.warning(
            "cp: resuming copy at %d bytes, retry %d/%s: %s",
            self.count,
            self.attempts,
            self._retries if self._retries > 0 else "unlimited",
            exc,
        )
        self.command = self._command()

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` from the raw stdout pipe (not its BufferedReader: one copy less)."""
        while True:
            stdout = self.proc.stdout
            count: int = getattr(stdout, "raw", stdout).readinto(buffer)
            if count:
                self.count += count
                if self._progress is not None:
                    self._progress(self.count)
                return count
            try:
                self.proc.wait()
            except _RETRYABLE as exc:
                _dispose(self.proc)
                self._use_retry(exc)
                self.proc = self._exec()
                continue
            except K8sStreamError:
                pass  # not a lost connection: the status check after reading reports it
            return 0

    def close(self) -> None:
        _dispose(self.proc)


def _dispose(proc: RemoteProcess) -> None:
    """Release a remote process whose outcome no longer matters."""
    proc.kill()
    if proc.stdout is not None:
        proc.stdout.close()
    try:
        proc.wait()
    except K8sStreamError:
        pass


def copy_to_pod(
    src: str,
    pod: str,
    dest: str,
    *,
    namespace: Optional[str] = None,
    container: Optional[str] = None,
    client: Any = None,
    preserve: bool = True,
    progress: Optional[Progress] = None,
) -> None:
    """Copy a local file or directory into a container, like ``kubectl cp SRC POD:DEST``.

    If ``dest`` is an existing directory in the container, ``src`` is copied into it under
    its own name; otherwise it is copied to ``dest``. With ``preserve`` (the default) modes
    and modification times are kept where the remote tar allows; ``preserve=False`` is
    kubectl's ``--no-preserve``.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        CalledProcessError: the remote tar failed (its error output is ``stderr``).
        RemoteCommandError: the container has no ``tar``.
    """
    if not os.path.lexists(src):
        raise FileNotFoundError(2, "No such file or directory", src)
    common = dict(pod=pod, namespace=namespace, container=container, client=client)
    probe = RemoteProcess(["test", "-d", dest], stdout=DEVNULL, stderr=DEVNULL, **common)
    if probe.wait() == 0:
        dest = posixpath.join(dest, os.path.basename(os.path.normpath(src)))
    directory, name = posixpath.split(dest.rstrip("/") or "/")
    command = (
        ["tar", "-xf", "-"]
        if preserve
        else [
            "tar",
            "--no-same-permissions",
            "--no-same-owner",
            "-xmf",
            "-",
        ]
    )
    if directory:
        command += ["-C", directory]
    errors = _StderrTail()
    try:
        proc = RemoteProcess(command, stdin=PIPE, stdout=DEVNULL, stderr=errors, **common)
    except RemoteCommandError as exc:
        raise _remote_error(exc) from None
    with proc:
        try:
            sink: Any = _CountingWriter(proc.stdin, progress)
            with tarfile.open(
                fileobj=sink,
                mode="w|",
                bufsize=_TAR_BLOCK,
                format=tarfile.PAX_FORMAT,
            ) as archive:
                # File data in whole stdin messages, not 16 KiB (typeshed lacks the attribute).
                archive.copybufsize = _TAR_BLOCK  # type: ignore[attr-defined]
                _add_tree(archive, src, name or ".")
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the remote tar stopped reading; its status says why
        try:
            code = proc.wait()
        except RemoteCommandError as exc:
            raise _remote_error(exc) from None
    if code != 0:
        raise CalledProcessError(code, command, stderr=errors.text())


def copy_from_pod(
    pod: str,
    src: str,
    dest: str,
    *,
    namespace: Optional[str] = None,
    container: Optional[str] = None,
    client: Any = None,
    preserve: bool = True,
    progress: Optional[Progress] = None,
    retries: int = 0,
) -> None:
    """Copy a file or directory out of a container, like ``kubectl cp POD:SRC DEST``.

    The remote path maps to ``dest`` (a remote file becomes the file ``dest``, or
    ``dest/<name>`` if ``dest`` is an existing directory; a remote directory becomes the
    directory ``dest``). Entries that would land outside ``dest`` (absolute names, ``..``,
    links pointing out, anything written through a symlink) raise
    :class:`UnsafeArchiveError` before anything is written for them; symlinks, hard links
    and device files are skipped; setuid/setgid bits are dropped. Limits against archives
    built to exhaust the machine: a member larger than the free space at the destination is
    refused before it is written, and an archive of more than a million entries is refused.

    With ``retries`` (kubectl's ``--retries``; negative means unlimited) a lost connection
    does not end the copy: the remote command is run again as
    ``sh -c 'tar cf - SRC | tail -c +OFFSET'`` and the stream continues where it stopped,
    so the container then also needs ``sh`` and ``tail``. ``progress`` is called with the
    number of archive bytes received so far (it never goes back on a resume).

    Blocks until the copy is complete. A file being written is left partial when the copy
    fails.

    Raises:
        CalledProcessError: the remote tar failed (for example, no such file).
        UnsafeArchiveError: the archive tried to escape ``dest`` or break the limits.
        RemoteCommandError: the container has no ``tar``.
        StreamClosedError: the connection was lost (after ``retries`` more attempts).
    """
    plan = ExtractionPlan(src.lstrip("/"))
    dest = os.path.abspath(dest)
    local = _Destination(dest, src)
    errors = _StderrTail()

    def start(command: List[str]) -> RemoteProcess:
        return RemoteProcess(
            command,
            pod=pod,
            namespace=namespace,
            container=container,
            client=client,
            stdout=PIPE,
            stderr=errors,
        )

    reader = _TarReader(start, src, retries, progress)
    try:
        archive = TarStream(reader.readinto)
        while True:
            member = archive.next()
            if member is None:
                break
            planned = plan.plan(member)
            if planned is None:
                continue
            target = local.target(planned.path, planned.kind)
            if planned.kind == "dir":
                os.makedirs(target, exist_ok=True)
                if preserve:
                    os.chmod(target, planned.mode | 0o700)
                continue
            if planned.kind == "symlink":
                os.symlink(planned.link_target or "", target)
                continue
            _check_room(member, target)
            _write_file(
                archive,
                member,
                target,
                planned.mode if preserve else 0o644,
                member.mtime if preserve else None,
            )
        # Drain the end-of-archive blocks so the remote tar can finish writing.
        archive.drain()
    except tarfile.ReadError as exc:
        try:
            # A tar that failed (no such file) sends a short or empty stream: report its status.
            # One still running is sending garbage; the -SIGKILL of killing it says nothing.
            finished = reader.proc.poll() is not None
        except K8sStreamError:
            finished = True
        try:
            if finished:
                _raise_for_status(reader.proc, reader.command, errors)
        finally:
            reader.close()
        raise UnsafeArchiveError(f"the container sent an invalid tar stream: {exc}") from None
    except BaseException:
        reader.close()
        raise
    try:
        _raise_for_status(reader.proc, reader.command, errors)
    finally:
        reader.close()


def _raise_for_status(proc: RemoteProcess, command: list, errors: _StderrTail) -> None:
    try:
        code = proc.wait()
    except RemoteCommandError as exc:
        raise _remote_error(exc) from None
    if code != 0:
        raise CalledProcessError(code, command, stderr=errors.text())


class _Destination:
    """Maps planned members to local paths below ``dest``, refusing local links that lead out.

    A directory that already exists locally may be a symlink planted by someone else, so each
    parent directory is resolved once; it is then remembered, which keeps a tree of many small
    files from paying a ``realpath`` (an ``lstat`` per path component) for every file.
    """

    def __init__(self, dest: str, src: str) -> None:
        self.dest = dest
        self.src = src
        self._roots: Dict[str, str] = {}
        self._checked: Set[str] = set()

    def target(self, relative: str, kind: str) -> str:
        dest = self.dest
        if not relative:
            target = dest
            if kind == "file" and os.path.isdir(dest):
                # A file copied onto a directory goes into it, as cp(1) does.
                target = os.path.join(dest, posixpath.basename(self.src.rstrip("/")))
        else:
            target = os.path.join(dest, *relative.split("/"))
        parent = os.path.dirname(target)
        if parent in self._checked:
            return target
        base = dest if relative or target != dest else os.path.dirname(dest)
        root = self._roots.get(base)
        if root is None:
            root = self._roots[base] = os.path.realpath(base)
        resolved = os.path.realpath(parent)
        if resolved != root and not resolved.startswith(root + os.sep):
            raise UnsafeArchiveError(
                f"{target!r} would be written outside {dest!r} through a local link"
            )
        os.makedirs(parent, exist_ok=True)
        self._checked.add(parent)
        return target


def _check_room(member: tarfile.TarInfo, target: str) -> None:
    """Refuse a member that cannot fit before writing it, rather than filling the disk.

    The size in a tar header is the pod's claim; a hostile archive can claim petabytes.
    """
    stats = os.statvfs(os.path.dirname(target) or ".")
    free = stats.f_bavail * stats.f_frsize
    if member.size > free:
        raise UnsafeArchiveError(
            f"archive member {member.name!r} claims {member.size} bytes, more than the "
            f"{free} bytes free at the destination"
        )


def _write_file(
    archive: TarStream,
    member: tarfile.TarInfo,
    target: str,
    mode: int,
    mtime: Optional[float],
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o600)
    try:
        archive.write_member(member, fd)
        os.fchmod(fd, mode)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)
