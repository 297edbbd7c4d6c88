"""``GET /events``: past events from ``since``, then live ones until ``until`` or the client leaves.

The answer is a chunked ``application/json`` stream of one JSON document per line, headers
first, as dockerd sends it (``docker events`` shows nothing until an event comes).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web

from berth.api.streams import encode_json, query_filters
from berth.engine.events import EventBus, check_filters, matches, parse_timestamp, to_wire

if TYPE_CHECKING:
    from berth.api.app import ApiRouter

_DISCONNECT_CHECK = 1.0  # seconds between checks that an idle client is still there


class EventRoutes:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def register(self, router: ApiRouter) -> None:
        router.add("GET", "/events", self.events)

    async def events(self, request: web.Request) -> web.StreamResponse:
        filters = query_filters(request)
        check_filters(filters)
        now = time.time()
        since = request.query.get("since", "")
        until = request.query.get("until", "")
        since_ns = parse_timestamp(since, now) if since else None
        until_ns = parse_timestamp(until, now) if until else None
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        with self._bus.subscribe(since_ns) as (past, subscription):
            for event in past:
                if until_ns is not None and event.time_nano > until_ns:
                    break
                if matches(event, filters):
                    await response.write(encode_json(to_wire(event)) + b"\n")
            while until_ns is None or time.time_ns() < until_ns:
                timeout = _DISCONNECT_CHECK
                if until_ns is not None:
                    timeout = min(timeout, max(0.0, (until_ns - time.time_ns()) / 1e9))
                try:
                    event = await asyncio.wait_for(subscription.get(), timeout)
                except TimeoutError:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break
                    continue
                if until_ns is not None and event.time_nano > until_ns:
                    break
                if matches(event, filters):
                    await response.write(encode_json(to_wire(event)) + b"\n")
        await response.write_eof()
        return response
