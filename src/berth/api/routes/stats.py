"""``GET /containers/{id}/stats``, ``GET /system/df`` and ``POST /build/prune``.

Stats: one JSON document per second (``stream=true``, the default) or a single one. As dockerd
20.10 does, ``stream=false`` takes two readings a second apart so ``precpu_stats`` lets the
client compute a CPU percentage; ``one-shot=true`` (API 1.41) answers with a single reading.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from berth.api import wire_containers
from berth.api.streams import encode_json, json_response, query_bool, run_blocking
from berth.api.wire_images import ImageView, render_image_summary
from berth.api.wire_volumes import render_volume
from berth.engine import launch
from berth.engine.containers import ContainerService
from berth.engine.model import ContainerRecord
from berth.engine.stats import StatsSample, directory_size, sample
from berth.errors import BerthError

if TYPE_CHECKING:
    from berth.api.app import ApiRouter

ZERO_TIME = "0001-01-01T00:00:00Z"
INTERVAL = 1.0


class ImageLister(Protocol):
    def list(self) -> Sequence[ImageView]: ...


class VolumeLister(Protocol):
    """What ``system df`` needs from the volume service."""

    def list(self) -> Sequence[Any]: ...
    def mountpoint(self, name: str) -> Path: ...
    def users(self, name: str) -> Sequence[str]: ...


def rfc3339_nano(ns: int) -> str:
    if ns <= 0:
        return ZERO_TIME
    t = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def _cpu(s: StatsSample) -> dict[str, Any]:
    usage: dict[str, Any] = {"total_usage": s.cpu_total, "usage_in_kernelmode": s.cpu_kernel,
                             "usage_in_usermode": s.cpu_user}
    if s.percpu:
        usage["percpu_usage"] = list(s.percpu)
    out: dict[str, Any] = {"cpu_usage": usage}
    if s.read_ns:
        out["system_cpu_usage"] = s.system_cpu
        out["online_cpus"] = s.online_cpus
    out["throttling_data"] = {"periods": s.throttle_periods,
                              "throttled_periods": s.throttled_periods,
                              "throttled_time": s.throttled_time}
    return out


def render_stats(record: ContainerRecord, cur: StatsSample, pre: StatsSample) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    if cur.read_ns:
        memory = {"usage": cur.memory_usage}
        if cur.memory_max_usage is not None:
            memory["max_usage"] = cur.memory_max_usage
        memory["stats"] = dict(cur.memory_stats)
        memory["limit"] = cur.memory_limit
    pids: dict[str, Any] = {}
    if cur.read_ns:
        pids["current"] = cur.pids_current
        if cur.pids_limit is not None:
            pids["limit"] = cur.pids_limit
    blkio = [{"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}
             for e in cur.blkio]
    out: dict[str, Any] = {
        "read": rfc3339_nano(cur.read_ns), "preread": rfc3339_nano(pre.read_ns),
        "pids_stats": pids,
        "blkio_stats": {"io_service_bytes_recursive": blkio if cur.read_ns else None,
                        "io_serviced_recursive": None, "io_queue_recursive": None,
                        "io_service_time_recursive": None, "io_wait_time_recursive": None,
                        "io_merged_recursive": None, "io_time_recursive": None,
                        "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": _cpu(cur), "precpu_stats": _cpu(pre), "memory_stats": memory,
        "name": "/" + record.name, "id": record.id,
    }
    if cur.networks:
        out["networks"] = {name: vars(n) for name, n in cur.networks.items()}
    return out


class StatsRoutes:
    def __init__(self, containers: ContainerService, images: ImageLister,
                 volumes: VolumeLister | None = None) -> None:
        self._containers = containers
        self._images = images
        self._volumes = volumes

    def register(self, router: ApiRouter) -> None:
        router.add("GET", "/containers/{id}/stats", self.stats)
        router.add("GET", "/system/df", self.df)
        router.add("POST", "/build/prune", self.build_prune)

    def _sample(self, ref: str) -> tuple[ContainerRecord, StatsSample]:
        record = self._containers.get(ref)
        if not record.is_running:
            return record, StatsSample()
        return record, sample(launch.cgroups_path(record.id), record.status.pid, time.time_ns())

    async def stats(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["id"]
        stream = query_bool(request, "stream", True)
        one_shot = query_bool(request, "one-shot")
        record, cur = await run_blocking(request, self._sample, ref)
        pre = StatsSample()
        if not stream:
            if not one_shot and cur.read_ns:
                await asyncio.sleep(INTERVAL)
                pre = cur
                record, cur = await run_blocking(request, self._sample, record.id)
            return json_response(render_stats(record, cur, pre))
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        while True:
            await response.write(encode_json(render_stats(record, cur, pre)) + b"\n")
            if not cur.read_ns:
                break  # not running: one empty reading, as for a stopped container
            await asyncio.sleep(INTERVAL)
            pre = cur
            try:
                record, cur = await run_blocking(request, self._sample, record.id)
            except BerthError:
                break  # removed meanwhile
        await response.write_eof()
        return response

    async def build_prune(self, request: web.Request) -> web.StreamResponse:
        # berth keeps no BuildKit cache (system df shows none): what dockerd answers when its
        # BuildKit cache is empty, so `docker system prune` and `docker builder prune` work.
        return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})

    async def df(self, request: web.Request) -> web.StreamResponse:
        return json_response(await run_blocking(request, self._df))

    def _df(self) -> dict[str, Any]:
        records = self._containers.all()
        images = list(self._images.list())
        users: dict[str, int] = {}
        for r in records:
            users[r.image_id] = users.get(r.image_id, 0) + 1
        image_sizes = {img.id: img.size for img in images}
        entries = []
        for img in images:
            entry = render_image_summary(img, users.get(img.id, 0))
            entry["SharedSize"] = 0
            entries.append(entry)
        containers = []
        for r in records:
            cdir = self._containers.container_dir(r.id)
            size_rw = directory_size(cdir / "upper") if (cdir / "upper").is_dir() else 0
            extras = launch.inspect_extras(r, cdir)
            extras["SizeRw"] = size_rw
            extras["SizeRootFs"] = size_rw + image_sizes.get(r.image_id, 0)
            containers.append(wire_containers.render_list_entry(r, r.config.image, extras))
        return {"LayersSize": sum(image_sizes.values()), "Images": entries,
                "Containers": containers, "Volumes": self._df_volumes(), "BuildCache": []}

    def _df_volumes(self) -> list[dict[str, Any]]:
        if self._volumes is None:
            return []
        out = []
        for v in self._volumes.list():
            mountpoint = self._volumes.mountpoint(v.name)
            entry = render_volume(v, str(mountpoint))
            entry["UsageData"] = {"Size": directory_size(mountpoint),
                                  "RefCount": len(self._volumes.users(v.name))}
            out.append(entry)
        return out
