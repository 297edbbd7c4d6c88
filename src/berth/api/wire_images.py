"""Docker's JSON shapes for images and the system endpoints (Engine API 1.41, Docker 20.10).

The renderers read the image service's records through the read-only Protocols below, so the
wire shapes depend on the fields, not on one record class. Field order follows what dockerd
sends (captures in shared/reference/docker-cli-traffic).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from berth.oci.image import ImageConfig

_ZERO_TIME = "0001-01-01T00:00:00Z"


class ImageView(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def repo_tags(self) -> Sequence[str]: ...
    @property
    def repo_digests(self) -> Sequence[str]: ...
    @property
    def created(self) -> str | None: ...
    @property
    def config(self) -> ImageConfig: ...
    @property
    def diff_ids(self) -> Sequence[str]: ...
    @property
    def size(self) -> int: ...
    @property
    def architecture(self) -> str: ...
    @property
    def os(self) -> str: ...
    @property
    def variant(self) -> str | None: ...
    @property
    def os_version(self) -> str | None: ...
    @property
    def author(self) -> str: ...
    @property
    def comment(self) -> str: ...
    @property
    def docker_version(self) -> str: ...
    @property
    def parent(self) -> str: ...


class HistoryView(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def created(self) -> int: ...
    @property
    def created_by(self) -> str: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def size(self) -> int: ...
    @property
    def comment(self) -> str: ...


# -- time ---------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$")


def unix_seconds(created: str | None) -> int:
    """An RFC 3339 timestamp (nanoseconds allowed) as Unix seconds; 0 when absent or bad."""
    if not created:
        return 0
    match = _RFC3339.match(created)
    if match is None:
        return 0
    date, clock, _frac, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        stamp = dt.datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError:
        return 0
    return int(stamp.timestamp())


def rfc3339_nano(created: str | None) -> str:
    """Go's RFC3339Nano rendering of a stored timestamp (UTC, trailing zeros trimmed)."""
    if not created:
        return _ZERO_TIME
    match = _RFC3339.match(created)
    if match is None:
        return created
    date, clock, frac, zone = match.groups()
    if zone not in ("Z", "z"):
        stamp = dt.datetime.fromisoformat(f"{date}T{clock}{zone}").astimezone(dt.UTC)
        date, clock = stamp.strftime("%Y-%m-%d"), stamp.strftime("%H:%M:%S")
    frac = (frac or "")[:9].rstrip("0")
    return f"{date}T{clock}{'.' + frac if frac else ''}Z"


# -- images -------------------------------------------------------------------------------------


def render_container_config(config: ImageConfig | None) -> dict[str, Any]:
    """Docker's ``Config`` object of an image (a container config, all keys present)."""
    c = config or ImageConfig()
    out: dict[str, Any] = {
        "Hostname": "",
        "Domainname": "",
        "User": c.user,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
    }
    if c.exposed_ports:
        out["ExposedPorts"] = {p: {} for p in c.exposed_ports}
    out.update({
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": list(c.env) or None,
        "Cmd": list(c.cmd) if c.cmd is not None else None,
    })
    if c.healthcheck is not None:
        out["Healthcheck"] = c.healthcheck.to_json()
    if c.args_escaped:
        out["ArgsEscaped"] = True
    out.update({
        "Image": "",
        "Volumes": {v: {} for v in c.volumes} or None,
        "WorkingDir": c.working_dir,
        "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
        "OnBuild": list(c.on_build) or None,
        "Labels": dict(c.labels) or None,
    })
    if c.stop_signal:
        out["StopSignal"] = c.stop_signal
    if c.shell:
        out["Shell"] = list(c.shell)
    return out


def render_image_summary(img: ImageView, containers: int = -1) -> dict[str, Any]:
    """One entry of ``GET /images/json``."""
    tags = list(img.repo_tags)
    digests: list[str] | None = list(img.repo_digests) or None
    if not tags and not digests:
        tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    labels = dict(img.config.labels) if img.config is not None else {}
    return {
        "Containers": containers,
        "Created": unix_seconds(img.created),
        "Id": img.id,
        "Labels": labels or None,
        "ParentId": img.parent or "",
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": -1,
        "Size": img.size,
        "VirtualSize": img.size,
    }


def render_image_inspect(img: ImageView, last_tag_time: str | None = None) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    out: dict[str, Any] = {
        "Id": img.id,
        "RepoTags": list(img.repo_tags),
        "RepoDigests": list(img.repo_digests),
        "Parent": img.parent or "",
        "Comment": img.comment,
        "Created": rfc3339_nano(img.created),
        "Container": "",
        "ContainerConfig": render_container_config(None),
        "DockerVersion": img.docker_version,
        "Author": img.author,
        "Config": render_container_config(img.config),
        "Architecture": img.architecture,
    }
    if img.variant:
        out["Variant"] = img.variant
    out["Os"] = img.os
    if img.os_version:
        out["OsVersion"] = img.os_version
    out.update({
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Data": None, "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": list(img.diff_ids)},
        "Metadata": {"LastTagTime": rfc3339_nano(last_tag_time)},
    })
    return out


