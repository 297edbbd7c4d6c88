"""Fixtures for shim tests: a busybox rootfs, a bundle, crun, and a leak check per test.

Runtime: crun (``BERTH_TEST_RUNTIME`` may name another runc-CLI runtime). crun 1.8 refuses
this host's cgroup hybrid layout while a controller (hugetlb) is left on cgroup2; the
``crun_host`` fixture applies the same host fix as shared/tools/anchors-setup.sh 2a (mount each
such controller as its own v1 hierarchy; idempotent, left in place as host configuration).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.runtime.shim.protocol import ShimConfig
from berth.runtime.spec import Resources, SpecInput, build_spec

RUNTIME = os.environ.get("BERTH_TEST_RUNTIME", "crun")


@pytest.fixture(scope="session")
def crun_host() -> str:
    if shutil.which(RUNTIME) is None:
        pytest.skip(f"{RUNTIME} is not installed")
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if RUNTIME == "crun" and controllers.exists():
        for name in controllers.read_text().split():
            target = Path("/sys/fs/cgroup") / name
            target.mkdir(exist_ok=True)
            if not os.path.ismount(target):
                subprocess.run(
                    ["mount", "-t", "cgroup", "-o", name, "cgroup", str(target)], check=True
                )
    return RUNTIME


def build_busybox_rootfs(root: Path) -> None:
    """A minimal root filesystem: static busybox and a symlink per applet."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")


@dataclass
class Container:
    config: ShimConfig
    cgroup_parent: str

    @property
    def log_lines(self) -> list[str]:
        path = Path(self.config.log_path)
        return path.read_text().splitlines() if path.exists() else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _shim_pid(config: ShimConfig) -> int | None:
    try:
        return int(Path(config.pid_file).read_text())
    except (FileNotFoundError, ValueError):
        return None


def wait_for_shim_exit(config: ShimConfig, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _shim_pid(config)
        if pid is None or not _pid_alive(pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"shim {_shim_pid(config)} did not exit")


def _mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@pytest.fixture()
def make_container(crun_host: str, tmp_path: Path) -> Iterator[Callable[..., Container]]:
    """Factory of bundles + shim configs; after the test, checks and cleans every leak."""
    short = tempfile.mkdtemp(prefix="bshim-")  # sockets: sun_path is limited to 108 bytes
    made: list[Container] = []

    def make(
        args: tuple[str, ...],
        *,
        tty: bool = False,
        open_stdin: bool = False,
        stdin_once: bool = False,
        linger: float = 0.2,
        resources: Resources | None = None,
    ) -> Container:
        cid = f"berth-shim-test-{uuid.uuid4().hex[:12]}"
        parent = f"/berth-test-{uuid.uuid4().hex[:12]}"
        bundle = tmp_path / cid
        build_busybox_rootfs(bundle / "rootfs")
        spec = build_spec(
            SpecInput(
                root_path=str(bundle / "rootfs"),
                args=args,
                env=("PATH=/bin", "TERM=xterm") if tty else ("PATH=/bin",),
                tty=tty,
                open_stdin=open_stdin,
                hostname="shimtest",
                cgroups_path=f"{parent}/{cid}",
                resources=resources or Resources(),
            )
        )
        (bundle / "config.json").write_text(json.dumps(spec))
        config = ShimConfig(
            container_id=cid,
            bundle=str(bundle),
            socket_path=os.path.join(short, f"{len(made)}.sock"),
            log_path=str(bundle / f"{cid}-json.log"),
            pid_file=str(bundle / "shim.pid"),
            runtime=crun_host,
            runtime_root=os.path.join(short, "state"),
            tty=tty,
            open_stdin=open_stdin,
            stdin_once=stdin_once,
            linger_seconds=linger,
            debug_log=os.path.join(short, f"{len(made)}.log"),
        )
        container = Container(config, parent)
        made.append(container)
        return container

    yield make

    problems = []
    for c in made:
        cfg = c.config
        pid = _shim_pid(cfg)
        if pid is not None and _pid_alive(pid):
            problems.append(f"shim {pid} of {cfg.container_id} still running")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        state_root = cfg.runtime_root or ""
        listed = subprocess.run(
            [cfg.runtime, "--root", state_root, "list", "-q"], capture_output=True, text=True
        ).stdout.split()
        if cfg.container_id in listed:
            problems.append(f"runtime state of {cfg.container_id} left")
            subprocess.run(
                [cfg.runtime, "--root", state_root, "delete", "--force", cfg.container_id],
                capture_output=True,
            )
        for d in Path("/sys/fs/cgroup").glob("*" + c.cgroup_parent):
            leftover = [p for p in d.iterdir() if p.is_dir()]
            if leftover:
                problems.append(f"cgroups left: {leftover}")
                for p in leftover:
                    with contextlib.suppress(OSError):
                        p.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()
    mounts = _mounts_under(str(tmp_path)) + _mounts_under(short)
    if mounts:
        problems.append(f"mounts left: {mounts}")
    shutil.rmtree(short, ignore_errors=True)
    assert not problems, problems
