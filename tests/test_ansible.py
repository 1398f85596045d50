"""The connection plugin under the real ansible-core: ansible-playbook and ansible run against
the emulator's pods (local processes, so Ansible's Python modules run in them).

Covered: command, shell with a stdin-using module, copy (binary and content) and fetch,
pipelining (one exec per task) and the non-pipelined path (files put by tar over exec),
become with su (to root, and to an unprivileged user with ``raw``), workload targets
(``deploy/web``), ``ansible_kubectl_container``, the collection install, and an unreachable
pod. Ansible is slow to start, so a few runs cover many tasks.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from k8sstream.ansible_plugins import connection_plugin_dir, write_collection
from k8sstream.testing import ApiServer, Container, Pod

pytest.importorskip("ansible")
BIN = Path(sys.executable).parent
if not (BIN / "ansible-playbook").exists():
    pytest.skip("ansible-playbook is not next to this Python", allow_module_level=True)

TIMEOUT = 120


@pytest.fixture
def cluster(tmp_path):
    with ApiServer(with_demo_pod=False) as server:
        for name in ("web-0", "web-1"):
            server.add_pod(
                Pod(
                    name=name,
                    labels={"app": "web"},
                    containers=[Container("app", ["sleep", "300"], stdin=False)],
                )
            )
        server.add_pod(
            Pod(
                name="multi",
                containers=[
                    Container("main", ["sleep", "300"], stdin=False),
                    Container("sidecar", ["sleep", "300"], stdin=False),
                ],
            )
        )
        server.add_workload("Deployment", "web", {"app": "web"})
        yield server


def _env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "LC_ALL": "C.UTF-8",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_CONNECTION_PLUGINS": connection_plugin_dir(),
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    env.update(extra)
    return env


def _inventory(cluster: ApiServer, tmp_path: Path, connection: str = "k8sstream") -> Path:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    remote = tmp_path / "remote"
    for host in ("web-0", "webdeploy"):
        (remote / host).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "inventory.yml"
    path.write_text(
        f"""
all:
  vars:
    ansible_connection: {connection}
    ansible_kubectl_kubeconfig: {kubeconfig}
    ansible_python_interpreter: {sys.executable}
    remote_dir: "{remote}/{{{{ inventory_hostname }}}}"
  hosts:
    web-0:
    webdeploy:
      ansible_kubectl_pod: deploy/web
    sidecar:
      ansible_kubectl_pod: multi
      ansible_kubectl_container: sidecar
    ghost:
      ansible_kubectl_pod: no-such-pod
"""
    )
    return path


PLAYBOOK = """
- hosts: web-0:webdeploy
  gather_facts: false
  tasks:
    - name: command
      command: echo hello
      register: r
    - assert: {that: ["r.stdout == 'hello'"]}
    - name: shell with stdin (the module feeds it to the command)
      shell: "tr a-z A-Z; echo done"
      args:
        stdin: "from ansible"
      register: s
    - assert: {that: ["s.stdout_lines == ['FROM ANSIBLE', 'done']"]}
    - name: copy a binary file
      copy: {src: "%(blob)s", dest: "{{ remote_dir }}/blob.bin", mode: "0640"}
    - name: copy content
      copy: {content: "line1\\n", dest: "{{ remote_dir }}/note.txt"}
    - name: copy again is unchanged
      copy: {content: "line1\\n", dest: "{{ remote_dir }}/note.txt"}
      register: again
    - stat: {path: "{{ remote_dir }}/blob.bin", checksum_algorithm: sha1}
      register: st
    - assert:
        that:
          - "st.stat.checksum == '%(sha1)s'"
          - "st.stat.mode == '0640'"
          - "not again.changed"
    - name: fetch
      fetch:
        src: "{{ remote_dir }}/blob.bin"
        dest: "%(fetched)s/{{ inventory_hostname }}.bin"
        flat: true
    - name: become root with su
      command: id -un
      become: true
      become_method: su
      register: b
    - assert: {that: ["b.stdout == 'root'"]}
    - name: become an unprivileged user with su (raw needs no Python for that user)
      raw: id -un
      become: true
      become_method: su
      become_user: nobody
      become_flags: "-s /bin/sh"
      register: n
    - assert: {that: ["n.stdout_lines == ['nobody']"]}
