"""What a writable layer changed: ``docker diff`` (``GET /containers/{id}/changes``).

The changes are those between two views: the image (the read-only ``lowers``, merged with
overlayfs rules: whiteouts hide, an opaque directory hides what lies below it) and the container
(``upper`` over the image). Only the upper directory has to be walked:

- a whiteout (0/0 character device) is ``D`` when the image has the name;
- an entry the image lacks is ``A``, and so is everything below a new directory;
- an entry in both is ``C`` when its type, mode or owner differ, or, for a non-directory, its
  size, mtime or device (an open for writing alone copies a file up unchanged: no change);
- a directory in both is ``C`` when anything below it changed; below an opaque directory, every
  name the image had and the upper directory lacks is ``D``.

That is what dockerd reports for overlay2 (its naive diff compares the same fields). Within a
directory, names are sorted; a directory comes before what changed below it. Everything is read
through directory descriptors without following symlinks, so a running container that swaps a
directory for a link to ``/`` cannot make us read the host.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from berth.snapshot.archive import OPAQUE_XATTR

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ChangeKind(enum.IntEnum):
    """Docker's ``Kind`` numbers."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2

    @property
    def letter(self) -> str:
        return "CAD"[self]


@dataclass(frozen=True)
class Change:
    path: str
    kind: ChangeKind


def layer_changes(upper: Path, lowers: list[Path], hidden: Collection[str] = ()) -> list[Change]:
    """The changes ``upper`` makes to ``lowers`` (top layer first). ``hidden`` paths (and what
    lies below them) are left out, and so is a new directory that only holds hidden paths."""
    try:
        root = os.open(upper, _DIR_FLAGS)
    except FileNotFoundError:
        return []  # never mounted: nothing written yet
    try:
        with _LowerView(lowers) as image:
            return _Walk(image, frozenset(hidden)).directory(root, (), merged=True)
    finally:
        os.close(root)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(fd: int) -> bool:
    for name in (OPAQUE_XATTR, "user.overlay.opaque"):
        try:
            if os.getxattr(fd, name) == b"y":
                return True
        except OSError as err:
            if err.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise
    return False


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


@contextlib.contextmanager
def _subdir(dir_fd: int, name: str) -> Iterator[int | None]:
    """The directory ``name`` opened, or None when it is gone or was replaced meanwhile."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        fd = -1
    try:
        yield fd if fd >= 0 else None
    finally:
        if fd >= 0:
            os.close(fd)


def _differs(new: os.stat_result, old: os.stat_result) -> bool:
    if (new.st_mode, new.st_uid, new.st_gid) != (old.st_mode, old.st_uid, old.st_gid):
        return True
    if stat.S_ISDIR(new.st_mode):
        return False  # a directory's size and mtime say nothing about its entries
    return (new.st_size, new.st_mtime_ns, new.st_rdev) != (old.st_size, old.st_mtime_ns,
                                                          old.st_rdev)


class _LowerView:
    """The image's layers merged, read by path components through directory descriptors."""

    def __init__(self, lowers: list[Path]) -> None:
        self._lowers = lowers
        self._fds: list[int] = []

    def __enter__(self) -> _LowerView:
        for layer in self._lowers:
            self._fds.append(os.open(layer, _DIR_FLAGS))
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds:
            os.close(fd)

    def _layers_at(self, parts: tuple[str, ...]) -> Iterator[tuple[int, os.stat_result]]:
        """(fd if a directory else -1, stat) of ``parts`` in each layer that shows through at
        it, top first; the fd is closed when the iteration moves on."""
        for layer in self._fds:
            fd, st, last = self._resolve(layer, parts)
            try:
                if st is not None:
                    yield fd, st
            finally:
                if fd >= 0 and fd != layer:
                    os.close(fd)
            if last:
                return

    @staticmethod
    def _resolve(layer: int, parts: tuple[str, ...]) -> tuple[int, os.stat_result | None, bool]:
        """``parts`` in one layer: (its fd if a directory else -1, its stat or None, whether
        the layers below are hidden there: a whiteout, a non-directory on the way, or an opaque
        directory on the way or at the end)."""
        current = layer
        hidden_below = False
        try:
            for i, name in enumerate(parts):
                st = _lstat(name, current)
                if st is None:
                    return -1, None, hidden_below
                if _is_whiteout(st):
                    return -1, None, True
                last = i == len(parts) - 1
                if not stat.S_ISDIR(st.st_mode):
                    return -1, (st if last else None), True
                fd = os.open(name, _DIR_FLAGS, dir_fd=current)
                if current != layer:
                    os.close(current)
                current = fd
                hidden_below = hidden_below or _is_opaque(current)
                if last:
                    return current, st, hidden_below
            return current, os.fstat(current), False
        except BaseException:
            if current != layer:
                os.close(current)
            raise

    def lookup(self, parts: tuple[str, ...]) -> os.stat_result | None:
        for _fd, st in self._layers_at(parts):
            return st
        return None

    def children(self, parts: tuple[str, ...]) -> dict[str, os.stat_result]:
        """The entries of directory ``parts`` in the merged image (none if it is not one)."""
        seen: dict[str, os.stat_result | None] = {}
        for fd, st in self._layers_at(parts):
            if fd < 0 or not stat.S_ISDIR(st.st_mode):
                break
            for name in os.listdir(fd):
                if name not in seen:
                    entry = _lstat(name, fd)
                    seen[name] = None if entry is None or _is_whiteout(entry) else entry
        return {name: st for name, st in seen.items() if st is not None}


