"""The CgroupManager role, cgroup mode detection and the file helpers both versions share."""

from __future__ import annotations

import enum
import errno
import os
import signal
import time
from collections.abc import Iterator
from typing import NamedTuple, Protocol

from berth.errors import InvalidArgument, NotFound, RuntimeFailure
from berth.runtime.cgroups.resources import CgroupResources

CGROUP_ROOT = "/sys/fs/cgroup"


class CgroupMode(enum.Enum):
    LEGACY = "legacy"  # v1 hierarchies only
    HYBRID = "hybrid"  # v1 hierarchies + a cgroup2 mount at /sys/fs/cgroup/unified
    UNIFIED = "unified"  # pure cgroup v2


class CgroupManager(Protocol):
    """One container's cgroup, whatever the hierarchy looks like underneath."""

    path: str

    def create(self, resources: CgroupResources | None = None) -> None: ...
    def add_pid(self, pid: int) -> None: ...
    def set_resources(self, resources: CgroupResources) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def is_frozen(self) -> bool: ...
    def pids(self) -> list[int]: ...
    def memory_usage(self) -> int: ...
    def memory_limit(self) -> int | None: ...
    def cpu_usage_ns(self) -> int: ...
    def oom_kill_count(self) -> int: ...
    def kill_all(self, sig: int) -> None: ...
    def exists(self) -> bool: ...
    def destroy(self) -> None: ...
    def paths(self) -> dict[str, str]: ...


class Hierarchy(NamedTuple):
    """A mounted cgroup hierarchy: its controllers (v1) and where it is mounted."""

    controllers: tuple[str, ...]
    mountpoint: str
    version: int


def detect_cgroup_mode(root: str = CGROUP_ROOT) -> CgroupMode:
    """Pure v2 has cgroup.controllers at the root; hybrid has a cgroup2 mount at unified/."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return CgroupMode.UNIFIED
    if os.path.exists(os.path.join(root, "unified", "cgroup.controllers")):
        return CgroupMode.HYBRID
    return CgroupMode.LEGACY


def mounted_hierarchies(mountinfo: str = "/proc/self/mountinfo") -> list[Hierarchy]:
    """Every cgroup and cgroup2 mount of this mount namespace, from mountinfo."""
    found: list[Hierarchy] = []
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = post.split()
            if len(fields) < 3 or fields[0] not in ("cgroup", "cgroup2"):
                continue
            mountpoint = pre.split()[4].replace("\\040", " ")
            if fields[0] == "cgroup2":
                found.append(Hierarchy((), mountpoint, 2))
                continue
            opts = [o for o in fields[2].split(",") if o not in ("rw", "ro")]
            ctrls = tuple(o for o in opts if "=" not in o or o.startswith("name="))
            found.append(Hierarchy(ctrls, mountpoint, 1))
    return found


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """This process's cgroup per v1 controller (key "" for v2), from /proc/<pid>/cgroup."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for ctrl in ctrls.split(",") if ctrls else [""]:
                out[ctrl] = path
    return out


def resolve_path(path: str, own: str) -> str:
    """An absolute cgroupsPath stays put; a relative one goes below the caller's own cgroup.

    Putting containers below our own cgroup keeps them inside the accounting of whoever runs us.
    """
    if not path:
        raise InvalidArgument("empty cgroup path")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"invalid cgroup path {path!r}")
    base = "/" if path.startswith("/") else own
    return "/" + "/".join([p for p in base.split("/") if p] + parts)


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_file(path: str, value: str) -> None:
    """One write(2) of the whole value, as the kernel expects for cgroup files."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise RuntimeFailure(f"failed to write {value!r} to {path}: {err.strerror}") from err
    finally:
        os.close(fd)


def read_int(path: str) -> int:
    text = read_file(path).strip()
    return -1 if text == "max" else int(text)


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file (``key value`` per line) such as memory.events or cpu.stat."""
    out: dict[str, int] = {}
    try:
        text = read_file(path)
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def read_procs(directory: str) -> list[int]:
    try:
        text = read_file(os.path.join(directory, "cgroup.procs"))
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split()]


def walk_bottom_up(directory: str) -> Iterator[str]:
    """Sub-groups first, so each rmdir meets an empty directory."""
    for dirpath, _, _ in sorted(os.walk(directory), key=lambda w: -w[0].count("/")):
        yield dirpath


def remove_group(directory: str, timeout: float = 2.0) -> None:
    """rmdir a cgroup and its sub-groups, retrying briefly while exiting tasks drain (EBUSY)."""
    if not os.path.isdir(directory):
        return
    deadline = time.monotonic() + timeout
    for sub in walk_bottom_up(directory):
        while True:
            try:
                os.rmdir(sub)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise RuntimeFailure(f"failed to remove cgroup {sub}: {err.strerror}") from err
                time.sleep(0.002)


def open_cgroup(path: str, mode: CgroupMode | None = None) -> CgroupManager:
    """The manager for cgroupsPath ``path`` on this host (v2 if pure unified, v1 otherwise)."""
    mode = mode or detect_cgroup_mode()
    if mode is CgroupMode.UNIFIED:
        from berth.runtime.cgroups.v2 import CgroupV2Manager

        return CgroupV2Manager.for_path(path)
    from berth.runtime.cgroups.v1 import CgroupV1Manager

    return CgroupV1Manager.for_path(path)


def ensure_exists(directory: str) -> None:
    if not os.path.isdir(directory):
        raise NotFound(f"cgroup {directory} does not exist")


def signal_members(cgroup: CgroupManager, sig: int, freeze: bool = True) -> None:
    """Send ``sig`` to every process of ``cgroup``, frozen meanwhile when it can be so that
    forks cannot escape the signal (runc kill --all does the same)."""
    frozen = False
    if freeze:
        try:
            cgroup.freeze()
            frozen = True
        except RuntimeFailure:
            pass
    try:
        for pid in cgroup.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    finally:
        if frozen:
            cgroup.thaw()


def kill_until_empty(cgroup: CgroupManager, timeout: float = 2.0) -> None:
    """SIGKILL the members of ``cgroup`` until none is left (a cgroup with members cannot go)."""
    deadline = time.monotonic() + timeout
    while cgroup.pids():
        cgroup.kill_all(signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"cgroup {cgroup.path} still has processes after SIGKILL")
        time.sleep(0.002)
