"""Resource → cgroup file translation (pure): the values runc and crun write for the same spec."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.runtime.cgroups import (
    CgroupResources,
    DeviceRule,
    shares_to_weight,
    v1_resource_files,
    v2_resource_files,
)


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (1024, 39), (512, 20), (262144, 10000), (0, 0)],
)
def test_cpu_shares_map_to_weight_like_runc(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize(
    ("resources", "files"),
    [
        (CgroupResources(), {}),
        (CgroupResources(memory_limit=64 << 20), {"memory.max": str(64 << 20)}),
        (CgroupResources(memory_limit=-1), {"memory.max": "max"}),
        (CgroupResources(memory_limit=100, memory_swap=300),
         {"memory.swap.max": "200", "memory.max": "100"}),
        (CgroupResources(memory_limit=100, memory_swap=-1),
         {"memory.swap.max": "max", "memory.max": "100"}),
        (CgroupResources(memory_reservation=50), {"memory.low": "50"}),
        (CgroupResources(cpu_quota=50000, cpu_period=100000), {"cpu.max": "50000 100000"}),
        (CgroupResources(cpu_quota=25000), {"cpu.max": "25000 100000"}),
        (CgroupResources(cpu_period=20000), {"cpu.max": "max 20000"}),
        (CgroupResources(cpu_quota=-1, cpu_period=100000), {"cpu.max": "max 100000"}),
        (CgroupResources(cpu_shares=1024), {"cpu.weight": "39"}),
        (CgroupResources(pids_limit=100), {"pids.max": "100"}),
        (CgroupResources(pids_limit=-1), {"pids.max": "max"}),
        (CgroupResources(cpuset_cpus="0-1", cpuset_mems="0"),
         {"cpuset.cpus": "0-1", "cpuset.mems": "0"}),
    ],
)
def test_v2_files(resources: CgroupResources, files: dict[str, str]) -> None:
    assert v2_resource_files(resources) == files


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (CgroupResources(memory_swap=200), "unable to set swap limit without memory limit"),
        (CgroupResources(memory_limit=300, memory_swap=200),
         "memory+swap limit should be >= memory limit"),
    ],
)
def test_v2_rejects_impossible_swap(resources: CgroupResources, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("+", r"\+")):
        v2_resource_files(resources)


def test_v1_files_in_write_order() -> None:
    res = CgroupResources(memory_limit=100, memory_swap=200, cpu_shares=512, cpu_quota=1000,
                          cpu_period=10000, pids_limit=7, cpuset_cpus="0")
    assert v1_resource_files(res) == [
        ("cpuset", "cpuset.cpus", "0"),
        ("memory", "memory.limit_in_bytes", "100"),
        ("memory", "memory.memsw.limit_in_bytes", "200"),
        ("cpu", "cpu.shares", "512"),
        ("cpu", "cpu.cfs_period_us", "10000"),
        ("cpu", "cpu.cfs_quota_us", "1000"),
        ("pids", "pids.max", "7"),
    ]


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        (DeviceRule(False), "a"),
        (DeviceRule(True, "c", 1, 3, "rwm"), "c 1:3 rwm"),
        (DeviceRule(True, "c", 136, None, "rw"), "c 136:* rw"),
        (DeviceRule(True, "b", None, None, "m"), "b *:* m"),
    ],
)
def test_device_rule_lines(rule: DeviceRule, line: str) -> None:
    assert rule.to_v1() == line


def test_blkio_weight_files() -> None:
    # runc's map for v2: 1 + (weight - 10) * 9999 / 990
    assert v2_resource_files(CgroupResources(blkio_weight=500)) == {"io.weight": "default 4950"}
    assert v1_resource_files(CgroupResources(blkio_weight=500)) == [
        ("blkio", "blkio.weight", "500")]
