"""The engine side of ``RUN --mount``: cache directories, mount requests, mount-point stubs.

Cache mounts live in ``<data-root>/builder/cache-mounts/<id>`` (the id percent-encoded so it
is one safe file name) and outlive builds. ``sharing``: ``shared`` lets concurrent steps use
one directory, ``locked`` makes them take turns, ``private`` gives a step that finds the
directory in use a fresh throw-away one (BuildKit's meanings).

The runtime creates a missing mount point in the container's writable layer; such stubs are
not the step's work, so ``remove_stubs`` deletes them (and parents created only for them)
before the layer is written, as BuildKit does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from berth.build.run_mounts import RunMount
from berth.engine.model import MountRequest
from berth.oci.idmap import IdentityMapping

__all__ = ["CacheMounts", "remove_stubs"]

_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


class CacheMounts:
    """The daemon's cache-mount directories and who is using them."""

    def __init__(self, root: Path, ids: IdentityMapping | None = None) -> None:
        """``ids``: a ``--userns-remap`` daemon's mapping (a cache's owner is shifted)."""
        self._root = root
        self._ids = ids or IdentityMapping()
        self._root.mkdir(parents=True, exist_ok=True)
        self._users: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def path_for(self, cache_id: str) -> Path:
        return self._root / urllib.parse.quote(cache_id, safe="").replace(".", "%2E")

    @contextlib.asynccontextmanager
    async def requests(self, mounts: Sequence[RunMount]) -> AsyncIterator[tuple[MountRequest, ...]]:
        """Mount requests for a step's mounts; cache directories held until the context ends."""
        async with contextlib.AsyncExitStack() as stack:
            out = []
            for m in mounts:
                if m.kind == "cache":
                    path = await stack.enter_async_context(self._use(m))
                    out.append(MountRequest(type="bind", source=str(path), target=m.target,
                                            read_only=m.readonly))
                elif m.kind == "tmpfs":
                    out.append(MountRequest(type="tmpfs", target=m.target, tmpfs_size=m.size))
                else:
                    assert m.source is not None
                    out.append(MountRequest(type="bind", source=str(m.source), target=m.target,
                                            read_only=m.readonly))
            yield tuple(out)

    @contextlib.asynccontextmanager
    async def _use(self, m: RunMount) -> AsyncIterator[Path]:
        key = m.cache_id
        if m.sharing == "private" and self._users.get(key):
            tmp = Path(tempfile.mkdtemp(prefix=".private-", dir=self._root))
            try:
                _prepare(tmp, m, self._ids)
                yield tmp
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
            return
        lock = self._locks.setdefault(key, asyncio.Lock()) if m.sharing == "locked" else None
        async with lock or contextlib.nullcontext():
            path = self.path_for(key)
            if not path.is_dir():
                tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=self._root))
                _prepare(tmp, m, self._ids)
                try:
                    tmp.rename(path)
                except OSError:  # made by a concurrent step meanwhile
                    tmp.rmdir()
            self._users[key] = self._users.get(key, 0) + 1
            try:
                yield path
            finally:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key]


def _prepare(path: Path, m: RunMount, ids: IdentityMapping) -> None:
    os.chmod(path, m.mode)
    os.chown(path, *ids.to_host(m.uid, m.gid))


def remove_stubs(upper: Path, lowers: Sequence[Path], targets: Sequence[str]) -> None:
    """Delete mount points the runtime created in ``upper`` for ``targets``: empty, not
    opaque, absent from every lower layer; then their parents made only for them."""
    for target in sorted(set(targets), key=len, reverse=True):
        rel = target.strip("/")
        while rel:
            path = upper / rel
            if not _is_stub(path) or any(os.path.lexists(low / rel) for low in lowers):
                break
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
            rel = os.path.dirname(rel)


def _is_stub(path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if not stat.S_ISDIR(st.st_mode):
        return False
    for name in _OPAQUE:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name) == b"y":
                return False
    with os.scandir(path) as entries:
        return next(entries, None) is None
