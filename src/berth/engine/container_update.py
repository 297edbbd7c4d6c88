"""``docker update``: new resource limits and restart policy for a container, running or not.

Three steps, as dockerd takes them: check the request (``check_update``: the create-time
limits, plus warnings for what the host cannot do), fold it into the container's HostConfig
(``merge_update``: zero values leave a setting alone; the conflicts Docker refuses), and, for a
running container, write the new limits into its cgroup (``apply_live``) before the record is
saved, so a failed write changes nothing. A stopped container gets its limits at its next start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from berth.engine import resource_checks
from berth.engine.model import ContainerRecord, HostConfig, RestartPolicy
from berth.errors import BerthError, Conflict
from berth.runtime import spec as runtime_spec
from berth.runtime.cgroups import CgroupResources

KERNEL_MEMORY_DEPRECATED = ("Specifying a kernel memory limit is deprecated and will be "
                            "removed in a future release.")


@dataclass(frozen=True)
class ResourceUpdate:
    """What to change: 0, "" and None leave a setting as it is (Docker's zero values)."""

    blkio_weight: int = 0
    cpu_shares: int = 0
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    kernel_memory: int = 0  # accepted with dockerd's deprecation warning, not applied
    pids_limit: int | None = None  # <= 0: unlimited
    restart_policy: RestartPolicy | None = None


def check_update(update: ResourceUpdate, support: resource_checks.HostSupport
                 ) -> tuple[ResourceUpdate, list[str]]:
    """The request as dockerd checks it before touching the container; (what to apply,
    warnings)."""
    resource_checks.check_memory(update.memory, update.memory_swap)
    resource_checks.check_nano_cpus(update.nano_cpus)
    resource_checks.check_cpuset(update.cpuset_cpus, update.cpuset_mems, support)
    weight, warnings = resource_checks.check_blkio_weight(update.blkio_weight, support)
    if update.kernel_memory:
        warnings.append(KERNEL_MEMORY_DEPRECATED)
    return replace(update, blkio_weight=weight, kernel_memory=0), warnings


def merge_update(record: ContainerRecord, update: ResourceUpdate) -> HostConfig:
    """The container's HostConfig with ``update`` folded in; Docker's conflicts are refused
    as ``Cannot update container <id>: ...``."""
    h = record.host_config
    try:
        return _merge(h, update)
    except BerthError as err:
        raise type(err)(f"Cannot update container {record.id}: {err.message}") from None


def _merge(h: HostConfig, u: ResourceUpdate) -> HostConfig:
    changes: dict[str, Any] = {}
    if u.restart_policy is not None:
        if h.auto_remove and u.restart_policy.name != "no":
            raise Conflict("Restart policy cannot be updated because AutoRemove is enabled for "
                           "the container")
        changes["restart_policy"] = u.restart_policy
    if u.nano_cpus:
        if h.cpu_quota:
            raise Conflict("Conflicting options: Nano CPUs cannot be updated as CPU Quota has "
                           "already been set")
        changes["nano_cpus"] = u.nano_cpus
    if u.cpu_period:
        if h.nano_cpus:
            raise Conflict("Conflicting options: CPU Period cannot be updated as NanoCPUs has "
                           "already been set")
        changes["cpu_period"] = u.cpu_period
    if u.cpu_quota:
        if h.nano_cpus:
            raise Conflict("Conflicting options: CPU Quota cannot be updated as NanoCPUs has "
                           "already been set")
        changes["cpu_quota"] = u.cpu_quota
    if u.memory:
        # dockerd compares with the swap limit it stored (twice the memory when none was
        # given), even when that is unlimited (-1) or unset (0)
        if u.memory > stored_memory_swap(h) and not u.memory_swap:
            raise Conflict("Memory limit should be smaller than already set memoryswap limit, "
                           "update the memoryswap at the same time")
        changes["memory"] = u.memory
    if u.pids_limit is not None:
        changes["pids_limit"] = max(u.pids_limit, 0)
    for name in ("blkio_weight", "cpu_shares", "cpuset_cpus", "cpuset_mems", "memory_swap",
                 "memory_reservation"):
        if getattr(u, name):
            changes[name] = getattr(u, name)
    return replace(h, **changes)


def stored_memory_swap(h: HostConfig) -> int:
    """MemorySwap as dockerd stores it: as given, or twice the memory when only that was."""
    if h.memory_swap:
        return h.memory_swap
    return h.memory * 2 if h.memory > 0 else 0


def live_resources(host: HostConfig, update: ResourceUpdate) -> CgroupResources:
    """Every limit of the updated HostConfig, as the cgroup files of a running container."""
    res = resources_for(host)
    pids = res.pids_limit
    if update.pids_limit is not None and not pids:
        pids = -1  # back to unlimited
    return CgroupResources(
        memory_limit=res.memory, memory_reservation=res.memory_reservation,
        memory_swap=res.memory_swap, cpu_shares=res.cpu_shares, cpu_quota=res.cpu_quota,
        cpu_period=res.cpu_period, cpuset_cpus=res.cpuset_cpus, cpuset_mems=res.cpuset_mems,
        pids_limit=pids, blkio_weight=res.blkio_weight)


def resources_for(h: HostConfig) -> runtime_spec.Resources:
    """The OCI ``linux.resources`` limits of a HostConfig (Docker's defaults filled in)."""
    quota, period = h.cpu_quota or None, h.cpu_period or None
    if h.nano_cpus:
        period = 100_000
        quota = h.nano_cpus * period // 1_000_000_000
    swap: int | None = h.memory_swap or None
    if h.memory and not h.memory_swap:
        swap = h.memory * 2  # Docker's default: as much swap as memory
    return runtime_spec.Resources(
        memory=h.memory or None, memory_swap=swap if h.memory else None,
        memory_reservation=h.memory_reservation or None, cpu_shares=h.cpu_shares or None,
        cpu_quota=quota, cpu_period=period, cpuset_cpus=h.cpuset_cpus or None,
        cpuset_mems=h.cpuset_mems or None,
        pids_limit=h.pids_limit if h.pids_limit and h.pids_limit > 0 else None,
        blkio_weight=h.blkio_weight or None)


def apply_live(cgroups_path: str, host: HostConfig, update: ResourceUpdate) -> None:
    """Write the updated limits into a running container's cgroup (``runc update`` does the
    same writes); a failure leaves the record as it was."""
    from berth.runtime.cgroups import open_cgroup

    open_cgroup(cgroups_path).set_resources(live_resources(host, update))
