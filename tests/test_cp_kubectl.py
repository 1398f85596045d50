"""``copy_to_pod``/``copy_from_pod`` against the real ``kubectl cp`` on the same emulator.

The same local tree goes into the pod with both tools (to two pod paths), then out again with
both, and the trees are compared: content, relative paths, file types and the exec bit. Where
kubectl behaves differently by design, the difference is asserted, not hidden:

* kubectl extracts in the pod with ``tar -xmf``: modification times are not kept there.
  ``copy_to_pod`` keeps them (``preserve=False`` is kubectl's ``--no-preserve`` and also ``-m``).
* kubectl writes downloaded files with ``os.Create`` and never chmods them: the exec bit is
  lost and mtimes are the time of the copy. ``copy_from_pod`` keeps modes (setuid/setgid
  dropped) and mtimes.
* Both keep symlinks on the way in (they are tar entries) and skip them on the way out.

Pod paths are relative: commands run in the container directory, and an absolute pod path
would be a host path.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Dict, Tuple

import pytest

from k8sstream.cp import copy_from_pod, copy_to_pod

pytestmark = pytest.mark.kubectl

KUBECTL = shutil.which("kubectl")
TIMEOUT = 60.0
OLD_MTIME = 1_000_000_000  # 2001: far from "now", so a kept mtime is unmistakable

if KUBECTL is None:
    pytest.skip(
        "kubectl is not on the PATH: no reference to compare cp with", allow_module_level=True
    )

Entry = Tuple[str, bytes, int]  # kind, content (or link target), permission bits


def _snapshot(root: Path) -> Dict[str, Entry]:
    """Every entry below ``root`` by relative path, without following symlinks."""
    entries: Dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(path).encode(), 0)
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", b"", stat.S_IMODE(st.st_mode))
            else:
                entries[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))
    return entries


def _mtimes(root: Path) -> Dict[str, float]:
    return {
        str(p.relative_to(root)): p.lstat().st_mtime
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def _executables(snapshot: Dict[str, Entry]) -> Dict[str, bool]:
    return {k: bool(v[2] & 0o111) for k, v in snapshot.items() if v[0] == "file"}


@pytest.fixture
def local_tree(tmp_path: Path) -> Path:
    root = tmp_path / "source tree"
    deep = root / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True)
    (deep / "deep.bin").write_bytes(bytes(range(256)) * 1000 + b"\x00")
    (root / "random.bin").write_bytes(os.urandom(200_003))
    (root / "empty").write_bytes(b"")
    (root / "empty dir").mkdir()
    (root / "name with spaces.txt").write_text("spaces\n")
    (root / "ünïcødé — 日本語.txt").write_text("unicode ✓\n", encoding="utf-8")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    os.symlink("random.bin", root / "link")
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (OLD_MTIME, OLD_MTIME))
    return root


def _kubectl(kubeconfig: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    assert KUBECTL is not None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # keeps kubectl's discovery cache out of the real HOME
        "KUBECONFIG": kubeconfig,
    }
    done = subprocess.run(
        [KUBECTL, "--request-timeout=30s", *args],
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_same_trees_as_kubectl_cp_both_ways(emulator, client, local_tree, tmp_path):
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    home = tmp_path / "home"
    home.mkdir()
    pod_root = Path(emulator.container_dir("default", "demo", "main"))
    original = _snapshot(local_tree)

    # Into the pod.
    started = time.time()
    _kubectl(kubeconfig, home, "cp", str(local_tree), "demo:by-kubectl", "-c", "main")
    copy_to_pod(str(local_tree), "demo", "by-k8sstream", container="main", client=client)
    in_kubectl = _snapshot(pod_root / "by-kubectl")
    in_ours = _snapshot(pod_root / "by-k8sstream")
    assert in_ours == in_kubectl == original  # content, paths, modes, the symlink itself
    # Difference: kubectl's remote `tar -xmf` stamps the time of the copy; we keep mtimes.
    assert set(_mtimes(pod_root / "by-k8sstream").values()) == {OLD_MTIME}
    assert min(_mtimes(pod_root / "by-kubectl").values()) >= started - 1

    # Out of the pod, each tool from the other's copy too.
    outs = {}
    for tool in ("kubectl", "k8sstream"):
        for remote in ("by-kubectl", "by-k8sstream"):
            dest = tmp_path / f"out-{tool}-from-{remote}"
            started = time.time()
            if tool == "kubectl":
                done = _kubectl(kubeconfig, home, "cp", f"demo:{remote}", str(dest), "-c", "main")
                assert b"skipping symlink" in done.stderr
            else:
                copy_from_pod("demo", remote, str(dest), container="main", client=client)
            outs[tool, remote] = (_snapshot(dest), _mtimes(dest), started)

    without_link = {k: v for k, v in original.items() if k != "link"}
    for remote in ("by-kubectl", "by-k8sstream"):
        ours, our_mtimes, _ = outs["k8sstream", remote]
        theirs, their_mtimes, started = outs["kubectl", remote]
        # Both skip the symlink on the way out.
        assert "link" not in ours and "link" not in theirs
        # Same relative paths, file types and content.
        assert {k: v[:2] for k, v in ours.items()} == {k: v[:2] for k, v in theirs.items()}
        assert {k: v[:2] for k, v in ours.items()} == {k: v[:2] for k, v in without_link.items()}
        # We keep every mode, the exec bit included.
        assert ours == without_link
        assert _executables(ours)["run.sh"] is True
        # Difference: kubectl creates every file with os.Create (0666 & ~umask), never chmods.
        assert not any(_executables(theirs).values())
        assert _executables(theirs).keys() == _executables(ours).keys()
        # Difference: kubectl does not set mtimes locally; we carry the pod's.
        assert min(their_mtimes.values()) >= started - 1
        expected = OLD_MTIME if remote == "by-k8sstream" else None
        if expected is not None:
            assert set(our_mtimes.values()) == {expected}
        else:
            # tar headers carry whole seconds
            pod_mtimes = _mtimes(pod_root / remote)
            assert our_mtimes == {k: float(int(v)) for k, v in pod_mtimes.items()}


def test_single_file_destination_rules_match_kubectl(emulator, client, local_tree, tmp_path):
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    home = tmp_path / "home"
    home.mkdir()
    pod_root = Path(emulator.container_dir("default", "demo", "main"))
    for name in ("k-dir", "o-dir"):
        (pod_root / name).mkdir()
    src = local_tree / "random.bin"
    # Onto a new name, and into an existing directory (where the basename is appended).
    _kubectl(kubeconfig, home, "cp", str(src), "demo:k-file.bin")
    _kubectl(kubeconfig, home, "cp", str(src), "demo:k-dir")
    copy_to_pod(str(src), "demo", "o-file.bin", client=client)
    copy_to_pod(str(src), "demo", "o-dir", client=client)
    for prefix in ("k", "o"):
        assert (pod_root / f"{prefix}-file.bin").read_bytes() == src.read_bytes()
        assert (pod_root / f"{prefix}-dir" / "random.bin").read_bytes() == src.read_bytes()
    # Out of the pod onto a new local name.
    _kubectl(kubeconfig, home, "cp", "demo:k-file.bin", str(tmp_path / "k-back.bin"))
    copy_from_pod("demo", "o-file.bin", str(tmp_path / "o-back.bin"), client=client)
    assert (tmp_path / "k-back.bin").read_bytes() == (tmp_path / "o-back.bin").read_bytes()
