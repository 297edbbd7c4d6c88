"""Resource usage of a container, read from its cgroup (``docker stats``) and from its netns.

``sample`` returns one ``StatsSample``: plain numbers in Docker's units (nanoseconds of CPU,
bytes), read with blocking file reads (call it from a thread). The JSON shape is the API's
business (``berth.api.routes.stats``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import BerthError
from berth.runtime.cgroups import base as cgroup_base

_NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
# cgroup v1 reports "no limit" as the largest page-aligned int64
_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class BlkioEntry:
    major: int
    minor: int
    op: str
    value: int


@dataclass(frozen=True)
class NetStats:
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


@dataclass(frozen=True)
class StatsSample:
    read_ns: int = 0  # wall clock of the sample (0: none)
    cpu_total: int = 0
    percpu: tuple[int, ...] = ()
    cpu_kernel: int = 0
    cpu_user: int = 0
    system_cpu: int = 0
    online_cpus: int = 0
    throttle_periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0
    memory_usage: int = 0
    memory_max_usage: int | None = None  # v1 only
    memory_limit: int = 0
    memory_stats: dict[str, int] = field(default_factory=dict)
    pids_current: int = 0
    pids_limit: int | None = None
    blkio: tuple[BlkioEntry, ...] = ()
    networks: dict[str, NetStats] = field(default_factory=dict)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def system_cpu_ns() -> int:
    """Host CPU time (all states) from /proc/stat, in nanoseconds, as Docker's system_cpu_usage."""
    for line in (_read("/proc/stat") or "").splitlines():
        if line.startswith("cpu "):
            return sum(int(v) for v in line.split()[1:8]) * _NS_PER_TICK
    return 0


def host_memory() -> int:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def net_dev(pid: int) -> dict[str, NetStats]:
    """Counters of the interfaces in ``pid``'s network namespace, without loopback."""
    out: dict[str, NetStats] = {}
    for line in (_read(f"/proc/{pid}/net/dev") or "").splitlines()[2:]:
        name, sep, rest = line.partition(":")
        v = rest.split()
        name = name.strip()
        if not sep or name == "lo" or len(v) < 12:
            continue
        n = [int(x) for x in v]
        out[name] = NetStats(rx_bytes=n[0], rx_packets=n[1], rx_errors=n[2], rx_dropped=n[3],
                             tx_bytes=n[8], tx_packets=n[9], tx_errors=n[10], tx_dropped=n[11])
    return out


def _v1_blkio(directory: str) -> tuple[BlkioEntry, ...]:
    entries = []
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
        text = _read(os.path.join(directory, name))
        if text is None:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and ":" in parts[0]:
                major, minor = parts[0].split(":")
                entries.append(BlkioEntry(int(major), int(minor), parts[1], int(parts[2])))
        break
    return tuple(entries)


def _sample_v1(dirs: dict[str, str]) -> dict[str, object]:
    cpuacct = dirs.get("cpuacct", "")
    cpu = dirs.get("cpu", "")
    memory = dirs.get("memory", "")
    pids = dirs.get("pids", "")
    percpu = tuple(int(v) for v in (_read(os.path.join(cpuacct, "cpuacct.usage_percpu")) or "")
                   .split())
    ticks = _keyed(os.path.join(cpuacct, "cpuacct.stat"))
    throttle = _keyed(os.path.join(cpu, "cpu.stat"))
    limit = _int(os.path.join(memory, "memory.limit_in_bytes"))
    return {
        "cpu_total": _int(os.path.join(cpuacct, "cpuacct.usage")) or 0,
        "percpu": percpu,
        "cpu_kernel": ticks.get("system", 0) * _NS_PER_TICK,
        "cpu_user": ticks.get("user", 0) * _NS_PER_TICK,
        "throttle_periods": throttle.get("nr_periods", 0),
        "throttled_periods": throttle.get("nr_throttled", 0),
        "throttled_time": throttle.get("throttled_time", 0),
        "memory_usage": _int(os.path.join(memory, "memory.usage_in_bytes")) or 0,
        "memory_max_usage": _int(os.path.join(memory, "memory.max_usage_in_bytes")) or 0,
        "memory_limit": limit if limit is not None and limit < _UNLIMITED else 0,
        "memory_stats": _keyed(os.path.join(memory, "memory.stat")),
        "pids_current": _int(os.path.join(pids, "pids.current")) or 0,
        "pids_limit": _int(os.path.join(pids, "pids.max")),
        "blkio": _v1_blkio(dirs.get("blkio", "")),
    }


def _sample_v2(directory: str) -> dict[str, object]:
    cpu = _keyed(os.path.join(directory, "cpu.stat"))
    blkio = []
    for line in (_read(os.path.join(directory, "io.stat")) or "").splitlines():
        dev, *pairs = line.split()
        if ":" not in dev:
            continue
        major, minor = (int(x) for x in dev.split(":"))
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        blkio.append(BlkioEntry(major, minor, "read", int(values.get("rbytes", 0))))
        blkio.append(BlkioEntry(major, minor, "write", int(values.get("wbytes", 0))))
    return {
        "cpu_total": cpu.get("usage_usec", 0) * 1000,
        "cpu_kernel": cpu.get("system_usec", 0) * 1000,
        "cpu_user": cpu.get("user_usec", 0) * 1000,
        "throttle_periods": cpu.get("nr_periods", 0),
        "throttled_periods": cpu.get("nr_throttled", 0),
        "throttled_time": cpu.get("throttled_usec", 0) * 1000,
        "memory_usage": _int(os.path.join(directory, "memory.current")) or 0,
        "memory_limit": _int(os.path.join(directory, "memory.max")) or 0,
        "memory_stats": _keyed(os.path.join(directory, "memory.stat")),
        "pids_current": _int(os.path.join(directory, "pids.current")) or 0,
        "pids_limit": _int(os.path.join(directory, "pids.max")),
        "blkio": tuple(blkio),
    }


def sample(cgroups_path: str, pid: int, now_ns: int) -> StatsSample:
    """One reading of the container's cgroup ``cgroups_path`` (init ``pid`` for the netns)."""
    try:
        manager = cgroup_base.open_cgroup(cgroups_path)
        dirs = manager.paths()
    except BerthError:
        dirs = {}
    if "" in dirs:
        values = _sample_v2(dirs[""])
    else:
        values = _sample_v1(dirs)
    if not values.get("memory_limit"):
        values["memory_limit"] = host_memory()
    online = os.sysconf("SC_NPROCESSORS_ONLN")
    return StatsSample(read_ns=now_ns, system_cpu=system_cpu_ns(), online_cpus=online,
                       networks=net_dev(pid) if pid > 0 else {},
                       **values)  # type: ignore[arg-type]


def directory_size(path: Path) -> int:
    """Bytes in regular files under ``path`` (each inode once), without following links."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_size
    return total
