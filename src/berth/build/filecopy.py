"""COPY and ADD on real directories: find the sources, hash them, write them into a rootfs.

Every path inside a root (the build context, another stage's rootfs, the rootfs being built)
is resolved with ``resolve_in_root``: symlinks are followed as if the root were ``/``, so a
link like ``/etc -> /host/etc`` in an image can never make the builder write on the host.

Docker's rules: a source directory's *contents* are copied; a file goes to ``dest/<name>``
when ``dest`` ends in ``/`` or is an existing directory, else to ``dest`` itself; several
sources need a ``/``-terminated dest; missing parents are created with mode 0755; without
``--chown`` everything written belongs to 0:0; mode and mtime come from the source.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from berth.build.shell import glob_to_regex
from berth.errors import InvalidArgument
from berth.snapshot.archive import apply_tar

__all__ = [
    "SourceFile", "resolve_in_root", "find_sources", "sources_digest", "copy_sources",
    "write_file", "is_archive", "extract_archive", "parse_chmod", "has_glob", "Owner",
]

_MAX_LINKS = 40
_CHUNK = 1 << 20
_GLOB_CHARS = re.compile(r"[*?\[]")


def has_glob(pattern: str) -> bool:
    return _GLOB_CHARS.search(pattern) is not None


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """The host path of ``path`` inside ``root``, every symlink resolved within ``root``.

    Components that do not exist are kept as written. With ``follow_last`` False a final
    symlink is returned as is (to be replaced, not written through).
    """
    todo = [p for p in path.split("/") if p]
    todo.reverse()
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if (todo or follow_last) and candidate.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                raise InvalidArgument(f"too many levels of symbolic links: {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo.extend(reversed([p for p in target.split("/") if p]))
            continue
        done.append(part)
    return root.joinpath(*done)


@dataclass(frozen=True)
class SourceFile:
    """One resolved COPY/ADD source: ``rel`` as matched (for messages), ``path`` on the host."""

    rel: str
    path: Path
    is_dir: bool


def _clean(source: str) -> str:
    # leading "/" and ".." cannot leave the source root: they are cleaned away, as Docker does
    return posixpath.normpath("/" + source).lstrip("/")


def find_sources(root: Path, patterns: list[str], *, cmd: str = "COPY",
                 from_context: bool = True) -> list[SourceFile]:
    """The sources ``patterns`` name under ``root``; Docker's errors when there are none."""
    found: list[SourceFile] = []
    for pattern in patterns:
        rel = _clean(pattern)
        if has_glob(rel):
            found.extend(_glob(root, rel))
            continue
        path = resolve_in_root(root, rel)
        if not os.path.lexists(path) or path.is_symlink():
            if from_context:
                raise InvalidArgument(
                    f"{cmd} failed: file not found in build context or excluded by "
                    f".dockerignore: stat {rel or '.'}: file does not exist")
            raise InvalidArgument(f"{cmd} failed: stat {'/' + rel}: file does not exist")
        found.append(SourceFile(rel or ".", path, path.is_dir()))
    if not found:
        raise InvalidArgument(f"{cmd} failed: no source files were specified")
    return found


def _glob(root: Path, rel: str) -> Iterator[SourceFile]:
    parts = rel.split("/")
    regexes = [re.compile(glob_to_regex(p), re.DOTALL) if has_glob(p) else None for p in parts]

    def walk(base: Path, index: int, prefix: str) -> Iterator[SourceFile]:
        part, rx = parts[index], regexes[index]
        if rx is None:
            names = [part]
        else:
            try:
                names = sorted(os.listdir(base))
            except (FileNotFoundError, NotADirectoryError):
                return
            names = [n for n in names if rx.fullmatch(n)]
        for name in names:
            path = base / name
            if not os.path.lexists(path):
                continue
            rel_name = f"{prefix}/{name}" if prefix else name
            if index + 1 < len(parts):
                if path.is_dir() and not path.is_symlink():
                    yield from walk(path, index + 1, rel_name)
                continue
            if path.is_symlink():
                path = resolve_in_root(root, rel_name)
                if not os.path.lexists(path) or path.is_symlink():
                    continue
            yield SourceFile(rel_name, path, path.is_dir())

    yield from walk(root, 0, "")


