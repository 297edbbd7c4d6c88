"""A container's record under the state root, and how its live status is derived.

Layout: ``<root>/<id>/state.json`` (written atomically) and ``<root>/<id>/exec.fifo`` (present
from create until start). The status is never stored: it is read from the kernel each time, as
runc does: no process → stopped; fifo still there → created; frozen cgroup → paused; else running.
"""

from __future__ import annotations

import enum
import json
import os
import time
from typing import Any, NamedTuple

from berth.errors import ContainerNotFound, InvalidArgument
from berth.runtime.cgroups.base import CgroupManager
from berth.runtime.cgroups.v1 import CgroupV1Manager
from berth.runtime.cgroups.v2 import CgroupV2Manager
from berth.runtime.init.config import validate_id

DEFAULT_ROOT = "/run/berth-runtime"
EXEC_FIFO = "exec.fifo"
_PF_EXITING = 0x4  # task flag in /proc/<pid>/stat field 9


class ContainerStatus(enum.Enum):
    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class ContainerState(NamedTuple):
    """What create leaves behind for the later commands."""

    id: str
    pid: int
    bundle: str
    rootfs: str
    created: str
    oci_version: str
    cgroup_path: str
    cgroup_dirs: dict[str, str]
    start_time: int
    annotations: dict[str, str] = {}  # noqa: RUF012 - never mutated

    def cgroup(self) -> CgroupManager:
        if list(self.cgroup_dirs) == [""]:
            return CgroupV2Manager.at(self.cgroup_path, self.cgroup_dirs[""])
        return CgroupV1Manager(self.cgroup_path, dict(self.cgroup_dirs))

    def to_oci(self, status: ContainerStatus) -> dict[str, Any]:
        """The OCI state document (``runc state``)."""
        return {
            "ociVersion": self.oci_version,
            "id": self.id,
            "pid": 0 if status is ContainerStatus.STOPPED else self.pid,
            "status": status.value,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        }


def container_dir(root: str, container_id: str) -> str:
    return os.path.join(root, validate_id(container_id))


def save_state(root: str, state: ContainerState) -> None:
    """temp + fsync + rename: a reader sees the old record or the new one, never half."""
    directory = container_dir(root, state.id)
    tmp = os.path.join(directory, ".state.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(state._asdict()).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(directory, "state.json"))


def load_state(root: str, container_id: str) -> ContainerState:
    try:
        path = os.path.join(container_dir(root, container_id), "state.json")
    except InvalidArgument as err:
        raise ContainerNotFound("container does not exist") from err
    try:
        with open(path) as f:
            raw = json.load(f)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ContainerNotFound("container does not exist") from err
    return ContainerState(**raw)


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, "state.json")))


def remove_state(root: str, container_id: str) -> None:
    """The directory holds only flat files we made (state, fifo, temp): no rmtree needed."""
    directory = container_dir(root, container_id)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    os.rmdir(directory)


def utc_now() -> str:
    """RFC 3339 with nanoseconds, like runc's "created" (no datetime import at start-up)."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if the pid is gone, a zombie or exiting.

    Comparing it with the recorded value tells a recycled pid from our container. An exiting
    PID 1 can linger until its reaper collects the namespace's other zombies: it counts as dead.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X") or int(fields[6]) & _PF_EXITING:
        return None
    return int(fields[19])


def status_of(root: str, state: ContainerState) -> ContainerStatus:
    if process_start_time(state.pid) != state.start_time:
        return ContainerStatus.STOPPED
    if os.path.exists(os.path.join(container_dir(root, state.id), EXEC_FIFO)):
        return ContainerStatus.CREATED
    try:
        if state.cgroup().is_frozen():
            return ContainerStatus.PAUSED
    except OSError:
        pass
    return ContainerStatus.RUNNING
