"""The API core: version prefixes, Docker's headers, error mapping, not blocking the loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from berth import errors
from berth.api.app import (
    API_VERSION,
    SERVER_HEADER,
    ApiRouter,
    make_app,
    request_version,
    version_at_least,
)
from berth.api.errors import status_for
from berth.api.streams import json_response, run_blocking

Scenario = Callable[[TestClient[web.Request, web.Application]], Awaitable[None]]


class ProbeRoutes:
    """Routes that fail in chosen ways, and one that blocks in a worker thread."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def register(self, router: ApiRouter) -> None:
        router.add("GET", "/probe/version", self.version)
        router.add("GET", "/probe/raise/{kind}", self.fail)
        router.add("GET", "/probe/block", self.block)
        router.add("GET", "/probe/quick", self.quick)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": request_version(request),
                              "at_least_1_40": version_at_least(request, "1.40")})

    async def fail(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind == "bug":
            raise RuntimeError("something broke")
        raise getattr(errors, kind)(f"{kind} happened")

    async def block(self, request: web.Request) -> web.StreamResponse:
        def wait() -> str:
            self.entered.set()
            self.release.wait(10)
            return "done"

        return json_response(await run_blocking(request, wait))

    async def quick(self, request: web.Request) -> web.StreamResponse:
        return json_response("quick")


def run_with(app: web.Application, scenario: Scenario) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


def docker_headers_present(headers: object) -> None:
    h = dict(headers)  # type: ignore[call-overload]
    assert h["Server"] == SERVER_HEADER
    assert h["Api-Version"] == API_VERSION
    assert h["Ostype"] == "linux"
    assert h["Docker-Experimental"] == "false"


@pytest.mark.parametrize(("path", "version"), [
    ("/probe/version", "1.41"),
    ("/v1.41/probe/version", "1.41"),
    ("/v1.24/probe/version", "1.24"),
    ("/v1.40/probe/version", "1.40"),
])
def test_paths_are_served_with_and_without_a_version_prefix(path: str, version: str) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get(path)
        assert resp.status == 200
        body = await resp.json()
        assert body["version"] == version
        assert body["at_least_1_40"] == (version != "1.24")
        docker_headers_present(resp.headers)

    run_with(make_app([ProbeRoutes()]), scenario)


@pytest.mark.parametrize(("path", "message"), [
    ("/v1.12/probe/version", "client version 1.12 is too old. Minimum supported API version is "
                             "1.24, please upgrade your client to a newer version"),
    ("/v1.23/probe/version", "client version 1.23 is too old. Minimum supported API version is "
                             "1.24, please upgrade your client to a newer version"),
    ("/v1.42/probe/version", "client version 1.42 is too new. Maximum supported API version is "
                             "1.41"),
    ("/v1.50/probe/version", "client version 1.50 is too new. Maximum supported API version is "
                             "1.41"),
])
def test_versions_outside_the_range_are_refused_as_dockerd_does(path: str, message: str) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get(path)
        assert resp.status == 400
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": message}
        docker_headers_present(resp.headers)

    run_with(make_app([ProbeRoutes()]), scenario)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/no/such/route"),
    ("GET", "/v1.41/no/such/route"),
    ("POST", "/probe/quick"),  # known path, wrong method: dockerd answers 404 too
    ("GET", "/vX/probe/quick"),
])
def test_unknown_routes_are_404_page_not_found(method: str, path: str) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.request(method, path)
        assert resp.status == 404
        assert await resp.read() == b'{"message":"page not found"}\n'
        assert resp.headers["Content-Type"] == "application/json"
        docker_headers_present(resp.headers)

    run_with(make_app([ProbeRoutes()]), scenario)


@pytest.mark.parametrize(("kind", "status"), [
    ("InvalidArgument", 400),
    ("InvalidReference", 400),
    ("Unauthorized", 401),
    ("PermissionDenied", 403),
    ("NotFound", 404),
    ("ImageNotFound", 404),
    ("ContainerNotFound", 404),
    ("AlreadyExists", 409),
    ("Conflict", 409),
    ("FailedPrecondition", 500),
    ("Internal", 500),
    ("NotImplementedByBerth", 501),
    ("Unavailable", 503),
])
def test_berth_errors_become_their_status_with_a_message_body(kind: str, status: int) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get(f"/v1.41/probe/raise/{kind}")
        assert resp.status == status
        assert resp.headers["Content-Type"] == "application/json"
        assert json.loads(await resp.read()) == {"message": f"{kind} happened"}
        docker_headers_present(resp.headers)

    run_with(make_app([ProbeRoutes()]), scenario)


def test_not_modified_is_an_empty_304() -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get("/probe/raise/NotModified")
        assert resp.status == 304
        assert await resp.read() == b""

    run_with(make_app([ProbeRoutes()]), scenario)


def test_unexpected_exceptions_are_500_with_the_message(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.get("/probe/raise/bug")
        assert resp.status == 500
        assert await resp.json() == {"message": "something broke"}

    run_with(make_app([ProbeRoutes()]), scenario)
    assert "something broke" in caplog.text


def test_status_for_is_the_one_mapping() -> None:
    assert status_for(errors.DigestMismatch("x")) == 400
    assert status_for(errors.RuntimeFailure("x")) == 500
    assert status_for(ValueError("x")) == 500


def test_blocking_work_does_not_hold_up_other_requests() -> None:
    probe = ProbeRoutes()

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        slow = asyncio.create_task(client.get("/probe/block"))
        await asyncio.get_running_loop().run_in_executor(None, probe.entered.wait, 5)
        quick = await client.get("/probe/quick")
        assert quick.status == 200
        assert not slow.done()
        probe.release.set()
        resp = await slow
        assert await resp.json() == "done"

    run_with(make_app([probe]), scenario)
