"""Unpacked build contexts kept by the digest of the bytes the client sent.

A rebuild with nothing changed sends the same context tar again; unpacking it (one file create
per entry) was the largest part of a no-change rebuild. The incoming stream is spooled and
hashed first; when a context with the same digest and Dockerfile name is still unpacked, the
build reads that one (BuildKit keeps its local sources between builds for the same reason).
Builds only read their context (a read-write ``RUN --mount=type=bind`` gets a throw-away
copy), so an entry can serve several builds at once. The newest few small contexts of
successful builds are kept, with in-memory bookkeeping only: berthd empties the directory
when it starts.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from berth.build.context import BuildContext, extract_context

__all__ = ["ContextCache", "ContextLease"]

_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 8 << 20


@dataclass
class ContextLease:
    """One unpacked context and how many builds read it."""

    root: Path
    context: BuildContext
    users: int = 0
    evicted: bool = False


class ContextCache:
    """Hands out unpacked contexts; keeps up to ``keep`` of at most ``max_bytes`` each."""

    def __init__(self, directory: Path, keep: int = 4, max_bytes: int = 64 << 20) -> None:
        self._dir = directory
        self._keep = keep
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, ContextLease] = OrderedDict()
        self._lock = threading.Lock()
        self._dir.mkdir(parents=True, exist_ok=True)
        for stale in self._dir.iterdir():  # left by a daemon that died mid-build
            shutil.rmtree(stale, ignore_errors=True)

    def acquire(self, body: BinaryIO, dockerfile: str) -> ContextLease:
        """The context ``body`` holds, unpacked (blocking: run it in a worker thread).

        Hand the lease back with ``release`` when the build is over."""
        with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY, mode="w+b",
                                           dir=str(self._dir)) as spool:
            digest = hashlib.sha256()
            size = 0
            while chunk := body.read(_CHUNK):
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            key = f"{digest.hexdigest()}\0{dockerfile}"
            entry = self._take(key)
            if entry is None:
                spool.seek(0)
                entry = self._unpack(cast(BinaryIO, spool), dockerfile)
                if size <= self._max_bytes:
                    self._add(key, entry)
        return entry

    def release(self, lease: ContextLease, keep: bool = True) -> None:
        """The build is over. ``keep=False`` (a failed build) drops the context from the
        cache; a context no longer kept is removed once no build reads it."""
        with self._lock:
            if not keep and not lease.evicted:
                for key, entry in self._entries.items():
                    if entry is lease:
                        del self._entries[key]
                        break
                lease.evicted = True
            lease.users -= 1
            remove = lease.evicted and lease.users == 0
        if remove:
            shutil.rmtree(lease.root, ignore_errors=True)

    def _unpack(self, tar: BinaryIO, dockerfile: str) -> ContextLease:
        root = Path(tempfile.mkdtemp(prefix="context-", dir=self._dir))
        try:
            context_dir = root / "context"
            context_dir.mkdir()
            extract_context(tar, context_dir)
            context = BuildContext.open(context_dir, dockerfile)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return ContextLease(root, context, users=1, evicted=True)

    def _take(self, key: str) -> ContextLease | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                entry.users += 1
            return entry

    def _add(self, key: str, entry: ContextLease) -> None:
        doomed: list[ContextLease] = []
        with self._lock:
            if key in self._entries:  # another build unpacked the same bytes meanwhile
                return
            entry.evicted = False
            self._entries[key] = entry
            while len(self._entries) > self._keep:
                _, old = self._entries.popitem(last=False)
                old.evicted = True
                if old.users == 0:
                    doomed.append(old)
        for old in doomed:
            shutil.rmtree(old.root, ignore_errors=True)
