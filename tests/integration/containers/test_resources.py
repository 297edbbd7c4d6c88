"""`--memory --cpus --cpu-shares --pids-limit`: checked in the container's own cgroup files
(and in what the container itself sees), on whichever cgroup version this host runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.containers._probe import CGROUP_ROOT, leftovers, wait_for

pytestmark = pytest.mark.usefixtures("daemon")

V2 = (CGROUP_ROOT / "cgroup.controllers").exists()


def _read(container_id: str, controller: str, v1_file: str, v2_file: str) -> str:
    path = (CGROUP_ROOT / "berth" / container_id / v2_file if V2
            else CGROUP_ROOT / controller / "berth" / container_id / v1_file)
    return Path(path).read_text().strip()


@pytest.fixture()
def limited(daemon):
    cid = daemon.out("run", "-d", "--memory", "64m", "--memory-swap", "96m", "--cpus", "0.5",
                     "--cpu-shares", "512", "--pids-limit", "20", "busybox", "sleep",
                     "100").strip()
    yield cid
    daemon.cli("rm", "-f", cid)
    assert wait_for(lambda: leftovers(daemon, cid).empty), leftovers(daemon, cid)


def test_limits_are_written_to_the_cgroup(daemon, limited):
    cid = limited
    assert _read(cid, "memory", "memory.limit_in_bytes", "memory.max") == str(64 << 20)
    if V2:
        assert _read(cid, "memory", "", "memory.swap.max") == str(32 << 20)
        assert _read(cid, "cpu", "", "cpu.max") == "50000 100000"
        # cgroup v2 weight from shares, as runc converts: 1 + ((shares - 2) * 9999) / 262142
        assert _read(cid, "cpu", "", "cpu.weight") == str(1 + ((512 - 2) * 9999) // 262142)
    else:
        memsw = CGROUP_ROOT / "memory" / "berth" / cid / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # only with swap accounting on
            assert memsw.read_text().strip() == str(96 << 20)
        assert _read(cid, "cpu", "cpu.cfs_quota_us", "") == "50000"
        assert _read(cid, "cpu", "cpu.cfs_period_us", "") == "100000"
        assert _read(cid, "cpu", "cpu.shares", "") == "512"
    assert _read(cid, "pids", "pids.max", "pids.max") == "20"
    # the container's PID 1 is in that cgroup
    pid = daemon.out("inspect", "-f", "{{.State.Pid}}", cid).strip()
    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"/berth/{cid}" in cgroups


def test_inspect_reports_the_limits(daemon, limited):
    out = daemon.out("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} "
                     "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} "
                     "{{.HostConfig.PidsLimit}}", limited)
    assert out.split() == [str(64 << 20), str(96 << 20), "500000000", "512", "20"]


def test_memory_limit_without_swap_flag_doubles_swap(daemon):
    cid = daemon.out("run", "-d", "--memory", "32m", "busybox", "sleep", "100").strip()
    try:
        assert _read(cid, "memory", "memory.limit_in_bytes", "memory.max") == str(32 << 20)
        memsw = CGROUP_ROOT / "memory" / "berth" / cid / "memory.memsw.limit_in_bytes"
        if V2:
            assert _read(cid, "memory", "", "memory.swap.max") == str(32 << 20)
        elif memsw.exists():  # swap accounting on: Docker's default swap = memory
            assert memsw.read_text().strip() == str(64 << 20)
    finally:
        daemon.cli("rm", "-f", cid)


def test_fork_bomb_is_held_by_pids_limit(daemon):
    # a real bomb: every shell forks two more, forever; pids.max stops it
    cid = daemon.out("run", "-d", "--pids-limit", "16", "busybox", "sh", "-c",
                     "b() { b | b & }; b 2>/dev/null; sleep 100").strip()
    try:
        current = CGROUP_ROOT / ("berth" if V2 else "pids/berth") / cid / "pids.current"
        events = CGROUP_ROOT / ("berth" if V2 else "pids/berth") / cid / "pids.events"
        assert wait_for(lambda: int(events.read_text().split()[-1]) > 0, 10)  # forks refused
        assert int(current.read_text()) <= 16
    finally:
        daemon.cli("rm", "-f", cid)


def test_cpus_and_cpu_shares_seen_from_inside(daemon):
    # the container's /sys/fs/cgroup shows its own cgroup, as under Docker
    files = ("cpu.max cpu.weight" if V2 else "cpu/cpu.cfs_quota_us cpu/cpu.shares")
    out = daemon.out("run", "--rm", "--cpus", "1.5", "--cpu-shares", "256", "busybox", "sh",
                     "-c", f"cd /sys/fs/cgroup && cat {files}")
    want = ["150000 100000", str(1 + ((256 - 2) * 9999) // 262142)] if V2 else ["150000", "256"]
    assert out.splitlines() == want


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--cpus", "abc", b'invalid argument "abc" for "--cpus" flag'),
    ("--memory", "1k", b"Minimum memory limit allowed is 6MB"),
    ("--cpu-shares", "x", b'invalid argument "x" for "-c, --cpu-shares" flag'),
])
def test_bad_resource_values_are_125(daemon, flag, value, message):
    proc = daemon.cli("run", "--rm", flag, value, "busybox", "true")
    assert proc.returncode == 125
    assert message in proc.stderr, proc.stderr
