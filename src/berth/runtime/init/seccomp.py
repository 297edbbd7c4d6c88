"""Compile the spec's ``linux.seccomp`` when the spec is read, install it just before exec.

Compiling up front means a bad profile fails ``create`` before anything is set up. Installing
needs either CAP_SYS_ADMIN or no_new_privs: ``process.become_process`` installs the filter
before it drops capabilities when the spec does not ask for no_new_privs (as runc does), and as
the very last step before execve when it does.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, NamedTuple

from berth.errors import InvalidArgument

SECCOMP_SET_MODE_FILTER = 1
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
_NR_SECCOMP = {"x86_64": 317}


class SeccompProgram(NamedTuple):
    """A packed ``struct sock_filter[]`` and the seccomp(2) flags."""

    filter: bytes
    flags: int = 0


def prepare(raw: Any) -> SeccompProgram | None:
    """``linux.seccomp`` from config.json → a program, or None when there is none."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidArgument("linux.seccomp must be an object")
    from berth.runtime import seccomp_bpf  # only containers with a filter pay for it

    flags = 0
    for name in raw.get("flags") or []:
        if name not in FLAGS:
            raise InvalidArgument(f"seccomp flag {name!r} is not supported")
        flags |= FLAGS[name]
    try:
        program = seccomp_bpf.compile_filter(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidArgument(f"invalid linux.seccomp: {err}") from err
    return SeccompProgram(seccomp_bpf.pack(program), flags)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install(program: SeccompProgram) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER); the filter applies to this thread and what it execs."""
    nr = _NR_SECCOMP.get(os.uname().machine)
    if nr is None:
        raise InvalidArgument(f"seccomp is not supported on {os.uname().machine}")
    buf = ctypes.create_string_buffer(program.filter, len(program.filter))
    prog = _SockFprog(len(program.filter) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(nr), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                    ctypes.c_long(program.flags), ctypes.byref(prog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(err)}")
