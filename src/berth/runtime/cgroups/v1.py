"""cgroup v1: one directory per mounted hierarchy (cpu, memory, pids, freezer, ...)."""

from __future__ import annotations

import errno
import os
import time

from berth.errors import RuntimeFailure
from berth.runtime.cgroups.base import (
    Hierarchy,
    ensure_exists,
    kill_until_empty,
    mounted_hierarchies,
    own_cgroups,
    read_file,
    read_int,
    read_keyed,
    read_procs,
    remove_group,
    resolve_path,
    signal_members,
    write_file,
)
from berth.runtime.cgroups.resources import CgroupResources, v1_resource_files

_FREEZE_TIMEOUT = 5.0


class CgroupV1Manager:
    """A container's group in every v1 hierarchy: ``dirs`` maps hierarchy name → directory."""

    def __init__(self, path: str, dirs: dict[str, str]) -> None:
        self.path = path
        self._dirs = dirs

    @classmethod
    def for_path(cls, path: str, hierarchies: list[Hierarchy] | None = None) -> CgroupV1Manager:
        """Absolute ``path`` is taken from each hierarchy's root, relative from our own group."""
        own = own_cgroups()
        dirs: dict[str, str] = {}
        for h in hierarchies if hierarchies is not None else mounted_hierarchies():
            # Named hierarchies (name=systemd) are joined too, as runc does, so the container
            # sees the same /sys/fs/cgroup tree under every runtime.
            if h.version != 1 or not h.controllers:
                continue
            group = resolve_path(path, own.get(h.controllers[0], "/"))
            dirs[os.path.basename(h.mountpoint)] = h.mountpoint + group
        return cls(path, dirs)

    def paths(self) -> dict[str, str]:
        return dict(self._dirs)

    def _dir(self, controller: str) -> str | None:
        return self._dirs.get(controller)

    def create(self, resources: CgroupResources | None = None) -> None:
        resources = resources or CgroupResources()
        for name, directory in self._dirs.items():
            _mkdirs(directory, copy_cpuset=name == "cpuset")
        self.set_resources(resources)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._dirs.values())

    def add_pid(self, pid: int) -> None:
        # cgroup.procs moves the whole thread group; the first write may wait for an RCU grace.
        for directory in self._dirs.values():
            write_file(os.path.join(directory, "cgroup.procs"), str(pid))

    def set_resources(self, resources: CgroupResources) -> None:
        writes = v1_resource_files(resources)
        memory = self._dir("memory")
        memsw = os.path.join(memory, "memory.memsw.limit_in_bytes") if memory else ""
        if resources.memory_limit and resources.memory_swap and os.path.exists(memsw):
            # memsw must stay >= limit at every instant: raise memsw first when the new limit
            # is above the current memsw (an unlimited one reads as a huge number)
            if resources.memory_limit > read_int(memsw) or resources.memory_swap == -1:
                writes.sort(key=lambda w: w[1] != "memory.memsw.limit_in_bytes")
        for controller, name, value in writes:
            directory = self._dir(controller)
            if directory is None:
                raise RuntimeFailure(f"cgroup controller {controller} is not mounted")
            target = os.path.join(directory, name)
            if name == "memory.memsw.limit_in_bytes" and not os.path.exists(target):
                continue  # no swap accounting on this kernel: nothing to limit
            if name == "blkio.weight" and not os.path.exists(target):
                target = os.path.join(directory, "blkio.bfq.weight")  # BFQ's, as runc does
            write_file(target, value)
        devices = self._dir("devices")
        if resources.devices and devices:
            for rule in resources.devices:
                target = "devices.allow" if rule.allow else "devices.deny"
                write_file(os.path.join(devices, target), rule.to_v1())

    def _freezer(self) -> str:
        directory = self._dir("freezer")
        if directory is None:
            raise RuntimeFailure("cgroup freezer controller is not mounted")
        return os.path.join(directory, "freezer.state")

    def freeze(self) -> None:
        state = self._freezer()
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        while True:
            write_file(state, "FROZEN")
            if read_file(state).strip() == "FROZEN":
                return
            if time.monotonic() > deadline:
                self.thaw()
                raise RuntimeFailure("unable to freeze cgroup: still FREEZING")
            time.sleep(0.001)

    def thaw(self) -> None:
        write_file(self._freezer(), "THAWED")

    def is_frozen(self) -> bool:
        directory = self._dir("freezer")
        if directory is None or not os.path.isdir(directory):
            return False
        return read_file(os.path.join(directory, "freezer.state")).strip() == "FROZEN"

    def pids(self) -> list[int]:
        for name in ("pids", "freezer", "memory", "cpu"):
            directory = self._dir(name)
            if directory and os.path.isdir(directory):
                return read_procs(directory)
        return []

    def memory_usage(self) -> int:
        directory = self._dir("memory")
        if directory is None:
            return 0
        ensure_exists(directory)
        return read_int(os.path.join(directory, "memory.usage_in_bytes"))

    def memory_limit(self) -> int | None:
        directory = self._dir("memory")
        if directory is None:
            return None
        ensure_exists(directory)
        value = read_int(os.path.join(directory, "memory.limit_in_bytes"))
        # v1 reports "unlimited" as PAGE_COUNTER_MAX * page size, not -1.
        return None if value < 0 or value >= 1 << 62 else value

    def cpu_usage_ns(self) -> int:
        directory = self._dir("cpuacct")
        if directory is None:
            return 0
        ensure_exists(directory)
        return read_int(os.path.join(directory, "cpuacct.usage"))

    def oom_kill_count(self) -> int:
        directory = self._dir("memory")
        if directory is None:
            return 0
        return read_keyed(os.path.join(directory, "memory.oom_control")).get("oom_kill", 0)

    def kill_all(self, sig: int) -> None:
        freezer = bool(self._dir("freezer")) and os.path.isdir(os.path.dirname(self._freezer()))
        signal_members(self, sig, freeze=freezer)

    def destroy(self) -> None:
        if not self.exists():
            return
        kill_until_empty(self)
        for directory in self._dirs.values():
            remove_group(directory)


def _mkdirs(directory: str, *, copy_cpuset: bool) -> None:
    """mkdir -p; a new cpuset group starts empty and must inherit cpus/mems to accept tasks."""
    missing: list[str] = []
    probe = directory
    while not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    for new in reversed(missing):
        try:
            os.mkdir(new)
        except FileExistsError:
            pass
        except OSError as err:
            raise RuntimeFailure(f"failed to create cgroup {new}: {err.strerror}") from err
        if copy_cpuset:
            parent = os.path.dirname(new)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not read_file(os.path.join(new, name)).strip():
                    value = read_file(os.path.join(parent, name)).strip()
                    try:
                        write_file(os.path.join(new, name), value)
                    except RuntimeFailure as err:
                        cause = err.__cause__
                        if not isinstance(cause, OSError) or cause.errno != errno.EBUSY:
                            raise
