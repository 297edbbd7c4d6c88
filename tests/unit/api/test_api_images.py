"""``/images/...`` routes over the fake store, against dockerd 20.10's wire shapes."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.support.fake_images import FakeImageStore, make_image

from berth.api.app import make_app
from berth.api.routes.images import ImageRoutes

Client = TestClient[web.Request, web.Application]

BUSYBOX = make_image("busybox", tags=("alpine:3.10", "busybox:1.36", "busybox:latest"),
                     created="2026-12-03T12:26:40.96442457Z")
LOCAL = make_image("local", tags=("localhost:5000/a/b:tag",), created="2026-12-03T12:27:00Z",
                   parent=BUSYBOX.id, labels={"org": "example", "tier": "web"})
DANGLING = make_image("dangling", created="2026-12-03T12:28:00Z", parent=BUSYBOX.id)
# Untagged but the parent of LOCAL2: an intermediate image, hidden without all=1.
INTERMEDIATE = make_image("intermediate", created="2026-12-03T12:20:00Z")
CHILD = make_image("child", tags=("child:1",), created="2026-12-03T12:21:00Z",
                   parent=INTERMEDIATE.id)


def store() -> FakeImageStore:
    return FakeImageStore([BUSYBOX, LOCAL, DANGLING, INTERMEDIATE, CHILD])


def run_with(images: FakeImageStore, scenario: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(make_app([ImageRoutes(images)]))) as client:
            await scenario(client)

    asyncio.run(main())


def filters(**values: list[str]) -> str:
    return json.dumps({k: {v: True for v in vs} for k, vs in values.items()})


# -- list ---------------------------------------------------------------------------------------


def test_list_is_newest_first_in_dockers_shape() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/v1.41/images/json")
        assert resp.status == 200
        body = await resp.json()
        assert [e["Id"] for e in body] == [DANGLING.id, LOCAL.id, BUSYBOX.id, CHILD.id]
        busybox = body[2]
        assert busybox == {
            "Containers": -1, "Created": 1796300800, "Id": BUSYBOX.id, "Labels": None,
            "ParentId": "", "RepoDigests": None,
            "RepoTags": ["alpine:3.10", "busybox:1.36", "busybox:latest"],
            "SharedSize": -1, "Size": 1984459, "VirtualSize": 1984459}
        assert body[0]["RepoTags"] == ["<none>:<none>"]
        assert body[0]["RepoDigests"] == ["<none>@<none>"]
        assert body[1]["Labels"] == {"org": "example", "tier": "web"}
        assert body[1]["ParentId"] == BUSYBOX.id

    run_with(store(), scenario)


def test_list_all_shows_intermediate_images() -> None:
    async def scenario(client: Client) -> None:
        body = await (await client.get("/images/json?all=1")).json()
        assert INTERMEDIATE.id in [e["Id"] for e in body]

    run_with(store(), scenario)


@pytest.mark.parametrize(("query", "expected"), [
    ({"dangling": ["true"]}, [DANGLING.id]),
    ({"dangling": ["false"]}, [LOCAL.id, BUSYBOX.id, CHILD.id]),
    ({"label": ["org"]}, [LOCAL.id]),
    ({"label": ["org=example", "tier=web"]}, [LOCAL.id]),
    ({"label": ["org=other"]}, []),
    ({"before": ["localhost:5000/a/b:tag"]}, [BUSYBOX.id, CHILD.id]),
    ({"since": ["busybox"]}, [DANGLING.id, LOCAL.id]),
    ({"reference": ["busybox"]}, [BUSYBOX.id]),
    ({"reference": ["busy*:1.*"]}, [BUSYBOX.id]),
    ({"reference": ["localhost:5000/a/*"]}, [LOCAL.id]),
    ({"reference": ["*"]}, [BUSYBOX.id, CHILD.id]),  # '*' never crosses a '/'
])
def test_list_filters(query: Mapping[str, list[str]], expected: list[str]) -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/images/json", params={"filters": filters(**query)})
        assert resp.status == 200, await resp.text()
        assert [e["Id"] for e in await resp.json()] == expected

    run_with(store(), scenario)


def test_reference_filter_keeps_only_matching_tags() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/images/json", params={"filters": filters(reference=["busybox"])})
        assert (await resp.json())[0]["RepoTags"] == ["busybox:1.36", "busybox:latest"]

    run_with(store(), scenario)


def test_list_accepts_the_old_filter_form() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/images/json",
                                params={"filters": json.dumps({"dangling": ["true"]})})
        assert [e["Id"] for e in await resp.json()] == [DANGLING.id]

    run_with(store(), scenario)


@pytest.mark.parametrize(("raw", "message"), [
    ('{"color":{"red":true}}', "invalid filter 'color'"),
    ('{"dangling":{"maybe":true}}', "invalid filter 'dangling=maybe'"),
])
def test_bad_filters_are_400(raw: str, message: str) -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/images/json", params={"filters": raw})
        assert resp.status == 400
        assert await resp.json() == {"message": message}

    run_with(store(), scenario)


# -- inspect, history, tag, remove --------------------------------------------------------------


def test_inspect_matches_the_captured_shape() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/v1.41/images/busybox/json")
        assert resp.status == 200
        body = await resp.json()
        assert list(body) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created",
                              "Container", "ContainerConfig", "DockerVersion", "Author",
                              "Config", "Architecture", "Os", "Size", "VirtualSize",
                              "GraphDriver", "RootFS", "Metadata"]
        assert body["Id"] == BUSYBOX.id
        assert body["RepoDigests"] == []
        assert body["Created"] == "2026-12-03T12:26:40.96442457Z"
        assert body["Config"] == {
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
            "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
            "StdinOnce": False, "Env": None, "Cmd": ["sh"], "Image": "", "Volumes": None,
            "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}
        assert body["ContainerConfig"]["Cmd"] is None
        assert body["RootFS"] == {"Type": "layers", "Layers": list(BUSYBOX.diff_ids)}
        assert body["GraphDriver"]["Name"] == "overlay2"

    run_with(store(), scenario)


def test_names_with_slashes_and_ports_route_to_the_image() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/v1.41/images/localhost:5000/a/b:tag/json")
        assert resp.status == 200
        assert (await resp.json())["Id"] == LOCAL.id
        resp = await client.get("/images/localhost:5000/a/b:tag/history")
        assert (await resp.json())[0]["Id"] == LOCAL.id

    run_with(store(), scenario)


def test_inspect_of_a_missing_image_is_dockers_404() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/v1.41/images/no-such-image:latest/json")
        assert resp.status == 404
        assert await resp.read() == (b'{"message":"no such image: no-such-image:latest: '
                                     b'No such image: no-such-image:latest"}\n')

    run_with(store(), scenario)


def test_history_shape() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/v1.41/images/busybox/history")
        assert await resp.json() == [{
            "Comment": "Imported from -", "Created": 1796300800, "CreatedBy": "",
            "Id": BUSYBOX.id, "Size": 1984459,
            "Tags": ["alpine:3.10", "busybox:1.36", "busybox:latest"]}]

    run_with(store(), scenario)


def test_tag_then_remove_as_the_cli_sends_them() -> None:
    images = store()

    async def scenario(client: Client) -> None:
        resp = await client.post("/v1.41/images/busybox/tag?repo=docker.io%2Fme%2Fbb&tag=1.0")
        assert resp.status == 201
        assert await resp.read() == b""
        assert "Content-Type" not in resp.headers
        assert "me/bb:1.0" in images.get("busybox").repo_tags
        resp = await client.delete("/v1.41/images/me/bb:1.0")
        assert resp.status == 200
        assert await resp.read() == b'[{"Untagged":"me/bb:1.0"}]\n'

    run_with(images, scenario)


def test_tag_without_repo_is_400() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.post("/images/busybox/tag")
        assert resp.status == 400

    run_with(store(), scenario)


def test_remove_passes_force_and_reports_deleted() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.delete(f"/images/{BUSYBOX.id}")
        assert resp.status == 409
        resp = await client.delete(f"/images/{BUSYBOX.id}?force=1")
        body = await resp.json()
        assert body[-1] == {"Deleted": BUSYBOX.id}
        assert {"Untagged": "busybox:latest"} in body

    run_with(store(), scenario)


# -- load, save, import -------------------------------------------------------------------------


async def json_lines(resp: Any) -> list[dict[str, Any]]:
    raw = await resp.read()
    assert raw.endswith(b"\r\n")
    return [json.loads(line) for line in raw.split(b"\r\n") if line]


def test_load_streams_loaded_lines() -> None:
    images = store()

    async def scenario(client: Client) -> None:
        body = b"TAR" + b"x" * 3_000_000  # larger than any one socket read
        resp = await client.post("/v1.41/images/load?quiet=1", data=io.BytesIO(body))
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert await json_lines(resp) == [{"stream": "Loaded image: busybox:latest\n"}]
        assert images.loaded == [body]

    run_with(images, scenario)


def test_load_failure_is_an_in_stream_error_with_status_200() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.post("/images/load", data=b"garbage")
        assert resp.status == 200
        assert await json_lines(resp) == [
            {"errorDetail": {"message": "invalid tar header"}, "error": "invalid tar header"}]

    run_with(store(), scenario)


@pytest.mark.parametrize("path", ["/v1.41/images/get?names=busybox&names=child:1",
                                  "/images/busybox/get"])
def test_save_streams_a_tar(path: str) -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-tar"
        data = await resp.read()
        assert data.startswith(b"TAR:" + BUSYBOX.id.encode())
        if "child" in path:
            assert b"TAR:" + CHILD.id.encode() in data
            assert len(data) == 2 * (len(b"TAR:\n") + len(BUSYBOX.id) + 70000)

    run_with(store(), scenario)


def test_save_of_a_missing_image_fails_before_streaming() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/images/get?names=busybox&names=nope")
        assert resp.status == 404
        assert await resp.json() == {"message": "No such image: nope"}

    run_with(store(), scenario)


def test_import_from_the_body() -> None:
    images = store()

    async def scenario(client: Client) -> None:
        resp = await client.post(
            "/v1.41/images/create?fromSrc=-&repo=me/imp&tag=2&message=hello"
            "&changes=CMD+%5B%22sh%22%5D&changes=ENV+A%3Db", data=b"rootfs-tar")
        assert resp.status == 200
        lines = await json_lines(resp)
        assert len(lines) == 1
        image_id = lines[0]["status"]
        assert images.get("me/imp:2").id == image_id
        assert images.imports == [(b"rootfs-tar", "me/imp:2", ['CMD ["sh"]', "ENV A=b"],
                                   "hello")]

    run_with(images, scenario)


def test_pull_is_not_implemented_yet() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.post("/images/create?fromImage=busybox&tag=latest")
        assert resp.status == 501
        assert "pull" in (await resp.json())["message"]

    run_with(store(), scenario)


class FakePuller:
    def __init__(self) -> None:
        self.refs: list[str] = []

    def pull(self, ref: str, auth: str | None, progress: Callable[[Mapping[str, Any]], None]
             ) -> None:
        from berth.errors import NotFound

        self.refs.append(ref)
        if ref.endswith(":nope"):
            raise NotFound(f"manifest for {ref} not found")
        progress({"status": "Pulling from library/busybox", "id": "latest"})
        progress({"status": f"Status: Downloaded newer image for {ref}"})


def test_pull_through_a_puller_streams_progress_and_fails_early() -> None:
    puller = FakePuller()

    async def main() -> None:
        app = make_app([ImageRoutes(store(), puller)])
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/images/create?fromImage=busybox&tag=latest")
            assert resp.status == 200
            assert (await json_lines(resp))[-1]["status"].startswith("Status: Downloaded")
            resp = await client.post("/images/create?fromImage=busybox&tag=nope")
            assert resp.status == 404
            assert await resp.json() == {"message": "manifest for busybox:nope not found"}

    asyncio.run(main())
    assert puller.refs == ["busybox:latest", "busybox:nope"]


# -- prune, push --------------------------------------------------------------------------------


def test_prune_removes_dangling_images_only_by_default() -> None:
    images = store()

    async def scenario(client: Client) -> None:
        resp = await client.post("/v1.41/images/prune",
                                 params={"filters": filters(dangling=["true"])})
        assert resp.status == 200
        assert await resp.json() == {"ImagesDeleted": [{"Deleted": DANGLING.id}],
                                     "SpaceReclaimed": DANGLING.size}
        # The intermediate image has a child: not dangling, kept.
        assert {img.id for img in images.list()} == {BUSYBOX.id, LOCAL.id, INTERMEDIATE.id,
                                                     CHILD.id}
        resp = await client.post("/images/prune")
        assert await resp.json() == {"ImagesDeleted": None, "SpaceReclaimed": 0}

    run_with(images, scenario)


def test_prune_all_unused_untags_and_filters_by_label_and_until() -> None:
    images = store()

    async def scenario(client: Client) -> None:
        resp = await client.post("/images/prune", params={
            "filters": filters(dangling=["false"], label=["org=example"])})
        body = await resp.json()
        assert body["ImagesDeleted"] == [{"Untagged": "localhost:5000/a/b:tag"},
                                         {"Deleted": LOCAL.id}]
        resp = await client.post("/images/prune", params={
            "filters": filters(dangling=["false"], until=["2026-12-03T12:00:00Z"])})
        assert (await resp.json())["ImagesDeleted"] is None  # everything is newer than that
        resp = await client.post("/images/prune", params={"filters": filters(until=["10x"])})
        assert resp.status == 400

    run_with(images, scenario)


def test_push_is_not_implemented_yet() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.post("/images/localhost:5000/a/b/push?tag=tag")
        assert resp.status == 501

    run_with(store(), scenario)
