"""Copy-up: seed an empty volume with what the image has at the mount point, as Docker does.

Owners, modes, times, extended attributes, symlinks, hard links and special files are kept.
Nothing is followed out of the source tree: symlinks are copied as links, files are opened with
``O_NOFOLLOW``. ``resolve_in_root`` maps a container path to a host path under a root
directory, following the container's symlinks as the container would see them (``/`` and
``..`` stop at the root).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

_MAX_LINKS = 255
# overlayfs keeps its own bookkeeping in these; they never belong to a copy
_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "security.selinux")


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """The host path of container path ``path`` under ``root``, symlinks resolved inside it.

    Lexical: callers that need to defend against a concurrent writer open the result with
    ``O_NOFOLLOW`` (or work in a chroot).
    """
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(str(root), *resolved, part)
        if (parts or follow_last) and os.path.islink(candidate):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return Path(root, *resolved)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the contents of directory ``src`` into the existing directory ``dst``; ``dst``
    takes ``src``'s owner and mode too."""
    inodes: dict[tuple[int, int], str] = {}
    _copy_dir_contents(str(src), str(dst), inodes)
    st = os.lstat(src)
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(str(src), str(dst))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_dir_contents(src: str, dst: str, inodes: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        s, d = os.path.join(src, entry.name), os.path.join(dst, entry.name)
        st = os.lstat(s)
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in inodes:
            os.link(inodes[key], d, follow_symlinks=False)
            continue
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(d, 0o700)
            _copy_dir_contents(s, d, inodes)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(s, d)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(d, 0o600)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            os.mknod(d, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
        else:
            continue  # sockets are not content
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            inodes[key] = d
        _apply_meta(s, d, st)


def _copy_file(src: str, dst: str) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd_in).st_size
            copied = 0
            while copied < size:
                n = os.copy_file_range(fd_in, fd_out, size - copied)
                if n == 0:
                    break
                copied += n
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL):
                raise
            os.lseek(fd_in, 0, os.SEEK_SET)
            os.lseek(fd_out, 0, os.SEEK_SET)
            os.ftruncate(fd_out, 0)
            while chunk := os.read(fd_in, 1 << 20):
                os.write(fd_out, chunk)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _apply_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        # after chown: chown clears setuid/setgid bits
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    with contextlib.suppress(NotImplementedError, OSError):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(_SKIP_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as err:
            log.debug("xattr %s not copied to %s: %s", name, dst, err)
