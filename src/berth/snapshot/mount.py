"""The one mount(2)/umount2(2) wrapper outside the runtime: performs ``Mount`` records.

Snapshots describe mounts as data; this module is the only place that turns them into system
calls. An overlay whose options do not fit in one page (many lower layers) is mounted through
the new mount API, one ``lowerdir+`` per layer (Linux >= 6.8).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from berth.errors import (
    BerthError,
    Conflict,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mount:
    """One mount to perform: ``mount -t type -o options source target``."""

    type: str
    source: str
    target: Path
    options: tuple[str, ...] = ()


# mount(2) flags (linux/mount.h)
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_NOATIME = 0x400
_MS_NODIRATIME = 0x800
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_RELATIME = 0x200000
_MNT_DETACH = 0x2
_UMOUNT_NOFOLLOW = 0x8

# options that are mount flags rather than file system data: (set, clear)
_FLAG_OPTIONS = MappingProxyType(
    {
        "ro": (_MS_RDONLY, 0),
        "rw": (0, _MS_RDONLY),
        "nosuid": (_MS_NOSUID, 0),
        "nodev": (_MS_NODEV, 0),
        "noexec": (_MS_NOEXEC, 0),
        "noatime": (_MS_NOATIME, 0),
        "nodiratime": (_MS_NODIRATIME, 0),
        "relatime": (_MS_RELATIME, 0),
        "bind": (_MS_BIND, 0),
        "rbind": (_MS_BIND | _MS_REC, 0),
    }
)

# the new mount API (same numbers on every architecture that has it)
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 0x1
_FSMOUNT_CLOEXEC = 0x1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100
_MOUNT_ATTR = MappingProxyType({"ro": 0x1, "nosuid": 0x2, "nodev": 0x4, "noexec": 0x8})

# mount(2) copies at most one page of option data
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def mount_all(mounts: list[Mount]) -> None:
    """Perform ``mounts`` in order; on failure, undo the ones already done and raise."""
    done: list[Path] = []
    try:
        for m in mounts:
            _mount_one(m)
            done.append(m.target)
    except BaseException:
        for target in reversed(done):
            with contextlib.suppress(BerthError):
                unmount(target, detach=True)
        raise


def unmount(target: Path, detach: bool = False) -> None:
    """Unmount ``target`` (never following a symlink there); NotFound if nothing is mounted."""
    flags = _UMOUNT_NOFOLLOW | (_MNT_DETACH if detach else 0)
    if _libc().umount2(os.fsencode(target), flags) != 0:
        code = ctypes.get_errno()
        if code == errno.EINVAL:
            raise NotFound(f"error unmounting {target}: not mounted")
        raise _error(code, f"error unmounting {target}")


def is_mounted(target: Path) -> bool:
    """Whether ``target`` is a mount point in this mount namespace."""
    wanted = os.path.realpath(target)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = line.split(b" ", 5)[4].decode("utf-8", "surrogateescape")
            if _unescape(point) == wanted:
                return True
    return False


def _mount_one(m: Mount) -> None:
    flags, data = _split_options(m.options)
    if len(data.encode()) >= _PAGE_SIZE:
        if m.type != "overlay":
            raise InvalidArgument(f"mount options for {m.target} exceed one page")
        _mount_with_fsconfig(m)
        return
    libc = _libc()
    target = os.fsencode(m.target)
    source = os.fsencode(m.source)
    fstype = m.type.encode() if m.type not in ("bind", "rbind") else None
    rc = libc.mount(source, target, fstype, ctypes.c_ulong(flags), data.encode() or None)
    if rc != 0:
        raise _error(ctypes.get_errno(), f"error mounting {m.type} on {m.target}")
    if flags & _MS_BIND and flags & _MS_RDONLY:
        # a bind mount ignores MS_RDONLY until it is remounted
        rc = libc.mount(None, target, None, ctypes.c_ulong(flags | _MS_REMOUNT), None)
        if rc != 0:
            code = ctypes.get_errno()
            with contextlib.suppress(BerthError):
                unmount(m.target, detach=True)
            raise _error(code, f"error making {m.target} read-only")


def _split_options(options: tuple[str, ...]) -> tuple[int, str]:
    flags = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            set_bits, clear_bits = _FLAG_OPTIONS[opt]
            flags = (flags | set_bits) & ~clear_bits
        else:
            data.append(opt)
    return flags, ",".join(data)


def _mount_with_fsconfig(m: Mount) -> None:
    """Overlay through fsopen/fsconfig: each option, and each lower layer, goes in on its own."""
    libc = _libc()
    fs_fd = libc.syscall(_SYS_FSOPEN, m.type.encode(), _FSOPEN_CLOEXEC)
    if fs_fd < 0:
        raise _error(ctypes.get_errno(), f"error mounting {m.type} on {m.target}")
    try:
        attrs = 0
        for opt in m.options:
            if opt in _MOUNT_ATTR:
                attrs |= _MOUNT_ATTR[opt]
                continue
            key, sep, value = opt.partition("=")
            if key == "lowerdir" and sep:
                for layer in value.split(":"):
                    _fsconfig(fs_fd, _FSCONFIG_SET_STRING, "lowerdir+", layer, m)
            elif sep:
                _fsconfig(fs_fd, _FSCONFIG_SET_STRING, key, value, m)
            else:
                _fsconfig(fs_fd, _FSCONFIG_SET_FLAG, key, None, m)
        _fsconfig(fs_fd, _FSCONFIG_CMD_CREATE, None, None, m)
        mnt_fd = libc.syscall(_SYS_FSMOUNT, fs_fd, _FSMOUNT_CLOEXEC, attrs)
        if mnt_fd < 0:
            raise _error(ctypes.get_errno(), f"error mounting {m.type} on {m.target}")
        try:
            rc = libc.syscall(
                _SYS_MOVE_MOUNT,
                mnt_fd,
                b"",
                _AT_FDCWD,
                os.fsencode(m.target),
                _MOVE_MOUNT_F_EMPTY_PATH,
            )
            if rc < 0:
                raise _error(ctypes.get_errno(), f"error mounting {m.type} on {m.target}")
        finally:
            os.close(mnt_fd)
    finally:
        os.close(fs_fd)


def _fsconfig(fd: int, cmd: int, key: str | None, value: str | None, m: Mount) -> None:
    libc = _libc()
    rc = libc.syscall(
        _SYS_FSCONFIG,
        fd,
        cmd,
        key.encode() if key is not None else None,
        os.fsencode(value) if value is not None else None,
        0,
    )
    if rc < 0:
        code = ctypes.get_errno()
        detail = _fs_context_log(fd)
        what = f"error mounting {m.type} on {m.target}"
        if code == errno.EINVAL and key == "lowerdir+":
            what += " (this kernel cannot take that many lower layers; Linux >= 6.8 can)"
        raise _error(code, f"{what}{': ' + detail if detail else ''}")


def _fs_context_log(fd: int) -> str:
    """The kernel's own explanation, queued on the fs context."""
    lines: list[str] = []
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            lines.append(chunk.decode(errors="replace").strip())
    return "; ".join(lines)


def _error(code: int, what: str) -> BerthError:
    message = f"{what}: {os.strerror(code).lower()}"
    if code == errno.ENOENT:
        return NotFound(message)
    if code in (errno.EPERM, errno.EACCES):
        return PermissionDenied(message)
    if code == errno.EBUSY:
        return Conflict(message)
    if code in (errno.EINVAL, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP):
        return InvalidArgument(message)
    return Internal(message)


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
