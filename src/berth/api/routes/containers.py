"""``/containers/...`` endpoints: thin adapters over the container service."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from berth.api import wire_containers as wire
from berth.api import wire_networks
from berth.api.streams import encode_frame, json_response, query_filters
from berth.engine.containers import ContainerService
from berth.engine.log_config import reads_logs
from berth.engine.logs import LogQuery, follow_logs, parse_since, read_logs
from berth.engine.model import ContainerRecord, ContainerState
from berth.errors import BerthError, InvalidArgument, NotImplementedByBerth

log = logging.getLogger(__name__)

# docker ps: the filter keys dockerd accepts (some are accepted and not applied by berth)
_PS_FILTERS = frozenset({"ancestor", "before", "expose", "exited", "health", "id", "isolation",
                         "is-task", "label", "name", "network", "publish", "since", "status",
                         "volume"})
_PS_STATES = frozenset(s.value for s in ContainerState)


class ImageNames(Protocol):
    """What the container routes need from the image store."""

    def get(self, name: str) -> Any: ...


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() not in ("", "0", "false", "no")


def _int_query(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as err:
        raise InvalidArgument(f"invalid value for {name}: {value!r}") from err


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


class ContainerRoutes:
    def __init__(self, service: ContainerService, images: ImageNames) -> None:
        self.service = service
        self.images = images

    def register(self, router: Any) -> None:
        for method, path, handler in self._routes():
            router.add(method, path, handler)

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/containers/create", self.create),
            ("GET", "/containers/json", self.list_containers),
            ("POST", "/containers/prune", self.prune),
            ("GET", "/containers/{id}/json", self.inspect),
            ("POST", "/containers/{id}/start", self.start),
            ("POST", "/containers/{id}/stop", self.stop),
            ("POST", "/containers/{id}/restart", self.restart),
            ("POST", "/containers/{id}/kill", self.kill),
            ("POST", "/containers/{id}/pause", self.pause),
            ("POST", "/containers/{id}/unpause", self.unpause),
            ("POST", "/containers/{id}/wait", self.wait),
            ("DELETE", "/containers/{id}", self.remove),
            ("POST", "/containers/{id}/attach", self.attach),
            ("GET", "/containers/{id}/logs", self.logs),
            ("POST", "/containers/{id}/resize", self.resize),
            ("GET", "/containers/{id}/top", self.top),
            ("POST", "/containers/{id}/rename", self.rename),
            ("POST", "/containers/{id}/update", self.update),
        ]

    # -- create / inspect / list -------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, RecursionError) as err:  # RecursionError: absurdly deep nesting
            raise InvalidArgument(f"invalid JSON body: {err}") from err
        config, host = wire.parse_create_body(body)
        record, warnings = await self.service.create(request.query.get("name"), config, host,
                                                     wire_networks.parse_endpoints(body))
        return web.json_response({"Id": record.id, "Warnings": warnings}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, RecursionError) as err:
            raise InvalidArgument(f"invalid JSON body: {err}") from err
        warnings = await self.service.update(request.match_info["id"],
                                             wire.parse_update_body(body))
        return json_response({"Warnings": warnings or None})

    def _extras(self, record: ContainerRecord) -> dict[str, Any]:
        from berth.engine import launch

        extras = launch.inspect_extras(record, self.service.container_dir(record.id))
        if self.service.networks is not None:
            extras.update(wire_networks.container_extras(self.service.networks.view(record)))
        if self.service.mounts is not None:
            from berth.api.wire_volumes import render_mount

            extras["Mounts"] = [render_mount(m) for m in self.service.mounts.mounts(record.id)]
        return extras

    async def inspect(self, request: web.Request) -> web.Response:
        record = self.service.get(request.match_info["id"])
        extras = self._extras(record)
        extras["ExecIDs"] = self.service.exec_ids(record.id) or None
        data = wire.render_inspect(record, self.service.container_dir(record.id), extras)
        return web.json_response(data)

    async def list_containers(self, request: web.Request) -> web.Response:
        show_all = _flag(request, "all")
        limit = _int_query(request, "limit") or -1
        filters = query_filters(request)
        for key, values in filters.items():  # docker rejects what it does not know
            if key not in _PS_FILTERS:
                raise InvalidArgument(f"Invalid filter '{key}'")
            for v in values if key == "status" else ():
                if v not in _PS_STATES:
                    raise InvalidArgument(f"Invalid filter 'status={v}'")
        records = self.service.all()
        if limit > 0 or filters.get("status") or filters.get("exited"):
            show_all = True
        if not show_all:
            records = [r for r in records if r.is_running]
        records = [r for r in records if self._matches(r, filters)]
        if limit > 0:
            records = records[:limit]
        sized = _flag(request, "size")
        entries = []
        for r in records:
            extras = self._extras(r)
            if sized:
                extras.update(await asyncio.to_thread(self._sizes, r))
            entries.append(wire.render_list_entry(r, r.config.image, extras))
        return web.json_response(entries)

    def _sizes(self, r: ContainerRecord) -> dict[str, int]:
        """``ps -s``: the writable layer's bytes, and those plus the image's."""
        rw = _tree_size(self.service.container_dir(r.id) / "upper")
        try:
            image_size = int(self.images.get(r.image_id).size)
        except BerthError:
            image_size = 0
        return {"SizeRw": rw, "SizeRootFs": rw + image_size}

    def _matches(self, r: ContainerRecord, filters: dict[str, list[str]]) -> bool:
        for key, values in filters.items():
            if key == "status" and r.status.state.value not in values:
                return False
            if key == "name" and not any(v.lstrip("/") in r.name for v in values):
                return False
            if key == "id" and not any(r.id.startswith(v) for v in values):
                return False
            if key == "exited" and (r.status.state != ContainerState.EXITED or
                                    str(r.status.exit_code) not in values):
                return False
            if key == "label":
                for v in values:
                    k, eq, val = v.partition("=")
                    if k not in r.config.labels or (eq and r.config.labels[k] != val):
                        return False
            if key == "ancestor" and not self._has_ancestor(r, values):
                return False
            if key in ("before", "since") and not all(
                    (r.created < self.service.get(v).created) == (key == "before")
                    and r.id != self.service.get(v).id for v in values):
                return False
            if key == "volume" and self.service.mounts is not None and not any(
                    v in (m.name, m.source, m.destination)
                    for m in self.service.mounts.mounts(r.id) for v in values):
                return False
        return True

    def _has_ancestor(self, r: ContainerRecord, values: list[str]) -> bool:
        for v in values:
            try:
                if self.images.get(v).id == r.image_id:
                    return True
            except BerthError:
                continue
        return False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        await self.service.start(request.match_info["id"])
        return web.Response(status=204)

    async def stop(self, request: web.Request) -> web.Response:
        await self.service.stop(request.match_info["id"], _int_query(request, "t"))
        return web.Response(status=204)

    async def restart(self, request: web.Request) -> web.Response:
        await self.service.restart(request.match_info["id"], _int_query(request, "t"))
        return web.Response(status=204)

    async def kill(self, request: web.Request) -> web.Response:
        await self.service.kill(request.match_info["id"], request.query.get("signal") or "SIGKILL")
        return web.Response(status=204)

    async def pause(self, request: web.Request) -> web.Response:
        await self.service.pause(request.match_info["id"])
        return web.Response(status=204)

    async def unpause(self, request: web.Request) -> web.Response:
        await self.service.unpause(request.match_info["id"])
        return web.Response(status=204)

    async def remove(self, request: web.Request) -> web.Response:
        await self.service.remove(request.match_info["id"], force=_flag(request, "force"),
                                  volumes=_flag(request, "v"))
        return web.Response(status=204)

    async def prune(self, request: web.Request) -> web.Response:
        from berth.api.prune_filters import container_prune_filter

        match, sizes = await asyncio.to_thread(container_prune_filter, self.service,
                                               query_filters(request), time.time())
        deleted = await self.service.prune(match)
        return web.json_response({"ContainersDeleted": deleted or None,
                                  "SpaceReclaimed": sum(sizes.get(i, 0) for i in deleted)})

    async def rename(self, request: web.Request) -> web.Response:
        name = request.query.get("name", "")
        self.service.rename(request.match_info["id"], name)
        return web.Response(status=204)

    async def top(self, request: web.Request) -> web.Response:
        titles, processes = await asyncio.to_thread(
            self.service.top, request.match_info["id"], request.query.get("ps_args", "-ef"))
        return web.json_response({"Titles": titles, "Processes": processes})

    async def resize(self, request: web.Request) -> web.Response:
        h = _int_query(request, "h") or 0
        w = _int_query(request, "w") or 0
        await self.service.resize(request.match_info["id"], h, w)
        return web.Response(status=200)

    # -- wait: headers at once, the body when the condition is met ----------------------------

    async def wait(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["id"]
        condition = request.query.get("condition") or "not-running"
        self.service.get(ref)  # 404 (and 400 below) before the 200 goes out
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f'invalid condition: "{condition}"')
        waiter = asyncio.ensure_future(self.service.wait(ref, condition))
        await asyncio.sleep(0)  # register the waiter before anything else can run
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            # A client that went away (``run -d`` drops its wait at once) ends the wait, as
            # dockerd's request context does; left running it would hold berthd's shutdown.
            await _until_done_or_disconnected(request, waiter)
            if not waiter.done():
                waiter.cancel()
                return resp
            info = waiter.result()
        except BerthError as err:
            await resp.write(json.dumps({"Error": {"Message": str(err)}, "StatusCode": -1})
                             .encode() + b"\n")
            return resp
        error = {"Message": info.error} if info.error else None
        await resp.write(json.dumps({"Error": error, "StatusCode": info.exit_code}).encode()
                         + b"\n")
        await resp.write_eof()
        return resp

    # -- logs --------------------------------------------------------------------------------

    async def logs(self, request: web.Request) -> web.StreamResponse:
        record = self.service.get(request.match_info["id"])
        stdout, stderr = _flag(request, "stdout"), _flag(request, "stderr")
        if not (stdout or stderr):
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        if not reads_logs(record.host_config.log_type):
            raise NotImplementedByBerth("configured logging driver does not support reading")
        tail_text = request.query.get("tail", "all")
        tail = None if tail_text in ("", "all") else int(tail_text)
        now = time.time()
        query = LogQuery(tail=tail, since=parse_since(request.query.get("since", ""), now),
                         until=parse_since(request.query.get("until", ""), now),
                         follow=_flag(request, "follow"), stdout=stdout, stderr=stderr)
        timestamps = _flag(request, "timestamps")
        tty = record.config.tty
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "application/vnd.docker.raw-stream" if tty
            else "application/vnd.docker.multiplexed-stream"})
        await resp.prepare(request)
        path = self.service.log_path(record.id)
        entries, offset = await asyncio.to_thread(read_logs, path, query)

        async def emit(entry: Any) -> None:
            data = entry.data
            if timestamps:
                data = entry.time.encode() + b" " + data
            if tty:
                await resp.write(data)
            else:
                await resp.write(encode_frame(1 if entry.stream == "stdout" else 2, data))

        for entry in entries:
            await emit(entry)
        if query.follow and self.service.get(record.id).is_running:
            def running() -> bool:
                try:
                    return self.service.get(record.id).is_running
                except BerthError:
                    return False

            async for entry in follow_logs(path, offset, query, running):
                await emit(entry)
        await resp.write_eof()
        return resp

    # -- attach ------------------------------------------------------------------------------

    async def attach(self, request: web.Request) -> web.StreamResponse:
        from berth.api.attach import serve_attach

        record = self.service.get(request.match_info["id"])
        return await serve_attach(request, self.service, record,
                                  stdin=_flag(request, "stdin"), stdout=_flag(request, "stdout"),
                                  stderr=_flag(request, "stderr"), logs=_flag(request, "logs"),
                                  stream=_flag(request, "stream"),
                                  detach_keys=request.query.get("detachKeys"))


async def _until_done_or_disconnected(request: web.Request, task: asyncio.Future[Any]) -> None:
    """Wait for ``task`` while the client is connected (aiohttp has no disconnect callback
    for a handler that is not reading a body, so the transport is checked now and then)."""
    while not task.done():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.wait({task}, timeout=0.25)
