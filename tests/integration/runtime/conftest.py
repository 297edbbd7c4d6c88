"""Fixtures for berth-runtime: a busybox bundle in tmp_path, the CLI, and leak checks.

The bundle's config.json starts as ``crun spec`` writes it (a tool we did not write), then each
test edits what it needs. Every test must leave no state dir, cgroup, mount or process behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = Path("/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
PR_SET_CHILD_SUBREAPER = 36

if os.geteuid() != 0 or not BUSYBOX.exists():
    pytest.skip("berth-runtime tests need root and /bin/busybox", allow_module_level=True)


def make_rootfs(root: Path) -> None:
    """/bin/busybox plus one symlink per applet, /etc/passwd and /etc/group."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    for name in ("proc", "sys", "dev", "tmp"):
        (root / name).mkdir()
    os.chmod(root / "tmp", 0o1777)


@dataclass
class Bundle:
    path: Path

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "config.json").read_text())
        return data

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        data = self.config()
        change(data)
        (self.path / "config.json").write_text(json.dumps(data, indent=1))

    def set_args(self, *args: str, terminal: bool = False) -> None:
        def change(c: dict[str, Any]) -> None:
            c["process"]["args"] = list(args)
            c["process"]["terminal"] = terminal

        self.edit(change)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    make_rootfs(root)
    return root


@pytest.fixture()
def bundle(tmp_path: Path, rootfs_template: Path) -> Bundle:
    path = tmp_path / "bundle"
    path.mkdir()
    shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
    subprocess.run(["crun", "spec"], cwd=path, check=True)
    b = Bundle(path)

    def defaults(c: dict[str, Any]) -> None:
        c["process"]["terminal"] = False
        c["root"]["readonly"] = False

    b.edit(defaults)
    return b


@dataclass
class Runtime:
    root: Path
    command: list[str]

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run to completion. stdio goes to files, not pipes: a created container inherits
        them and would keep a pipe open long after the runtime has exited."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run([*self.command, "--root", str(self.root), *args],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=timeout)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode,
                                               out.read().decode(), err.read().decode())

    def ok(self, *args: str) -> str:
        proc = self(*args)
        assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def state(self, container_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.ok("state", container_id))
        return data

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.command, "--root", str(self.root), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cgroup_dirs_named(name: str) -> list[str]:
    found = []
    for top in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", top)
        for dirpath, dirnames, _ in os.walk(base):
            if os.path.basename(dirpath) == name:
                found.append(dirpath)
            if dirpath.count("/") > 7:
                dirnames.clear()
    return found


@pytest.fixture()
def container_id(request: pytest.FixtureRequest) -> str:
    return f"brt-{os.getpid()}-{request.node.name[:20].replace('[', '-').strip(']')}"


@pytest.fixture()
def subreaper() -> Iterator[None]:
    """Make this process the reaper of created containers (the shim's role)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        while True:  # reap anything a failed test left
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break


@pytest.fixture()
def runtime(tmp_path: Path, container_id: str) -> Iterator[Runtime]:
    """berth-runtime with a private state root; afterwards nothing of the test may remain."""
    root = tmp_path / "state"
    rt = Runtime(root, [sys.executable, "-m", "berth.runtime.init.cli"])
    yield rt
    leftovers = sorted(os.listdir(root)) if root.exists() else []
    for cid in leftovers:
        rt("delete", "--force", cid)
    cgroups = _cgroup_dirs_named(container_id)
    for directory in cgroups:
        for pid in open(os.path.join(directory, "cgroup.procs")).read().split():
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.05)
        os.rmdir(directory)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(tmp_path) in line]
    assert not leftovers, f"state left behind: {leftovers}"
    assert not cgroups, f"cgroups left behind: {cgroups}"
    assert not mounts, f"mounts left behind: {mounts}"


@pytest.fixture(scope="session")
def crun_hybrid_ready() -> None:
    """crun 1.8 refuses a hybrid host whose cgroup2 still holds controllers: move them to v1."""
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not controllers.exists():
        return
    for name in controllers.read_text().split():
        target = Path("/sys/fs/cgroup") / name
        target.mkdir(exist_ok=True)
        if subprocess.run(["mountpoint", "-q", str(target)]).returncode != 0:
            subprocess.run(["mount", "-t", "cgroup", "-o", name, "cgroup", str(target)],
                           check=True)
