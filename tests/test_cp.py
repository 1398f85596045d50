"""cp round trips against the emulator, and the kubectl cp path-traversal attacks."""

from __future__ import annotations

import filecmp
import hashlib
import io
import json
import os
import random
import shlex
import socket
import stat
import subprocess
import sys
import tarfile
import threading
from typing import Any, List, Optional, Sequence, Tuple

import pytest

import k8sstream
from k8sstream.cp import UnsafeArchiveError, _add_tree, copy_from_pod, copy_to_pod
from k8sstream.testing import Container, Pod


def _same_tree(a, b) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not (cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files), (a, b)
    for sub in cmp.common_dirs:
        _same_tree(os.path.join(a, sub), os.path.join(b, sub))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "deep" / "er" / "est").mkdir(parents=True)
    (root / "deep" / "er" / "est" / "blob.bin").write_bytes(os.urandom(300_000))
    (root / "name with spaces é ü.txt").write_text("unicode ✓")
    (root / "empty").write_bytes(b"")
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o750)
    os.utime(root / "empty", (1_000_000_000, 1_000_000_000))
    return root


def test_directory_round_trip_preserves_content_modes_and_mtimes(client, tree, tmp_path):
    copy_to_pod(str(tree), "demo", "copied", client=client)
    back = tmp_path / "back"
    seen = []
    copy_from_pod("demo", "copied", str(back), client=client, progress=seen.append)
    _same_tree(tree, back)
    assert stat.S_IMODE(os.stat(back / "script.sh").st_mode) == 0o750
    assert os.stat(back / "empty").st_mtime == 1_000_000_000
    assert seen and seen == sorted(seen)


def test_into_an_existing_remote_directory_and_single_files(client, emulator, tree, tmp_path):
    root = emulator.container_dir("default", "demo", "main")
    os.mkdir(os.path.join(root, "existing"))
    copy_to_pod(str(tree), "demo", "existing", client=client)
    assert os.path.isdir(os.path.join(root, "existing", "tree", "deep"))
    blob = tree / "deep" / "er" / "est" / "blob.bin"
    copy_to_pod(str(blob), "demo", "single.bin", client=client)
    copy_from_pod("demo", "single.bin", str(tmp_path / "single-back.bin"), client=client)
    assert (tmp_path / "single-back.bin").read_bytes() == blob.read_bytes()
    (tmp_path / "into").mkdir()
    copy_from_pod("demo", "single.bin", str(tmp_path / "into"), client=client)
    assert (tmp_path / "into" / "single.bin").read_bytes() == blob.read_bytes()


def test_no_preserve(client, tree, tmp_path):
    copy_to_pod(str(tree), "demo", "np", client=client, preserve=False)
    copy_from_pod("demo", "np", str(tmp_path / "np"), client=client, preserve=False)
    assert (tmp_path / "np" / "script.sh").read_text() == "#!/bin/sh\necho hi\n"


def test_failed_remote_tar_is_an_error(client, tmp_path):
    with pytest.raises(k8sstream.CalledProcessError) as info:
        copy_from_pod("demo", "does-not-exist", str(tmp_path / "x"), client=client)
    assert "does-not-exist" in info.value.stderr
    assert not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError):
        copy_to_pod(str(tmp_path / "missing"), "demo", "x", client=client)


