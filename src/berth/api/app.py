"""The Engine API application: routing with and without ``/v1.NN``, headers, error mapping.

Each resource's routes are an object built over the narrow service it needs (a ``RouteSet``);
``make_app`` mounts any collection of them, so tests build an app over fakes exactly as
``build_app`` builds berthd's over the real engine.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from berth.api.errors import status_for
from berth.api.streams import EXECUTOR_KEY, error_response
from berth.engine.config import ENGINE_VERSION
from berth.errors import BerthError, InvalidArgument

if TYPE_CHECKING:
    from berth.engine.wiring import Engine

log = logging.getLogger(__name__)

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
OS_TYPE = "linux"
SERVER_HEADER = f"Docker/{ENGINE_VERSION} ({OS_TYPE})"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A blocking call may hold a thread for minutes (load, save, waits); size the pool so a few of
# those never starve quick requests.
_EXECUTOR_THREADS = 64


class RouteSet(Protocol):
    def register(self, router: ApiRouter) -> None: ...


class ApiRouter:
    """Adds each route twice, bare and under ``/v{version}``, as dockerd's router does."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._app.router.add_route(method, path, handler)
        self._app.router.add_route(method, "/v{version:[0-9.]+}" + path, handler)


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.41"`` → ``(1, 41)``; Go's versions.Compare treats missing or bad parts as 0."""
    parts = []
    for piece in text.split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


def _compare(a: str, b: str) -> int:
    pa, pb = parse_version(a), parse_version(b)
    width = max(len(pa), len(pb))
    pa += (0,) * (width - len(pa))
    pb += (0,) * (width - len(pb))
    return (pa > pb) - (pa < pb)


def request_version(request: web.Request) -> str:
    """The API version the client asked for in the URL, else the daemon's own."""
    return request.match_info.get("version") or API_VERSION


def version_at_least(request: web.Request, version: str) -> bool:
    return _compare(request_version(request), version) >= 0


def _check_version(request: web.Request) -> None:
    version = request.match_info.get("version")
    if version is None:
        return
    if _compare(version, MIN_API_VERSION) < 0:
        raise InvalidArgument(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    if _compare(version, API_VERSION) > 0:
        raise InvalidArgument(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}")


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    log.debug("Calling %s %s", request.method, request.path)
    try:
        _check_version(request)
        return await handler(request)
    except BerthError as err:
        status = status_for(err)
        if status >= 500:
            log.error("Handler for %s %s returned error: %s", request.method, request.path, err)
        else:
            log.debug("Handler for %s %s returned error: %s", request.method, request.path, err)
        return error_response(status, err.message)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        # Raised by the router for an unknown path or method; dockerd answers both alike.
        return error_response(404, "page not found")
    except web.HTTPException:
        raise
    except ConnectionResetError:
        # the client went away mid-stream (logs -f, events, export piped to head): nothing
        # to answer, nothing to log beyond debug; aiohttp drops this reply on the closed socket
        log.debug("%s %s: the client went away", request.method, request.path)
        return web.Response(status=400)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as err:
        log.exception("Handler for %s %s failed", request.method, request.path)
        return error_response(500, str(err) or type(err).__name__)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER
    response.headers["Api-Version"] = API_VERSION
    response.headers["Ostype"] = OS_TYPE
    response.headers["Docker-Experimental"] = "false"


async def _executor_context(app: web.Application) -> AsyncIterator[None]:
    executor = ThreadPoolExecutor(max_workers=_EXECUTOR_THREADS, thread_name_prefix="berth-api")
    app[EXECUTOR_KEY] = executor
    yield
    # Threads still blocked on a client that left must not hold up shutdown.
    executor.shutdown(wait=False, cancel_futures=True)


def make_app(route_sets: Iterable[RouteSet]) -> web.Application:
    """An Engine API application serving ``route_sets``."""
    app = web.Application(middlewares=[_error_middleware], client_max_size=0)
    app.on_response_prepare.append(_add_headers)
    app.cleanup_ctx.append(_executor_context)
    router = ApiRouter(app)
    for route_set in route_sets:
        route_set.register(router)
    return app


def build_app(engine: Engine) -> web.Application:
    """berthd's application over the real engine services."""
    # Imported here, not at the top: route modules import this module for ApiRouter's helpers.
    from berth.api.routes.containers import ContainerRoutes
    from berth.api.routes.images import ImageRoutes
    from berth.api.routes.system import SystemRoutes
    from berth.engine.image_events import EventedImages, EventedPuller, EventedPusher

    bus = engine.events
    puller = engine.registries.puller if engine.registries else None
    pusher = engine.registries.pusher if engine.registries else None
    route_sets: list[RouteSet] = [
        SystemRoutes(engine.config, engine.images, engine.containers, engine.id, engine.root),
        ImageRoutes(EventedImages(engine.images, bus) if bus else engine.images,
                    EventedPuller(puller, bus) if bus and puller else puller,
                    EventedPusher(pusher, bus) if bus and pusher else pusher),
    ]
    if engine.registries is not None:
        from berth.api.routes.registry import RegistryRoutes

        route_sets.append(RegistryRoutes(engine.registries.client))
    if engine.containers is not None:
        route_sets.append(ContainerRoutes(engine.containers, engine.images))
    if engine.execs is not None:
        from berth.api.routes.execs import ExecRoutes

        route_sets.append(ExecRoutes(engine.execs))
    if engine.events is not None:
        from berth.api.routes.events import EventRoutes

        route_sets.append(EventRoutes(engine.events))
    if engine.containers is not None:
        from berth.api.routes.stats import StatsRoutes

        route_sets.append(StatsRoutes(engine.containers, engine.images, engine.volumes))
    if engine.networks is not None and engine.containers is not None:
        from berth.api.routes.networks import NetworkRoutes

        route_sets.append(NetworkRoutes(engine.networks, engine.containers))
    if engine.builds is not None:
        from berth.api.routes.build import BuildRoutes

        route_sets.append(BuildRoutes(engine.builds))
    if engine.volumes is not None:
        from berth.api.routes.volumes import VolumeRoutes

        route_sets.append(VolumeRoutes(engine.volumes))
    if engine.archives is not None:
        from berth.api.routes.archive import ArchiveRoutes

        route_sets.append(ArchiveRoutes(engine.archives))
    return make_app(route_sets)


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"
