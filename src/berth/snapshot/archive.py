"""Layer tars: apply one onto a layer's diff directory, write one from an overlay upper directory.

A diff directory is stored in overlayfs format, so a stack of them can be mounted as is:
an OCI whiteout ``dir/.wh.NAME`` becomes a character device 0:0 named ``NAME`` and an opaque
marker ``dir/.wh..wh..opq`` becomes the xattr ``trusted.overlay.opaque=y`` on ``dir``.
``write_diff`` does the reverse for an upper directory.

Tar entries are hostile input. Names are cleaned as Docker does (absolute names are relative to
the layer root, ``..`` that climbs out is refused), every parent component is resolved inside
``dest`` (a relative symlink that stays inside is followed, an absolute one or one that climbs
out is refused), the final component is never followed, and hard links may only point at
entries inside ``dest``. Nothing is ever written outside ``dest``.

With an ``IdentityMapping`` (``--userns-remap``) owners are shifted on the way in (container
IDs in the tar → host IDs on disk) and back on the way out, so a remapped daemon's layers belong
to its containers' root while every tar it reads or writes stays portable.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import stat
import tarfile
from collections import deque
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO, cast

from berth.content import writeback
from berth.errors import Internal, InvalidArgument, UnsafeArchive
from berth.oci.idmap import IdentityMapping

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_AUFS_META_PREFIX = ".wh..wh."
_XATTR_PAX_PREFIX = "SCHILY.xattr."
# overlayfs' own xattrs would let a layer steer the kernel (redirects, metacopy): never taken
# from a tar; the opaque marker is the only one we set, from the OCI marker file.
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# Docker records only file capabilities in the layers it writes; other xattrs are host-specific.
_EXPORTED_XATTRS = ("security.capability",)
_MAX_SYMLINK_HOPS = 40
_COPY_CHUNK = 1 << 20
# tarfile's stream reader copies what it holds at each read: 64 KiB pieces keep that cheap for
# headers and still make few calls for file data (its default, 10 KiB, makes 100 per MiB)
_TAR_BUFSIZE = 64 * 1024
# failures of the host, not of the archive
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM})


def _q(text: str) -> str:
    """Quote like Go's %q, which is how Docker's messages show names."""
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# apply


def apply_tar(tar_stream: BinaryIO, dest: Path, ids: IdentityMapping | None = None) -> None:
    """Apply an uncompressed layer tar onto ``dest``, the layer's own diff directory.

    With ``ids`` every owner is shifted to the host (an ID outside the mapping fails, as in
    dockerd); directories the tar does not list are made owned by the mapped root.

    Raises UnsafeArchive for hostile or malformed entries (``dest`` may then hold a partial
    tree: the caller unpacks into a temporary directory and discards it).
    """
    if not os.path.isdir(dest):
        raise InvalidArgument(f"cannot apply a layer to {_q(str(dest))}: not a directory")
    applier = _Applier(Path(os.path.realpath(dest)), ids or IdentityMapping())
    source = _TarInput(tar_stream)
    name = ""
    try:
        with tarfile.open(fileobj=cast(BinaryIO, source), mode="r|",
                          bufsize=_TAR_BUFSIZE) as tar:
            for member in tar:
                name = member.name
                applier.apply(tar, member)
                source.check_member(member)
            source.check_end(tar.offset)
        applier.finish()
    except tarfile.TarError as err:
        raise UnsafeArchive(f"invalid tar layer: {err}") from err
    except OSError as err:
        if err.errno in _HOST_ERRNOS:
            raise Internal(f"failed to apply layer at {_q(name)}: {err.strerror}") from err
        # anything else is the archive's doing (a name too long, a loop, a clash)
        raise UnsafeArchive(f"failed to apply layer entry {_q(name)}: {err.strerror}") from err


class _TarInput:
    """What tarfile reads: the layer stream, completed when it stops right after a member.

    ``umoci insert`` writes tars that end without the end-of-archive blocks, even without the
    last member's padding; Go's reader (so Docker and containerd) takes them, so we do too: at
    the end of the real data we serve the missing zeros. What must not pass for a short tar is
    checked apart: a member whose data runs past the real end, and a header that does not
    parse (tarfile alone would end the archive there quietly).
    """

    _KEEP = 2 * _TAR_BUFSIZE  # more than tarfile buffers ahead of the header it parses

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._pos = 0
        self._real_end: int | None = None
        self._synthetic = b""
        self._tail: deque[bytes] = deque()  # the last pieces read, at least _KEEP bytes
        self._tail_size = 0

    def read(self, size: int = -1) -> bytes:
        if self._real_end is None:
            data = self._source.read(size)
            if data or size == 0:
                return self._record(data)
            self._real_end = self._pos
            self._synthetic = bytes(-self._pos % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)
        count = len(self._synthetic) if size < 0 else min(size, len(self._synthetic))
        data, self._synthetic = self._synthetic[:count], self._synthetic[count:]
        return self._record(data)

    def _record(self, data: bytes) -> bytes:
        self._pos += len(data)
        self._tail.append(data)  # kept as pieces: no copying on the way
        self._tail_size += len(data)
        while self._tail_size - len(self._tail[0]) >= self._KEEP:
            self._tail_size -= len(self._tail.popleft())
        return data

    def check_member(self, member: tarfile.TarInfo) -> None:
        end = member.offset_data + (member.size if member.isreg() else 0)
        if self._real_end is not None and end > self._real_end:
            raise UnsafeArchive(f"invalid tar layer: unexpected end of data in {_q(member.name)}")

    def check_end(self, offset: int) -> None:
        """The block where tarfile stopped must be zeros (or past the real data)."""
        if self._real_end is not None and offset >= self._real_end:
            return
        start = offset - (self._pos - self._tail_size)
        tail = b"".join(self._tail)
        block = tail[start : start + tarfile.BLOCKSIZE] if start >= 0 else b""
        if any(block):
            raise UnsafeArchive(f"invalid tar layer: invalid tar header at offset {offset}")


class _Applier:
    """Applies tar members one at a time; directory mtimes are set at the end."""

    def __init__(self, dest: Path, ids: IdentityMapping) -> None:
        self.dest = dest
        self._ids = ids
        self._dir_times: list[tuple[str, int]] = []

    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _clean_name(member.name, self.dest)
        if not parts:
            self._apply_root(member)
            return
        base = parts[-1]
        if base == OPAQUE_MARKER:
            parent = self._resolve(parts[:-1], member.name, create=True)
            os.setxattr(self._abs(parent), OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        if base.startswith(_AUFS_META_PREFIX) or (
            parts[0].startswith(_AUFS_META_PREFIX) and parts[0] != OPAQUE_MARKER
        ):
            # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): never content, as in Docker
            log.debug("skipping aufs metadata entry %s", member.name)
            return
        if base.startswith(WHITEOUT_PREFIX):
            self._apply_whiteout(parts[:-1], base[len(WHITEOUT_PREFIX) :], member)
            return
        parent = self._resolve(parts[:-1], member.name, create=True)
        rel = (*parent, base)
        path = self._abs(rel)
        if member.islnk():
            # resolve the target first: a link onto itself must not delete its own target
            target = self._hardlink_target(member)
            if target == path:
                return
            self._clear(path, is_dir=False)
            os.link(target, path, follow_symlinks=False)
            return
        self._clear(path, is_dir=member.isdir())
        if member.isreg():
            self._write_file(tar, member, path)
            return
        if member.isdir():
            if not os.path.lexists(path):
                os.mkdir(path, 0o700)
            self._set_meta(path, member)
            self._dir_times.append((path, _mtime_ns(member)))
        elif member.issym():
            _check_symlink(parent, member, self.dest)
            os.symlink(member.linkname, path)
            self._set_meta(path, member)
            os.utime(path, ns=_times(member), follow_symlinks=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = (
                stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            )
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            self._set_meta(path, member)
            os.utime(path, ns=_times(member), follow_symlinks=False)
        else:
            raise UnsafeArchive(f"unhandled tar header type {member.type!r} for {_q(member.name)}")

    def finish(self) -> None:
        # children change their directory's mtime: set directories last, deepest first
        for path, mtime in reversed(self._dir_times):
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    # -- entry kinds -------------------------------------------------------------------------

    def _apply_root(self, member: tarfile.TarInfo) -> None:
        if not member.isdir():
            raise UnsafeArchive(f"invalid tar layer: root {_q(member.name)} is not a directory")
        self._set_meta(str(self.dest), member)
        self._dir_times.append((str(self.dest), _mtime_ns(member)))

    def _apply_whiteout(
        self, parent_parts: tuple[str, ...], name: str, member: tarfile.TarInfo
    ) -> None:
        if name in ("", ".", ".."):
            raise UnsafeArchive(f"invalid whiteout entry {_q(member.name)}")
        parent = self._resolve(parent_parts, member.name, create=True)
        path = self._abs((*parent, name))
        if os.path.lexists(path):
            # an entry added by this same layer wins: whiteouts only hide lower layers
            return
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
        os.chown(path, *self._ids.to_host(member.uid, member.gid), follow_symlinks=False)
        os.utime(path, ns=_times(member), follow_symlinks=False)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isreg() members always have data
            raise UnsafeArchive(f"no data for {_q(member.name)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            written = 0
            while chunk := source.read(_COPY_CHUNK):
                _write_all(fd, chunk)
                written += len(chunk)
                if written % writeback.EVERY < len(chunk):
                    writeback.start_writeback(fd)  # the layer is synced before it is published
            self._set_meta(fd, member)
            os.utime(fd, ns=_times(member))
        finally:
            os.close(fd)

    def _hardlink_target(self, member: tarfile.TarInfo) -> str:
        what = f"invalid hardlink {_q(member.name)} -> {_q(member.linkname)}"
        parts = _clean_name(member.linkname, self.dest, what="hardlink")
        if not parts:
            raise UnsafeArchive(what)
        try:
            parent = self._resolve(parts[:-1], member.name, create=False)
            target = self._abs((*parent, parts[-1]))
            st = os.lstat(target)
        except FileNotFoundError as err:
            raise UnsafeArchive(f"{what}: target is not in the layer") from err
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive(f"{what}: target is a directory")
        return target

    # -- paths -------------------------------------------------------------------------------

    def _abs(self, rel: tuple[str, ...]) -> str:
        return os.path.join(self.dest, *rel)

    def _resolve(self, parts: tuple[str, ...], entry: str, *, create: bool) -> tuple[str, ...]:
        """Resolve directory components inside dest; the result contains no symlink.

        Missing directories are created (mode 0755, as Docker does) when ``create``; otherwise
        FileNotFoundError is raised.
        """
        todo = list(parts)
        done: list[str] = []
        hops = 0
        while todo:
            comp = todo.pop(0)
            if comp in ("", "."):
                continue
            if comp == "..":
                if not done:
                    raise UnsafeArchive(f"{_q(entry)}: path leads outside of {_q(str(self.dest))}")
                done.pop()
                continue
            path = self._abs((*done, comp))
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(path)
                os.chmod(path, 0o755)  # not left to the umask
                if not self._ids.empty:
                    os.chown(path, *self._ids.root_pair())
                done.append(comp)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise UnsafeArchive(f"{_q(entry)}: too many levels of symbolic links")
                target = os.readlink(path)
                if target.startswith("/"):
                    link = "/".join((*done, comp))
                    raise UnsafeArchive(
                        f"{_q(entry)}: refusing to write through symlink {_q(link)} -> "
                        f"{_q(target)}, which points outside of the layer"
                    )
                todo[:0] = target.split("/")
                continue
            if not stat.S_ISDIR(st.st_mode):
                where = "/".join((*done, comp))
                raise UnsafeArchive(f"{_q(entry)}: {_q(where)} is not a directory")
            done.append(comp)
        return tuple(done)

    def _clear(self, path: str, *, is_dir: bool) -> None:
        """Remove what is at ``path`` unless a directory meets a directory (then they merge)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if is_dir:
                return
            _remove_tree(path)
        else:
            os.unlink(path)

    # -- metadata ----------------------------------------------------------------------------

    def _set_meta(self, target: str | int, member: tarfile.TarInfo) -> None:
        """Owner, then mode (chown clears set-id bits), then xattrs (chown clears capabilities)."""
        follow = isinstance(target, int)
        os.chown(target, *self._ids.to_host(member.uid, member.gid), follow_symlinks=follow)
        if not member.issym():
            os.chmod(target, stat.S_IMODE(member.mode), follow_symlinks=follow)
        for name, value in _pax_xattrs(member):
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as err:
                # unsupported here, or a user.* xattr on a symlink (the kernel forbids those)
                skip = err.errno == errno.ENOTSUP or (err.errno == errno.EPERM and member.issym())
                if not skip:
                    raise
                log.warning("cannot set xattr %s on %s: %s", name, member.name, err.strerror)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _remove_tree(path: str) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


