"""``/volumes`` endpoints and ``/containers/{id}/archive``: thin adapters over the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from berth.api.streams import json_response, query_filters, run_blocking
from berth.api.wire_volumes import render_volume
from berth.engine.container_archive import ArchiveService, stat_header
from berth.engine.volumes import VolumeService
from berth.errors import InvalidArgument, NotFound


def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field VolumeCreateBody.{field} of type map[string]string")
    return {str(k): str(v) for k, v in value.items()}


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


class VolumeRoutes:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def register(self, router: Any) -> None:
        router.add("GET", "/volumes", self.list)
        router.add("POST", "/volumes/create", self.create)
        router.add("POST", "/volumes/prune", self.prune)
        router.add("GET", "/volumes/{name}", self.inspect)
        router.add("DELETE", "/volumes/{name}", self.remove)

    def _render(self, record: Any) -> dict[str, Any]:
        return render_volume(record, str(self.service.mountpoint(record.name)))

    async def list(self, request: web.Request) -> web.Response:
        records = await run_blocking(request, self.service.list, query_filters(request))
        return json_response({"Volumes": [self._render(r) for r in records], "Warnings": None})

    async def create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError as err:
            raise InvalidArgument(f"invalid JSON body: {err}") from err
        if not isinstance(body, dict):
            body = {}
        name = body.get("Name") or ""
        if not isinstance(name, str):
            raise InvalidArgument("json: cannot unmarshal number into Go struct field "
                                  "VolumeCreateBody.Name of type string")
        record = await run_blocking(
            request, self.service.create, name or None, str(body.get("Driver") or ""),
            _str_map(body.get("DriverOpts"), "DriverOpts"), _str_map(body.get("Labels"), "Labels"))
        return json_response(self._render(record), status=201)

    async def inspect(self, request: web.Request) -> web.Response:
        record = self.service.get(request.match_info["name"])
        return json_response(self._render(record))

    async def remove(self, request: web.Request) -> web.Response:
        await run_blocking(request, self.service.remove, request.match_info["name"],
                           _flag(request, "force"))
        return web.Response(status=204)

    async def prune(self, request: web.Request) -> web.Response:
        report = await run_blocking(request, self.service.prune, query_filters(request))
        return json_response({"VolumesDeleted": list(report.deleted) or None,
                              "SpaceReclaimed": report.space_reclaimed})


class ArchiveRoutes:
    def __init__(self, service: ArchiveService) -> None:
        self.service = service

    def register(self, router: Any) -> None:
        router.add("HEAD", "/containers/{id}/archive", self.head)
        router.add("GET", "/containers/{id}/archive", self.get)
        router.add("PUT", "/containers/{id}/archive", self.put)

    @staticmethod
    def _path(request: web.Request) -> str:
        path = request.query.get("path", "")
        if not path:
            raise InvalidArgument("bad parameter: path cannot be empty")
        return path

    async def head(self, request: web.Request) -> web.StreamResponse:
        try:
            stat = await self.service.stat(request.match_info["id"], self._path(request))
        except NotFound:
            return web.Response(status=404)
        return web.Response(status=200, headers={
            "X-Docker-Container-Path-Stat": stat_header(stat)})

    async def get(self, request: web.Request) -> web.StreamResponse:
        stat, stream = await self.service.get(request.match_info["id"], self._path(request))
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "application/x-tar",
            "X-Docker-Container-Path-Stat": stat_header(stat)})
        try:
            await response.prepare(request)
            async for chunk in stream:
                await response.write(chunk)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        await response.write_eof()
        return response

    async def put(self, request: web.Request) -> web.Response:
        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(1 << 16):
                yield chunk

        await self.service.put(
            request.match_info["id"], self._path(request), body(),
            no_overwrite_dir_non_dir=_flag(request, "noOverwriteDirNonDir"),
            copy_uid_gid=_flag(request, "copyUIDGID"))
        return web.Response(status=200)
