"""Build an OCI runtime ``config.json`` from what the engine wants (pure, no I/O).

The defaults are Docker's (``shared/reference/docker-defaults.json``): the 14 default
capabilities, masked and read-only paths, the default mounts, device cgroup rules and the
network sysctls. The result is a plain dict ready for ``json.dump``; it is accepted by runc,
crun and berth's own runtime, and validates against the OCI runtime JSON schema.

OCI camelCase appears only in the dict this module returns; the inputs are snake_case records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.idmap import IdentityMapping

OCI_VERSION = "1.0.2-dev"

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024

# Docker's default capability set, in Docker's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Every capability Linux defines (0..40, kernel 5.9+), in number order. ``--privileged`` and
# ``--cap-add ALL`` grant these unless the caller passes the host's own list.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Mounts whose options ReadonlyRootfs leaves alone (Docker: they must stay writable).
_KEEP_WRITABLE = frozenset({"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"})

_NAMESPACE_MODES = ("private", "host")


@dataclass(frozen=True)
class MountSpec:
    """One OCI mount: destination in the container, filesystem type, source, options."""

    destination: str
    type: str
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceSpec:
    """A device node the runtime creates in the container (``--device``)."""

    path: str
    type: str  # "c", "b" or "p"
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class DeviceRule:
    """A device cgroup rule; ``major``/``minor`` None means any (``*``)."""

    allow: bool
    access: str = "rwm"
    type: str | None = None  # "a", "c" or "b"; None means all
    major: int | None = None
    minor: int | None = None


@dataclass(frozen=True)
class Rlimit:
    """A resource limit (``--ulimit nofile=1024:2048``); type with or without ``RLIMIT_``."""

    type: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Resources:
    """cgroup limits; None leaves the runtime's (unlimited) default."""

    memory: int | None = None
    memory_swap: int | None = None  # memory+swap total, -1 unlimited (cgroup v1 semantics)
    memory_reservation: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None


# Docker's default device cgroup rules: deny all, then allow the standard character devices.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(allow=False, access="rwm"),
    DeviceRule(True, "rwm", "c", 1, 5),  # /dev/zero
    DeviceRule(True, "rwm", "c", 1, 3),  # /dev/null
    DeviceRule(True, "rwm", "c", 1, 9),  # /dev/urandom
    DeviceRule(True, "rwm", "c", 1, 8),  # /dev/random
    DeviceRule(True, "rwm", "c", 5, 0),  # /dev/tty
    DeviceRule(True, "rwm", "c", 5, 1),  # /dev/console
    DeviceRule(False, "rwm", "c", 10, 229),  # /dev/fuse
)


@dataclass(frozen=True)
class SpecInput:
    """Everything the engine decides about one container, in engine terms.

    Namespace modes: ``network_mode`` is "new" (own namespace; Docker's bridge and "none"),
    "host", or an absolute path of a namespace to join (``container:<id>`` resolved by the
    caller). ``ipc_mode`` is "private", "shareable" (the caller passes a bind mount at
    /dev/shm), "none", "host" or a path; ``pid_mode``/``uts_mode`` are "private", "host" or a
    path; ``cgroupns_mode`` is "host" (Docker's default on cgroup v1) or "private".
    ``userns_mode`` is "host" (no user namespace), "private" (a new one, mapped by
    ``id_mapping``) or the path of one to join (mapped the same way, as Docker writes it).
    """

    root_path: str
    args: tuple[str, ...]
    env: tuple[str, ...] = (DEFAULT_PATH_ENV,)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    hostname: str = ""
    tty: bool = False
    open_stdin: bool = False  # not part of the spec; the shim wires stdin (kept for callers)
    mounts: tuple[MountSpec, ...] = ()
    network_mode: str = "new"
    ipc_mode: str = "private"
    pid_mode: str = "private"
    uts_mode: str = "private"
    cgroupns_mode: str = "host"
    userns_mode: str = "host"
    id_mapping: IdentityMapping = field(default_factory=IdentityMapping)
    resources: Resources = field(default_factory=Resources)
    cgroups_path: str = ""
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    host_capabilities: tuple[str, ...] = ALL_CAPABILITIES
    privileged: bool = False
    readonly_rootfs: bool = False
    masked_paths: tuple[str, ...] | None = None  # None: Docker's defaults
    readonly_paths: tuple[str, ...] | None = None
    devices: tuple[DeviceSpec, ...] = ()
    device_rules: tuple[DeviceRule, ...] = ()  # appended to Docker's defaults
    sysctls: Mapping[str, str] = field(default_factory=dict)
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    # Docker always writes it (0 by default), so a container never inherits the daemon's.
    oom_score_adj: int | None = 0
    shm_size: int = DEFAULT_SHM_SIZE
    seccomp: Mapping[str, Any] | None = None  # already in OCI linux.seccomp form
    apparmor_profile: str | None = None
    rootfs_propagation: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


