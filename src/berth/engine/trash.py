"""Deferred directory removal: rename now, delete in the background.

Removing a container's directory (its writable layer, a work dir the kernel left mode 000, the
log) is a few milliseconds of rmdir/unlink that ``run --rm`` would otherwise wait for. A rename
into ``<data-root>/trash/`` takes microseconds and makes the directory disappear at once; the
daemon empties the trash in a worker thread afterwards, when it closes, and at start-up (a crash
may have left something there).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


class Trash:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._path.mkdir(parents=True, exist_ok=True)
        self._task: asyncio.Task[None] | None = None
        self._again = False

    @property
    def path(self) -> Path:
        return self._path

    def discard(self, directory: Path) -> None:
        """Move ``directory`` (on the trash's file system) out of sight; removed later. If it
        cannot be moved it is removed right away."""
        target = self._path / f"{directory.name}.{secrets.token_hex(4)}"
        try:
            os.rename(directory, target)
        except FileNotFoundError:
            return
        except OSError as err:
            log.debug("cannot move %s to the trash (%s): removing it now", directory, err)
            shutil.rmtree(directory, ignore_errors=True)

    def empty(self) -> None:
        """Remove everything in the trash (blocking)."""
        try:
            names = os.listdir(self._path)
        except FileNotFoundError:
            return
        for name in names:
            shutil.rmtree(self._path / name, ignore_errors=True)

    def empty_soon(self) -> None:
        """Empty the trash in a worker thread; calls while that runs coalesce into one more."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._empty_in_thread())

    async def _empty_in_thread(self) -> None:
        while True:
            self._again = False
            await asyncio.to_thread(self.empty)
            if not self._again:
                return

    async def close(self) -> None:
        """Finish any background emptying, then make sure nothing is left."""
        if self._task is not None:
            try:
                await self._task
            except Exception:  # noqa: BLE001 - emptied again below
                log.exception("emptying the trash failed")
        await asyncio.to_thread(self.empty)