def _clean_name(name: str, dest: Path, what: str = "path") -> tuple[str, ...]:
    """Docker's cleaning: absolute names are relative to the root; ``..`` may not climb out."""
    if "\x00" in name:
        raise UnsafeArchive(f"invalid {what} {_q(name)}")
    norm = posixpath.normpath(name) if name else "."
    if norm.startswith("/"):
        norm = norm.lstrip("/") or "."
    if norm == ".." or norm.startswith("../"):
        raise UnsafeArchive(f"{_q(name)} is outside of {_q(str(dest))}")
    return () if norm == "." else tuple(norm.split("/"))


def _check_symlink(parent: tuple[str, ...], member: tarfile.TarInfo, dest: Path) -> None:
    """Refuse a relative symlink that climbs above the layer root (Docker refuses it too)."""
    target = member.linkname
    if not target:
        raise UnsafeArchive(f"invalid symlink {_q(member.name)} with an empty target")
    if target.startswith("/"):
        return  # resolved against the container's root at run time, never by us
    joined = posixpath.normpath(posixpath.join("/".join(parent) or ".", target))
    if joined == ".." or joined.startswith("../"):
        raise UnsafeArchive(
            f"invalid symlink {_q(os.path.join(dest, *parent, posixpath.basename(member.name)))}"
            f" -> {_q(target)}"
        )