def normalize_capability(name: str) -> str:
    """``net_admin`` / ``NET_ADMIN`` / ``CAP_NET_ADMIN`` → ``CAP_NET_ADMIN``; ``all`` → ``ALL``."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    return upper if upper.startswith("CAP_") else "CAP_" + upper


def resolve_capabilities(
    cap_add: tuple[str, ...] = (),
    cap_drop: tuple[str, ...] = (),
    *,
    privileged: bool = False,
    host_capabilities: tuple[str, ...] = ALL_CAPABILITIES,
) -> tuple[str, ...]:
    """The container's capability list after ``--cap-add``/``--cap-drop`` (Docker's rules).

    ALL in cap_add grants everything the host knows; ALL in cap_drop starts from nothing, so
    only cap_add remains. Unknown names fail with Docker's ``unknown capability: "CAP_X"``.
    """
    if privileged:
        return tuple(host_capabilities)
    adds = [normalize_capability(c) for c in cap_add]
    drops = [normalize_capability(c) for c in cap_drop]
    for cap in adds + drops:
        if cap != "ALL" and cap not in ALL_CAPABILITIES:
            raise InvalidArgument(f'unknown capability: "{cap}"')
    if "ALL" in adds:
        base = list(host_capabilities)
        adds = []
    elif "ALL" in drops:
        base = []
    else:
        base = list(DEFAULT_CAPABILITIES)
    dropped = set() if "ALL" in drops else set(drops)
    result: list[str] = []
    for cap in base:
        if cap not in dropped and cap not in result:
            result.append(cap)
    for cap in adds:
        if cap not in result:
            result.append(cap)
    return tuple(result)


def bind_mount(
    source: str,
    destination: str,
    *,
    readonly: bool = False,
    recursive: bool = True,
    propagation: str = "rprivate",
) -> MountSpec:
    """A bind mount with the options Docker gives API binds (and the network files)."""
    options = ["rbind" if recursive else "bind"]
    if readonly:
        options.append("ro")
    options.append(propagation)
    return MountSpec(destination, "bind", source, tuple(options))


def tmpfs_mount(destination: str, options: tuple[str, ...] = ()) -> MountSpec:
    """A tmpfs mount: Docker's base options merged with the user's (user wins on conflict)."""
    merged = ["noexec", "nosuid", "nodev", "rprivate"]
    opposites = {"exec": "noexec", "suid": "nosuid", "dev": "nodev"}
    for opt in options:
        if opt in opposites and opposites[opt] in merged:
            merged.remove(opposites[opt])
        if opt not in merged:
            merged.append(opt)
    return MountSpec(destination, "tmpfs", "tmpfs", tuple(merged))


def _default_mounts(inp: SpecInput) -> list[MountSpec]:
    writable_sys = inp.privileged
    # Docker clears "ro" on the cgroup mount in a user namespace too (a remount there is
    # refused by the kernel); the groups stay the host's root's, so they are not writable.
    writable_cgroup = inp.privileged or inp.userns_mode != "host"
    mounts = [
        MountSpec("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
        MountSpec("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
        MountSpec(
            "/dev/pts",
            "devpts",
            "devpts",
            ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
        ),
        MountSpec(
            "/sys",
            "sysfs",
            "sysfs",
            ("nosuid", "noexec", "nodev") + (() if writable_sys else ("ro",)),
        ),
        MountSpec(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            (() if writable_cgroup else ("ro",)) + ("nosuid", "noexec", "nodev"),
        ),
        MountSpec("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ]
    if inp.ipc_mode == "host":
        mounts.append(bind_mount("/dev/shm", "/dev/shm"))
    elif inp.ipc_mode != "none":
        mounts.append(
            MountSpec(
                "/dev/shm",
                "tmpfs",
                "shm",
                ("nosuid", "noexec", "nodev", "mode=1777", f"size={inp.shm_size}"),
            )
        )
    if inp.readonly_rootfs:
        mounts = [
            m
            if m.destination in _KEEP_WRITABLE or "ro" in m.options
            else MountSpec(m.destination, m.type, m.source, m.options + ("ro",))
            for m in mounts
        ]
    return mounts


def _mounts(inp: SpecInput) -> list[dict[str, Any]]:
    user_dests = {m.destination.rstrip("/") or "/" for m in inp.mounts}
    user_over_dev = "/dev" in user_dests
    defaults = [
        m
        for m in _default_mounts(inp)
        if m.destination not in user_dests
        and not (user_over_dev and m.destination.startswith("/dev/"))
    ]
    # User mounts go after the defaults, parents before children (Docker sorts by depth).
    users = sorted(inp.mounts, key=lambda m: len([p for p in m.destination.split("/") if p]))
    out = []
    for m in defaults + users:
        entry: dict[str, Any] = {"destination": m.destination, "type": m.type, "source": m.source}
        if m.options:
            entry["options"] = list(m.options)
        out.append(entry)
    return out


def _namespace(kind: str, mode: str) -> dict[str, str] | None:
    """The namespace entry for a mode; None when the host's namespace is used."""
    if mode == "host":
        return None
    if mode.startswith("/"):
        return {"type": kind, "path": mode}
    return {"type": kind}


