"""Resource limits as data, and their translation to cgroup files (pure, no I/O).

The translations follow what runc and crun write for the same OCI ``linux.resources`` so that a
container limited by berth looks the same from the inside as one limited by them.
"""

from __future__ import annotations

from typing import NamedTuple

from berth.errors import InvalidArgument

# cgroup v2 cpu.max's default period, and runc's default when only a quota is given.
DEFAULT_CPU_PERIOD = 100_000


class DeviceRule(NamedTuple):
    """One OCI ``linux.resources.devices`` entry (``type`` is a, c or b; None = any number)."""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def to_v1(self) -> str:
        """The line written to devices.allow / devices.deny: ``c 1:3 rwm``."""
        major = "*" if self.major is None or self.major < 0 else str(self.major)
        minor = "*" if self.minor is None or self.minor < 0 else str(self.minor)
        if self.type == "a":
            return "a"
        return f"{self.type} {major}:{minor} {self.access}"


class CgroupResources(NamedTuple):
    """The subset of OCI ``linux.resources`` berth applies; None means leave as is.

    ``memory_swap`` is OCI's memory+swap total (-1 = unlimited), as in ``docker run --memory-swap``.
    """

    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    devices: tuple[DeviceRule, ...] = ()
    blkio_weight: int | None = None  # 10..1000, Docker's --blkio-weight

    def is_empty(self) -> bool:
        return self == CgroupResources()


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) → cpu.weight (1..10000), the linear map runc and crun 1.8 use."""
    if shares <= 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def swap_to_v2(memory_limit: int | None, memory_swap: int | None) -> int | None:
    """OCI memory+swap total → cgroup v2 memory.swap.max (swap alone); -1 means "max"."""
    if memory_swap is None or memory_swap == 0:
        return None
    if memory_swap == -1:
        return -1
    if memory_limit is None or memory_limit == 0 or memory_limit == -1:
        raise InvalidArgument("unable to set swap limit without memory limit")
    if memory_swap < memory_limit:
        raise InvalidArgument("memory+swap limit should be >= memory limit")
    return memory_swap - memory_limit


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) → io.weight (1..10000), the linear map runc and crun use."""
    return 1 + (weight - 10) * 9999 // 990


def _max(value: int) -> str:
    return "max" if value < 0 else str(value)


def v2_resource_files(res: CgroupResources) -> dict[str, str]:
    """The files (name → content) a cgroup v2 group needs for ``res``, in write order."""
    files: dict[str, str] = {}
    if res.cpuset_cpus:
        files["cpuset.cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        files["cpuset.mems"] = res.cpuset_mems
    if res.memory_reservation is not None and res.memory_reservation != 0:
        files["memory.low"] = _max(res.memory_reservation)
    swap = swap_to_v2(res.memory_limit, res.memory_swap)
    if swap is not None:
        files["memory.swap.max"] = _max(swap)
    if res.memory_limit is not None and res.memory_limit != 0:
        files["memory.max"] = _max(res.memory_limit)
    if res.cpu_shares:
        files["cpu.weight"] = str(shares_to_weight(res.cpu_shares))
    if res.cpu_quota or res.cpu_period:
        quota = "max" if not res.cpu_quota or res.cpu_quota < 0 else str(res.cpu_quota)
        period = res.cpu_period or DEFAULT_CPU_PERIOD
        files["cpu.max"] = f"{quota} {period}"
    if res.pids_limit is not None and res.pids_limit != 0:
        files["pids.max"] = _max(res.pids_limit)
    if res.blkio_weight:
        files["io.weight"] = f"default {blkio_to_io_weight(res.blkio_weight)}"
    return files


def v1_resource_files(res: CgroupResources) -> list[tuple[str, str, str]]:
    """(controller, file, content) triples for cgroup v1, in write order (devices excluded)."""
    out: list[tuple[str, str, str]] = []
    if res.cpuset_cpus:
        out.append(("cpuset", "cpuset.cpus", res.cpuset_cpus))
    if res.cpuset_mems:
        out.append(("cpuset", "cpuset.mems", res.cpuset_mems))
    if res.memory_reservation:
        out.append(("memory", "memory.soft_limit_in_bytes", str(res.memory_reservation)))
    if res.memory_limit:
        out.append(("memory", "memory.limit_in_bytes", str(res.memory_limit)))
    if res.memory_swap:
        if res.memory_limit and 0 < res.memory_swap < res.memory_limit:
            raise InvalidArgument("memory+swap limit should be >= memory limit")
        out.append(("memory", "memory.memsw.limit_in_bytes", str(res.memory_swap)))
    if res.cpu_shares:
        out.append(("cpu", "cpu.shares", str(res.cpu_shares)))
    if res.cpu_period:
        out.append(("cpu", "cpu.cfs_period_us", str(res.cpu_period)))
    if res.cpu_quota:
        out.append(("cpu", "cpu.cfs_quota_us", str(res.cpu_quota)))
    if res.pids_limit:
        out.append(("pids", "pids.max", _max(res.pids_limit)))
    if res.blkio_weight:
        out.append(("blkio", "blkio.weight", str(res.blkio_weight)))
    return out


def needed_v2_controllers(res: CgroupResources) -> set[str]:
    """Controllers that must be enabled in the parent's cgroup.subtree_control for ``res``."""
    return {name.split(".", 1)[0] for name in v2_resource_files(res)}
