"""A container's mounts: resolved at create, turned into OCI mounts at start, released at rm.

Sources, in Docker's order of precedence: ``VolumesFrom`` (copied from other containers),
``HostConfig.Binds`` (``name:/path[:opts]``, ``/host:/path[:opts]``), ``HostConfig.Mounts``,
then one anonymous volume per ``Config.Volumes`` path (the image's ``VOLUME`` entries included)
that nothing else covers. Volumes are created at create time, as Docker does; copy-up of the
image's content into an empty volume happens at the first start, when the rootfs is mounted.

The resolved mount points of each container are kept in ``berth.db``::

    container_mounts
      container_id TEXT PRIMARY KEY
      mounts       TEXT NOT NULL     -- JSON list of MountPoint
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from berth.engine.model import ContainerRecord, MountRequest
from berth.engine.volumes import VolumeService
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound
from berth.runtime import spec as runtime_spec
from berth.volume.copyup import copy_tree, resolve_in_root
from berth.volume.store import validate_volume_name

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS container_mounts (
    container_id TEXT PRIMARY KEY,
    mounts TEXT NOT NULL
);
"""
_PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
_MODES = ("ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated",
          *_PROPAGATIONS)


@dataclass(frozen=True)
class MountPoint:
    type: str  # volume | bind | tmpfs
    destination: str
    source: str = ""  # bind: host path; volume: filled in from the volume's mount point
    name: str = ""  # volume name
    driver: str = ""
    mode: str = ""
    rw: bool = True
    propagation: str = ""
    anonymous: bool = False  # removed with the container by rm -v / --rm
    copy_pending: bool = False  # copy-up of image content still to do at the first start
    tmpfs_options: tuple[str, ...] = ()