def _namespaces(inp: SpecInput) -> list[dict[str, str]]:
    for name, mode in (
        ("pid_mode", inp.pid_mode),
        ("uts_mode", inp.uts_mode),
        ("cgroupns_mode", inp.cgroupns_mode),
    ):
        if mode not in _NAMESPACE_MODES and not mode.startswith("/"):
            raise InvalidArgument(f"invalid {name}: {mode!r}")
    if inp.network_mode not in ("new", "none", "host") and not inp.network_mode.startswith("/"):
        raise InvalidArgument(f"invalid network mode: {inp.network_mode!r}")
    if inp.ipc_mode not in ("private", "shareable", "none", "host") and not inp.ipc_mode.startswith(
        "/"
    ):
        raise InvalidArgument(f"invalid IPC mode: {inp.ipc_mode!r}")
    if inp.userns_mode not in _NAMESPACE_MODES and not inp.userns_mode.startswith("/"):
        raise InvalidArgument(f"invalid user namespace mode: {inp.userns_mode!r}")
    if inp.userns_mode != "host" and inp.id_mapping.empty:
        raise InvalidArgument("a user namespace needs an ID mapping")
    net_mode = "private" if inp.network_mode in ("new", "none") else inp.network_mode
    ipc_mode = "private" if inp.ipc_mode in ("private", "shareable", "none") else inp.ipc_mode
    entries = [
        _namespace("pid", inp.pid_mode),
        _namespace("network", net_mode),
        _namespace("ipc", ipc_mode),
        _namespace("uts", inp.uts_mode),
        {"type": "mount"},
    ]
    if inp.cgroupns_mode == "private":
        entries.append({"type": "cgroup"})
    entries.append(_namespace("user", inp.userns_mode))
    return [e for e in entries if e is not None]


def _device_rule(rule: DeviceRule) -> dict[str, Any]:
    out: dict[str, Any] = {"allow": rule.allow}
    if rule.type is not None:
        out["type"] = rule.type
    if rule.major is not None:
        out["major"] = rule.major
    if rule.minor is not None:
        out["minor"] = rule.minor
    out["access"] = rule.access
    return out


def _resources(inp: SpecInput) -> dict[str, Any]:
    if inp.privileged:
        rules: tuple[DeviceRule, ...] = (DeviceRule(allow=True, access="rwm"),)
    else:
        rules = (
            DEFAULT_DEVICE_RULES
            + tuple(DeviceRule(True, "rwm", d.type, d.major, d.minor) for d in inp.devices)
            + inp.device_rules
        )
    out: dict[str, Any] = {"devices": [_device_rule(r) for r in rules]}
    res = inp.resources
    memory = {
        k: v
        for k, v in (
            ("limit", res.memory),
            ("reservation", res.memory_reservation),
            ("swap", res.memory_swap),
        )
        if v is not None
    }
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {
        k: v
        for k, v in (
            ("shares", res.cpu_shares),
            ("quota", res.cpu_quota),
            ("period", res.cpu_period),
            ("cpus", res.cpuset_cpus),
            ("mems", res.cpuset_mems),
        )
        if v is not None
    }
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit is not None:
        out["pids"] = {"limit": res.pids_limit}
    if res.blkio_weight is not None:
        out["blockIO"] = {"weight": res.blkio_weight}
    return out


