"""The process behind ``/containers/{id}/archive`` and ``/export``: stat, tar or untar a path in
a container, or tar all of it.

Run by the daemon as ``python -m berth.engine._chroot_tar OP CONFIG_JSON``. It makes a private
mount namespace, binds the container's volumes onto its rootfs there, and ``chroot``s into the
rootfs before touching a single file, so every path (and every symlink in the container, even
``/evil -> /`` or ``up -> ../../..``) resolves inside the container's root, as the kernel
resolves it for the container itself. The namespace and its mounts vanish with the process.

Everything the work needs is imported before the chroot, and no user or group name is ever
looked up (NSS would load libraries from the container's root).

A ``--userns-remap`` daemon passes its ID ranges (``ids``): owners are shifted to the host on
the way in. On the way out they are not shifted back: dockerd 20.10's archives carry the host
IDs (100007 for a file the container sees as 7), and berth does the same.

Output: one JSON line on stdout (``{"stat": {...}}``, ``{"ok": true}`` or ``{"error": msg,
"status": code}``), then, for ``get`` and ``export``, the tar stream.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import sys
import tarfile
from datetime import UTC, datetime
from typing import IO, Any

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4

# Go's os.FileMode type bits, which Docker's stat header carries
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHAR = 1 << 21
_GO_STICKY = 1 << 20


class IDs:
    """The container's ID ranges: ``{"uid": [[container, host, size], ...], "gid": [...]}``."""

    def __init__(self, raw: dict[str, list[list[int]]] | None) -> None:
        self._uids = [tuple(r) for r in (raw or {}).get("uid", [])]
        self._gids = [tuple(r) for r in (raw or {}).get("gid", [])]

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        if not self._uids:
            return uid, gid
        return self._in(self._uids, uid), self._in(self._gids, gid)

    @staticmethod
    def _in(ranges: list[tuple[int, ...]], cid: int) -> int:
        for inside, outside, size in ranges:
            if inside <= cid < inside + size:
                return outside + cid - inside
        # dockerd's words (its untar runs in a child process, hence the exit status)
        raise Failure(f"Error processing tar file(exit status 1): Container ID {cid} cannot "
                      "be mapped to a host ID")


class Failure(Exception):
    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, source: str | None, target: str, flags: int) -> None:
    rc = libc.mount(source.encode() if source else None, target.encode(), None,
                    ctypes.c_ulong(flags), None)
    if rc != 0:
        code = ctypes.get_errno()
        raise Failure(f"cannot mount {source} on {target}: {os.strerror(code)}")


