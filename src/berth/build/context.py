"""The build context: a tar stream unpacked safely into a directory, the Dockerfile, .dockerignore.

``extract_context`` writes every entry under the target directory and nowhere else: names
that are absolute or climb with ``..`` are refused, a symlink in the archive is stored as a
link but never followed while later entries are written, and hard links must point at an
entry already inside the context. Owners from the archive are ignored (COPY sets its own).

``BuildContext.open`` finds the Dockerfile (``dockerfile`` as given, inside the context; the
docker CLI puts a Dockerfile from outside the context or from stdin into the tar under a
private name) and applies ``.dockerignore``: excluded files are removed, so COPY/ADD cannot see
them, including the Dockerfile and ``.dockerignore`` themselves when the patterns list them.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import logging
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from berth.build.dockerignore import DockerIgnore
from berth.errors import InvalidArgument, NotFound, UnsafeArchive

log = logging.getLogger(__name__)

__all__ = ["BuildContext", "extract_context", "clean_context_path", "DEFAULT_DOCKERFILE"]

DEFAULT_DOCKERFILE = "Dockerfile"
_CHUNK = 1 << 20


def clean_context_path(name: str) -> str:
    """A tar entry name as a clean relative path; raises UnsafeArchive when it would escape."""
    if name.startswith("/"):
        raise UnsafeArchive(f"invalid context entry {name!r}: absolute path")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafeArchive(f"invalid context entry {name!r}: path escapes the context")
        parts.append(part)
    return "/".join(parts)


def _open_parent(root_fd: int, rel: str) -> tuple[int, str]:
    """An fd of the directory holding ``rel`` (created as needed), never through a symlink."""
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeArchive(
                        f"invalid context entry {rel!r}: a parent is not a directory"
                    ) from err
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def _remove_entry(dir_fd: int, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        return  # directories merge
    os.unlink(name, dir_fd=dir_fd)


class _Completed(io.RawIOBase):
    """The tar stream, completed at its end: the docker CLI sends a context whose last member
    lacks its padding and the end-of-archive blocks (Go's reader accepts that), so pad it."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self._count = 0
        self._tail: bytes | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._tail is None:
            data = self._source.read(len(view))
            if data:
                self._count += len(data)
                view[: len(data)] = data
                return len(data)
            self._tail = bytes(-self._count % 512 + 1024)
        n = min(len(view), len(self._tail))
        view[:n] = self._tail[:n]
        self._tail = self._tail[n:]
        return n


def _decompressed(stream: BinaryIO) -> BinaryIO:
    """The context as an uncompressed tar stream (gzip, bzip2 and xz contexts are allowed)."""
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(
        cast(Any, stream))
    head = buffered.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.GzipFile(fileobj=buffered))
    if head.startswith(b"BZh"):
        return cast(BinaryIO, bz2.BZ2File(buffered))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.LZMAFile(buffered))
    return cast(BinaryIO, buffered)


def extract_context(stream: BinaryIO, dest: Path) -> None:
    """Unpack the context tar (plain or compressed) from ``stream`` into the directory ``dest``."""
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    dir_times: list[tuple[str, int]] = []
    source = cast(BinaryIO, io.BufferedReader(_Completed(_decompressed(stream)), 1 << 20))
    try:
        with tarfile.open(fileobj=source, mode="r|") as tar:
            for member in tar:
                rel = clean_context_path(member.name)
                if not rel:
                    continue
                _extract_member(tar, member, rel, root_fd)
                if member.isdir():
                    dir_times.append((rel, int(member.mtime)))
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as err:
        if isinstance(err, OSError) and not isinstance(err, gzip.BadGzipFile) and \
                err.errno is not None:
            raise
        raise InvalidArgument(f"failed to read the build context: {err}") from err
    finally:
        os.close(root_fd)
    for rel, mtime in reversed(dir_times):
        path = dest / rel
        if path.is_dir() and not path.is_symlink():
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, root_fd: int) -> None:
    dir_fd, name = _open_parent(root_fd, rel)
    try:
        mode = member.mode & 0o7777
        if member.isdir():
            try:
                os.mkdir(name, 0o755, dir_fd=dir_fd)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                    os.unlink(name, dir_fd=dir_fd)
                    os.mkdir(name, 0o755, dir_fd=dir_fd)
            os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
            return
        _remove_entry(dir_fd, name)
        if member.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                         dir_fd=dir_fd)
            try:
                src = tar.extractfile(member)
                if src is not None:
                    while chunk := src.read(_CHUNK):
                        os.write(fd, chunk)
                os.fchmod(fd, mode)
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=dir_fd)
            os.utime(name, (member.mtime, member.mtime), dir_fd=dir_fd, follow_symlinks=False)
        elif member.islnk():
            target = clean_context_path(member.linkname)
            tdir, tname = _open_parent(root_fd, target)
            try:
                if stat.S_ISDIR(os.lstat(tname, dir_fd=tdir).st_mode):
                    raise UnsafeArchive(f"invalid context entry {rel!r}: hard link to a directory")
                os.link(tname, name, src_dir_fd=tdir, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError as err:
                raise UnsafeArchive(
                    f"invalid context entry {rel!r}: hard link target {target!r} not found"
                ) from err
            finally:
                os.close(tdir)
        else:
            log.debug("skipping context entry %s of type %r", rel, member.type)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class BuildContext:
    """An unpacked context directory and the Dockerfile text found in it."""

    root: Path
    dockerfile_name: str
    dockerfile_text: str

    @classmethod
    def open(cls, root: Path, dockerfile: str = "") -> BuildContext:
        """Read the Dockerfile and apply ``.dockerignore`` to the unpacked context at ``root``."""
        name = dockerfile or DEFAULT_DOCKERFILE
        rel = clean_context_path(name.lstrip("/")) if not name.startswith("/") else ""
        if not rel:
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
        text = _read_inside(root, rel)
        if text is None and not dockerfile:
            text = _read_inside(root, "dockerfile")
            if text is not None:
                rel = "dockerfile"
        if text is None:
            raise NotFound(f"Cannot locate specified Dockerfile: {name}")
        if not text:
            raise InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
        ignore_text = _read_inside(root, ".dockerignore")
        if ignore_text is not None:
            _apply_ignore(root, DockerIgnore.from_text(ignore_text))
        return cls(root=root, dockerfile_name=rel, dockerfile_text=text)


def _read_inside(root: Path, rel: str) -> str | None:
    """A regular file's text, reached without following any symlink out of ``root``."""
    current = root
    for part in rel.split("/"):
        current = current / part
        if current.is_symlink():
            target = os.readlink(current)
            resolved = posixpath.normpath(
                posixpath.join("/", posixpath.relpath(str(current.parent), str(root)), target)
                if not target.startswith("/") else target
            ).lstrip("/")
            if resolved.startswith(".."):
                return None
            current = root / resolved
    try:
        if not current.is_file():
            return None
        return current.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


def _apply_ignore(root: Path, ignore: DockerIgnore) -> None:
    """Remove what ``.dockerignore`` excludes (walks only what exceptions could re-include)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep_dirs = []
        for name in dirnames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(dirpath, name)
            if ignore.matches(rel) and not ignore.should_walk(rel):
                shutil.rmtree(full, ignore_errors=True)
            else:
                keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if ignore.matches(rel):
                os.unlink(os.path.join(dirpath, name))


def new_context_dir(parent: Path) -> Path:
    """A fresh private directory for one build's context."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="context-", dir=parent))
