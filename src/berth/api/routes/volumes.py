"""``/volumes`` endpoints: thin adapters over the volume service."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from berth.api.streams import json_response, query_filters, run_blocking
from berth.api.wire_volumes import render_volume
from berth.engine.volumes import VolumeService
from berth.errors import InvalidArgument


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