def _mtime_ns(member: tarfile.TarInfo) -> int:
    text = member.pax_headers.get("mtime")
    if text is not None:
        try:
            return int(Decimal(text) * 1_000_000_000)
        except InvalidOperation as err:
            raise UnsafeArchive(f"invalid mtime {text!r} for {_q(member.name)}") from err
    return int(member.mtime) * 1_000_000_000


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = _mtime_ns(member)
    return (mtime, mtime)


def _pax_xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PAX_PREFIX):
            continue
        name = key[len(_XATTR_PAX_PREFIX) :]
        if name.startswith(_OVERLAY_XATTR_PREFIXES):
            log.warning("ignoring overlay xattr %s on %s", name, member.name)
            continue
        # tarfile decodes PAX values as UTF-8 with surrogateescape: this restores the raw bytes
        yield name, value.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------------------------
# write


def write_diff(upper: Path, out: BinaryIO, ids: IdentityMapping | None = None) -> None:
    """Write an overlay upper directory as an OCI layer tar.

    Whiteout devices become ``.wh.NAME`` files, opaque directories get a ``.wh..wh..opq`` entry.
    Entries are sorted; owners are numeric, mtimes truncated to seconds and no atime/ctime is
    recorded, so identical content gives identical bytes. With ``ids`` owners are mapped back
    to container IDs (whiteouts excepted: the kernel made them as the mounter, dockerd keeps
    them as they are), so the layer is the same as a non-remapped daemon would write.
    """
    _write_tree(Path(upper), out, overlay=True, ids=ids or IdentityMapping())


