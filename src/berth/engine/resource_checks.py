"""The resource limits dockerd checks at create and at update, in its words.

The checks are pure; what the host offers (CPU count, cpuset, block I/O weight) is passed in or
read by ``host_support``, so create and update share one implementation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from berth.engine.model import HostConfig
from berth.errors import InvalidArgument

MIN_MEMORY = 6 * 1024 * 1024
BLKIO_WEIGHT_DISCARDED = ("Your kernel does not support Block I/O weight or the cgroup is not "
                          "mounted. Weight discarded.")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


@dataclass(frozen=True)
class HostSupport:
    """What the host offers containers, as dockerd's sysinfo reports it."""

    cpus: str  # cpuset, e.g. "0-3"
    mems: str
    blkio_weight: bool


def host_support() -> HostSupport:
    from berth.runtime.cgroups.support import available_cpuset, blkio_weight_supported

    cpus, mems = available_cpuset()
    return HostSupport(cpus, mems, blkio_weight_supported())


def check_memory(memory: int, memory_swap: int = 0) -> None:
    if memory and memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and memory_swap > 0 and memory_swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")


def check_nano_cpus(nano_cpus: int) -> None:
    ncpu = os.cpu_count() or 1
    if nano_cpus < 0 or nano_cpus > ncpu * 10**9:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                              f"{ncpu} CPUs available")


def check_restart_policy(name: str, retries: int) -> None:
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy '{name}'")
    if retries < 0:
        raise InvalidArgument("maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")


def parse_id_list(text: str) -> set[int]:
    """A cpuset list (``0-3,5``) → its numbers; ``ValueError("invalid format: ...")``."""
    found: set[int] = set()
    if not text:
        return found
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or (dash and int(high) < int(low)):
            raise ValueError(f"invalid format: {text}")
        found.update(range(int(low), int(high if dash else low) + 1))
    return found


def check_cpuset(cpus: str, mems: str, support: HostSupport) -> None:
    for value, offered, what, nodes in ((cpus, support.cpus, "cpus", "CPUs"),
                                        (mems, support.mems, "mems", "memory nodes")):
        if not value:
            continue
        try:
            wanted = parse_id_list(value)
        except ValueError as err:
            raise InvalidArgument(f"Invalid value {value} for cpuset {what}: {err}") from None
        if not wanted <= parse_id_list(offered):
            raise InvalidArgument(f"Requested {nodes} are not available - requested {value}, "
                                  f"available: {offered}")


def check_blkio_weight(weight: int, support: HostSupport) -> tuple[int, list[str]]:
    """The weight to keep (0 when the host cannot apply one) and dockerd's warnings."""
    if weight > 0 and not support.blkio_weight:
        return 0, [BLKIO_WEIGHT_DISCARDED]
    if weight > 0 and not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    return weight, []


def check_host_resources(host: HostConfig) -> tuple[HostConfig, list[str]]:
    """At create: the limits that depend on the host (read only when some are asked for)."""
    if not (host.cpuset_cpus or host.cpuset_mems or host.blkio_weight):
        return host, []
    support = host_support()
    check_cpuset(host.cpuset_cpus, host.cpuset_mems, support)
    weight, warnings = check_blkio_weight(host.blkio_weight, support)
    return replace(host, blkio_weight=weight), warnings
