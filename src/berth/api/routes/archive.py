"""``/containers/{id}/archive``, ``/export`` and ``/changes``: a container's files, over the
archive service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from berth.api.streams import json_response, query_bool
from berth.engine.container_archive import ArchiveService, stat_header
from berth.errors import InvalidArgument, NotFound


async def _send_tar(request: web.Request, stream: AsyncIterator[bytes],
                    headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=headers)
    try:
        await response.prepare(request)
        async for chunk in stream:
            await response.write(chunk)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    await response.write_eof()
    return response


class ArchiveRoutes:
    def __init__(self, service: ArchiveService) -> None:
        self.service = service

    def register(self, router: Any) -> None:
        router.add("HEAD", "/containers/{id}/archive", self.head)
        router.add("GET", "/containers/{id}/archive", self.get)
        router.add("PUT", "/containers/{id}/archive", self.put)
        router.add("GET", "/containers/{id}/export", self.export)
        router.add("GET", "/containers/{id}/changes", self.changes)

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
        return await _send_tar(request, stream, {
            "Content-Type": "application/x-tar",
            "X-Docker-Container-Path-Stat": stat_header(stat)})

    async def export(self, request: web.Request) -> web.StreamResponse:
        stream = await self.service.export(request.match_info["id"])
        return await _send_tar(request, stream, {"Content-Type": "application/octet-stream"})

    async def changes(self, request: web.Request) -> web.Response:
        found = await self.service.changes(request.match_info["id"])
        return json_response([{"Path": c.path, "Kind": int(c.kind)} for c in found] or None)

    async def put(self, request: web.Request) -> web.Response:
        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(1 << 16):
                yield chunk

        await self.service.put(
            request.match_info["id"], self._path(request), body(),
            no_overwrite_dir_non_dir=query_bool(request, "noOverwriteDirNonDir"),
            copy_uid_gid=query_bool(request, "copyUIDGID"))
        return web.Response(status=200)
