"""cgroup v2: one directory in the unified hierarchy, controllers enabled from the parents."""

from __future__ import annotations

import os
import signal
import time

from berth.errors import RuntimeFailure
from berth.runtime.cgroups.base import (
    CGROUP_ROOT,
    ensure_exists,
    kill_until_empty,
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
from berth.runtime.cgroups.resources import (
    CgroupResources,
    needed_v2_controllers,
    v2_resource_files,
)

_FREEZE_TIMEOUT = 5.0


class CgroupV2Manager:
    """A group at ``mountpoint + path`` of a cgroup2 hierarchy."""

    def __init__(self, path: str, mountpoint: str = CGROUP_ROOT) -> None:
        self.path = path
        self.mountpoint = mountpoint
        self.directory = mountpoint.rstrip("/") + path

    @classmethod
    def for_path(cls, path: str, mountpoint: str = CGROUP_ROOT) -> CgroupV2Manager:
        """Absolute ``path`` is taken from the hierarchy root, relative from our own group."""
        return cls(resolve_path(path, own_cgroups().get("", "/")), mountpoint)

    @classmethod
    def at(cls, path: str, directory: str) -> CgroupV2Manager:
        """The manager for a group whose host directory is already known (from saved state)."""
        mountpoint = directory[: len(directory) - len(path)] if directory.endswith(path) else ""
        manager = cls(path, mountpoint or CGROUP_ROOT)
        manager.directory = directory
        return manager

    def paths(self) -> dict[str, str]:
        return {"": self.directory}

    def _file(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def exists(self) -> bool:
        return os.path.isdir(self.directory)

    def create(self, resources: CgroupResources | None = None) -> None:
        resources = resources or CgroupResources()
        self._enable_controllers(needed_v2_controllers(resources))
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as err:
            message = f"failed to create cgroup {self.directory}: {err.strerror}"
            raise RuntimeFailure(message) from err
        self.set_resources(resources)

    def _enable_controllers(self, wanted: set[str]) -> None:
        """Turn on ``wanted`` in subtree_control of every ancestor, top down, as v2 requires."""
        if not wanted:
            return
        parts = [p for p in self.path.split("/") if p][:-1]
        current = self.mountpoint.rstrip("/")
        for part in [None, *parts]:
            if part is not None:
                current = os.path.join(current, part)
                os.makedirs(current, exist_ok=True)
            available = set(read_file(os.path.join(current, "cgroup.controllers")).split())
            missing = wanted - available
            if missing:
                raise RuntimeFailure(
                    f"cgroup controllers not available in {current}: {' '.join(sorted(missing))}"
                )
            enabled = set(read_file(os.path.join(current, "cgroup.subtree_control")).split())
            todo = wanted - enabled
            if todo:
                line = " ".join("+" + c for c in sorted(todo))
                write_file(os.path.join(current, "cgroup.subtree_control"), line)

    def add_pid(self, pid: int) -> None:
        write_file(self._file("cgroup.procs"), str(pid))

    def set_resources(self, resources: CgroupResources) -> None:
        files = v2_resource_files(resources)
        if files:
            self._enable_controllers(needed_v2_controllers(resources))
        for name, value in files.items():
            write_file(self._file(name), value)
        # Device rules need an eBPF program on v2; not applied yet (see the runtime's gaps).

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if not os.path.exists(self._file("cgroup.freeze")):
            raise RuntimeFailure(f"cgroup {self.path} has no cgroup.freeze (kernel < 5.2?)")
        write_file(self._file("cgroup.freeze"), "1" if frozen else "0")
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        # cgroup.events "frozen" turns 1 once every task has actually stopped.
        while self.is_frozen() != frozen:
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"timed out waiting for cgroup {self.path} to freeze")
            time.sleep(0.001)

    def is_frozen(self) -> bool:
        return read_keyed(self._file("cgroup.events")).get("frozen", 0) == 1

    def pids(self) -> list[int]:
        return read_procs(self.directory)

    def memory_usage(self) -> int:
        ensure_exists(self.directory)
        try:
            return read_int(self._file("memory.current"))
        except FileNotFoundError:
            return 0

    def memory_limit(self) -> int | None:
        ensure_exists(self.directory)
        try:
            value = read_int(self._file("memory.max"))
        except FileNotFoundError:
            return None
        return None if value < 0 else value

    def cpu_usage_ns(self) -> int:
        ensure_exists(self.directory)
        return read_keyed(self._file("cpu.stat")).get("usage_usec", 0) * 1000

    def oom_kill_count(self) -> int:
        return read_keyed(self._file("memory.events")).get("oom_kill", 0)

    def kill_all(self, sig: int) -> None:
        if sig == signal.SIGKILL and os.path.exists(self._file("cgroup.kill")):
            write_file(self._file("cgroup.kill"), "1")
            return
        signal_members(self, sig)

    def destroy(self) -> None:
        if not self.exists():
            return
        kill_until_empty(self)
        remove_group(self.directory)