def render_history(entries: Sequence[HistoryView]) -> list[dict[str, Any]]:
    """``GET /images/{name}/history``: newest first, as the service returns them."""
    return [{
        "Comment": e.comment,
        "Created": e.created,
        "CreatedBy": e.created_by,
        "Id": e.id or "<missing>",
        "Size": e.size,
        "Tags": list(e.tags) or None,
    } for e in entries]


def render_delete(items: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """``DELETE /images/{name}``: ``[{"Untagged": ref}, {"Deleted": id}]``."""
    return [{kind: value} for kind, value in items]


# -- system -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostFacts:
    """What ``/version`` and ``/info`` report about the machine."""

    kernel_version: str
    operating_system: str
    os_version: str
    machine: str  # uname: x86_64
    go_arch: str  # Go's name: amd64
    ncpu: int
    mem_total: int
    hostname: str
    cgroup_version: str
    backing_filesystem: str
    ipv4_forwarding: bool
    bridge_nf_iptables: bool
    bridge_nf_ip6tables: bool
    nfd: int
    nthreads: int
    system_time: str
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""


@dataclass(frozen=True)
class DaemonFacts:
    """What ``/version`` and ``/info`` report about berthd itself."""

    id: str
    engine_version: str
    api_version: str
    min_api_version: str
    git_commit: str
    python_version: str
    build_time: str
    root_dir: str
    debug: bool
    experimental: bool
    default_runtime: str
    runtimes: Mapping[str, tuple[str, tuple[str, ...]]]  # name -> (path, args)
    insecure_registries: Sequence[str]
    registry_mirrors: Sequence[str]
    labels: Sequence[str]
    userns: bool = False  # --userns-remap is set


def render_version(daemon: DaemonFacts, host: HostFacts) -> dict[str, Any]:
    details = {
        "ApiVersion": daemon.api_version,
        "Arch": host.go_arch,
        "BuildTime": daemon.build_time,
        "Experimental": "true" if daemon.experimental else "false",
        "GitCommit": daemon.git_commit,
        "GoVersion": daemon.python_version,
        "KernelVersion": host.kernel_version,
        "MinAPIVersion": daemon.min_api_version,
        "Os": "linux",
    }
    return {
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": daemon.engine_version, "Details": details}],
        "Version": daemon.engine_version,
        "ApiVersion": daemon.api_version,
        "MinAPIVersion": daemon.min_api_version,
        "GitCommit": daemon.git_commit,
        "GoVersion": daemon.python_version,
        "Os": "linux",
        "Arch": host.go_arch,
        "KernelVersion": host.kernel_version,
        "BuildTime": daemon.build_time,
    }


def _registry_config(insecure: Sequence[str], mirrors: Sequence[str]) -> dict[str, Any]:
    cidrs = [r for r in insecure if re.match(r"^[0-9a-fA-F.:]+/\d+$", r)]
    index = {"docker.io": {"Name": "docker.io", "Mirrors": list(mirrors), "Secure": True,
                           "Official": True}}
    for name in insecure:
        if name not in cidrs:
            index[name] = {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
    return {
        "AllowNondistributableArtifactsCIDRs": [],
        "AllowNondistributableArtifactsHostnames": [],
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": index,
        "Mirrors": list(mirrors),
    }


def render_info(daemon: DaemonFacts, host: HostFacts, containers: Mapping[str, int],
                images: int) -> dict[str, Any]:
    """``GET /info``; ``containers`` counts by "running", "paused", "stopped"."""
    running = containers.get("running", 0)
    paused = containers.get("paused", 0)
    stopped = containers.get("stopped", 0)
    v2 = host.cgroup_version == "2"
    security = (["name=seccomp,profile=default"] + (["name=userns"] if daemon.userns else [])
                + (["name=cgroupns"] if v2 else []))
    return {
        "ID": daemon.id,
        "Containers": running + paused + stopped,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", host.backing_filesystem],
                         ["Supports d_type", "true"], ["Native Overlay Diff", "true"],
                         ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "KernelMemory": not v2,
        "KernelMemoryTCP": not v2,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": host.ipv4_forwarding,
        "BridgeNfIptables": host.bridge_nf_iptables,
        "BridgeNfIp6tables": host.bridge_nf_ip6tables,
        "Debug": daemon.debug,
        "NFd": host.nfd,
        "OomKillDisable": not v2,
        "NGoroutines": host.nthreads,
        "SystemTime": host.system_time,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": host.cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": host.kernel_version,
        "OperatingSystem": host.operating_system,
        "OSVersion": host.os_version,
        "OSType": "linux",
        "Architecture": host.machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": _registry_config(daemon.insecure_registries, daemon.registry_mirrors),
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": None,
        "DockerRootDir": daemon.root_dir,
        "HttpProxy": host.http_proxy,
        "HttpsProxy": host.https_proxy,
        "NoProxy": host.no_proxy,
        "Name": host.hostname,
        "Labels": list(daemon.labels),
        "ExperimentalBuild": daemon.experimental,
        "ServerVersion": daemon.engine_version,
        "Runtimes": {name: ({"path": path, "runtimeArgs": list(args)} if args else {"path": path})
                     for name, (path, args) in daemon.runtimes.items()},
        "DefaultRuntime": daemon.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": security,
        "Warnings": None,
    }
