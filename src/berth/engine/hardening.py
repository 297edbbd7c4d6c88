"""The security options of one container, read from its record the way Docker reads them.

``launch.build_spec_input`` calls these; each turns HostConfig fields (``SecurityOpt``,
``Devices``, ``Privileged``) into what ``runtime.spec.SpecInput`` takes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from berth.engine.model import ContainerRecord, HostConfig
from berth.errors import InvalidArgument
from berth.runtime import seccomp
from berth.runtime import spec as runtime_spec

# ALL_CAPABILITIES is in capability-number order (linux/capability.h).
_CAP_NUMBER_ORDER = runtime_spec.ALL_CAPABILITIES
_KNOWN_OPTS = ("seccomp", "no-new-privileges", "apparmor", "label", "systempaths")


def validate_security_opt(security_opt: Iterable[str]) -> None:
    """Docker's checks at create time (``invalid --security-opt: ...``)."""
    for opt in security_opt:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key == "no-new-privileges" and not sep:
            continue
        if key not in _KNOWN_OPTS or not sep:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
        if key == "no-new-privileges" and value not in ("true", "false"):
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')


def no_new_privileges(security_opt: Iterable[str]) -> bool:
    result = False
    for opt in security_opt:
        key, sep, value = opt.replace(":", "=", 1).partition("=")
        if key == "no-new-privileges":
            result = not sep or value == "true"
    return result


def unmasked_system_paths(security_opt: Iterable[str]) -> bool:
    """``--security-opt systempaths=unconfined`` drops the masked and read-only paths."""
    return any(opt.replace(":", "=", 1) == "systempaths=unconfined" for opt in security_opt)


def seccomp_for(record: ContainerRecord) -> dict[str, Any] | None:
    """The OCI ``linux.seccomp`` for the container (None: unconfined)."""
    h = record.host_config
    caps = runtime_spec.resolve_capabilities(h.cap_add, h.cap_drop, privileged=h.privileged,
                                             host_capabilities=host_capabilities())
    return seccomp.seccomp_for_container(h.security_opt, caps, privileged=h.privileged)


def devices_for(record: ContainerRecord) -> tuple[runtime_spec.DeviceSpec, ...]:
    """``--device /dev/x[:/dev/y][:rwm]`` → device nodes (the cgroup rules follow from them).

    A directory on the host adds every device below it, as Docker does.
    """
    out: list[runtime_spec.DeviceSpec] = []
    if record.host_config.privileged:
        out.extend(host_devices())
    for entry in record.host_config.devices:
        parts = entry.split(":")
        host = parts[0]
        inside = parts[1] if len(parts) > 1 and parts[1] else host
        if not host.startswith("/") or not inside.startswith("/") or ".." in inside.split("/"):
            raise InvalidArgument(f"invalid device specification: {entry}")
        try:
            st = os.stat(host)
        except OSError as err:
            raise InvalidArgument(
                f"error gathering device information while adding custom device {host!r}: "
                f"{err.strerror.lower() if err.strerror else err}") from err
        if stat.S_ISDIR(st.st_mode):
            for dirpath, _dirs, files in os.walk(host):
                for name in sorted(files):
                    path = os.path.join(dirpath, name)
                    dev = _device(path, os.path.join(inside, os.path.relpath(path, host)))
                    if dev is not None:
                        out.append(dev)
            continue
        dev = _device(host, inside)
        if dev is None:
            raise InvalidArgument(f"error gathering device information while adding custom "
                                  f"device {host!r}: not a device node")
        out.append(dev)
    return tuple(out)


_SKIP_DEV_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def host_devices(root: str = "/dev") -> list[runtime_spec.DeviceSpec]:
    """Every device node of the host (``--privileged`` gets them all, as with Docker)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (dirpath == root and d in _SKIP_DEV_DIRS)]
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            if path == os.path.join(root, "console") or os.path.islink(path):
                continue
            try:
                dev = _device(path, path)
            except OSError:
                continue
            if dev is not None:
                out.append(dev)
    return out


def _device(host: str, inside: str) -> runtime_spec.DeviceSpec | None:
    st = os.stat(host)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return runtime_spec.DeviceSpec(
        path=inside, type=kind, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
        file_mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)


def system_paths(security_opt: Iterable[str]) -> tuple[str, ...] | None:
    """The masked and read-only paths for SpecInput: ``()`` for ``systempaths=unconfined``,
    None (Docker's defaults) otherwise."""
    return () if unmasked_system_paths(security_opt) else None


def host_capabilities() -> tuple[str, ...]:
    """What berthd itself may grant: its own bounding set (``--privileged``, ``--cap-add ALL``).

    On a plain host that is every capability the kernel knows (Docker's list); inside a
    restricted parent (a container, a CI sandbox) asking for more would fail in capset.
    """
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return runtime_spec.ALL_CAPABILITIES
    return tuple(name for i, name in enumerate(_CAP_NUMBER_ORDER) if mask >> i & 1)


# Docker's --init: tini (its "docker-init") bind-mounted read-only and made PID 1.
INIT_IN_CONTAINER = "/sbin/docker-init"
INIT_CANDIDATES = ("/usr/local/bin/docker-init", "/usr/bin/docker-init",
                   "/usr/libexec/docker/docker-init", "/usr/bin/tini-static",
                   "/usr/local/bin/tini-static")


def init_binary() -> str:
    for path in INIT_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise InvalidArgument("docker-init binary not found (install tini: tini-static)")


def wants_init(record: ContainerRecord) -> bool:
    return bool(record.host_config.init)


def init_mounts(record: ContainerRecord) -> list[runtime_spec.MountSpec]:
    if not wants_init(record):
        return []
    return [runtime_spec.MountSpec(INIT_IN_CONTAINER, "bind", init_binary(), ("bind", "ro"))]


def init_args(record: ContainerRecord, argv: tuple[str, ...]) -> tuple[str, ...]:
    return (INIT_IN_CONTAINER, "--", *argv) if wants_init(record) and argv else argv


def validate_host_config(host: HostConfig) -> None:
    """What Docker refuses at create (400), before anything is written."""
    for field, caps in (("CapAdd", host.cap_add), ("CapDrop", host.cap_drop)):
        for cap in caps:
            name = runtime_spec.normalize_capability(cap)
            if name != "ALL" and name not in runtime_spec.ALL_CAPABILITIES:
                raise InvalidArgument(f'invalid {field}: unknown capability: "{name}"')
    validate_security_opt(host.security_opt)
    # A profile that cannot be used fails now, not at every start.
    seccomp.seccomp_for_container(host.security_opt, runtime_spec.DEFAULT_CAPABILITIES,
                                  privileged=host.privileged)
