"""What this host's cgroups offer, as dockerd's sysinfo reads it: the CPUs and memory nodes a
container may be given (cpuset) and whether a block I/O weight can be set."""

from __future__ import annotations

import os

from berth.runtime.cgroups.base import (
    CGROUP_ROOT,
    CgroupMode,
    detect_cgroup_mode,
    mounted_hierarchies,
    read_file,
)


def _hierarchy(controller: str) -> str | None:
    for h in mounted_hierarchies():
        if h.version == 1 and controller in h.controllers:
            return h.mountpoint
    return None


def _read(path: str, default: str) -> str:
    try:
        return read_file(path).strip() or default
    except OSError:
        return default


def available_cpuset() -> tuple[str, str]:
    """(cpus, mems) a container may use, e.g. ("0-1", "0")."""
    cpus = _read("/sys/devices/system/cpu/online", "0")
    mems = _read("/sys/devices/system/node/online", "0")
    if detect_cgroup_mode() is CgroupMode.UNIFIED:
        return (_read(os.path.join(CGROUP_ROOT, "cpuset.cpus.effective"), cpus),
                _read(os.path.join(CGROUP_ROOT, "cpuset.mems.effective"), mems))
    root = _hierarchy("cpuset")
    if root is None:
        return cpus, mems
    return (_read(os.path.join(root, "cpuset.cpus"), cpus),
            _read(os.path.join(root, "cpuset.mems"), mems))


def blkio_weight_supported() -> bool:
    """v1: the blkio hierarchy has a weight file (CFQ's or BFQ's); v2: the io controller."""
    if detect_cgroup_mode() is CgroupMode.UNIFIED:
        return "io" in _read(os.path.join(CGROUP_ROOT, "cgroup.controllers"), "").split()
    root = _hierarchy("blkio")
    return root is not None and any(
        os.path.exists(os.path.join(root, name)) for name in ("blkio.weight", "blkio.bfq.weight"))
