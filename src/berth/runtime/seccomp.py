"""Docker seccomp profiles → OCI ``linux.seccomp`` (pure apart from reading the vendored file).

A Docker profile (``seccomp_default.json``, or a user's ``--security-opt seccomp=FILE``) groups
syscalls with conditions: ``includes``/``excludes`` on the container's capabilities, the CPU
architecture and the kernel version. Docker resolves those per container when it writes the
runtime spec; the runtime only ever sees plain rules. This module does the same resolution, so
runc, crun and berth-runtime all receive the same filter Docker would have handed them.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from berth.errors import InvalidArgument

# Go's GOARCH names (used in profile conditions) and libseccomp's names, by `uname -m`.
_MACHINE_TO_GOARCH = {
    "x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64",
    "loongarch64": "loong64",
}
GOARCH_TO_SCMP = {
    "amd64": "SCMP_ARCH_X86_64", "386": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64", "mips64": "SCMP_ARCH_MIPS64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
}
ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
})
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})
_KERNEL_RE = re.compile(r"^(\d+)\.(\d+)")


def host_goarch() -> str:
    machine = platform.machine()
    return _MACHINE_TO_GOARCH.get(machine, machine)


def host_kernel() -> tuple[int, int]:
    return parse_kernel(os.uname().release)


def parse_kernel(release: str) -> tuple[int, int]:
    m = _KERNEL_RE.match(release)
    if not m:
        raise InvalidArgument(f"invalid kernel version {release!r}")
    return int(m.group(1)), int(m.group(2))


@lru_cache(maxsize=1)
def _default_text() -> str:
    return resources.files("berth.runtime").joinpath("seccomp_default.json").read_text()


def default_profile() -> dict[str, Any]:
    """Docker's default profile (a fresh copy: callers may not share mutable state)."""
    profile: dict[str, Any] = json.loads(_default_text())
    return profile


def parse_profile(text: str) -> dict[str, Any]:
    """A user's profile (the JSON text the CLI sends in ``seccomp=...``), checked for shape."""
    try:
        profile = json.loads(text)
    except ValueError as err:
        raise InvalidArgument(f"Decoding seccomp profile failed: {err}") from err
    if not isinstance(profile, dict):
        raise InvalidArgument("Decoding seccomp profile failed: profile must be a JSON object")
    _check_profile(profile)
    return profile


def _check_profile(profile: Mapping[str, Any]) -> None:
    def bad(msg: str) -> InvalidArgument:
        return InvalidArgument(f"Decoding seccomp profile failed: {msg}")

    action = profile.get("defaultAction")
    if action not in ACTIONS:
        raise bad(f"invalid default action {action!r}")
    if "architectures" in profile and "archMap" in profile:
        raise bad("use either 'architectures' or 'archMap'")
    for call in _list(profile.get("syscalls"), "syscalls", bad):
        if not isinstance(call, dict):
            raise bad("syscalls entries must be objects")
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad("syscall names must be strings")
        if call.get("action") not in ACTIONS:
            raise bad(f"invalid action {call.get('action')!r}")
        for arg in _list(call.get("args"), "args", bad):
            if not isinstance(arg, dict) or arg.get("op") not in OPERATORS:
                raise bad(f"invalid argument condition {arg!r}")
            index, value = arg.get("index"), arg.get("value", 0)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 5:
                raise bad(f"invalid argument index {index!r}")
            for v in (value, arg.get("valueTwo", 0)):
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**64:
                    raise bad(f"invalid argument value {v!r}")


def _list(raw: Any, where: str, bad: Any) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad(f"{where} must be an array")
    return raw


def _applies(call: Mapping[str, Any], caps: frozenset[str], goarch: str,
             kernel: tuple[int, int]) -> bool:
    inc, exc = call.get("includes") or {}, call.get("excludes") or {}
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if inc.get("minKernel") and kernel < parse_kernel(inc["minKernel"]):
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if exc.get("arches") and goarch in exc["arches"]:
        return False
    return not (exc.get("minKernel") and kernel >= parse_kernel(exc["minKernel"]))


def to_oci(
    profile: Mapping[str, Any],
    capabilities: Iterable[str],
    *,
    goarch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Resolve ``profile`` for a container with the bounding set ``capabilities``.

    The result is an OCI ``linux.seccomp`` object; only the native architecture's
    ``archMap`` entry (it and its sub-architectures) is kept, as Docker does.
    """
    _check_profile(profile)
    goarch = goarch or host_goarch()
    kernel = kernel or host_kernel()
    caps = frozenset(capabilities)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    native = GOARCH_TO_SCMP.get(goarch)
    arches: list[str] = []
    if profile.get("architectures"):
        arches = list(profile["architectures"])
    for entry in profile.get("archMap") or []:
        if native is not None and entry.get("architecture") == native:
            arches = [native, *(entry.get("subArchitectures") or [])]
    if arches:
        out["architectures"] = arches
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    rules = []
    for call in profile.get("syscalls") or []:
        if not _applies(call, caps, goarch, kernel):
            continue
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        if not names:
            continue
        rule: dict[str, Any] = {"names": list(names), "action": call["action"]}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [
                {"index": a["index"], "value": a.get("value", 0),
                 "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
                for a in call["args"]
            ]
        rules.append(rule)
    out["syscalls"] = rules
    return out


def seccomp_for_container(
    security_opt: Iterable[str],
    capabilities: Iterable[str],
    *,
    privileged: bool = False,
    goarch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any] | None:
    """Docker's choice for one container: None (unconfined) for ``--privileged`` or
    ``seccomp=unconfined``, the user's profile for ``seccomp=<json>``, else the default."""
    chosen: str | None = None
    for opt in security_opt:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # Docker still accepts the old ':' form
        if key == "seccomp":
            if not value:
                raise InvalidArgument(f"invalid --security-opt: {opt!r}")
            chosen = value
    if privileged or chosen == "unconfined":
        return None
    if chosen is None or chosen == "builtin":
        profile = default_profile()
    elif chosen.lstrip().startswith("{"):
        profile = parse_profile(chosen)
    else:
        # The docker CLI sends the file's contents; a path only reaches us from other clients.
        raise InvalidArgument(
            f"opening seccomp profile ({chosen}) failed: the client must send the profile's "
            "JSON content, not a path")
    return to_oci(profile, capabilities, goarch=goarch, kernel=kernel)
