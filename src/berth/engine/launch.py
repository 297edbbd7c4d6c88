"""Turning a container record into a running process, and cleaning up after it.

The order of ``start_container`` is the order Docker follows: mount the rootfs, resolve the
user inside it, write the OCI runtime spec, then hand the bundle to a shim that runs the OCI
runtime's ``create``. The runtime's ``start`` comes later, once attach streams are connected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from berth.engine import hardening
from berth.engine.container_files import process_env
from berth.engine.container_update import resources_for
from berth.engine.log_config import LogSettings
from berth.engine.model import ContainerRecord, ContainerState
from berth.engine.shim import ExitState, Shim, read_exit
from berth.engine.trash import Trash
from berth.errors import BerthError, InvalidArgument, RuntimeFailure
from berth.oci.idmap import IdentityMapping
from berth.runtime import spec as runtime_spec
from berth.runtime.users import resolve_user
from berth.snapshot.overlay import prepare_rootfs, release_rootfs

log = logging.getLogger(__name__)

# (record, mounted rootfs) -> the container's own mounts (berth.engine.mounts.MountManager)
MountsHook = Callable[[ContainerRecord, Path], list[runtime_spec.MountSpec]]

__all__ = ["ExitState", "Shim", "read_exit", "start_container", "teardown_after_exit",
           "remove_container_files", "reconnect", "inspect_extras", "top",
           "merge_image_config", "write_network_files"]

from berth.engine.container_files import merge_image_config, write_network_files  # noqa: E402


def cgroups_path(container_id: str) -> str:
    return f"/berth/{container_id}"


def build_spec_input(record: ContainerRecord, cdir: Path, rootfs: Path,
                     netns: str = "", extra_mounts: Sequence[runtime_spec.MountSpec] = (),
                     userns: str = "host", ids: IdentityMapping | None = None
                     ) -> runtime_spec.SpecInput:
    """Everything the runtime needs, from the record and the mounted rootfs.

    ``userns``/``ids``: the user namespace ("host", "private" or a path to join) and its
    mapping, for a container of a ``--userns-remap`` daemon."""
    c, h = record.config, record.host_config
    user = resolve_user(str(rootfs), c.user, h.group_add)
    mounts = [
        runtime_spec.bind_mount(str(cdir / name), dest, readonly=False)
        for dest, name in (("/etc/resolv.conf", "resolv.conf"), ("/etc/hostname", "hostname"),
                           ("/etc/hosts", "hosts"))
    ]
    for dest, opts in h.tmpfs.items():
        mounts.append(runtime_spec.tmpfs_mount(dest, tuple(o for o in opts.split(",") if o)))
    mounts.extend(extra_mounts)  # volumes, binds, --mount (berth.engine.mounts)
    mounts += hardening.init_mounts(record)  # --init
    # netns: "host" or the namespace file the network service prepared; "" = a fresh one
    network_mode = netns or ("host" if h.network_mode == "host" else "new")
    env = process_env(record)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home or '/'}")
    system_paths = hardening.system_paths(h.security_opt)
    return runtime_spec.SpecInput(
        root_path=str(rootfs), args=hardening.init_args(record, tuple(c.argv)), env=tuple(env),
        cwd=c.working_dir or "/", uid=user.uid, gid=user.gid,
        additional_gids=user.additional_gids,
        hostname=c.hostname if h.uts_mode != "host" else "", tty=c.tty,
        open_stdin=c.open_stdin, mounts=tuple(mounts), network_mode=network_mode,
        ipc_mode="host" if h.ipc_mode == "host" else "private",
        pid_mode="host" if h.pid_mode == "host" else "private",
        uts_mode="host" if h.uts_mode == "host" else "private",
        resources=resources_for(h), cgroups_path=cgroups_path(record.id),
        cap_add=h.cap_add, cap_drop=h.cap_drop, privileged=h.privileged,
        readonly_rootfs=h.readonly_rootfs, sysctls=dict(h.sysctls),
        rlimits=tuple(runtime_spec.Rlimit(u.name, u.soft, u.hard) for u in h.ulimits),
        no_new_privileges=hardening.no_new_privileges(h.security_opt),
        seccomp=hardening.seccomp_for(record), devices=hardening.devices_for(record),
        host_capabilities=hardening.host_capabilities(),
        masked_paths=system_paths, readonly_paths=system_paths,
        oom_score_adj=h.oom_score_adj or None, shm_size=h.shm_size,
        userns_mode=userns, id_mapping=ids or IdentityMapping())


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    # Compact (json's C encoder; ``indent`` takes the pure-Python one) and no fsync: the spec
    # is rewritten at every start, and after a host crash nothing runs from the old one.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data))
    tmp.replace(path)


# The files bind-mounted over /etc: container root may rewrite them, as in Docker.
_NETWORK_FILES = ("hostname", "hosts", "resolv.conf")


def _prepare_bundle(record: ContainerRecord, cdir: Path, lowers: list[Path],
                    netns: str = "", mounts_for: MountsHook | None = None,
                    userns: str = "host", ids: IdentityMapping | None = None) -> None:
    owner = (ids or IdentityMapping()).root_pair()
    # --rm: the writable layer dies with the container, so its unmount may skip the syncfs
    rootfs = prepare_rootfs(lowers, cdir, volatile=record.host_config.auto_remove, owner=owner)
    try:
        if owner != (0, 0):
            for name in _NETWORK_FILES:
                os.chown(cdir / name, *owner)
        extra = mounts_for(record, rootfs) if mounts_for is not None else []
        inp = build_spec_input(record, cdir, rootfs, netns, extra, userns, ids)
        _write_json_atomic(cdir / "config.json", runtime_spec.build_spec(inp))
    except BaseException:
        release_rootfs(cdir)
        raise


def shim_dir(exec_root: Path, container_id: str) -> Path:
    # a unix socket path must stay under 108 bytes: a prefix of the ID is unique enough
    return exec_root / "shims" / container_id[:24]


async def start_container(record: ContainerRecord, cdir: Path, exec_root: Path, images: Any,
                          layers: Any, runtime: str, log: LogSettings,
                          forkserver: Any = None, netns: str = "",
                          mounts_for: MountsHook | None = None, userns: str = "host",
                          ids: IdentityMapping | None = None) -> Shim:
    """Mount, write the spec, start a shim that runs ``runtime create``. Nothing is left
    behind when any step fails. ``ids``: the daemon's ``--userns-remap`` mapping (owners of
    the writable layer); ``userns``: the container's user namespace for the spec."""
    chain = await asyncio.to_thread(images.layer_chain, record.image_id)
    lowers = layers.lower_dirs(chain[-1]) if chain else []
    await asyncio.to_thread(_prepare_bundle, record, cdir, lowers, netns, mounts_for,
                            userns, ids)
    try:
        return await Shim.launch(
            container_id=record.id, bundle=cdir, runtime=runtime,
            runtime_root=exec_root / "runtime", state_dir=shim_dir(exec_root, record.id),
            log=log, tty=record.config.tty, stdin=record.config.open_stdin,
            stdin_once=record.config.stdin_once, forkserver=forkserver)
    except BaseException as err:
        await asyncio.to_thread(release_rootfs, cdir)
        if isinstance(err, BerthError) and not isinstance(err, RuntimeFailure):
            raise RuntimeFailure(str(err)) from err
        raise


