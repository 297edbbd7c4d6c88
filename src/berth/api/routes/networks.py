"""``/networks/...`` endpoints: thin adapters over the network service."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from berth.api import wire_networks as wire
from berth.api.streams import query_filters
from berth.engine.containers import ContainerService
from berth.engine.network_store import NetworkRecord
from berth.engine.networks import NetworkService
from berth.errors import InvalidArgument


def _label_match(rec: NetworkRecord, wanted: list[str]) -> bool:
    for w in wanted:
        key, sep, value = w.partition("=")
        if key not in rec.labels or (sep and rec.labels[key] != value):
            return False
    return True


def _matches(rec: NetworkRecord, filters: dict[str, list[str]], in_use: bool) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "name" and not any(v in rec.name for v in values):
            return False
        if key == "id" and not any(rec.id.startswith(v) for v in values):
            return False
        if key == "driver" and rec.driver not in values:
            return False
        if key == "label" and not _label_match(rec, values):
            return False
        if key == "type":
            kind = "builtin" if rec.builtin else "custom"
            if kind not in values:
                return False
        if key == "dangling":
            dangling = values[0].lower() in ("1", "true")
            if dangling == (in_use or rec.builtin):
                return False
        if key not in ("name", "id", "driver", "label", "type", "dangling", "scope", "until"):
            raise InvalidArgument(f"Invalid filter '{key}'")
    return True


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as err:
        raise InvalidArgument(f"invalid JSON body: {err}") from err


class NetworkRoutes:
    def __init__(self, service: NetworkService, containers: ContainerService) -> None:
        self.service = service
        self.containers = containers

    def register(self, router: Any) -> None:
        for method, path, handler in (
            ("GET", "/networks", self.list),
            ("POST", "/networks/create", self.create),
            ("POST", "/networks/prune", self.prune),
            ("GET", "/networks/{id}", self.inspect),
            ("DELETE", "/networks/{id}", self.remove),
            ("POST", "/networks/{id}/connect", self.connect),
            ("POST", "/networks/{id}/disconnect", self.disconnect),
        ):
            router.add(method, path, handler)

    def _in_use(self, rec: NetworkRecord) -> bool:
        return bool(self.service.active_containers(rec.id))

    async def list(self, request: web.Request) -> web.Response:
        filters = query_filters(request)
        out = [wire.render_network(n) for n in self.service.list_networks()
               if _matches(n, filters, self._in_use(n))]
        return web.json_response(out)

    async def inspect(self, request: web.Request) -> web.Response:
        rec = self.service.get(request.match_info["id"])
        active = {cid: (sb.name, ep)
                  for cid, (sb, ep) in self.service.active_containers(rec.id).items()}
        return web.json_response(wire.render_network(rec, active))

    async def create(self, request: web.Request) -> web.Response:
        kwargs = wire.parse_create(await _json_body(request))
        rec = await self.service.create(**kwargs)
        return web.json_response({"Id": rec.id, "Warning": ""}, status=201)

    async def remove(self, request: web.Request) -> web.Response:
        await self.service.remove(request.match_info["id"])
        return web.Response(status=204)

    async def prune(self, request: web.Request) -> web.Response:
        filters = query_filters(request)
        labels = filters.get("label", [])
        deleted = await self.service.prune(
            keep=(lambda rec: not _label_match(rec, labels)) if labels else None)
        return web.json_response({"NetworksDeleted": deleted})

    async def connect(self, request: web.Request) -> web.Response:
        body = await _json_body(request) or {}
        record = self.containers.get(str(body.get("Container") or ""))
        cfg = body.get("EndpointConfig") or {}
        aliases = tuple(a for a in (cfg.get("Aliases") or ()) if isinstance(a, str))
        await self.service.connect(request.match_info["id"], record, aliases,
                                   self.containers.container_dir(record.id))
        return web.Response(status=200)

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await _json_body(request) or {}
        record = self.containers.get(str(body.get("Container") or ""))
        await self.service.disconnect(request.match_info["id"], record,
                                      bool(body.get("Force")))
        return web.Response(status=200)
