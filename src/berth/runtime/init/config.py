"""config.json → typed, validated records. Everything is checked here, before any side effect.

The records are ``typing.NamedTuple`` rather than frozen dataclasses on purpose: this module is
imported by every ``berth-runtime`` start, and building ~17 dataclasses (plus importing
``dataclasses`` and ``inspect``) cost 25–40 ms there; a NamedTuple is as typed and immutable at
~0.2 ms each.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, NamedTuple

from berth.errors import InvalidArgument, NotImplementedByBerth
from berth.runtime.cgroups.resources import CgroupResources, DeviceRule
from berth.runtime.init.capabilities import parse_capabilities
from berth.runtime.init.seccomp import SeccompProgram, prepare
from berth.runtime.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)

NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
    "time": CLONE_NEWTIME,
}
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                "runbindable")
# Device nodes every container gets and may use (runc's defaults), unless the spec names them.
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
)
DEFAULT_DEVICE_RULES = (
    DeviceRule(True, "c", None, None, "m"), DeviceRule(True, "b", None, None, "m"),
    *(DeviceRule(True, "c", ma, mi, "rwm") for _, _, ma, mi in DEFAULT_DEVICES),
    DeviceRule(True, "c", 5, 1, "rwm"), DeviceRule(True, "c", 5, 2, "rwm"),
    DeviceRule(True, "c", 136, None, "rwm"),
)
_RLIM_INFINITY = -1
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class User(NamedTuple):
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None


class Capabilities(NamedTuple):
    bounding: int = 0
    effective: int = 0
    permitted: int = 0
    inheritable: int = 0
    ambient: int = 0


class Rlimit(NamedTuple):
    resource: int
    soft: int
    hard: int


class Process(NamedTuple):
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    terminal: bool = False
    user: User = User()
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    # The container's linux.seccomp, carried by the process so exec gets the same filter.
    seccomp: SeccompProgram | None = None

    def env_value(self, name: str) -> str | None:
        for item in self.env:
            key, sep, value = item.partition("=")
            if key == name and sep:
                return value
        return None


class Mount(NamedTuple):
    destination: str
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()


class Namespace(NamedTuple):
    type: str
    path: str = ""


class IDRange(NamedTuple):
    """One ``linux.uidMappings``/``gidMappings`` entry."""

    container_id: int
    host_id: int
    size: int


class Device(NamedTuple):
    path: str
    type: str
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


class Linux(NamedTuple):
    namespaces: tuple[Namespace, ...] = ()
    devices: tuple[Device, ...] = ()
    cgroups_path: str = ""
    resources: CgroupResources = CgroupResources()
    sysctl: tuple[tuple[str, str], ...] = ()
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    rootfs_propagation: str = ""
    has_seccomp: bool = False
    uid_mappings: tuple[IDRange, ...] = ()
    gid_mappings: tuple[IDRange, ...] = ()

    def namespace(self, kind: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == kind), None)


class Spec(NamedTuple):
    oci_version: str
    bundle: str
    root_path: str
    root_readonly: bool
    process: Process
    hostname: str = ""
    domainname: str = ""
    mounts: tuple[Mount, ...] = ()
    linux: Linux = Linux()
    annotations: dict[str, str] = {}  # noqa: RUF012 - never mutated


def validate_id(container_id: str) -> str:
    if not _ID_RE.match(container_id) or len(container_id) > 1024:
        raise InvalidArgument(f"invalid id format: {container_id}")
    return container_id


def load_spec(bundle: str) -> Spec:
    """Read ``bundle/config.json`` and validate it whole."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError as err:
        raise InvalidArgument(f"JSON specification file {path} not found") from err
    except (OSError, ValueError) as err:
        raise InvalidArgument(f"reading {path}: {err}") from err
    return parse_spec(raw, bundle)


def _obj(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where} must be an object")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidArgument(f"{where} must be an array")
    return raw


def _int(raw: Any, where: str, default: int | None = None) -> int:
    if raw is None and default is not None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidArgument(f"{where} must be an integer")
    return raw


def _opt_int(raw: Any, where: str) -> int | None:
    return None if raw is None else _int(raw, where)


def _str(raw: Any, where: str, default: str = "") -> str:
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise InvalidArgument(f"{where} must be a string")
    return raw


def _strs(raw: Any, where: str) -> tuple[str, ...]:
    return tuple(_str(x, where) for x in _list(raw, where))


def _rlim(value: int) -> int:
    # The spec writes "unlimited" as 2^64-1; setrlimit(2) through Python wants -1.
    return _RLIM_INFINITY if value < 0 or value >= 2**63 else value


