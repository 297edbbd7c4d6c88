"""Capability names, and the order of calls that leaves the process with exactly the spec's sets."""

from __future__ import annotations

from berth.errors import InvalidArgument
from berth.runtime.syscalls import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_SET_KEEPCAPS,
    Syscalls,
)

# Index = capability number (linux/capability.h).
CAPABILITY_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
_NUMBERS = {name: i for i, name in enumerate(CAPABILITY_NAMES)}


def last_cap() -> int:
    """The highest capability this kernel knows (caps above it cannot be dropped or set)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITY_NAMES) - 1


def parse_capabilities(names: list[str] | tuple[str, ...], field: str) -> int:
    """Names (``CAP_KILL``) → bit mask; unknown names are an error, as in runc."""
    mask = 0
    for name in names:
        number = _NUMBERS.get(name.upper())
        if number is None:
            raise InvalidArgument(f"unknown capability {name!r} in process.capabilities.{field}")
        mask |= 1 << number
    return mask


def mask_to_names(mask: int) -> list[str]:
    return [name for i, name in enumerate(CAPABILITY_NAMES) if mask >> i & 1]


def drop_bounding(sys: Syscalls, bounding: int, top: int) -> None:
    """Drop every capability outside the bounding set; needs CAP_SETPCAP, so before setuid."""
    for number in range(top + 1):
        if not bounding >> number & 1:
            sys.prctl(PR_CAPBSET_DROP, number)


def keep_caps_across_setuid(sys: Syscalls, keep: bool) -> None:
    """Without KEEPCAPS, switching to a non-zero uid empties the permitted set."""
    sys.prctl(PR_SET_KEEPCAPS, 1 if keep else 0)


def apply_sets(
    sys: Syscalls, effective: int, permitted: int, inheritable: int, ambient: int, top: int
) -> None:
    """capset the three sets, then raise ambient ones (each must be permitted and inheritable)."""
    sys.capset(effective, permitted, inheritable)
    sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for number in range(top + 1):
        if ambient >> number & 1 and inheritable >> number & 1 and permitted >> number & 1:
            # The kernel refuses an ambient cap that is not also permitted and inheritable;
            # runc skips those too (its default spec lists ambient caps without inheritable).
            sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, number)