def _enter(cfg: dict[str, Any]) -> None:
    """Private mount namespace, volumes bound in, rootfs read-only if the container's is,
    then chroot."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    os.chroot(cfg["rootfs"])
    os.chdir("/")
    # each volume was cloned (open_tree) before the chroot; it is attached here, its target
    # resolved by the kernel inside the new root
    for dest, fd, rw, is_dir in cfg["_fds"]:
        try:
            if is_dir:
                os.makedirs(dest, exist_ok=True)
            elif not os.path.exists(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
        except OSError:
            continue
        rc = libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, dest.encode(),
                          _MOVE_MOUNT_F_EMPTY_PATH)
        if rc != 0:
            raise Failure(f"cannot mount volume on {dest}: {os.strerror(ctypes.get_errno())}")
        if not rw:
            _mount(libc, None, dest, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
    if cfg.get("readonly_rootfs"):
        # per-mount flag: the volumes mounted above stay writable
        _mount(libc, None, "/", _MS_BIND | _MS_REMOUNT | _MS_RDONLY)


def _clone_tree(source: str) -> int:
    libc = _libc()
    fd = libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, source.encode(),
                      _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE)
    if fd < 0:
        raise Failure(f"cannot open volume {source}: {os.strerror(ctypes.get_errno())}")
    return int(fd)


def _go_mode(st: os.stat_result) -> int:
    mode = stat.S_IMODE(st.st_mode) & 0o777
    fmt = stat.S_IFMT(st.st_mode)
    mode |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_PIPE,
             stat.S_IFSOCK: _GO_SOCKET, stat.S_IFBLK: _GO_DEVICE,
             stat.S_IFCHR: _GO_DEVICE | _GO_CHAR}.get(fmt, 0)
    if st.st_mode & stat.S_ISUID:
        mode |= _GO_SETUID
    if st.st_mode & stat.S_ISGID:
        mode |= _GO_SETGID
    if st.st_mode & stat.S_ISVTX:
        mode |= _GO_STICKY
    return mode


def _go_time(ns: int) -> str:
    t = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    frac = ns % 1_000_000_000
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def _split(path: str) -> tuple[str, str, bool]:
    """(absolute path, base name, whether symlinks in the last component are followed)."""
    follow = path.endswith("/") or path.endswith("/.") or path in (".", "")
    absolute = "/" + path.lstrip("/")
    clean = os.path.normpath(absolute)
    base = os.path.basename(clean) or "/"
    if path.endswith("/."):
        base = "."
    return clean, base, follow


def _resolve(path: str) -> tuple[str, str, str]:
    """(resolved path to operate on, absolute path as asked, base name)."""
    clean, base, follow = _split(path)
    parent = os.path.realpath(os.path.dirname(clean))  # safe: we are chrooted
    resolved = os.path.join(parent, os.path.basename(clean)) if clean != "/" else "/"
    if follow:
        resolved = os.path.realpath(resolved)
    return resolved, clean, base


def _stat(path: str) -> tuple[dict[str, Any], str, str]:
    resolved, clean, base = _resolve(path)
    try:
        st = os.lstat(resolved)
    except FileNotFoundError:
        raise Failure(f"Could not find the file {path} in container {{name}}", 404) from None
    except NotADirectoryError:
        raise Failure(f"Could not find the file {path} in container {{name}}", 404) from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.path.realpath(resolved)
    info = {"name": os.path.basename(clean) or "/", "size": st.st_size, "mode": _go_mode(st),
            "mtime": _go_time(st.st_mtime_ns), "linkTarget": link}
    return info, resolved, base


def _tar_info(name: str, st: os.stat_result, path: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)  # whole seconds, as Docker's archives: no pax header for it
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFDIR:
        info.type = tarfile.DIRTYPE
    elif fmt == stat.S_IFLNK:
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif fmt == stat.S_IFIFO:
        info.type = tarfile.FIFOTYPE
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    xattrs = {}
    try:
        for key in os.listxattr(path, follow_symlinks=False):
            if key.startswith("trusted.overlay."):
                continue
            value = os.getxattr(path, key, follow_symlinks=False)
            xattrs["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    except OSError:
        pass
    if xattrs:
        info.pax_headers = xattrs
    return info


def _add(tar: tarfile.TarFile, path: str, name: str, links: dict[tuple[int, int], str],
         bare_root: bool = True) -> None:
    st = os.lstat(path)
    key = (st.st_dev, st.st_ino)
    if stat.S_ISSOCK(st.st_mode):
        return
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        if key in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
            info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
            info.mtime = int(st.st_mtime)
            tar.addfile(info)
            return
        links[key] = name
    info = _tar_info(name, st, path)
    if info.type == tarfile.REGTYPE:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)
    if info.type == tarfile.DIRTYPE:
        for entry in sorted(os.listdir(path)):
            _add(tar, os.path.join(path, entry),
                 entry if name == "." and bare_root else f"{name}/{entry}", links)


def op_get(path: str, out: IO[bytes]) -> None:
    info, resolved, base = _stat(path)
    out.write((json.dumps({"stat": info}) + "\n").encode())
    out.flush()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        # "dir/." names the entries "./x" as docker does: clients rebase the "." prefix
        _add(tar, resolved, base if base != "/" else ".", {}, bare_root=base != ".")


def op_export(out: IO[bytes]) -> None:
    """The whole root as ``docker export`` writes it: no entry for ``/`` itself, names
    relative to it (``bin``, ``bin/busybox``)."""
    out.write(b'{"ok": true}\n')
    out.flush()
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir("/")):
            _add(tar, "/" + entry, entry, links)


def _check_name(name: str) -> str:
    clean = os.path.normpath(name.lstrip("/"))
    if clean == ".":
        return clean
    if clean.startswith("../") or clean == ".." or os.path.isabs(clean):
        raise Failure(f"invalid path in archive: {name}", 400)
    return clean


def _existing(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def op_put(cfg: dict[str, Any], stream: IO[bytes]) -> None:
    path = cfg["path"]
    clean, _, _ = _split(path)
    dest = os.path.realpath(clean)
    st = _existing(dest)
    if st is None:
        raise Failure(f"Could not find the file {path} in container {{name}}", 404)
    if not stat.S_ISDIR(st.st_mode):
        raise Failure("extraction point is not a directory", 400)
    no_overwrite = bool(cfg.get("no_overwrite_dir_non_dir"))
    chown = cfg.get("chown")
    ids = IDs(cfg.get("ids"))
    root_owner = ids.to_host(0, 0)
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            rel = _check_name(member.name)
            target = os.path.join(dest, rel)
            old = _existing(target)
            if old is not None:
                old_dir = stat.S_ISDIR(old.st_mode)
                if no_overwrite and old_dir and not member.isdir():
                    raise Failure(f'cannot overwrite directory "{target}" with non-directory '
                                  f'"{rel}"', 400)
                if no_overwrite and not old_dir and member.isdir():
                    raise Failure(f'cannot overwrite non-directory "{target}" with directory '
                                  f'"{rel}"', 400)
                if not member.isdir() or not old_dir:
                    if old_dir:
                        import shutil

                        shutil.rmtree(target)
                    else:
                        os.unlink(target)
            if chown is not None:
                member.uid, member.gid = chown
            member.uid, member.gid = ids.to_host(member.uid, member.gid)
            if root_owner != (0, 0):
                _make_parents(dest, rel, root_owner)
            member.name = rel
            member.uname = member.gname = ""
            try:
                tar.extract(member, dest, numeric_owner=True,
                            filter=tarfile.fully_trusted_filter)
            except OSError as err:
                if err.errno == errno.EROFS:
                    raise Failure("container rootfs is marked read-only", 403) from None
                raise


def _make_parents(dest: str, rel: str, owner: tuple[int, int]) -> None:
    """The directories above ``rel`` the archive does not list, owned by container root
    (tarfile would make them the daemon's)."""
    parts = rel.split("/")[:-1]
    path = dest
    for part in parts:
        path = os.path.join(path, part)
        if not os.path.lexists(path):
            os.mkdir(path, 0o755)
            os.chown(path, *owner)


def main() -> int:
    op, raw = sys.argv[1], sys.argv[2]
    cfg: dict[str, Any] = json.loads(raw)
    out = sys.stdout.buffer
    try:
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        if libc.unshare(_CLONE_NEWNS) != 0:
            raise Failure(f"unshare: {os.strerror(ctypes.get_errno())}")
        _mount(libc, None, "/", _MS_REC | _MS_PRIVATE)
        cfg["_fds"] = [(m["dest"], _clone_tree(m["source"]), m["rw"],
                        os.path.isdir(m["source"])) for m in cfg.get("mounts", [])]
        _enter(cfg)
        if op == "stat":
            info, _, _ = _stat(cfg["path"])
            out.write((json.dumps({"stat": info}) + "\n").encode())
        elif op == "get":
            op_get(cfg["path"], out)
        elif op == "export":
            op_export(out)
        elif op == "put":
            op_put(cfg, sys.stdin.buffer)
            out.write(b'{"ok": true}\n')
        else:
            raise Failure(f"unknown operation {op}")
    except Failure as err:
        out.write((json.dumps({"error": str(err), "status": err.status}) + "\n").encode())
        return 1
    except (OSError, tarfile.TarError) as err:
        out.write((json.dumps({"error": str(err), "status": 500}) + "\n").encode())
        return 1
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