def parse_process(raw: dict[str, Any]) -> Process:
    args = _strs(raw.get("args"), "process.args")
    if not args:
        raise InvalidArgument("args must not be empty")
    cwd = _str(raw.get("cwd"), "process.cwd", "/")
    if not cwd.startswith("/"):
        raise InvalidArgument("cwd property must not be empty and must be an absolute path")
    user_raw = _obj(raw.get("user"), "process.user")
    user = User(
        uid=_int(user_raw.get("uid"), "process.user.uid", 0),
        gid=_int(user_raw.get("gid"), "process.user.gid", 0),
        additional_gids=tuple(
            _int(g, "process.user.additionalGids")
            for g in _list(user_raw.get("additionalGids"), "additionalGids")
        ),
        umask=_opt_int(user_raw.get("umask"), "process.user.umask"),
    )
    caps = None
    if raw.get("capabilities") is not None:
        caps_raw = _obj(raw["capabilities"], "process.capabilities")
        sets = {
            name: parse_capabilities(_strs(caps_raw.get(name), name), name)
            for name in ("bounding", "effective", "permitted", "inheritable", "ambient")
        }
        caps = Capabilities(**sets)
    rlimits = []
    for item in _list(raw.get("rlimits"), "process.rlimits"):
        item = _obj(item, "process.rlimits[]")
        kind = _str(item.get("type"), "rlimit type")
        if kind not in RLIMITS:
            raise InvalidArgument(f"rlimit {kind!r} is not supported")
        soft, hard = _int(item.get("soft"), "soft", 0), _int(item.get("hard"), "hard", 0)
        rlimits.append(Rlimit(RLIMITS[kind], _rlim(soft), _rlim(hard)))
    return Process(
        args=args,
        env=_strs(raw.get("env"), "process.env"),
        cwd=os.path.normpath(cwd),
        terminal=bool(raw.get("terminal", False)),
        user=user,
        capabilities=caps,
        rlimits=tuple(rlimits),
        no_new_privileges=bool(raw.get("noNewPrivileges", False)),
        oom_score_adj=_opt_int(raw.get("oomScoreAdj"), "process.oomScoreAdj"),
    )


def parse_resources(raw: dict[str, Any]) -> CgroupResources:
    mem = _obj(raw.get("memory"), "linux.resources.memory")
    cpu = _obj(raw.get("cpu"), "linux.resources.cpu")
    pids = _obj(raw.get("pids"), "linux.resources.pids")
    block_io = _obj(raw.get("blockIO"), "linux.resources.blockIO")
    rules = []
    for item in _list(raw.get("devices"), "linux.resources.devices"):
        item = _obj(item, "linux.resources.devices[]")
        kind = _str(item.get("type"), "device type", "a")
        if kind not in ("a", "c", "b"):
            raise InvalidArgument(f"invalid device rule type {kind!r}")
        access = _str(item.get("access"), "device access", "rwm")
        if not access or set(access) - set("rwm"):
            raise InvalidArgument(f"invalid device access {access!r}")
        rules.append(DeviceRule(
            allow=bool(item.get("allow", False)), type=kind,
            major=_opt_int(item.get("major"), "major"), minor=_opt_int(item.get("minor"), "minor"),
            access=access,
        ))
    return CgroupResources(
        memory_limit=_opt_int(mem.get("limit"), "memory.limit"),
        memory_reservation=_opt_int(mem.get("reservation"), "memory.reservation"),
        memory_swap=_opt_int(mem.get("swap"), "memory.swap"),
        cpu_shares=_opt_int(cpu.get("shares"), "cpu.shares"),
        cpu_quota=_opt_int(cpu.get("quota"), "cpu.quota"),
        cpu_period=_opt_int(cpu.get("period"), "cpu.period"),
        cpuset_cpus=_str(cpu.get("cpus"), "cpu.cpus") or None,
        cpuset_mems=_str(cpu.get("mems"), "cpu.mems") or None,
        pids_limit=_opt_int(pids.get("limit"), "pids.limit"),
        blkio_weight=_opt_int(block_io.get("weight"), "blockIO.weight"),
        # Rules are applied after "deny all"; the default nodes stay usable, as with runc.
        devices=(DeviceRule(False, "a"), *rules, *DEFAULT_DEVICE_RULES) if rules else (),
    )