async def teardown_after_exit(record: ContainerRecord, cdir: Path, exec_root: Path) -> None:
    """After the process is gone (the shim deleted the runtime's state): unmount, forget the
    shim's directory."""
    await asyncio.to_thread(release_rootfs, cdir)
    shutil.rmtree(shim_dir(exec_root, record.id), ignore_errors=True)


def remove_container_files(cdir: Path, exec_root: Path, trash: Trash | None = None) -> None:
    """Unmount and remove; with a ``trash``, the directory is moved there to be deleted later."""
    release_rootfs(cdir, remove=trash is None)
    shutil.rmtree(shim_dir(exec_root, cdir.name), ignore_errors=True)
    if trash is not None:
        trash.discard(cdir)
    else:
        shutil.rmtree(cdir, ignore_errors=True)


async def reconnect(record: ContainerRecord, cdir: Path, exec_root: Path) -> Shim | None:
    return await Shim.reconnect(record.id, shim_dir(exec_root, record.id), cdir)


def inspect_extras(record: ContainerRecord, cdir: Path) -> dict[str, Any]:
    """The parts of inspect that come from the host rather than the record."""
    h = record.host_config
    masked = [] if h.privileged else list(runtime_spec.DEFAULT_MASKED_PATHS)
    readonly = [] if h.privileged else list(runtime_spec.DEFAULT_READONLY_PATHS)
    return {
        "GraphDriver": {"Name": "overlay2", "Data": {
            "MergedDir": str(cdir / "rootfs"), "UpperDir": str(cdir / "upper"),
            "WorkDir": str(cdir / "work")}},
        "MaskedPaths": masked,
        "ReadonlyPaths": readonly,
        "Mounts": [],
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {}},
    }


def top(record: ContainerRecord, ps_args: str) -> tuple[list[str], list[list[str]]]:
    """Docker's ``top``: the host's ``ps`` output, keeping the rows of the container's pids."""
    from berth.runtime.cgroups import open_cgroup

    if record.status.state not in (ContainerState.RUNNING, ContainerState.PAUSED):
        raise InvalidArgument(f"Container {record.id} is not running")
    pids = set(open_cgroup(cgroups_path(record.id)).pids())
    args = ps_args.split() if ps_args else ["-ef"]
    proc = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InvalidArgument(f"Error running ps: {proc.stderr.strip()}")
    lines = proc.stdout.splitlines()
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    pid_col = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return titles, rows
