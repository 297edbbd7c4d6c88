"""CgroupV1Manager on this host's v1 hierarchies and CgroupV2Manager on its cgroup2 mount.

Both run the same conformance checks with a real sleeping process; every group is removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from berth.runtime.cgroups import (
    CgroupManager,
    CgroupMode,
    CgroupResources,
    CgroupV1Manager,
    CgroupV2Manager,
    detect_cgroup_mode,
    open_cgroup,
)

UNIFIED = "/sys/fs/cgroup/unified"
MODE = detect_cgroup_mode()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _v1(name: str) -> CgroupManager:
    if MODE is CgroupMode.UNIFIED:
        pytest.skip("no cgroup v1 hierarchies on this host")
    return CgroupV1Manager.for_path(name)


def _v2(name: str) -> CgroupManager:
    if MODE is CgroupMode.UNIFIED:
        return CgroupV2Manager.for_path(name)
    if not os.path.exists(os.path.join(UNIFIED, "cgroup.controllers")):
        pytest.skip("no cgroup2 mount")
    return CgroupV2Manager.for_path(name, mountpoint=UNIFIED)


@pytest.fixture(params=["v1", "v2"])
def manager(request: pytest.FixtureRequest) -> Iterator[CgroupManager]:
    name = f"berth-test-cg-{os.getpid()}-{request.param}"
    cg = _v1(name) if request.param == "v1" else _v2(name)
    try:
        yield cg
    finally:
        cg.destroy()
        assert not cg.exists()


@pytest.fixture()
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_detect_mode_matches_the_mounts() -> None:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert MODE is CgroupMode.UNIFIED
    elif os.path.exists(os.path.join(UNIFIED, "cgroup.controllers")):
        assert MODE is CgroupMode.HYBRID
    else:
        assert MODE is CgroupMode.LEGACY


def test_open_cgroup_picks_the_host_version() -> None:
    cg = open_cgroup("berth-test-open")
    expected = CgroupV2Manager if MODE is CgroupMode.UNIFIED else CgroupV1Manager
    assert isinstance(cg, expected)
    assert not cg.exists()


def test_create_join_freeze_kill_destroy(manager: CgroupManager,
                                         sleeper: subprocess.Popen[bytes]) -> None:
    manager.create()
    assert manager.exists()
    manager.add_pid(sleeper.pid)
    assert manager.pids() == [sleeper.pid]
    assert all(os.path.isdir(d) for d in manager.paths().values())

    manager.freeze()
    assert manager.is_frozen()
    assert _proc_state(sleeper.pid) in ("D", "S", "T")
    manager.thaw()
    assert not manager.is_frozen()

    manager.kill_all(signal.SIGKILL)
    assert sleeper.wait(5) == -signal.SIGKILL
    _wait_empty(manager)
    manager.destroy()
    assert not manager.exists()


def test_v1_limits_and_counters(sleeper: subprocess.Popen[bytes]) -> None:
    cg = _v1(f"berth-test-cg-{os.getpid()}-limits")
    res = CgroupResources(memory_limit=64 << 20, memory_swap=64 << 20, cpu_shares=512,
                          cpu_quota=50000, cpu_period=100000, pids_limit=10, cpuset_cpus="0")
    try:
        cg.create(res)
        cg.add_pid(sleeper.pid)
        dirs = cg.paths()
        assert _read(dirs["memory"], "memory.limit_in_bytes") == str(64 << 20)
        assert _read(dirs["cpu"], "cpu.shares") == "512"
        assert _read(dirs["cpu"], "cpu.cfs_quota_us") == "50000"
        assert _read(dirs["pids"], "pids.max") == "10"
        assert _read(dirs["cpuset"], "cpuset.cpus") == "0"
        assert cg.memory_limit() == 64 << 20
        assert cg.memory_usage() >= 0
        assert cg.cpu_usage_ns() >= 0
        assert cg.oom_kill_count() == 0
        cg.set_resources(CgroupResources(pids_limit=-1))
        assert _read(dirs["pids"], "pids.max") == "max"
    finally:
        cg.destroy()  # kills the sleeper first
    assert not cg.exists()


def test_v2_group_on_the_cgroup2_mount(sleeper: subprocess.Popen[bytes]) -> None:
    cg = _v2(f"berth-test-cg-{os.getpid()}-v2only")
    try:
        cg.create()
        cg.add_pid(sleeper.pid)
        assert cg.pids() == [sleeper.pid]
        assert cg.oom_kill_count() == 0
        with open(f"/proc/{sleeper.pid}/cgroup") as f:
            assert any(line.startswith("0::") and line.rstrip().endswith(cg.path.rsplit("/")[-1])
                       for line in f)
    finally:
        cg.destroy()
    assert not cg.exists()


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _wait_empty(cg: CgroupManager) -> None:
    deadline = time.monotonic() + 5
    while cg.pids():
        assert time.monotonic() < deadline
        time.sleep(0.01)
