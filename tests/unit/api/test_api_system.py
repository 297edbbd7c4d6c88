"""``/_ping``, ``/version``, ``/info`` over fakes, checked against dockerd 20.10's shapes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.support.fake_images import FakeImageStore, make_image

from berth.api.app import make_app
from berth.api.routes.system import SystemRoutes, host_facts
from berth.engine.config import ENGINE_VERSION, DaemonConfig, RuntimeEntry

Client = TestClient[web.Request, web.Application]


class FakeContainers:
    def counts(self) -> Mapping[str, int]:
        return {"running": 2, "paused": 1, "stopped": 4}


def system_app(config: DaemonConfig | None = None, with_containers: bool = True
               ) -> web.Application:
    images = FakeImageStore([make_image("a", tags=("busybox:latest",)), make_image("b")])
    return make_app([SystemRoutes(config or DaemonConfig(), images,
                                  FakeContainers() if with_containers else None, "ENGINE-ID")])


def run_with(app: web.Application, scenario: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


@pytest.mark.parametrize("prefix", ["", "/v1.41", "/v1.24"])
def test_ping_get_says_ok_with_dockers_headers(prefix: str) -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get(f"{prefix}/_ping")
        assert resp.status == 200
        assert await resp.read() == b"OK"
        assert resp.headers["Api-Version"] == "1.41"
        assert resp.headers["Ostype"] == "linux"
        assert resp.headers["Docker-Experimental"] == "false"
        assert resp.headers["Builder-Version"] == "1"
        assert resp.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
        assert resp.headers["Pragma"] == "no-cache"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["Server"].startswith("Docker/20.10.27")

    run_with(system_app(), scenario)


def test_ping_head_has_the_headers_and_no_body() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.head("/_ping")
        assert resp.status == 200
        assert await resp.read() == b""
        assert resp.headers["Api-Version"] == "1.41"
        assert resp.headers["Ostype"] == "linux"
        assert resp.headers["Pragma"] == "no-cache"

    run_with(system_app(), scenario)


def test_version_has_dockers_fields() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/version")
        assert resp.status == 200
        body = await resp.json()
        assert list(body) == ["Platform", "Components", "Version", "ApiVersion", "MinAPIVersion",
                              "GitCommit", "GoVersion", "Os", "Arch", "KernelVersion",
                              "BuildTime"]
        assert body["ApiVersion"] == "1.41"
        assert body["MinAPIVersion"] == "1.24"
        assert body["Version"] == ENGINE_VERSION
        assert body["Os"] == "linux"
        assert body["KernelVersion"] == os.uname().release
        assert body["Arch"] in ("amd64", "arm64") or body["Arch"] == os.uname().machine
        assert "Python" in body["GoVersion"]
        engine = body["Components"][0]
        assert engine["Name"] == "Engine"
        assert engine["Details"]["ApiVersion"] == "1.41"
        assert engine["Details"]["MinAPIVersion"] == "1.24"

    run_with(system_app(), scenario)


def test_info_counts_and_reports_the_configuration(tmp_path: Path) -> None:
    config = DaemonConfig(data_root=tmp_path, debug=True, default_runtime="crun",
                          runtimes={"runc": RuntimeEntry("runc"),
                                    "crun": RuntimeEntry("/usr/bin/crun", ("--debug",))},
                          insecure_registries=("127.0.0.0/8", "myreg:5000"),
                          labels=("a=b",))

    async def scenario(client: Client) -> None:
        resp = await client.get("/v1.41/info")
        assert resp.status == 200
        info = await resp.json()
        assert info["ID"] == "ENGINE-ID"
        assert (info["Containers"], info["ContainersRunning"], info["ContainersPaused"],
                info["ContainersStopped"]) == (7, 2, 1, 4)
        assert info["Images"] == 2
        assert info["Driver"] == "overlay2"
        assert info["CgroupDriver"] == "cgroupfs"
        assert info["CgroupVersion"] in ("1", "2")
        assert info["DockerRootDir"] == str(tmp_path)
        assert info["Debug"] is True
        assert info["DefaultRuntime"] == "crun"
        assert info["Runtimes"] == {"runc": {"path": "runc"},
                                    "crun": {"path": "/usr/bin/crun", "runtimeArgs": ["--debug"]}}
        assert info["RegistryConfig"]["InsecureRegistryCIDRs"] == ["127.0.0.0/8"]
        assert info["RegistryConfig"]["IndexConfigs"]["myreg:5000"]["Secure"] is False
        assert info["Labels"] == ["a=b"]
        assert info["OSType"] == "linux"
        assert info["Architecture"] == os.uname().machine
        assert info["NCPU"] == len(os.sched_getaffinity(0))
        assert info["MemTotal"] > 0
        assert info["ServerVersion"] == ENGINE_VERSION
        assert info["Swarm"]["LocalNodeState"] == "inactive"
        assert "name=seccomp,profile=default" in info["SecurityOptions"]
        assert info["Warnings"] is None
        for key in ("KernelVersion", "OperatingSystem", "Name", "SystemTime", "MemoryLimit",
                    "SwapLimit", "IndexServerAddress", "Plugins", "LoggingDriver",
                    "DriverStatus", "ContainerdCommit", "RuncCommit", "InitCommit"):
            assert key in info

    run_with(system_app(config), scenario)


def test_info_without_a_container_service_counts_zero() -> None:
    async def scenario(client: Client) -> None:
        info = await (await client.get("/info")).json()
        assert info["Containers"] == info["ContainersRunning"] == 0

    run_with(system_app(with_containers=False), scenario)


def test_host_facts_read_the_machine(tmp_path: Path) -> None:
    facts = host_facts(tmp_path)
    assert facts.kernel_version == os.uname().release
    assert facts.cgroup_version == (
        "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1")
    assert facts.backing_filesystem
    assert facts.system_time.endswith("Z")
