"""``docker update``: the request's checks, its merge into HostConfig, the cgroup limits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from berth.api.wire_containers import parse_create_body, parse_update_body
from berth.engine.container_update import (
    KERNEL_MEMORY_DEPRECATED,
    ResourceUpdate,
    check_update,
    live_resources,
    merge_update,
)
from berth.engine.model import ContainerConfig, ContainerRecord, HostConfig, RestartPolicy
from berth.engine.resource_checks import (
    BLKIO_WEIGHT_DISCARDED,
    HostSupport,
    check_cpuset,
    parse_id_list,
)
from berth.errors import Conflict, InvalidArgument

SUPPORT = HostSupport(cpus="0-3", mems="0", blkio_weight=True)
NO_BLKIO = HostSupport(cpus="0-3", mems="0", blkio_weight=False)
CID = "c" * 64


def _record(**host: object) -> ContainerRecord:
    return ContainerRecord(id=CID, name="x", created="", image_id="sha256:i",
                           config=ContainerConfig(image="busybox"),
                           host_config=HostConfig(**host))  # type: ignore[arg-type]


def test_docker_cli_body_parses_to_what_changes() -> None:
    body = {"BlkioWeight": 0, "CpuShares": 512, "Memory": 0, "NanoCpus": 500000000,
            "CpuPeriod": 0, "CpuQuota": 0, "CpusetCpus": "", "CpusetMems": "",
            "MemoryReservation": 0, "MemorySwap": 0, "KernelMemory": 0,
            "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}
    assert parse_update_body(body) == ResourceUpdate(cpu_shares=512, nano_cpus=500000000)
    body["PidsLimit"] = -1
    body["RestartPolicy"] = {"Name": "on-failure", "MaximumRetryCount": 2}
    assert parse_update_body(body) == ResourceUpdate(
        cpu_shares=512, nano_cpus=500000000, pids_limit=-1,
        restart_policy=RestartPolicy("on-failure", 2))


@pytest.mark.parametrize(("body", "message"), [
    ({"Memory": "x"}, "json: cannot unmarshal str into Go struct field UpdateConfig.Memory of "
                      "type int64"),
    ({"RestartPolicy": {"Name": "bogus"}}, "invalid restart policy 'bogus'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
     "maximum retry count cannot be used with restart policy 'always'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
     "maximum retry count cannot be negative"),
])
def test_bad_bodies(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_update_body(body)


@pytest.mark.parametrize(("update", "message"), [
    (ResourceUpdate(memory=1 << 20), "Minimum memory limit allowed is 6MB"),
    (ResourceUpdate(memory=64 << 20, memory_swap=32 << 20),
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    (ResourceUpdate(nano_cpus=10**15), "Range of CPUs is from 0.01 to "),
    (ResourceUpdate(cpuset_cpus="7"), "Requested CPUs are not available - requested 7, "
                                      "available: 0-3"),
    (ResourceUpdate(cpuset_mems="1"), "Requested memory nodes are not available - requested "
                                      "1, available: 0"),
    (ResourceUpdate(cpuset_cpus="3-1"), "Invalid value 3-1 for cpuset cpus: invalid format: 3-1"),
    (ResourceUpdate(blkio_weight=5), "Range of blkio weight is from 10 to 1000"),
])
def test_checks_before_anything_changes(update: ResourceUpdate, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_update(update, SUPPORT)


def test_warnings() -> None:
    assert check_update(ResourceUpdate(blkio_weight=300), NO_BLKIO) == (
        ResourceUpdate(), [BLKIO_WEIGHT_DISCARDED])
    assert check_update(ResourceUpdate(blkio_weight=5), NO_BLKIO)[0].blkio_weight == 0
    assert check_update(ResourceUpdate(kernel_memory=1 << 30), SUPPORT) == (
        ResourceUpdate(), [KERNEL_MEMORY_DEPRECATED])


@pytest.mark.parametrize(("text", "ids"), [("", set()), ("0", {0}), ("0-2,5", {0, 1, 2, 5})])
def test_cpuset_lists(text: str, ids: set[int]) -> None:
    assert parse_id_list(text) == ids
    check_cpuset(text, "", HostSupport("0-5", "0", True))


def test_merge_keeps_what_is_not_asked() -> None:
    record = _record(memory=64 << 20, cpu_shares=100, pids_limit=20)
    host = merge_update(record, ResourceUpdate(cpu_shares=512, memory_swap=-1))
    assert host == replace(record.host_config, cpu_shares=512, memory_swap=-1)
    assert merge_update(record, ResourceUpdate(pids_limit=-1)).pids_limit == 0
    assert merge_update(record, ResourceUpdate(
        restart_policy=RestartPolicy("always"))).restart_policy == RestartPolicy("always")


@pytest.mark.parametrize(("host", "update", "message"), [
    ({}, ResourceUpdate(memory=64 << 20),  # no swap limit stored: dockerd's 0 is "smaller"
     "Memory limit should be smaller than already set memoryswap limit, update the memoryswap "
     "at the same time"),
    ({"memory": 32 << 20}, ResourceUpdate(memory=128 << 20),  # stored swap: twice 32m
     "Memory limit should be smaller than already set memoryswap limit, update the memoryswap "
     "at the same time"),
    ({"cpu_quota": 50000}, ResourceUpdate(nano_cpus=10**9),
     "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"),
    ({"nano_cpus": 10**9}, ResourceUpdate(cpu_quota=50000),
     "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"),
    ({"auto_remove": True}, ResourceUpdate(restart_policy=RestartPolicy("always")),
     "Restart policy cannot be updated because AutoRemove is enabled for the container"),
])
def test_merge_conflicts(host: dict[str, object], update: ResourceUpdate, message: str) -> None:
    with pytest.raises(Conflict) as err:
        merge_update(_record(**host), update)
    assert str(err.value) == f"Cannot update container {CID}: {message}"


def test_memory_within_the_stored_swap_and_with_a_new_swap() -> None:
    record = _record(memory=32 << 20)
    assert merge_update(record, ResourceUpdate(memory=64 << 20)).memory == 64 << 20
    host = merge_update(_record(), ResourceUpdate(memory=64 << 20, memory_swap=128 << 20))
    assert (host.memory, host.memory_swap) == (64 << 20, 128 << 20)


def test_live_resources_are_every_limit() -> None:
    host = HostConfig(memory=64 << 20, nano_cpus=5 * 10**8, cpu_shares=512, pids_limit=0,
                      cpuset_cpus="0", blkio_weight=300)
    res = live_resources(host, ResourceUpdate(pids_limit=-1))
    assert (res.memory_limit, res.memory_swap, res.cpu_quota, res.cpu_period, res.cpu_shares,
            res.pids_limit, res.cpuset_cpus, res.blkio_weight) == (
        64 << 20, 128 << 20, 50000, 100000, 512, -1, "0", 300)
    assert live_resources(host, ResourceUpdate()).pids_limit is None


def test_create_body_keeps_blkio_weight_and_checks_the_restart_policy() -> None:
    _, host = parse_create_body({"Image": "busybox", "HostConfig": {"BlkioWeight": 300}})
    assert host.blkio_weight == 300
    with pytest.raises(InvalidArgument, match="maximum retry count cannot be used"):
        parse_create_body({"Image": "busybox", "HostConfig": {
            "RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}})