# -- cache keys --------------------------------------------------------------------------------


def sources_digest(sources: list[SourceFile]) -> str:
    """Docker-style ``file:<hex>`` / ``dir:<hex>`` / ``multi:<hex>`` over content and metadata.

    Names, types, modes, sizes, link targets and bytes count; mtimes do not (BuildKit's rule),
    so the key changes exactly when what COPY would write changes.
    """
    hashes = []
    for src in sources:
        h = hashlib.sha256()
        if src.is_dir:
            for path, rel in _tree(src.path):
                _hash_entry(h, path, rel)
            hashes.append("dir:" + h.hexdigest())
        else:
            _hash_entry(h, src.path, "")
            hashes.append("file:" + h.hexdigest())
    if len(hashes) == 1:
        return hashes[0]
    return "multi:" + hashlib.sha256(",".join(hashes).encode()).hexdigest()


def _tree(top: Path) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, top)
        rel_dir = "" if rel_dir == "." else rel_dir
        yield Path(dirpath), rel_dir
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(Path(dirpath, d))]):
            yield Path(dirpath, name), f"{rel_dir}/{name}" if rel_dir else name


def _hash_entry(h: hashlib._Hash, path: Path, rel: str) -> None:
    st = os.lstat(path)
    h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
    if stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(path).encode() + b"\0")
    elif stat.S_ISREG(st.st_mode):
        h.update(f"{st.st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    h.update(b"\n")


# -- writing -----------------------------------------------------------------------------------


def parse_chmod(text: str | None) -> int | None:
    """``--chmod=755`` → 0o755 (octal only, as the classic builder and BuildKit < 1.14)."""
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise InvalidArgument(f"invalid chmod parameter: {text}")
    return int(text, 8)


@dataclass(frozen=True)
class Owner:
    uid: int = 0
    gid: int = 0


def _mkdirs(rootfs: Path, path: str, owner: Owner) -> Path:
    """``path`` as a directory inside ``rootfs``, missing parts created 0755 with ``owner``."""
    current = ""
    for part in [p for p in path.split("/") if p]:
        current = f"{current}/{part}"
        host = resolve_in_root(rootfs, current)
        if host.is_dir():
            continue
        if os.path.lexists(host):
            raise InvalidArgument(f"cannot copy to {current}: not a directory")
        os.mkdir(host, 0o755)
        os.chmod(host, 0o755)
        os.chown(host, owner.uid, owner.gid)
    return resolve_in_root(rootfs, path)


def _dest_for_file(rootfs: Path, dest: str, name: str, as_dir: bool, owner: Owner) -> Path:
    if as_dir or resolve_in_root(rootfs, dest).is_dir():
        parent = _mkdirs(rootfs, dest, owner)
        return parent / name
    parent_path, base = posixpath.split(dest.rstrip("/"))
    parent = _mkdirs(rootfs, parent_path or "/", owner)
    target = resolve_in_root(rootfs, posixpath.join(parent_path or "/", base), follow_last=False)
    if target.parent != parent:  # the parent itself was a link; stay inside the rootfs
        target = parent / base
    return target


def _replace(target: Path, is_dir: bool) -> None:
    if not os.path.lexists(target):
        return
    if target.is_dir() and not target.is_symlink():
        if is_dir:
            return
        raise InvalidArgument(f"cannot overwrite directory {target.name!r} with a non-directory")
    if is_dir:
        raise InvalidArgument(f"cannot overwrite non-directory {target.name!r} with a directory")
    os.unlink(target)


def _copy_entry(src: Path, target: Path, owner: Owner | None, chmod: int | None) -> None:
    st = os.lstat(src)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        _replace(target, True)
        if not os.path.lexists(target):
            os.mkdir(target, 0o700)
    elif stat.S_ISLNK(st.st_mode):
        _replace(target, False)
        os.symlink(os.readlink(src), target)
    elif stat.S_ISREG(st.st_mode):
        _replace(target, False)
        with open(src, "rb") as fin:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
    else:
        return  # sockets, fifos and devices are not copied from a context
    uid, gid = (owner.uid, owner.gid) if owner else (st.st_uid, st.st_gid)
    os.chown(target, uid, gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, chmod if chmod is not None else mode)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_sources(rootfs: Path, sources: list[SourceFile], dest: str, *, owner: Owner | None,
                 chmod: int | None, as_dir: bool = False) -> None:
    """Copy ``sources`` to the absolute ``dest`` inside ``rootfs`` with Docker's rules.

    ``owner`` None keeps each source's owner; pass ``Owner()`` for Docker's default 0:0.
    """
    as_dir = as_dir or dest.endswith("/") or len(sources) > 1
    new_owner = owner or Owner()
    for src in sources:
        if src.is_dir:
            _mkdirs(rootfs, dest, new_owner)
            for path, rel in _tree(src.path):
                if not rel:
                    continue
                target = resolve_in_root(rootfs, posixpath.join(dest, rel), follow_last=False)
                _copy_entry(path, target, owner, chmod)
        else:
            name = posixpath.basename(src.rel) if src.rel != "." else src.path.name
            target = _dest_for_file(rootfs, dest, name, as_dir, new_owner)
            _copy_entry(src.path, target, owner, chmod)


def write_file(rootfs: Path, dest: str, name: str, data: BinaryIO, *, mode: int, mtime: float,
               owner: Owner, as_dir: bool) -> None:
    """Write a file from a stream (ADD URL, heredoc) to ``dest`` (``dest/name`` for a dir)."""
    target = _dest_for_file(rootfs, dest, name, as_dir, owner)
    _replace(target, False)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fout:
        shutil.copyfileobj(data, fout, _CHUNK)
    os.chown(target, owner.uid, owner.gid)
    os.chmod(target, mode)
    os.utime(target, (mtime, mtime))


# -- archives (ADD) ----------------------------------------------------------------------------


def is_archive(path: Path) -> bool:
    """Whether a local ADD source is a tar (plain, gzip, bzip2 or xz), judged by content."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(512)
        except (OSError, EOFError):
            return False
        return _is_tar(inner)
    if head.startswith(b"BZh"):
        try:
            with bz2.open(path, "rb") as b:
                return _is_tar(b.read(512))
        except (OSError, EOFError):
            return False
    if head.startswith(b"\xfd7zXZ\x00"):
        try:
            with lzma.open(path, "rb") as x:
                return _is_tar(x.read(512))
        except (OSError, EOFError, lzma.LZMAError):
            return False
    return _is_tar(head)


def _is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def extract_archive(rootfs: Path, path: Path, dest: str, owner: Owner | None) -> None:
    """Unpack a local tar into the directory ``dest`` (merged, file by file)."""
    target = _mkdirs(rootfs, dest, owner or Owner())
    with open(path, "rb") as raw:
        head = raw.read(6)
    stream: BinaryIO
    if head.startswith(b"\x1f\x8b"):
        stream = gzip.open(path, "rb")  # type: ignore[assignment]
    elif head.startswith(b"BZh"):
        stream = bz2.open(path, "rb")  # type: ignore[assignment]
    elif head.startswith(b"\xfd7zXZ\x00"):
        stream = lzma.open(path, "rb")  # type: ignore[assignment]
    else:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    with stream:
        apply_tar(stream, target)
    if owner is not None:  # --chown applies to what the archive brought, nothing else
        for name in _member_names(path):
            entry = resolve_in_root(target, name, follow_last=False)
            if os.path.lexists(entry):
                os.chown(entry, owner.uid, owner.gid, follow_symlinks=False)


def _member_names(path: Path) -> list[str]:
    with tarfile.open(path, "r:*") as tar:
        return [m.name for m in tar if m.name.strip("./")]
