"""Schemathesis against berthd: requests generated from the Engine API 1.41 definition, for
the endpoints berth implements, must never get a 5xx (nor hang).

The default run is bounded (a few examples per operation, about a minute in all); the
``slow`` variant runs many more. Streaming or hijacking endpoints and those that reach the
network are left out: they are covered by their own tests.
"""

from __future__ import annotations

import json
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from tests.conftest import Daemon, start_daemon, stop_daemon  # noqa: E402
from tests.hostile.conftest import request  # noqa: E402

SPEC = Path(__file__).with_name("engine-api-v1.41.yaml")
OPERATIONS = [
    ("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/info"),
    ("GET", "/system/df"),
    ("POST", "/containers/create"), ("GET", "/containers/json"), ("POST", "/containers/prune"),
    ("GET", "/containers/{id}/json"), ("POST", "/containers/{id}/start"),
    ("POST", "/containers/{id}/stop"), ("POST", "/containers/{id}/restart"),
    ("POST", "/containers/{id}/kill"), ("POST", "/containers/{id}/pause"),
    ("POST", "/containers/{id}/unpause"), ("DELETE", "/containers/{id}"),
    ("POST", "/containers/{id}/resize"), ("GET", "/containers/{id}/top"),
    ("POST", "/containers/{id}/rename"), ("POST", "/containers/{id}/exec"),
    ("HEAD", "/containers/{id}/archive"), ("GET", "/containers/{id}/archive"),
    ("PUT", "/containers/{id}/archive"), ("GET", "/containers/{id}/changes"),
    ("GET", "/containers/{id}/export"), ("POST", "/containers/{id}/update"),
    ("POST", "/exec/{id}/resize"), ("GET", "/exec/{id}/json"),
    ("GET", "/images/json"), ("GET", "/images/get"), ("POST", "/images/load"),
    ("POST", "/images/prune"), ("GET", "/images/{name}/json"),
    ("GET", "/images/{name}/history"), ("GET", "/images/{name}/get"),
    ("POST", "/images/{name}/tag"), ("DELETE", "/images/{name}"), ("POST", "/commit"),
    ("GET", "/networks"), ("POST", "/networks/create"), ("POST", "/networks/prune"),
    ("GET", "/networks/{id}"), ("DELETE", "/networks/{id}"),
    ("POST", "/networks/{id}/connect"), ("POST", "/networks/{id}/disconnect"),
    ("GET", "/volumes"), ("POST", "/volumes/create"), ("POST", "/volumes/prune"),
    ("GET", "/volumes/{name}"), ("DELETE", "/volumes/{name}"),
]


def _tar_bytes(ctx, value):  # type: ignore[no-untyped-def]
    """Archive bodies (load, PUT archive): whatever was generated, as raw bytes."""
    return value if isinstance(value, bytes) else json.dumps(value).encode()


schemathesis.serializer("application/x-tar")(_tar_bytes)


@pytest.fixture(scope="module")
def own_daemon(test_images) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    """A berthd of this module's own: prune and remove calls must not disturb other tests."""
    d = start_daemon(Path(tempfile.mkdtemp(prefix="berth-test-schemathesis-")))
    try:
        d.out("load", "-i", str(test_images.busybox_docker_tar))
        yield d
    finally:
        stop_daemon(d)


@pytest.fixture(scope="module")
def schema():  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_path(str(SPEC))


def _send(daemon: Daemon, case) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    query = urllib.parse.urlencode(
        {k: v for k, v in (case.query or {}).items() if v is not None}, doseq=True)
    path = "/v1.41" + case.formatted_path + (f"?{query}" if query else "")
    headers = {k: str(v) for k, v in (case.headers or {}).items()
               if k.lower() not in ("content-length", "transfer-encoding", "host")}
    body = None
    if not isinstance(case.body, schemathesis.core.NotSet):
        if isinstance(case.body, bytes):
            body = case.body
        elif case.media_type == "application/x-tar":
            body = _tar_bytes(None, case.body)
            headers.setdefault("Content-Type", "application/x-tar")
        else:
            body = json.dumps(case.body).encode()
            headers.setdefault("Content-Type", case.media_type or "application/json")
    try:
        headers_ascii = {k.encode("latin-1").decode(): v.encode("latin-1").decode()
                         for k, v in headers.items()}
    except UnicodeEncodeError:
        headers_ascii = {}
    return request(daemon.socket, case.method, path, body, headers_ascii, timeout=30)


def _run(daemon: Daemon, schema, method: str, path: str, examples: int) -> None:  # type: ignore[no-untyped-def]
    operation = schema[path][method]
    failures: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case) -> None:  # type: ignore[no-untyped-def]
        try:
            status, body = _send(daemon, case)
        except TimeoutError:
            failures.append(f"timeout: {case.method} {case.formatted_path} {case.query}")
            return
        if status >= 500:
            failures.append(f"{status}: {case.method} {case.formatted_path} {case.query} "
                            f"{str(case.body)[:200]} -> {body[:300]!r}")

    check()
    assert not failures, "\n".join(failures[:10])
    assert request(daemon.socket, "GET", "/_ping")[0] == 200


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_5xx_bounded(own_daemon, schema, method, path):
    _run(own_daemon, schema, method, path, examples=6)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_5xx_long(own_daemon, schema, method, path):
    _run(own_daemon, schema, method, path, examples=200)