def parse_linux(raw: dict[str, Any]) -> Linux:
    namespaces: list[Namespace] = []
    for item in _list(raw.get("namespaces"), "linux.namespaces"):
        item = _obj(item, "linux.namespaces[]")
        kind = _str(item.get("type"), "namespace type")
        if kind not in NAMESPACE_FLAGS:
            raise InvalidArgument(f"namespace type {kind!r} is not supported")
        if any(n.type == kind for n in namespaces):
            raise InvalidArgument(f"duplicated namespace {kind!r}")
        if kind == "time":
            raise NotImplementedByBerth("time namespaces are not supported by berth-runtime yet")
        path = _str(item.get("path"), "namespace path")
        if path and not os.path.exists(path):
            raise InvalidArgument(f"namespace {kind} path {path} does not exist")
        namespaces.append(Namespace(kind, path))
    devices = []
    for item in _list(raw.get("devices"), "linux.devices"):
        item = _obj(item, "linux.devices[]")
        dev_path = _str(item.get("path"), "device path")
        kind = _str(item.get("type"), "device type")
        if not dev_path.startswith("/dev/") or ".." in dev_path.split("/"):
            raise InvalidArgument(f"invalid device path {dev_path!r}")
        if kind not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"invalid device type {kind!r} for {dev_path}")
        devices.append(Device(
            path=dev_path, type=kind,
            major=_int(item.get("major"), "major", 0), minor=_int(item.get("minor"), "minor", 0),
            file_mode=_int(item.get("fileMode"), "fileMode", 0o666),
            uid=_int(item.get("uid"), "uid", 0), gid=_int(item.get("gid"), "gid", 0),
        ))
    propagation = _str(raw.get("rootfsPropagation"), "rootfsPropagation")
    if propagation not in PROPAGATIONS:
        raise InvalidArgument(f"invalid rootfsPropagation {propagation!r}")
    sysctl = _obj(raw.get("sysctl"), "linux.sysctl")
    for key in sysctl:
        if not isinstance(sysctl[key], str) or "/" in key or ".." in key:
            raise InvalidArgument(f"invalid sysctl {key!r}")
    uid_mappings = _id_ranges(raw.get("uidMappings"), "linux.uidMappings")
    gid_mappings = _id_ranges(raw.get("gidMappings"), "linux.gidMappings")
    user = next((n for n in namespaces if n.type == "user"), None)
    if user is None and (uid_mappings or gid_mappings):
        raise InvalidArgument("user namespace mappings specified, but USER namespace isn't "
                              "enabled in the config")
    if user is not None and not user.path and not (uid_mappings and gid_mappings):
        raise InvalidArgument("user namespaces enabled, but no user mappings found")
    return Linux(
        namespaces=tuple(namespaces),
        devices=tuple(devices),
        cgroups_path=_str(raw.get("cgroupsPath"), "linux.cgroupsPath"),
        resources=parse_resources(_obj(raw.get("resources"), "linux.resources")),
        sysctl=tuple(sorted(sysctl.items())),
        masked_paths=_strs(raw.get("maskedPaths"), "linux.maskedPaths"),
        readonly_paths=_strs(raw.get("readonlyPaths"), "linux.readonlyPaths"),
        rootfs_propagation=propagation,
        has_seccomp=raw.get("seccomp") is not None,
        uid_mappings=uid_mappings,
        gid_mappings=gid_mappings,
    )


def _id_ranges(raw: Any, where: str) -> tuple[IDRange, ...]:
    out = []
    for item in _list(raw, where):
        item = _obj(item, f"{where}[]")
        entry = IDRange(_int(item.get("containerID"), "containerID"),
                        _int(item.get("hostID"), "hostID"), _int(item.get("size"), "size"))
        if min(entry) < 0 or entry.size == 0:
            raise InvalidArgument(f"invalid {where} entry {dict(item)}")
        out.append(entry)
    return tuple(out)


def id_map_text(ranges: tuple[IDRange, ...]) -> str:
    """What ``/proc/<pid>/uid_map`` (or ``gid_map``) takes for these ranges."""
    return "".join(f"{r.container_id} {r.host_id} {r.size}\n" for r in ranges)


def parse_spec(raw: Any, bundle: str) -> Spec:
    """Validate the whole document and return it typed; nothing on the host is changed."""
    raw = _obj(raw, "config")
    version = _str(raw.get("ociVersion"), "ociVersion")
    if not version.startswith("1."):
        raise InvalidArgument(f"unsupported ociVersion {version!r}")
    root = _obj(raw.get("root"), "root")
    root_path = _str(root.get("path"), "root.path")
    if not root_path:
        raise InvalidArgument("root.path is empty")
    root_path = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isdir(root_path):
        raise InvalidArgument(f"rootfs ({root_path}) does not exist")
    if raw.get("process") is None:
        raise InvalidArgument("process property must not be empty")
    process = parse_process(_obj(raw["process"], "process"))
    linux = parse_linux(_obj(raw.get("linux"), "linux"))
    process = process._replace(seccomp=prepare(_obj(raw.get("linux"), "linux").get("seccomp")))
    mounts = []
    for item in _list(raw.get("mounts"), "mounts"):
        item = _obj(item, "mounts[]")
        dest = _str(item.get("destination"), "mount destination")
        if not dest.startswith("/"):
            raise InvalidArgument(f"mount destination {dest!r} is not absolute")
        mounts.append(Mount(
            destination=os.path.normpath(dest), type=_str(item.get("type"), "mount type"),
            source=_str(item.get("source"), "mount source"),
            options=_strs(item.get("options"), "mount options"),
        ))
    hostname = _str(raw.get("hostname"), "hostname")
    if hostname and linux.namespace("uts") is None:
        raise InvalidArgument("unable to set hostname without a private UTS namespace")
    if linux.namespace("mount") is None:
        raise NotImplementedByBerth("containers without a mount namespace are not supported")
    annotations = _obj(raw.get("annotations"), "annotations")
    return Spec(
        oci_version=version,
        bundle=bundle,
        root_path=root_path,
        root_readonly=bool(root.get("readonly", False)),
        process=process,
        hostname=hostname,
        domainname=_str(raw.get("domainname"), "domainname"),
        mounts=tuple(mounts),
        linux=linux,
        annotations={str(k): str(v) for k, v in annotations.items()},
    )