class MountTable:
    """Which container has which mount points (and so which volumes are in use)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def set(self, container_id: str, mounts: Iterable[MountPoint]) -> None:
        text = json.dumps([dataclasses.asdict(m) for m in mounts], separators=(",", ":"))
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO container_mounts VALUES (?, ?)",
                               (container_id, text))

    def get(self, container_id: str) -> list[MountPoint]:
        with self._lock:
            row = self._conn.execute("SELECT mounts FROM container_mounts WHERE "
                                     "container_id = ?", (container_id,)).fetchone()
        return _load(row[0]) if row else []

    def delete(self, container_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM container_mounts WHERE container_id = ?",
                               (container_id,))

    def users(self, volume: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT container_id, mounts FROM container_mounts"
                                      ).fetchall()
        return sorted(cid for cid, text in rows
                      if any(m.type == "volume" and m.name == volume for m in _load(text)))


def _load(text: str) -> list[MountPoint]:
    out = []
    for item in json.loads(text):
        item["tmpfs_options"] = tuple(item.get("tmpfs_options") or ())
        out.append(MountPoint(**item))
    return out


# -- parsing (pure) -------------------------------------------------------------------------

def _clean_dest(dest: str, kind: str) -> str:
    if not dest:
        raise InvalidArgument(f'invalid mount config for type "{kind}": field Target must '
                              "not be empty")
    if not dest.startswith("/"):
        raise InvalidArgument(f'invalid mount config for type "{kind}": invalid mount path: '
                              f"'{dest}' mount path must be absolute")
    clean = os.path.normpath(dest)
    if clean == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return clean


def parse_bind(spec: str) -> MountPoint:
    """One ``HostConfig.Binds`` entry: ``[src:]dst[:mode]``."""
    parts = spec.split(":")
    if len(parts) > 3 or not all(parts) or len(parts) == 0:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    if len(parts) == 1:
        return MountPoint("volume", _clean_dest(parts[0], "volume"), anonymous=True,
                          driver="local", copy_pending=True)
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    opts = [m for m in mode.split(",") if m]
    for opt in opts:
        if opt not in _MODES:
            raise InvalidArgument(f"invalid mode: {mode}")
    if "ro" in opts and "rw" in opts:
        raise InvalidArgument(f"invalid mode: {mode}")
    rw = "ro" not in opts
    propagation = next((o for o in opts if o in _PROPAGATIONS), "")
    if src.startswith("/"):
        if "nocopy" in opts:
            raise InvalidArgument(f"invalid mode: {mode}")
        return MountPoint("bind", _clean_dest(dst, "bind"), source=os.path.normpath(src),
                          mode=mode, rw=rw, propagation=propagation or "rprivate")
    validate_volume_name(src)
    return MountPoint("volume", _clean_dest(dst, "volume"), name=src, driver="local",
                      mode=mode or "z", rw=rw, propagation=propagation,
                      copy_pending="nocopy" not in opts)


def parse_mount_request(req: MountRequest) -> MountPoint:
    kind = req.type
    if kind not in ("volume", "bind", "tmpfs"):
        raise InvalidArgument(f'mount type unknown: "{kind}"')
    dest = _clean_dest(req.target, kind)
    if kind == "bind":
        if not req.source:
            raise InvalidArgument('invalid mount config for type "bind": field Source must '
                                  "not be empty")
        if not req.source.startswith("/"):
            raise InvalidArgument('invalid mount config for type "bind": invalid mount path: '
                                  f"'{req.source}' mount path must be absolute")
        if not os.path.exists(req.source):
            raise InvalidArgument('invalid mount config for type "bind": bind source path '
                                  f"does not exist: {req.source}")
        return MountPoint("bind", dest, source=os.path.normpath(req.source), rw=not req.read_only,
                          propagation=req.propagation or "rprivate")
    if kind == "tmpfs":
        if req.source:
            raise InvalidArgument('invalid mount config for type "tmpfs": field Source must '
                                  "be empty")
        opts: list[str] = []
        if req.tmpfs_size:
            opts.append(f"size={req.tmpfs_size // 1024}k")
        if req.tmpfs_mode:
            opts.append(f"mode={req.tmpfs_mode:o}")
        if req.read_only:
            opts.append("ro")
        return MountPoint("tmpfs", dest, rw=not req.read_only, tmpfs_options=tuple(opts))
    if req.source:
        validate_volume_name(req.source)
    return MountPoint("volume", dest, name=req.source, driver=req.driver or "local",
                      mode="z", rw=not req.read_only, anonymous=not req.source,
                      copy_pending=not req.no_copy)


def _add(points: dict[str, MountPoint], mp: MountPoint, replaceable: set[str]) -> None:
    if mp.destination in points and mp.destination not in replaceable:
        raise InvalidArgument(f"Duplicate mount point: {mp.destination}")
    replaceable.discard(mp.destination)
    points[mp.destination] = mp


# -- the manager ----------------------------------------------------------------------------

class MountManager:
    """The container service's hooks for mounts (create, start, inspect, remove)."""

    def __init__(self, table: MountTable, volumes: VolumeService,
                 owner: tuple[int, int] = (0, 0)) -> None:
        self.table = table
        self.volumes = volumes
        self._owner = owner  # of bind sources -v creates (a --userns-remap daemon's root)

    def close(self) -> None:
        self.table.close()

    def prepare(self, record: ContainerRecord,
                lookup: Callable[[str], ContainerRecord]) -> list[MountPoint]:
        """Resolve every mount of a container being created; create the volumes it names."""
        h = record.host_config
        points: dict[str, MountPoint] = {}
        inherited: set[str] = set()
        for spec in h.volumes_from:
            ref, _, mode = spec.partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidArgument(f"invalid mode: {mode}")
            other = lookup(ref)
            for mp in self.table.get(other.id):
                if mode:
                    mp = replace(mp, rw=mode == "rw", mode=mode)
                points[mp.destination] = replace(mp, anonymous=False, copy_pending=False)
                inherited.add(mp.destination)
        parsed = [parse_bind(b) for b in h.binds] + [parse_mount_request(m) for m in h.mounts]
        for mp in parsed:
            _add(points, mp, inherited)
        for dest in record.config.volumes:
            clean = os.path.normpath(dest) if dest.startswith("/") else dest
            if clean in points:
                continue
            points[clean] = MountPoint("volume", _clean_dest(clean, "volume"), driver="local",
                                       anonymous=True, copy_pending=True)
        resolved = [self._materialize(mp, h.mounts) for mp in points.values()]
        if resolved:  # most containers have none: no row, no write
            self.table.set(record.id, resolved)
        return resolved

    def _materialize(self, mp: MountPoint, requests: tuple[MountRequest, ...]) -> MountPoint:
        if mp.type == "bind":
            if not os.path.exists(mp.source):
                # -v creates a missing host directory (--mount refused it while parsing)
                _makedirs_owned(Path(mp.source), self._owner)
            return mp
        if mp.type != "volume":
            return mp
        if mp.name and self._exists(mp.name):
            vol = self.volumes.get(mp.name)
        else:
            req = next((r for r in requests if r.target and os.path.normpath(r.target)
                        == mp.destination and r.type == "volume"), None)
            vol = self.volumes.create(mp.name or None, req.driver if req else "",
                                      req.driver_options if req else None,
                                      req.labels if req else None, anonymous=mp.anonymous)
        return replace(mp, name=vol.name, driver=vol.driver,
                       source=str(self.volumes.mountpoint(vol.name)))

    def _exists(self, name: str) -> bool:
        try:
            self.volumes.get(name)
        except NotFound:
            return False
        return True

    def mounts(self, container_id: str) -> list[MountPoint]:
        return self.table.get(container_id)

    def spec_mounts(self, record: ContainerRecord, rootfs: Path) -> list[runtime_spec.MountSpec]:
        """The OCI mounts for a container about to start (its rootfs is mounted)."""
        points = self.table.get(record.id)
        out: list[runtime_spec.MountSpec] = []
        changed = False
        for i, mp in enumerate(points):
            if mp.type == "tmpfs":
                out.append(runtime_spec.tmpfs_mount(mp.destination, mp.tmpfs_options))
                continue
            if mp.type == "volume":
                source = str(self.volumes.mount(mp.name))
                if mp.copy_pending:
                    self._copy_up(rootfs, mp, Path(source))
                    points[i] = replace(mp, copy_pending=False)
                    changed = True
            else:
                source = mp.source
                _check_bind_types(rootfs, source, mp.destination)
            out.append(runtime_spec.bind_mount(source, mp.destination, readonly=not mp.rw,
                                               propagation=mp.propagation or "rprivate"))
        if changed:
            self.table.set(record.id, points)
        return out

    def _copy_up(self, rootfs: Path, mp: MountPoint, data: Path) -> None:
        src = resolve_in_root(rootfs, mp.destination)
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode) or not self.volumes.is_empty(mp.name):
            return
        try:
            copy_tree(src, data)
        except OSError as err:
            raise Conflict(f"failed to copy image content into volume {mp.name}: {err}"
                           ) from err

    def release(self, record: ContainerRecord, remove_volumes: bool) -> None:
        """Forget the container's mounts; with ``remove_volumes``, its anonymous volumes go."""
        points = self.table.get(record.id)
        self.table.delete(record.id)
        if not remove_volumes:
            return
        for mp in points:
            if mp.type == "volume" and mp.anonymous:
                try:
                    self.volumes.remove_if_unused(mp.name)
                except BerthError as err:
                    log.warning("cannot remove volume %s: %s", mp.name, err)


def _makedirs_owned(path: Path, owner: tuple[int, int]) -> None:
    """``mkdir -p`` with mode 0755; what it creates belongs to ``owner`` (dockerd's rule)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=0o755, exist_ok=True)
        if owner != (0, 0):
            os.chown(d, *owner)


def _check_bind_types(rootfs: Path, source: str, dest: str) -> None:
    """A file cannot go onto a directory, nor a directory onto a file: say so clearly rather
    than let the runtime fail obscurely."""
    try:
        src_dir = os.path.isdir(source)
    except OSError:
        return
    target = resolve_in_root(rootfs, dest)
    try:
        st = os.stat(target)
    except OSError:
        return
    if src_dir != stat.S_ISDIR(st.st_mode):
        what = "a directory onto a file" if src_dir else "a file onto a directory"
        raise InvalidArgument(
            f'error mounting "{source}" to rootfs at "{dest}": not a directory: '
            f"Are you trying to mount {what}? Check if the specified host path exists and "
            "is the expected type")