"""


def _exec_count(cluster: ApiServer) -> int:
    return sum(1 for r in cluster.requests if r.path.endswith("/exec"))


def test_playbook_with_pipelining(cluster, tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(200_000) + bytes(range(256)))
    fetched = tmp_path / "fetched"
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        PLAYBOOK
        % {"blob": blob, "sha1": hashlib.sha1(blob.read_bytes()).hexdigest(), "fetched": fetched}
    )
    inventory = _inventory(cluster, tmp_path)
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        env=_env(tmp_path, ANSIBLE_PIPELINING="true"),
        cwd=tmp_path,
        capture_output=True,
        timeout=TIMEOUT,
    )
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "web-0                      : ok=14" in output
    assert "webdeploy                  : ok=14" in output and "failed=0" in output
    for host in ("web-0", "webdeploy"):
        assert (fetched / f"{host}.bin").read_bytes() == blob.read_bytes()
    # deploy/web resolved to a running pod of the Deployment, like kubectl exec deploy/web.
    assert (tmp_path / "remote" / "webdeploy" / "note.txt").read_text() == "line1\n"


def _adhoc(cluster: ApiServer, tmp_path: Path, pattern: str, *args: str, **env: str):
    return subprocess.run(
        [str(BIN / "ansible"), "-i", str(tmp_path / "inventory.yml"), pattern, *args],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        timeout=TIMEOUT,
    )


def test_pipelining_is_one_exec_per_task_and_without_it_files_are_put(cluster, tmp_path):
    _inventory(cluster, tmp_path)
    before = _exec_count(cluster)
    result = _adhoc(
        cluster, tmp_path, "web-0", "-m", "command", "-a", "pwd", ANSIBLE_PIPELINING="true"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.decode().endswith("/default/web-0/app\n")
    assert _exec_count(cluster) - before == 1  # the module went through stdin
    before = _exec_count(cluster)
    result = _adhoc(
        cluster, tmp_path, "web-0", "-m", "command", "-a", "pwd", ANSIBLE_PIPELINING="false"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _exec_count(cluster) - before >= 4  # mkdir, put (tar), run, clean up


def test_container_variable_collection_install_and_unreachable_pod(cluster, tmp_path):
    root = write_collection(str(tmp_path / "collections"))
    assert (
        Path(root, "galaxy.yml").read_text().startswith("namespace: k8sstream\nname: kubernetes\n")
    )
    _inventory(cluster, tmp_path, connection="k8sstream.kubernetes.k8sstream")
    env = {
        "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
        "ANSIBLE_CONNECTION_PLUGINS": "",
    }
    result = _adhoc(cluster, tmp_path, "sidecar:ghost", "-m", "raw", "-a", "basename $PWD", **env)
    output = result.stdout.decode()
    assert result.returncode == 4, output + result.stderr.decode()  # some host unreachable
    assert "sidecar | CHANGED | rc=0 >>\nsidecar\n" in output
    assert "ghost | UNREACHABLE!" in output and 'pods \\"no-such-pod\\" not found' in output


def test_images_without_tar_put_and_fetch_with_cat(cluster, tmp_path):
    import shutil

    bin_dir = tmp_path / "bin"  # a PATH with a shell and coreutils but no tar (nor test)
    bin_dir.mkdir()
    for tool in ("sh", "cat", "mkdir", "chmod", "rm", "echo", "mv", "ls", "sleep"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    cluster.add_pod(
        Pod(
            name="notar",
            containers=[
                Container("app", ["sleep", "300"], stdin=False, env={"PATH": str(bin_dir)})
            ],
        )
    )
    _inventory(cluster, tmp_path)
    with (tmp_path / "inventory.yml").open("a") as f:
        f.write("    notar:\n")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(50_000))
    (tmp_path / "remote" / "notar").mkdir()
    remote = tmp_path / "remote" / "notar" / "blob.bin"
    result = _adhoc(
        cluster,
        tmp_path,
        "notar",
        "-m",
        "copy",
        "-a",
        f"src={blob} dest={remote}",
        ANSIBLE_PIPELINING="false",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert remote.read_bytes() == blob.read_bytes()
    back = tmp_path / "back.bin"
    result = _adhoc(
        cluster,
        tmp_path,
        "notar",
        "-m",
        "fetch",
        "-a",
        f"src={remote} dest={back} flat=true",
        ANSIBLE_PIPELINING="false",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert back.read_bytes() == blob.read_bytes()
    execs = [r.query for r in cluster.requests if r.path.endswith("/notar/exec")]
    assert any(q.startswith("command=cat&") for q in execs)  # the fetch fell back to cat
    assert any("cat+%3E" in q for q in execs)  # and so did the put


def test_plugin_documentation_is_valid_for_ansible_doc(tmp_path):
    result = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", "connection", "k8sstream"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    for var in (
        "ansible_kubectl_pod",
        "ansible_kubectl_namespace",
        "ansible_kubectl_container",
        "ansible_kubectl_context",
        "ansible_kubectl_kubeconfig",
        "ansible_pipelining",
    ):
        assert var in text
