"""The kernel calls the runtime makes, behind one Protocol so their order can be unit-tested.

``LinuxSyscalls`` reaches libc through ctypes (x86_64 syscall numbers where glibc has no wrapper).
Failures raise ``OSError`` with errno, like the ``os`` module, so callers translate them once.
"""

from __future__ import annotations

import ctypes
import os
import resource
from typing import Protocol

# clone(2) / unshare(2) / setns(2) flags.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
CLONE_PARENT = 0x00008000  # the child's parent is the caller's parent

# mount(2) flags.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MNT_DETACH = 0x2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYSCALL_NUMBERS = {
    "x86_64": {"clone": 56, "pivot_root": 155, "capget": 125, "capset": 126, "setns": 308},
    "aarch64": {"clone": 220, "pivot_root": 41, "capget": 90, "capset": 91, "setns": 268},
}


class Syscalls(Protocol):
    """Everything the container init asks of the kernel that changes state."""

    def clone(self, flags: int) -> int: ...
    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int) -> None: ...
    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None: ...
    def umount2(self, target: str, flags: int) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def sethostname(self, name: str) -> None: ...
    def setdomainname(self, name: str) -> None: ...
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int: ...
    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...
    def mknod(self, path: str, mode: int, device: int) -> None: ...
    def setgroups(self, gids: list[int]) -> None: ...
    def setresgid(self, gid: int) -> None: ...
    def setresuid(self, uid: int) -> None: ...
    def setrlimit(self, kind: int, soft: int, hard: int) -> None: ...
    def chdir(self, path: str) -> None: ...


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of ``pid`` (0 = this thread), as 64-bit masks."""
    header, data = _cap_structs(pid)
    libc = _libc()
    if libc.syscall(_nr("capget"), ctypes.byref(header), ctypes.byref(data)) != 0:
        _raise_errno("capget")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _cap_structs(pid: int) -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    return _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid), (_CapData * 2)()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _nr(name: str) -> int:
    return _SYSCALL_NUMBERS[os.uname().machine][name]


def _raise_errno(what: str, path: str | None = None) -> None:
    err = ctypes.get_errno()
    if path is None:
        raise OSError(err, f"{what}: {os.strerror(err)}")
    raise OSError(err, f"{what} {path}: {os.strerror(err)}", path)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


class LinuxSyscalls:
    """The real kernel, through ctypes."""

    def __init__(self) -> None:
        self._libc = _libc()
        # PyDLL keeps the GIL held across clone: the child must not inherit a released GIL.
        self._pylibc = ctypes.PyDLL(None, use_errno=True)
        self._pylibc.syscall.restype = ctypes.c_long
        self._libc.syscall.restype = ctypes.c_long
        self._libc.mount.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p
        ]

    def clone(self, flags: int) -> int:
        """A raw clone(2) with a NULL stack (fork semantics) and SIGCHLD as exit signal.

        One call creates every namespace and makes the child PID 1 at once, which saves the
        fork + unshare + fork dance. The child shares glibc's stale thread id, so it must only
        make system calls and exec (no raise/abort/pthread calls).
        """
        sigchld = 17
        pid = self._pylibc.syscall(
            ctypes.c_long(_nr("clone")), ctypes.c_ulong(flags | sigchld),
            ctypes.c_void_p(0), ctypes.c_void_p(0), ctypes.c_void_p(0), ctypes.c_ulong(0),
        )
        if pid < 0:
            _raise_errno("clone")
        return int(pid)

    def unshare(self, flags: int) -> None:
        if self._libc.unshare(ctypes.c_int(flags)) != 0:
            _raise_errno("unshare")

    def setns(self, fd: int, nstype: int) -> None:
        if self._libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
            _raise_errno("setns")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        if self._libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
            _raise_errno(f"mount {source or fstype or ''} (type {fstype or 'none'}) on", target)

    def umount2(self, target: str, flags: int) -> None:
        if self._libc.umount2(_b(target), ctypes.c_int(flags)) != 0:
            _raise_errno("umount", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        args = (ctypes.c_char_p(_b(new_root)), ctypes.c_char_p(_b(put_old)))
        if self._libc.syscall(ctypes.c_long(_nr("pivot_root")), *args) != 0:
            _raise_errno("pivot_root", new_root)

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        if self._libc.sethostname(raw, ctypes.c_size_t(len(raw))) != 0:
            _raise_errno("sethostname")

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        if self._libc.setdomainname(raw, ctypes.c_size_t(len(raw))) != 0:
            _raise_errno("setdomainname")

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int:
        ret = self._libc.prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
            ctypes.c_ulong(0), ctypes.c_ulong(0),
        )
        if ret < 0:
            _raise_errno(f"prctl({option})")
        return int(ret)

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header, data = _cap_structs(0)
        for i, shift in enumerate((0, 32)):
            data[i].effective = (effective >> shift) & 0xFFFFFFFF
            data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        if self._libc.syscall(_nr("capset"), ctypes.byref(header), ctypes.byref(data)) != 0:
            _raise_errno("capset")

    def mknod(self, path: str, mode: int, device: int) -> None:
        os.mknod(path, mode, device)

    def setgroups(self, gids: list[int]) -> None:
        os.setgroups(gids)

    def setresgid(self, gid: int) -> None:
        os.setresgid(gid, gid, gid)

    def setresuid(self, uid: int) -> None:
        os.setresuid(uid, uid, uid)

    def setrlimit(self, kind: int, soft: int, hard: int) -> None:
        resource.setrlimit(kind, (soft, hard))

    def chdir(self, path: str) -> None:
        os.chdir(path)
