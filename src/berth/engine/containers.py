"""The container service: create, start, stop, remove... and the lifecycle they walk.

States and legal moves are in ``berth.engine.model``. The work that touches the host (rootfs
mount, runtime spec, shim) is in ``berth.engine.launch``; this module decides *when* and keeps
the database, the waiters and the exit monitors consistent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal as signal_module
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from berth.engine import (
    container_update,
    hardening,
    launch,
    recovery,
    resource_checks,
    restart,
    userns,
)
from berth.engine.container_update import ResourceUpdate
from berth.engine.db import ContainerDB
from berth.engine.log_config import check_log_config, log_settings
from berth.engine.model import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    ContainerStatus,
    HostConfig,
    validate_name,
)
from berth.engine.names import random_name
from berth.engine.trash import Trash
from berth.errors import (
    AlreadyExists,
    BerthError,
    Conflict,
    ContainerNotFound,
    InvalidArgument,
    NotModified,
    RuntimeFailure,
)
from berth.oci.idmap import IdentityMapping
from berth.runtime.shim.forkserver import ForkServer

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, dict[str, str]], None]  # (action, container id, attributes)


def now_rfc3339() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    error: str = ""


class ContainerService:
    def __init__(self, data_root: Path, exec_root: Path, db: ContainerDB, images: Any,
                 layers: Any, runtimes: dict[str, str], default_runtime: str,
                 on_event: EventSink | None = None, forkserver: ForkServer | None = None,
                 networks: Any = None, mounts: Any = None,
                 remap: userns.RemappedRoot | None = None) -> None:
        self.networks = networks  # engine.networks.NetworkService; None: no networking
        self.mounts = mounts  # engine.mounts.MountManager; None: no volumes or binds
        self.remap = remap  # --userns-remap; None: off
        # owners of everything the daemon writes for containers (empty: not remapped)
        self.id_mapping = remap.mapping if remap is not None else IdentityMapping()
        self._root = data_root / "containers"
        self._root.mkdir(parents=True, exist_ok=True)
        self._forkserver = forkserver  # forks shims; None: each shim is a new interpreter
        self._trash = Trash(data_root / "trash")  # removed container dirs, deleted later
        self._trash.empty()  # what a crash left there
        self._exec_root = exec_root
        self._db = db
        self._images = images
        self._layers = layers
        self._runtimes = runtimes
        self._default_runtime = default_runtime
        self._on_event = on_event or (lambda action, cid, attrs: None)
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._exit_waiters: dict[str, list[asyncio.Future[ExitInfo]]] = {}
        self._removed_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pending_attach: dict[str, list[asyncio.Future[launch.Shim]]] = {}
        self._shims: dict[str, launch.Shim] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stopping: set[str] = set()
        self._exec_ids: dict[str, list[str]] = {}  # Docker's ExecIDs: execs not yet ended
        self.restarts = restart.for_service(self)  # --restart policies and their back-off

    # -- lookup -----------------------------------------------------------------------------

    def container_dir(self, container_id: str) -> Path:
        return self._root / container_id

    def log_path(self, container_id: str) -> Path:
        return self.container_dir(container_id) / f"{container_id}-json.log"

    def get(self, ref: str) -> ContainerRecord:
        """By full ID, by name (with or without ``/``), or by unique ID prefix, as Docker."""
        ref = ref.strip()
        if ref:
            if len(ref) == 64 and (rec := self._db.get(ref)):
                return rec
            if rec := self._db.by_name(ref.lstrip("/")):
                return rec
            if all(c in "0123456789abcdef" for c in ref):
                matches = self._db.by_id_prefix(ref)
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise InvalidArgument(
                        f"Multiple IDs found with provided prefix: {ref}")
        raise ContainerNotFound(f"No such container: {ref}")

    def all(self) -> list[ContainerRecord]:
        return sorted(self._db.all(), key=lambda r: r.created, reverse=True)

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self._locks.setdefault(container_id, asyncio.Lock())

    def _save(self, record: ContainerRecord) -> ContainerRecord:
        self._db.update(record)
        return record

    # -- create -----------------------------------------------------------------------------

    async def create(self, name: str | None, config: ContainerConfig,
                     host: HostConfig, endpoints: dict[str, Any] | None = None,
                     *, build_step: bool = False) -> tuple[ContainerRecord, list[str]]:
        """The new container and dockerd's warnings (a limit the host cannot apply);
        ``build_step``: a build's RUN step (no volumes, not kept after a crash)."""
        if config.stop_signal:
            check_stop_signal(config.stop_signal)
        check_log_config(host.log_type, host.log_config)
        if name:
            name = validate_name(name)
            if existing := self._db.by_name(name):
                raise AlreadyExists(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{existing.id}". You have to remove (or rename) that container to be able '
                    "to reuse that name.")
        else:
            name = self._unused_name()
        runtime = host.runtime or self._default_runtime
        if runtime not in self._runtimes:
            raise InvalidArgument(f"Unknown runtime specified {runtime}")
        hardening.validate_host_config(host)
        host, warnings = resource_checks.check_host_resources(host)
        userns.validate_host_config(self.remap, host)
        image = await asyncio.to_thread(self._images.get, config.image)
        merged = launch.merge_image_config(config, image.config)
        if build_step:
            # BuildKit's rule: a RUN step gets no volumes, so what it writes under a VOLUME
            # path is kept in the step's layer
            merged = replace(merged, volumes=())
        if not merged.argv:
            raise InvalidArgument("No command specified")
        container_id = secrets.token_hex(32)
        if not merged.hostname:
            merged = replace(merged, hostname=container_id[:12])
        if host.auto_remove and host.restart_policy.name not in ("", "no"):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        record = ContainerRecord(
            id=container_id, name=name, created=now_rfc3339(), image_id=image.id,
            config=merged, host_config=replace(host, runtime=runtime), runtime=runtime,
            build_step=build_step)
        if self.networks is not None:
            self.networks.on_create(record, endpoints)
        cdir = self.container_dir(container_id)
        cdir.mkdir(mode=0o710)
        if self.remap is not None:  # container root must reach its rootfs and mounted files
            os.chown(cdir, 0, self.id_mapping.root_pair()[1])
        try:
            if self.mounts is not None:  # volumes are created with the container, as Docker
                await asyncio.to_thread(self.mounts.prepare, record, self.get)
            await asyncio.to_thread(launch.write_network_files, cdir, record)
            self._db.insert(record)
        except BaseException:
            if self.mounts is not None:
                await asyncio.to_thread(self.mounts.release, record, True)
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        self._on_event("create", container_id, {"name": name, "image": config.image})
        return record, warnings

    def _unused_name(self) -> str:
        for _ in range(64):
            candidate = random_name()
            if not self._db.by_name(candidate):
                return candidate
        return random_name() + "_" + secrets.token_hex(2)

    # -- start ------------------------------------------------------------------------------

    async def start(self, ref: str) -> None:
        record = self.get(ref)
        self.restarts.on_start(record.id)
        async with self._lock(record.id):
            record = self.get(record.id)
            if record.status.state == ContainerState.PAUSED:
                raise Conflict("cannot start a paused container, try unpause instead")
            if record.is_running:
                raise NotModified("container already started")
            try:
                await self._start_locked(record)
                return
            except BerthError as err:
                if not record.host_config.auto_remove:
                    raise
                failure = err
        await self._remove_now(record.id, volumes=True)  # outside the lock: removal takes it
        raise failure

    async def _start_locked(self, record: ContainerRecord) -> None:
        cdir = self.container_dir(record.id)
        remapped = userns.container_is_remapped(self.remap, record.host_config)
        try:
            netns, user_ns = "", ""
            if self.networks is not None:
                namespaces = await self.networks.setup(
                    record, cdir, self.get, self.id_mapping if remapped else None)
                netns, user_ns = namespaces.network, namespaces.user
            try:
                h = record.host_config
                shim = await launch.start_container(
                    record, cdir, self._exec_root, self._images, self._layers,
                    self._runtimes[record.runtime],
                    log_settings(h.log_type, h.log_config, self.log_path(record.id)),
                    forkserver=self._forkserver, netns=netns,
                    mounts_for=self.mounts.spec_mounts if self.mounts is not None else None,
                    userns=(user_ns or "private") if remapped else "host",
                    ids=self.id_mapping if self.remap is not None else None)
            except BaseException:
                if self.networks is not None:
                    await self.networks.teardown(record.id)
                raise
        except BerthError as err:
            code = err.exit_code if isinstance(err, RuntimeFailure) else 125
            await self._start_failed(record, err, code)
            raise
        self._shims[record.id] = shim
        # attach requests that arrived before start are connected before the process runs
        for fut in self._pending_attach.pop(record.id, []):
            if not fut.done():
                fut.set_result(shim)
        await asyncio.sleep(0)
        try:
            pid = await shim.start()
        except BerthError as err:
            await self._teardown(record, cdir)
            self._shims.pop(record.id, None)
            await self._start_failed(record, err, getattr(err, "exit_code", 125))
            raise
        status = ContainerStatus(state=ContainerState.RUNNING, pid=pid, started_at=now_rfc3339())
        self._save(replace(record, status=status, has_been_started=True))
        self._on_event("start", record.id, {"name": record.name})
        self._watch(record.id, shim)

    async def _teardown(self, record: ContainerRecord, cdir: Path) -> None:
        await launch.teardown_after_exit(record, cdir, self._exec_root)
        if self.networks is not None:
            await self.networks.teardown(record.id)

    async def _start_failed(self, record: ContainerRecord, err: BerthError, code: int) -> None:
        """Docker keeps a container whose start failed in ``created`` with the would-be exit
        code; attach streams and waits for the start end (``start`` removes an auto-remove
        container once it has let go of the lock)."""
        status = replace(record.status, error=str(err), exit_code=code)
        self._save(replace(record, status=status))
        for fut in self._pending_attach.pop(record.id, []):
            if not fut.done():
                fut.set_exception(Conflict(f"Container {record.id} failed to start"))
        for exit_fut in self._exit_waiters.pop(record.id, []):
            if not exit_fut.done():
                exit_fut.set_result(ExitInfo(code, str(err)))

    def _watch(self, container_id: str, shim: launch.Shim) -> None:
        task = asyncio.get_running_loop().create_task(self._monitor(container_id, shim))
        self._monitors[container_id] = task

    async def _monitor(self, container_id: str, shim: launch.Shim) -> None:
        exit_state = await shim.wait()
        async with self._lock(container_id):
            record = self._db.get(container_id)
            if record is None:
                return
            cdir = self.container_dir(container_id)
            await self._teardown(record, cdir)
            self._shims.pop(container_id, None)
            status = replace(record.status, state=ContainerState.EXITED, pid=0,
                             exit_code=exit_state.exit_code, oom_killed=exit_state.oom_killed,
                             # a fast process can exit before start recorded StartedAt:
                             # never report it finishing before it started
                             finished_at=max(exit_state.exited_at or now_rfc3339(),
                                             record.status.started_at))
            record = self._save(replace(record, status=status))
        self._monitors.pop(container_id, None)
        self._exec_ids.pop(container_id, None)
        self._on_event("die", container_id, {"exitCode": str(exit_state.exit_code),
                                             "name": record.name})
        for fut in self._exit_waiters.pop(container_id, []):
            if not fut.done():
                fut.set_result(ExitInfo(exit_state.exit_code))
        self.restarts.on_exit(record)
        self._stopping.discard(container_id)
        if record.host_config.auto_remove:
            await self._remove_now(container_id, volumes=True)

    # -- signals ----------------------------------------------------------------------------

    async def kill(self, ref: str, signal: str | int = "SIGKILL") -> None:
        record = self.get(ref)
        if record.is_running and parse_signal(signal) in (signal_module.SIGKILL,
                                                          signal_module.SIGTERM):
            self.restarts.mark_manual_stop(record.id)
        if not record.is_running:
            raise Conflict(f"Cannot kill container: {ref}: Container {record.id} is not running")
        signo = parse_signal(signal)
        shim = self._shims.get(record.id)
        if shim is None:
            raise Conflict(f"Container {record.id} is not running")
        if record.status.state == ContainerState.PAUSED and signo == signal_module.SIGKILL:
            # a frozen process cannot die; thaw after queueing the signal
            await shim.kill(signo)
            await shim.resume()
            return
        await shim.kill(signo)
        self._on_event("kill", record.id, {"signal": str(signo), "name": record.name})

    async def stop(self, ref: str, timeout: int | None = None) -> None:
        record = self.get(ref)
        await self.restarts.before_stop(record.id)
        record = self.get(record.id)
        if not record.is_running:
            raise NotModified("container already stopped")
        if timeout is None:
            timeout = record.config.stop_timeout if record.config.stop_timeout is not None else 10
        self._stopping.add(record.id)
        waiter = self._exit_future(record.id)
        signo = parse_signal(record.config.stop_signal or "SIGTERM")
        shim = self._shims.get(record.id)
        if shim is None:
            return
        if record.status.state == ContainerState.PAUSED:
            await shim.kill(signo)
            await shim.resume()
        else:
            await shim.kill(signo)
        try:
            if timeout < 0:
                await waiter
            else:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            await shim.kill(signal_module.SIGKILL)
            await waiter
        self._on_event("stop", record.id, {"name": record.name})

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        record = self.get(ref)
        if record.is_running:
            await self.stop(record.id, timeout)
        await self.start(record.id)
        self._save(replace(self.get(record.id), restart_count=0))
        self._on_event("restart", record.id, {"name": record.name})

    async def pause(self, ref: str) -> None:
        record = self.get(ref)
        if record.status.state == ContainerState.PAUSED:
            raise Conflict(f"Container {record.id} is already paused")
        if record.status.state != ContainerState.RUNNING:
            raise Conflict(f"Container {record.id} is not running")
        await self._shims[record.id].pause()
        self._save(replace(record, status=replace(record.status, state=ContainerState.PAUSED)))
        self._on_event("pause", record.id, {"name": record.name})

    async def unpause(self, ref: str) -> None:
        record = self.get(ref)
        if record.status.state != ContainerState.PAUSED:
            raise Conflict(f"Container {record.id} is not paused")
        await self._shims[record.id].resume()
        self._save(replace(record, status=replace(record.status, state=ContainerState.RUNNING)))
        self._on_event("unpause", record.id, {"name": record.name})

    # -- wait -------------------------------------------------------------------------------

    def _exit_future(self, container_id: str) -> asyncio.Future[ExitInfo]:
        fut: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._exit_waiters.setdefault(container_id, []).append(fut)
        return fut

    async def wait(self, ref: str, condition: str = "not-running") -> ExitInfo:
        record = self.get(ref)
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        if condition == "removed":
            removed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._removed_waiters.setdefault(record.id, []).append(removed)
            exit_fut = self._exit_future(record.id) if record.is_running or \
                record.status.state == ContainerState.CREATED else None
            await removed
            if exit_fut is not None and exit_fut.done():
                return exit_fut.result()
            last = record.status
            return ExitInfo(last.exit_code, last.error)
        if condition == "not-running" and not record.is_running:
            return ExitInfo(record.status.exit_code)
        return await self._exit_future(record.id)

    # -- exec (berth.engine.execs) -----------------------------------------------------------

    def running_shim(self, ref: str) -> tuple[ContainerRecord, launch.Shim]:
        """The shim of a running container, for exec; Docker's 409s otherwise."""
        record = self.get(ref)
        if record.status.state == ContainerState.PAUSED:
            raise Conflict(f"Container {ref} is paused, unpause the container before exec")
        shim = self._shims.get(record.id)
        if record.status.state != ContainerState.RUNNING or shim is None:
            raise Conflict(f"Container {record.id} is not running")
        return record, shim

    def note_exec(self, container_id: str, exec_id: str, active: bool) -> None:
        ids = self._exec_ids.setdefault(container_id, [])
        if active and exec_id not in ids:
            ids.append(exec_id)
        elif not active and exec_id in ids:
            ids.remove(exec_id)

    def exec_ids(self, container_id: str) -> list[str]:
        return list(self._exec_ids.get(container_id, ()))

    # -- attach and resize ------------------------------------------------------------------

    async def shim_for_attach(self, ref: str) -> tuple[ContainerRecord, launch.Shim]:
        """The shim to attach to; before start, waits until start has created it."""
        record = self.get(ref)
        if shim := self._shims.get(record.id):
            return record, shim
        if record.status.state == ContainerState.CREATED or \
                record.status.state == ContainerState.EXITED:
            fut: asyncio.Future[launch.Shim] = asyncio.get_running_loop().create_future()
            self._pending_attach.setdefault(record.id, []).append(fut)
            return record, await fut
        raise Conflict(f"Container {record.id} is not running")

    async def resize(self, ref: str, height: int, width: int) -> None:
        record = self.get(ref)
        shim = self._shims.get(record.id)
        if shim is None:
            raise Conflict(f"Container {record.id} is not running")
        await shim.resize(height, width)

    # -- remove -----------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        record = self.get(ref)
        self.restarts.forget(record.id)
        if record.is_running:
            if not force:
                if record.status.state == ContainerState.PAUSED:
                    raise Conflict(
                        f"You cannot remove a paused container {record.id}. Unpause and then "
                        "stop the container before attempting removal or force remove")
                raise Conflict(
                    f"You cannot remove a running container {record.id}. Stop the container "
                    "before attempting removal or force remove")
            waiter = self._exit_future(record.id)
            try:
                await self.kill(record.id, "SIGKILL")
            except Conflict:
                # it exited meanwhile: wait for its monitor unless that has settled it already
                if self.get(record.id).is_running:
                    await waiter
            else:
                await waiter
            if record.host_config.auto_remove:
                return  # the exit monitor removes it
        await self._remove_now(record.id, volumes=volumes)

    async def _remove_now(self, container_id: str, volumes: bool = False) -> None:
        async with self._lock(container_id):
            record = self._db.get(container_id)
            if record is None:
                return
            cdir = self.container_dir(container_id)
            await asyncio.to_thread(launch.remove_container_files, cdir, self._exec_root,
                                    self._trash)
            self._trash.empty_soon()
            self._db.delete(container_id)
            if self.networks is not None:
                self.networks.on_remove(container_id)
            if self.mounts is not None:  # anonymous volumes go with rm -v and --rm
                await asyncio.to_thread(self.mounts.release, record, volumes)
        self._locks.pop(container_id, None)
        for fut in self._pending_attach.pop(container_id, []):
            if not fut.done():
                fut.set_exception(ContainerNotFound(f"No such container: {container_id}"))
        for removed in self._removed_waiters.pop(container_id, []):
            if not removed.done():
                removed.set_result(None)
        self._on_event("destroy", container_id, {"name": record.name})

    async def prune(self, match: Callable[[ContainerRecord], bool] | None = None) -> list[str]:
        """Remove the stopped containers (those ``match`` accepts: the API's filters)."""
        deleted = []
        for record in self.all():
            if record.status.state in (ContainerState.EXITED, ContainerState.CREATED,
                                       ContainerState.DEAD) and (match is None or match(record)):
                await self._remove_now(record.id)
                deleted.append(record.id)
        return deleted

    async def update(self, ref: str, request: ResourceUpdate) -> list[str]:
        """``docker update``: new limits and restart policy, into the cgroup of a running
        container first (see ``berth.engine.container_update``); dockerd's warnings."""
        record = self.get(ref)
        request, warnings = await asyncio.to_thread(
            container_update.check_update, request, resource_checks.host_support())
        async with self._lock(record.id):
            record = self.get(record.id)
            host = container_update.merge_update(record, request)
            if record.is_running:
                await asyncio.to_thread(container_update.apply_live,
                                        launch.cgroups_path(record.id), host, request)
            self._save(replace(record, host_config=host))
        self._on_event("update", record.id, {"name": record.name})
        return warnings

    def rename(self, ref: str, new_name: str) -> None:
        record = self.get(ref)
        new_name = validate_name(new_name)
        if new_name == record.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        if existing := self._db.by_name(new_name):
            raise AlreadyExists(
                f'Error when allocating new name: Conflict. The container name "/{new_name}" '
                f'is already in use by container "{existing.id}". You have to remove (or rename) '
                "that container to be able to reuse that name.")
        self._save(replace(record, name=new_name))
        self._on_event("rename", record.id, {"name": new_name, "oldName": "/" + record.name})

    def top(self, ref: str, ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
        record = self.get(ref)
        if not record.is_running:
            raise Conflict(f"Container {record.id} is not running")
        return launch.top(record, ps_args)

    # -- daemon start and stop --------------------------------------------------------------

    async def restore(self) -> None:
        """Re-adopt running containers after a daemon restart; settle what died meanwhile."""
        if self.networks is not None:
            await self.networks.restore()
        await recovery.drop_build_steps(self, self._db.all(), self._exec_root)
        for record in self._db.all():
            if not record.is_running:
                continue
            cdir = self.container_dir(record.id)
            shim = await launch.reconnect(record, cdir, self._exec_root)
            if shim is not None:
                self._shims[record.id] = shim
                self._watch(record.id, shim)
                continue
            exit_state = launch.read_exit(cdir)
            await self._teardown(record, cdir)
            status = replace(record.status, state=ContainerState.EXITED, pid=0,
                             exit_code=exit_state.exit_code if exit_state else 255,
                             oom_killed=exit_state.oom_killed if exit_state else False,
                             finished_at=(exit_state.exited_at if exit_state else "")
                             or now_rfc3339())
            self._save(replace(record, status=status))
            if record.host_config.auto_remove:
                await self._remove_now(record.id, volumes=True)
        await recovery.settle(self, self._db.all(), self._exec_root)  # what a crash left
        await recovery.finish_removals(self, self._db.all())
        await self._forget_unrecorded()
        await restart.start_on_boot(self.restarts, self._db.all(), self.start)

    async def _forget_unrecorded(self) -> None:
        """Drop what a create left before it recorded its container: the directory, the
        mount-table row (and the anonymous volumes made for it), the network attachment."""
        known = {r.id for r in self._db.all()}
        await asyncio.to_thread(recovery.sweep_unrecorded_dirs, self._root, known,
                                self._exec_root, self._trash)
        if self.mounts is not None:
            await asyncio.to_thread(self.mounts.release_unrecorded, known)
        if self.networks is not None:
            self.networks.forget_unrecorded(known)

    async def close(self) -> None:
        """Stop watching (containers keep running under their shims)."""
        await self.restarts.close()
        for task in list(self._monitors.values()):
            task.cancel()
        for task in list(self._monitors.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self._monitors.clear()
        for shim in self._shims.values():
            await shim.close()
        await self._trash.close()
        if self._forkserver is not None:
            await asyncio.to_thread(self._forkserver.close)

    def counts(self) -> dict[str, int]:
        counts = {"running": 0, "paused": 0, "stopped": 0}
        for record in self._db.all():
            if record.status.state == ContainerState.RUNNING:
                counts["running"] += 1
            elif record.status.state == ContainerState.PAUSED:
                counts["paused"] += 1
            else:
                counts["stopped"] += 1
        return counts


def check_stop_signal(value: str) -> None:
    """Docker's check of ``--stop-signal`` at create: a name it knows or a non-zero number."""
    text = value.strip()
    if text.lstrip("+-").isdigit():
        if int(text) == 0:
            raise InvalidArgument(f"Invalid signal: {value}")
        return
    parse_signal(text)


def parse_signal(value: str | int) -> int:
    """``9``, ``KILL``, ``SIGKILL``, ``sigkill`` → 9 (Docker's parsing)."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        num = int(text)
        if 0 < num < 65:
            return num
    else:
        name = text.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return int(signal_module.Signals[name])
        except KeyError:
            if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX"):
                base = signal_module.SIGRTMIN if "MIN" in name else signal_module.SIGRTMAX
                off = name[8:]
                try:
                    return int(base) + (int(off) if off else 0)
                except ValueError:
                    pass
    raise InvalidArgument(f"Invalid signal: {value}")
