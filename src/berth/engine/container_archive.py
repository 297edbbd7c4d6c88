"""A container's files from outside, running or not: ``/containers/{id}/archive`` (stat, read
and write paths), ``/export`` (tar its whole filesystem) and ``/changes`` (``docker diff``).

The file work happens in a helper process (``berth.engine._chroot_tar``) that chroots into the
container's rootfs with its volumes mounted, so a path is resolved exactly as the container
would resolve it and never reaches a host file. A stopped container's rootfs is mounted for the
duration of the request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from berth.engine.containers import ContainerService, EventSink
from berth.engine.model import ContainerRecord
from berth.engine.mounts import MountManager
from berth.errors import BerthError, Conflict, Internal, InvalidArgument, NotFound, PermissionDenied
from berth.runtime.users import resolve_user
from berth.snapshot.changes import Change, layer_changes
from berth.snapshot.overlay import prepare_rootfs, release_rootfs

log = logging.getLogger(__name__)

_CHUNK = 1 << 16

# What Docker's init layer holds (mount points, /.dockerenv): never in ``docker diff``.
INIT_LAYER_PATHS = frozenset({"/.dockerenv", "/dev", "/proc", "/sys", "/etc/hostname",
                              "/etc/hosts", "/etc/resolv.conf", "/etc/mtab"})


def _error(message: str, status: int) -> BerthError:
    cls: type[BerthError] = {400: InvalidArgument, 403: PermissionDenied, 404: NotFound,
                             409: Conflict}.get(status, Internal)
    return cls(message)


def stat_header(stat: dict[str, Any]) -> str:
    """``X-Docker-Container-Path-Stat``: base64 of the stat JSON."""
    return base64.b64encode(json.dumps(stat).encode()).decode()


class ArchiveService:
    def __init__(self, containers: ContainerService, mounts: MountManager, images: Any,
                 layers: Any, on_event: EventSink | None = None) -> None:
        self._containers = containers
        self._mounts = mounts
        self._images = images
        self._layers = layers
        self._on_event = on_event or (lambda action, cid, attrs: None)
        self._users: dict[str, int] = {}  # container id -> requests holding its rootfs

    # -- rootfs for the duration of a request -------------------------------------------------

    async def _acquire(self, record: ContainerRecord) -> Path:
        cdir = self._containers.container_dir(record.id)
        self._users[record.id] = self._users.get(record.id, 0) + 1
        try:
            if record.is_running:
                rootfs = cdir / "rootfs"
                if rootfs.is_dir():
                    return rootfs
            lowers = await asyncio.to_thread(self._lowers, record)
            return await asyncio.to_thread(prepare_rootfs, lowers, cdir,
                                           owner=self._containers.id_mapping.root_pair())
        except BaseException:
            self._users[record.id] -= 1
            raise

    async def _release(self, record: ContainerRecord) -> None:
        self._users[record.id] -= 1
        if self._users[record.id] > 0:
            return
        del self._users[record.id]
        try:
            running = self._containers.get(record.id).is_running
        except NotFound:
            return  # removed meanwhile: its removal unmounted everything
        if not running:
            await asyncio.to_thread(release_rootfs, self._containers.container_dir(record.id))

    def _config(self, record: ContainerRecord, rootfs: Path, path: str) -> dict[str, Any]:
        cdir = self._containers.container_dir(record.id)
        # the files Docker bind-mounts over /etc, then the container's own mounts
        mounts = [{"dest": dest, "source": str(cdir / name), "rw": True}
                  for name, dest in (("resolv.conf", "/etc/resolv.conf"),
                                     ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"))
                  if (cdir / name).is_file()]
        for mp in sorted(self._mounts.mounts(record.id),
                         key=lambda m: len([p for p in m.destination.split("/") if p])):
            if mp.type == "volume":
                source = str(self._mounts.volumes.mount(mp.name))
            elif mp.type == "bind":
                source = mp.source
            else:
                continue  # a tmpfs lives only in the container's own mount namespace
            mounts.append({"dest": mp.destination, "source": source, "rw": mp.rw})
        ids = self._containers.id_mapping
        return {"rootfs": str(rootfs), "path": path, "mounts": mounts,
                "readonly_rootfs": record.host_config.readonly_rootfs,
                "ids": None if ids.empty else {
                    "uid": [[r.container_id, r.host_id, r.size] for r in ids.uids],
                    "gid": [[r.container_id, r.host_id, r.size] for r in ids.gids]}}

    async def _spawn(self, op: str, cfg: dict[str, Any],
                     stdin: bool = False) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "berth.engine._chroot_tar", op, json.dumps(cfg),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd="/")

    @staticmethod
    async def _first_line(proc: asyncio.subprocess.Process, ref: str) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            err = b""
            if proc.stderr is not None:
                err = await proc.stderr.read()
            await proc.wait()
            raise Internal(f"archive helper failed: {err.decode(errors='replace').strip()}")
        doc: dict[str, Any] = json.loads(line)
        if "error" in doc:
            await proc.wait()
            raise _error(str(doc["error"]).replace("{name}", ref), int(doc.get("status", 500)))
        return doc

    # -- operations ---------------------------------------------------------------------------

    async def changes(self, ref: str) -> list[Change]:
        """``docker diff``: what the container's writable layer changed in its image."""
        record = self._containers.get(ref)
        upper = self._containers.container_dir(record.id) / "upper"
        return await asyncio.to_thread(
            lambda: layer_changes(upper, self._lowers(record), INIT_LAYER_PATHS))

    def _lowers(self, record: ContainerRecord) -> list[Path]:
        chain = self._images.layer_chain(record.image_id)
        return list(self._layers.lower_dirs(chain[-1])) if chain else []

    async def stat(self, ref: str, path: str) -> dict[str, Any]:
        record = self._containers.get(ref)
        rootfs = await self._acquire(record)
        try:
            proc = await self._spawn("stat", self._config(record, rootfs, path))
            doc = await self._first_line(proc, ref)
            await proc.wait()
            return dict(doc["stat"])
        finally:
            await self._release(record)

    async def get(self, ref: str, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """The path's stat and a tar stream of it; the stream must be consumed or closed."""
        record = self._containers.get(ref)
        doc, stream = await self._tar(record, ref, "get", path)
        return dict(doc["stat"]), stream

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        """``docker export``: a tar of the container's root filesystem as the container sees
        it, without its volumes and bind mounts (entries named ``bin/sh``, no ``.``)."""
        record = self._containers.get(ref)
        _, stream = await self._tar(record, ref, "export", "/", mounts=False)
        self._on_event("export", record.id, {})
        return stream

    async def _tar(self, record: ContainerRecord, ref: str, op: str, path: str,
                   mounts: bool = True) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """Start the helper's ``op``; its first line, and the tar that follows as a stream
        that holds the rootfs until it is consumed or closed."""
        rootfs = await self._acquire(record)
        try:
            cfg = self._config(record, rootfs, path)
            if not mounts:
                cfg["mounts"] = []
            proc = await self._spawn(op, cfg)
            doc = await self._first_line(proc, ref)
        except BaseException:
            await self._release(record)
            raise

        async def stream() -> AsyncIterator[bytes]:
            assert proc.stdout is not None
            try:
                while chunk := await proc.stdout.read(_CHUNK):
                    yield chunk
                await proc.wait()
            finally:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                await self._release(record)

        return doc, stream()

    async def put(self, ref: str, path: str, body: AsyncIterator[bytes], *,
                  no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        record = self._containers.get(ref)
        rootfs = await self._acquire(record)
        try:
            cfg = self._config(record, rootfs, path)
            cfg["no_overwrite_dir_non_dir"] = no_overwrite_dir_non_dir
            if copy_uid_gid and record.config.user:
                user = await asyncio.to_thread(resolve_user, str(rootfs), record.config.user)
                cfg["chown"] = [user.uid, user.gid]
            proc = await self._spawn("put", cfg, stdin=True)
            assert proc.stdin is not None and proc.stdout is not None
            reader = asyncio.ensure_future(self._first_line(proc, ref))
            try:
                async for chunk in body:
                    if reader.done():
                        break
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proc.stdin.close()
            try:
                await reader
            finally:
                if proc.returncode is None:
                    await proc.wait()
        finally:
            await self._release(record)