def tar_directory(root: Path, out: BinaryIO, ids: IdentityMapping | None = None) -> None:
    """Write a whole directory tree as a tar, with the same determinism as ``write_diff``."""
    _write_tree(Path(root), out, overlay=False, ids=ids or IdentityMapping())


def _write_tree(root: Path, out: BinaryIO, *, overlay: bool, ids: IdentityMapping) -> None:
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, rel, st in _walk(str(root), overlay=overlay):
            _add_entry(tar, path, rel, st, seen, overlay=overlay, ids=ids)


def _walk(root: str, *, overlay: bool) -> Iterator[tuple[str, str, os.stat_result]]:
    """Pre-order walk, children sorted by the bytes of their name in the tar (so a whiteout
    sorts as ``.wh.NAME``, before its siblings); the root itself is not listed."""

    def visit(directory: str, prefix: str) -> Iterator[tuple[str, str, os.stat_result]]:
        children = []
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            key = WHITEOUT_PREFIX + name if overlay and _is_whiteout(st) else name
            children.append((os.fsencode(key), name, path, st))
        for _, name, path, st in sorted(children, key=lambda child: child[0]):
            rel = prefix + name
            yield path, rel, st
            if stat.S_ISDIR(st.st_mode):
                yield from visit(path, rel + "/")

    yield from visit(root, "")


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _add_entry(
    tar: tarfile.TarFile,
    path: str,
    rel: str,
    st: os.stat_result,
    seen: dict[tuple[int, int], str],
    *,
    overlay: bool,
    ids: IdentityMapping,
) -> None:
    mode = st.st_mode
    info = _header(rel, st)
    if overlay and _is_whiteout(st):
        head, name = posixpath.split(rel)
        info.name = posixpath.join(head, WHITEOUT_PREFIX + name)
        info.type = tarfile.REGTYPE
        info.mode = 0o600
        tar.addfile(info)
        return
    info.uid, info.gid = ids.to_container(st.st_uid, st.st_gid)
    if not stat.S_ISDIR(mode) and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        first = seen.get(key)
        if first is not None:
            info.type = tarfile.LNKTYPE
            info.linkname = first
            tar.addfile(info)
            return
        seen[key] = rel
    _set_exported_xattrs(info, path)
    if stat.S_ISREG(mode):
        info.size = st.st_size
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as data:
            tar.addfile(info, data)
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        if overlay and _is_opaque(path):
            marker = _header(posixpath.join(rel, OPAQUE_MARKER), st)
            marker.mode = stat.S_IMODE(mode)
            marker.uid, marker.gid = info.uid, info.gid
            tar.addfile(marker)
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        tar.addfile(info)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    else:
        log.debug("skipping socket %s", rel)  # as Docker: sockets cannot be archived


def _header(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def _set_exported_xattrs(info: tarfile.TarInfo, path: str) -> None:
    for name in _EXPORTED_XATTRS:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as err:
            if err.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                continue
            raise
        headers = dict(info.pax_headers)
        headers[_XATTR_PAX_PREFIX + name] = value.decode("utf-8", "surrogateescape")
        info.pax_headers = headers


def _is_opaque(path: str) -> bool:
    for name in (OPAQUE_XATTR, "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError as err:
            if err.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise
    return False