class _Walk:
    def __init__(self, image: _LowerView, hidden: frozenset[str]) -> None:
        self.image = image
        self.hidden = hidden

    def _holds_hidden(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return any(h.startswith(prefix) for h in self.hidden)

    def directory(self, fd: int, parts: tuple[str, ...], merged: bool) -> list[Change]:
        """Changes below directory ``parts`` of the upper layer (open as ``fd``); ``merged``:
        the container sees the image's entries here too (no opaque directory on the way)."""
        upper = {name: st for name in os.listdir(fd) if (st := _lstat(name, fd)) is not None}
        image = self.image.children(parts)
        changes: list[Change] = []
        for name in sorted(set(upper) | set(image)):
            sub = (*parts, name)
            path = "/" + "/".join(sub)
            if path in self.hidden:
                continue
            new, old = upper.get(name), image.get(name)
            if new is None:
                if not merged:  # behind an opaque directory: gone from the container's view
                    changes.append(Change(path, ChangeKind.DELETED))
                continue
            if _is_whiteout(new):
                if old is not None:
                    changes.append(Change(path, ChangeKind.DELETED))
                continue
            if old is None:
                below = self.added(fd, name, sub) if stat.S_ISDIR(new.st_mode) else []
                if below or not (stat.S_ISDIR(new.st_mode) and self._holds_hidden(path)):
                    changes.append(Change(path, ChangeKind.ADDED))
                changes += below
                continue
            if stat.S_ISDIR(new.st_mode) and stat.S_ISDIR(old.st_mode):
                below = []
                with _subdir(fd, name) as child:
                    if child is not None:
                        below = self.directory(child, sub, merged and not _is_opaque(child))
                if below or _differs(new, old):
                    changes.append(Change(path, ChangeKind.MODIFIED))
                changes += below
                continue
            if _differs(new, old):
                changes.append(Change(path, ChangeKind.MODIFIED))
            if stat.S_ISDIR(new.st_mode):  # a directory where the image had a file
                changes += self.added(fd, name, sub)
            elif stat.S_ISDIR(old.st_mode):  # a file where the image had a directory
                changes += [Change(f"{path}/{n}", ChangeKind.DELETED)
                            for n in sorted(self.image.children(sub))]
        return changes

    def added(self, fd: int, name: str, parts: tuple[str, ...]) -> list[Change]:
        """Everything below a directory the image does not have."""
        changes: list[Change] = []
        with _subdir(fd, name) as child:
            if child is None:
                return changes
            for entry in sorted(os.listdir(child)):
                st = _lstat(entry, child)
                sub = (*parts, entry)
                path = "/" + "/".join(sub)
                if st is None or _is_whiteout(st) or path in self.hidden:
                    continue
                below = self.added(child, entry, sub) if stat.S_ISDIR(st.st_mode) else []
                if below or not (stat.S_ISDIR(st.st_mode) and self._holds_hidden(path)):
                    changes.append(Change(path, ChangeKind.ADDED))
                changes += below
        return changes
