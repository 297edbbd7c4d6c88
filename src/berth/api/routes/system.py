"""``/_ping``, ``/version`` and ``/info``."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

import berth
from berth.api.app import API_VERSION, MIN_API_VERSION, python_version
from berth.api.streams import json_response, run_blocking
from berth.api.wire_images import DaemonFacts, HostFacts, render_info, render_version
from berth.engine.config import ENGINE_VERSION, DaemonConfig

if TYPE_CHECKING:
    from berth.api.app import ApiRouter

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
            "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
            "riscv64": "riscv64"}

_PING_HEADERS = {
    "Api-Version": API_VERSION,
    "Ostype": "linux",
    "Docker-Experimental": "false",
    "Builder-Version": "1",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


class ImageCounter(Protocol):
    def list(self) -> Sequence[object]: ...


class ContainerCounter(Protocol):
    def counts(self) -> Mapping[str, int]:
        """Containers by state: "running", "paused", "stopped" (everything else)."""
        ...


class SystemRoutes:
    def __init__(self, config: DaemonConfig, images: ImageCounter,
                 containers: ContainerCounter | None, daemon_id: str,
                 root_dir: Path | None = None) -> None:
        """``root_dir``: where the state really is (``<data-root>/<uid>.<gid>`` remapped)."""
        self._config = config
        self._images = images
        self._containers = containers
        self._daemon = DaemonFacts(
            id=daemon_id,
            engine_version=ENGINE_VERSION,
            api_version=API_VERSION,
            min_api_version=MIN_API_VERSION,
            git_commit=f"v{berth.__version__}",
            python_version=python_version(),
            build_time=_build_time(),
            root_dir=str(root_dir or config.data_root),
            debug=config.debug,
            experimental=config.experimental,
            default_runtime=config.default_runtime,
            runtimes={name: (rt.path, rt.args) for name, rt in config.runtimes.items()},
            insecure_registries=config.insecure_registries,
            registry_mirrors=config.registry_mirrors,
            labels=config.labels,
            userns=bool(config.userns_remap),
        )

    def register(self, router: ApiRouter) -> None:
        router.add("GET", "/_ping", self.ping)
        router.add("HEAD", "/_ping", self.ping)
        router.add("GET", "/version", self.version)
        router.add("GET", "/info", self.info)

    async def ping(self, request: web.Request) -> web.StreamResponse:
        # HEAD gets no body and Content-Length 0, as dockerd sends it (not the GET's length).
        body = b"" if request.method == "HEAD" else b"OK"
        return web.Response(body=body, headers=_PING_HEADERS, content_type="text/plain",
                            charset="utf-8")

    async def version(self, request: web.Request) -> web.StreamResponse:
        host = await run_blocking(request, host_facts, self._config.data_root)
        return json_response(render_version(self._daemon, host))

    async def info(self, request: web.Request) -> web.StreamResponse:
        host, images, containers = await run_blocking(request, self._gather)
        return json_response(render_info(self._daemon, host, containers, images))

    def _gather(self) -> tuple[HostFacts, int, Mapping[str, int]]:
        counts = self._containers.counts() if self._containers is not None else {}
        return host_facts(self._config.data_root), len(self._images.list()), counts


def host_facts(data_root: Path) -> HostFacts:
    """Read what the machine is; cheap reads of /proc, /sys and /etc, done per request."""
    uname = os.uname()
    os_name, os_version = _os_release()
    return HostFacts(
        kernel_version=uname.release,
        operating_system=os_name,
        os_version=os_version,
        machine=uname.machine,
        go_arch=_GO_ARCH.get(uname.machine, uname.machine),
        ncpu=len(os.sched_getaffinity(0)),
        mem_total=_mem_total(),
        hostname=socket.gethostname(),
        cgroup_version="2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1",
        backing_filesystem=_filesystem_of(data_root),
        ipv4_forwarding=_read_flag("/proc/sys/net/ipv4/ip_forward"),
        bridge_nf_iptables=_read_flag("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        bridge_nf_ip6tables=_read_flag("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
        nfd=len(os.listdir("/proc/self/fd")),
        nthreads=threading.active_count(),
        system_time=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        http_proxy=os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy", ""),
        https_proxy=os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy", ""),
        no_proxy=os.environ.get("NO_PROXY") or os.environ.get("no_proxy", ""),
    )


def _os_release() -> tuple[str, str]:
    values: dict[str, str] = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"')
        break
    return values.get("PRETTY_NAME", "Linux"), values.get("VERSION_ID", "")


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _read_flag(path: str) -> bool:
    try:
        return Path(path).read_text().strip() == "1"
    except OSError:
        return False


def _filesystem_of(path: Path) -> str:
    # os.statvfs lacks f_type; /proc/self/mountinfo names the file system of the longest
    # mount point that contains the path.
    target = str(path if path.exists() else path.parent)
    best, fstype = "", "<unknown>"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return fstype
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = fields[4]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, right.split()[0]
    return {"ext4": "extfs", "ext3": "extfs", "ext2": "extfs"}.get(fstype, fstype)


def _build_time() -> str:
    stamp = Path(berth.__file__).stat().st_mtime
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="microseconds") \
        .replace("+00:00", "Z")