def _rlimit(r: Rlimit) -> dict[str, Any]:
    kind = r.type.upper()
    if not kind.startswith("RLIMIT_"):
        kind = "RLIMIT_" + kind
    if r.soft > r.hard:
        raise InvalidArgument(
            f"ulimit soft limit must be less than or equal to hard limit: {r.soft} > {r.hard}"
        )
    return {"type": kind, "hard": r.hard, "soft": r.soft}


def _process(inp: SpecInput) -> dict[str, Any]:
    if not inp.args:
        raise InvalidArgument("no command specified")
    caps = list(
        resolve_capabilities(
            inp.cap_add,
            inp.cap_drop,
            privileged=inp.privileged,
            host_capabilities=inp.host_capabilities,
        )
    )
    user: dict[str, Any] = {"uid": inp.uid, "gid": inp.gid}
    if inp.additional_gids:
        user["additionalGids"] = list(inp.additional_gids)
    process: dict[str, Any] = {
        "terminal": inp.tty,
        "user": user,
        "args": list(inp.args),
        "env": list(inp.env),
        "cwd": inp.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
    }
    if inp.rlimits:
        process["rlimits"] = [_rlimit(r) for r in inp.rlimits]
    if inp.no_new_privileges:
        process["noNewPrivileges"] = True
    if inp.oom_score_adj is not None:
        process["oomScoreAdj"] = inp.oom_score_adj
    if inp.apparmor_profile:
        process["apparmorProfile"] = inp.apparmor_profile
    return process


def build_process(inp: SpecInput) -> dict[str, Any]:
    """Only the OCI ``process`` object: what ``docker exec`` hands to ``runtime exec``.

    Build it from the container's SpecInput with the exec's args, env, cwd, user and tty
    replaced (``dataclasses.replace``), so the exec keeps the container's capabilities,
    no_new_privileges and AppArmor profile, as Docker's exec does.
    """
    return _process(inp)


def _sysctls(inp: SpecInput) -> dict[str, str]:
    out: dict[str, str] = {}
    if inp.network_mode != "host":  # a path: the namespace berthd made for the container
        # Docker's defaults for a container with its own network namespace; not the ping
        # range in a user namespace, where most of those group IDs are not mapped (EINVAL).
        if inp.userns_mode == "host":
            out["net.ipv4.ping_group_range"] = "0 2147483647"
        out["net.ipv4.ip_unprivileged_port_start"] = "0"
    out.update(inp.sysctls)
    return out


def build_spec(inp: SpecInput) -> dict[str, Any]:
    """The complete OCI runtime config for ``inp`` (validates against the OCI schema)."""
    if not inp.root_path:
        raise InvalidArgument("root path is required")
    linux: dict[str, Any] = {"resources": _resources(inp)}
    if inp.cgroups_path:
        linux["cgroupsPath"] = inp.cgroups_path
    linux["namespaces"] = _namespaces(inp)
    if inp.userns_mode != "host":
        linux.update(inp.id_mapping.to_spec())
    if inp.devices:
        linux["devices"] = [
            {
                "path": d.path,
                "type": d.type,
                "major": d.major,
                "minor": d.minor,
                "fileMode": d.file_mode,
                "uid": d.uid,
                "gid": d.gid,
            }
            for d in inp.devices
        ]
    if not inp.privileged:
        masked = DEFAULT_MASKED_PATHS if inp.masked_paths is None else inp.masked_paths
        readonly = DEFAULT_READONLY_PATHS if inp.readonly_paths is None else inp.readonly_paths
        linux["maskedPaths"] = list(masked)
        linux["readonlyPaths"] = list(readonly)
    sysctls = _sysctls(inp)
    if sysctls:
        linux["sysctl"] = sysctls
    if inp.seccomp is not None:
        linux["seccomp"] = dict(inp.seccomp)
    if inp.rootfs_propagation:
        linux["rootfsPropagation"] = inp.rootfs_propagation

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": _process(inp),
        "root": {"path": inp.root_path, "readonly": inp.readonly_rootfs},
    }
    # runc refuses a hostname without its own UTS namespace.
    if inp.hostname and inp.uts_mode != "host":
        spec["hostname"] = inp.hostname
    spec["mounts"] = _mounts(inp)
    spec["linux"] = linux
    if inp.annotations:
        spec["annotations"] = dict(inp.annotations)
    return spec