def test_container_without_tar(emulator, client, tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    emulator.add_pod(
        Pod(
            name="notar",
            containers=[Container("c", env={"PATH": str(empty_bin)}, command=["/bin/sleep", "60"])],
        )
    )
    with pytest.raises(k8sstream.RemoteCommandError, match="needs 'tar'"):
        copy_from_pod("notar", "x", str(tmp_path / "x"), client=client)


# --- hostile archives: a pod whose tar prints a prepared archive ---


def _archive(*members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name, data=b"pwned", mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _dir(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


@pytest.fixture
def evil_pod(emulator, tmp_path):
    """Pod 'evil' whose tar ignores its arguments and prints the archive in evil.tar."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    archive = tmp_path / "evil.tar"
    script = fake / "tar"
    script.write_text(f"#!/bin/sh\ncat '{archive}'\n")
    script.chmod(0o755)
    emulator.add_pod(
        Pod(
            name="evil",
            containers=[
                Container("c", env={"PATH": f"{fake}:/usr/bin:/bin"}, command=["/bin/sleep", "60"])
            ],
        )
    )
    return archive


@pytest.mark.parametrize(
    "cve, members",
    [
        ("CVE-2018-1002100 (../ in names)", [_dir("src"), _file("src/../../escaped")]),
        ("absolute name", [_dir("src"), _file("/tmp/k8sstream-escaped")]),
        (
            "CVE-2019-1002101 (file written through a symlink)",
            [_dir("src"), _link("src/link", "/tmp"), _file("src/link/escaped")],
        ),
        (
            "CVE-2019-11246 (relative symlink climbing out, then through it)",
            [
                _dir("src"),
                _dir("src/sub"),
                _link("src/sub/up", "../../.."),
                _file("src/sub/up/escaped"),
            ],
        ),
        (
            "CVE-2019-11249 (hard link to a file outside)",
            [_dir("src"), _link("src/hard", "../../etc/passwd", tarfile.LNKTYPE)],
        ),
        (
            "symlink replaced by a file of the same name",
            [_dir("src"), _link("src/a", "/etc/passwd"), _file("src/a")],
        ),
    ],
)
def test_path_traversal_attacks_are_refused(client, evil_pod, tmp_path, cve, members):
    evil_pod.write_bytes(_archive(*members))
    dest = tmp_path / "dest" / "inner"
    dest.parent.mkdir()
    with pytest.raises(UnsafeArchiveError):
        copy_from_pod("evil", "src", str(dest), client=client)
    # Nothing was written anywhere but inside the destination.
    assert not (tmp_path / "dest" / "escaped").exists()
    assert not (tmp_path / "escaped").exists()
    assert not os.path.exists("/tmp/k8sstream-escaped")
    assert not os.path.exists("/tmp/escaped")


def test_links_devices_and_setuid_are_not_created(client, evil_pod, tmp_path):
    fifo = tarfile.TarInfo("src/fifo")
    fifo.type = tarfile.FIFOTYPE
    device = tarfile.TarInfo("src/null")
    device.type = tarfile.CHRTYPE
    evil_pod.write_bytes(
        _archive(
            _dir("src"),
            _file("src/suid", b"#!/bin/sh\n", 0o4755),
            _link("src/inside", "suid"),
            (fifo, None),
            (device, None),
        )
    )
    dest = tmp_path / "out"
    copy_from_pod("evil", "src", str(dest), client=client)
    assert sorted(os.listdir(dest)) == ["suid"]
    assert stat.S_IMODE(os.stat(dest / "suid").st_mode) == 0o755


def test_local_symlink_in_destination_is_not_followed(client, evil_pod, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "planted")
    evil_pod.write_bytes(_archive(_dir("src"), _file("src/planted/escaped")))
    with pytest.raises(UnsafeArchiveError):
        copy_from_pod("evil", "src", str(dest), client=client)
    assert not (outside / "escaped").exists()


# --- resuming like kubectl cp --retries: a proxy that cuts exec connections mid-stream ---


class CuttingProxy:
    """A TCP proxy in front of the emulator that drops exec connections after N bytes.

    ``cuts[i]`` is how many bytes of the server's answer (handshake included) the i-th exec
    connection gets before both sockets are closed without a WebSocket close frame; exec
    connections beyond the list, and all other requests, pass untouched.
    """

    def __init__(self, upstream: Tuple[str, int], cuts: Sequence[int]) -> None:
        self.upstream = upstream
        self.cuts = list(cuts)
        self.exec_connections = 0
        self.cut_connections = 0
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="cut-proxy", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [downstream, upstream]
            self._spawn(self._serve, downstream, upstream)

    def _serve(self, downstream: socket.socket, upstream: socket.socket) -> None:
        try:
            first = downstream.recv(65536)
        except OSError:
            first = b""
        limit = None
        if b"/exec?" in first.split(b"\r\n", 1)[0]:
            with self._lock:
                index = self.exec_connections
                self.exec_connections += 1
            if index < len(self.cuts):
                limit = self.cuts[index]
        try:
            upstream.sendall(first)
        except OSError:
            pass
        self._spawn(self._pipe, downstream, upstream, None)
        self._pipe(upstream, downstream, limit)

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: Optional[int]) -> None:
        sent = 0
        try:
            while limit is None or sent < limit:
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None:
                    data = data[: limit - sent]
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        if limit is not None and sent >= limit:
            with self._lock:
                self.cut_connections += 1
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        for sock in sockets:
            sock.close()


@pytest.fixture
def cut_proxy(emulator, tmp_path):
    """Makes a CuttingProxy and a Client that goes through it."""
    made: List[Tuple[CuttingProxy, k8sstream.Client]] = []
    host, port = emulator.url.split("://", 1)[1].rsplit(":", 1)

    def make(cuts: Sequence[int]) -> Tuple[CuttingProxy, k8sstream.Client]:
        proxy = CuttingProxy((host, int(port)), cuts)
        path = emulator.write_kubeconfig(tmp_path / f"kubeconfig-proxy-{len(made)}")
        with open(path) as f:
            text = f.read().replace(emulator.url, f"http://127.0.0.1:{proxy.port}")
        with open(path, "w") as f:
            f.write(text)
        made.append((proxy, k8sstream.Client.from_kubeconfig(path)))
        return made[-1]

    yield make
    for proxy, proxied in made:
        proxied.close()
        proxy.close()


@pytest.fixture
def big_tree(emulator):
    """A 3 MiB remote tree (several files, so cuts land inside and between members)."""
    root = os.path.join(emulator.container_dir("default", "demo", "main"), "big tree 'q'")
    os.makedirs(os.path.join(root, "sub"))
    rng = random.Random(5)
    for i, size in enumerate([1_000_000, 0, 700_000, 1_300_000, 513]):
        with open(os.path.join(root, "sub" if i % 2 else "", f"f{i}.bin"), "wb") as f:
            f.write(rng.randbytes(size) if hasattr(rng, "randbytes") else os.urandom(size))
    return root


def test_retries_resume_a_download_cut_mid_stream(cut_proxy, big_tree, tmp_path):
    proxy, proxied = cut_proxy([400_000, 1_100_000, 5_000, 700_000])
    seen: List[int] = []
    dest = tmp_path / "back"
    copy_from_pod(
        "demo", "big tree 'q'", str(dest), client=proxied, retries=5, progress=seen.append
    )
    _same_tree(big_tree, dest)
    assert proxy.cut_connections == 4
    assert proxy.exec_connections == 5
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] >= 3_000_000


def test_unlimited_retries(cut_proxy, big_tree, tmp_path):
    proxy, proxied = cut_proxy([300_000] * 8)
    copy_from_pod("demo", "big tree 'q'", str(tmp_path / "back"), client=proxied, retries=-1)
    _same_tree(big_tree, tmp_path / "back")
    assert proxy.cut_connections == 8
    assert proxy.exec_connections == 9


def test_retries_used_up_raise_the_last_error(cut_proxy, big_tree, tmp_path):
    proxy, proxied = cut_proxy([500_000, 600_000, 700_000])
    with pytest.raises(k8sstream.StreamClosedError):
        copy_from_pod("demo", "big tree 'q'", str(tmp_path / "back"), client=proxied, retries=2)
    assert proxy.exec_connections == 3


def test_without_retries_a_cut_is_an_error(cut_proxy, big_tree, tmp_path):
    proxy, proxied = cut_proxy([500_000])
    with pytest.raises(k8sstream.StreamClosedError):
        copy_from_pod("demo", "big tree 'q'", str(tmp_path / "back"), client=proxied)
    assert proxy.exec_connections == 1


def test_retries_after_a_connection_closed_right_after_the_upgrade(
    emulator, client, big_tree, tmp_path
):
    emulator.faults.close_after_upgrade(count=2, match="/exec")
    copy_from_pod("demo", "big tree 'q'", str(tmp_path / "back"), client=client, retries=2)
    _same_tree(big_tree, tmp_path / "back")


def test_retries_keep_the_remote_tar_status(client, tmp_path):
    with pytest.raises(k8sstream.CalledProcessError) as info:
        copy_from_pod("demo", "does-not-exist", str(tmp_path / "x"), client=client, retries=3)
    assert "does-not-exist" in info.value.stderr
    assert info.value.returncode != 0


def test_resume_command_quotes_the_path():
    from k8sstream.cp import _resumable_command

    argv = _resumable_command("a b/'$(touch x)'", 42)
    assert argv[:2] == ["sh", "-c"]
    assert "tail -c +42" in argv[2]
    assert shlex.quote("a b/'$(touch x)'") in argv[2]


# --- big files with bounded memory, measured in a child process ---

_MEASURE_CHILD = """
import json, sys
import k8sstream
from k8sstream.cp import copy_from_pod, copy_to_pod

def hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

kubeconfig, src, remote, back = sys.argv[1:5]
with k8sstream.Client.from_kubeconfig(kubeconfig) as client:
    k8sstream.call(["true"], pod="demo", client=client)  # imports and first connection done
    idle = hwm_kib()
    copy_to_pod(src, "demo", remote, client=client)
    after_upload = hwm_kib()
    copy_from_pod("demo", remote, back, client=client)
print(json.dumps({"idle": idle, "after_upload": after_upload, "peak": hwm_kib()}))
"""

MiB = 1024 * 1024
RSS_LIMIT_MIB = 64


def _write_random_ish(path, size: int) -> None:
    """Incompressible enough (no two MiB alike) without holding more than 1 MiB."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(i.to_bytes(8, "little") + block[8:])
        f.write(block[: size % MiB])


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize(
    "size_mib",
    [
        256,
        pytest.param(
            1024,
            marks=pytest.mark.skipif(
                os.environ.get("K8SSTREAM_SLOW") != "1", reason="1 GiB copy: set K8SSTREAM_SLOW=1"
            ),
        ),
    ],
)
def test_big_file_both_ways_with_bounded_memory(emulator, tmp_path, size_mib):
    src = tmp_path / "big.bin"
    _write_random_ish(src, size_mib * MiB + 12345)  # not a multiple of the tar block
    back = tmp_path / "back.bin"
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE_CHILD, kubeconfig, str(src), "big.bin", str(back)],
        capture_output=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    kib = json.loads(done.stdout)
    figures = (
        f"VmHWM idle {kib['idle'] / 1024:.1f} MiB, after upload {kib['after_upload'] / 1024:.1f}"
        f" MiB, after download {kib['peak'] / 1024:.1f} MiB"
        f" (over idle {(kib['peak'] - kib['idle']) / 1024:.1f} MiB, limit {RSS_LIMIT_MIB} MiB)"
    )
    assert kib["peak"] - kib["idle"] < RSS_LIMIT_MIB * 1024, figures
    remote = os.path.join(emulator.container_dir("default", "demo", "main"), "big.bin")
    expected = _sha256(src)
    assert os.path.getsize(remote) == os.path.getsize(src) == os.path.getsize(back)
    assert _sha256(remote) == expected, "upload corrupted the data"
    assert _sha256(back) == expected, "download corrupted the data"
    os.unlink(remote)


# --- names, empty directories, many files, progress, missing source ---


def test_unicode_spaces_and_empty_directories(client, emulator, tmp_path):
    root = tmp_path / "ünï cödé tree"
    (root / "empty dir").mkdir(parents=True)
    (root / "nested" / "empty too").mkdir(parents=True)
    (root / "日本語 ファイル.txt").write_text("テスト")
    (root / " leading and trailing ").write_bytes(b"x")
    (root / 'quote\'s "and" $dollar;`tick`').write_bytes(b"\x00\xff" * 100)
    copy_to_pod(str(root), "demo", "pod tree ✓", client=client)
    remote = os.path.join(emulator.container_dir("default", "demo", "main"), "pod tree ✓")
    _same_tree(root, remote)
    assert os.path.isdir(os.path.join(remote, "empty dir"))
    back = tmp_path / "back ✓"
    copy_from_pod("demo", "pod tree ✓", str(back), client=client)
    _same_tree(root, back)
    assert os.path.isdir(back / "empty dir")
    assert os.path.isdir(back / "nested" / "empty too")


@pytest.mark.parametrize(
    "count",
    [
        2_000,
        pytest.param(
            10_000,
            marks=pytest.mark.skipif(
                os.environ.get("K8SSTREAM_SLOW") != "1",
                reason="10,000 files (file creation on this disk is ~0.5 ms each, three times "
                "over): set K8SSTREAM_SLOW=1",
            ),
        ),
    ],
)
def test_many_small_files_round_trip(client, tmp_path, count):
    root = tmp_path / "many"
    for d in range(count // 100):
        sub = root / f"d{d:03}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"f{i:03}").write_bytes(b"%d/%d\n" % (d, i) * (i % 7))
    copy_to_pod(str(root), "demo", "many", client=client)
    back = tmp_path / "back"
    copy_from_pod("demo", "many", str(back), client=client)
    assert sum(len(files) for _, _, files in os.walk(back)) == count
    _same_tree(root, back)


def test_progress_is_monotonic_and_counts_every_byte(client, emulator, tree, tmp_path):
    sent: List[int] = []
    copy_to_pod(str(tree), "demo", "progress", client=client, progress=sent.append)
    # What went up is exactly the archive: headers, data, padding and the end blocks, the same
    # members as tarfile's own add() would write (without a PAX header for each float mtime).
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        _add_tree(archive, str(tree), "progress")
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        archive.add(str(tree), arcname="progress")
    listings = []
    for data in (buffer.getvalue(), reference.getvalue()):
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            listings.append([(m.name, m.type, m.mode, m.size, int(m.mtime)) for m in archive])
    assert listings[0] == listings[1]
    assert sent == sorted(sent) and len(set(sent)) == len(sent)
    assert sent[-1] == len(buffer.getvalue())
    assert sent[-1] % 10240 == 0  # whole tar records
    received: List[int] = []
    copy_from_pod(
        "demo", "progress", str(tmp_path / "back"), client=client, progress=received.append
    )
    remote = os.path.join(emulator.container_dir("default", "demo", "main"), "progress")
    with_tar = subprocess.run(
        ["tar", "cf", "-", "progress"], cwd=os.path.dirname(remote), capture_output=True, timeout=30
    )
    assert received == sorted(received) and len(set(received)) == len(received)
    assert received[-1] == len(with_tar.stdout)


def test_missing_remote_source_reports_tar_stderr(client, tmp_path):
    with pytest.raises(k8sstream.CalledProcessError) as info:
        copy_from_pod("demo", "no such dir/file", str(tmp_path / "x"), client=client)
    assert info.value.returncode == 2
    assert "no such dir/file" in info.value.stderr
    assert "No such file" in info.value.stderr
    assert not (tmp_path / "x").exists()


def test_member_bigger_than_the_free_space_is_refused_before_writing(client, evil_pod, tmp_path):
    import tarfile as tf

    header = tf.TarInfo("src/huge.bin")
    header.size = 1 << 50  # a petabyte: more than any disk here has free
    # Only the header: the claim alone must be refused, nothing may be written for it.
    directory = _dir("src")[0]
    evil_pod.write_bytes(
        directory.tobuf(format=tf.PAX_FORMAT) + header.tobuf(format=tf.PAX_FORMAT) + b"\0" * 1024
    )
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="free at the destination"):
        copy_from_pod("evil", "src", str(dest), client=client)
    assert not (dest / "huge.bin").exists()


def test_archive_member_count_is_limited():
    from k8sstream._tarstream import ExtractionPlan

    plan = ExtractionPlan("src", max_members=3)
    for i in range(3):
        plan.plan(_file(f"src/{i}")[0])
    with pytest.raises(UnsafeArchiveError, match="more than 3 members"):
        plan.plan(_file("src/3")[0])
