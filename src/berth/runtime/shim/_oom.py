"""Read a container cgroup's OOM-kill counter (before the runtime deletes the cgroup)."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"


def _own_cgroup(controller: str) -> str:
    """This process's cgroup in one v1 controller ("" for v2's unified entry)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if controller in names.split(","):
                return path
    return "/"


def _counter(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except OSError:
        return None
    return None


def oom_kill_count(cgroups_path: str) -> int | None:
    """``oom_kill`` of the container's memory cgroup, v2 or v1; None when unreadable.

    A relative cgroupsPath is under the runtime's (the shim's) own cgroup, as runc does.
    """
    if not cgroups_path or ":" in cgroups_path:  # systemd slice:prefix:name is not handled
        return None
    unified = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
    if unified:
        base = (
            cgroups_path
            if cgroups_path.startswith("/")
            else os.path.join(_own_cgroup(""), cgroups_path)
        )
        return _counter(os.path.join(CGROUP_ROOT, base.lstrip("/"), "memory.events"), "oom_kill")
    base = (
        cgroups_path
        if cgroups_path.startswith("/")
        else os.path.join(_own_cgroup("memory"), cgroups_path)
    )
    return _counter(
        os.path.join(CGROUP_ROOT, "memory", base.lstrip("/"), "memory.oom_control"), "oom_kill"
    )
