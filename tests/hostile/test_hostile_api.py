"""Hostile Engine API requests: each gets a clear 4xx with Docker's JSON error body, never a 5xx;
nothing is created on the host or in the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.hostile.conftest import listing

pytestmark = pytest.mark.usefixtures("daemon")

CREATE = "/v1.41/containers/create"
BAD = [
    # bad JSON and wrong types
    ("POST", CREATE, b"{not json"),
    ("POST", CREATE, b"[1, 2, 3]"),
    ("POST", CREATE, b'"just a string"'),
    ("POST", CREATE, b'{"Image": 42}'),
    ("POST", CREATE, b'{"Image": "busybox", "Cmd": {"a": 1}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": []}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"Memory": "lots"}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"Devices": [null]}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"Ulimits": [1]}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [7]}}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "x"}}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"CapAdd": ["NOPE"]}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"SecurityOpt": ["seccomp={bad"]}}'),
    ("POST", CREATE, b'{"Image": "busybox", "HostConfig": {"SecurityOpt": ["bogus"]}}'),
    ("POST", CREATE, b'{"Image": "busybox\\u0001"}'),
    ("POST", CREATE, b'{"Image": "../../../../etc/passwd"}'),
    # path traversal and control characters in names
    ("POST", CREATE + "?name=../../etc", b'{"Image": "busybox"}'),
    ("POST", CREATE + "?name=a%2Fb", b'{"Image": "busybox"}'),
    ("POST", CREATE + "?name=bad%0Aname", b'{"Image": "busybox"}'),
    ("POST", CREATE + "?name=%00", b'{"Image": "busybox"}'),
    # invalid ids
    ("GET", "/v1.41/containers/..%2F..%2Fetc/json", None),
    ("GET", "/v1.41/containers/%00/json", None),
    ("DELETE", "/v1.41/containers/..?force=1", None),
    ("POST", "/v1.41/containers/nope%0A/start", None),
    ("POST", "/v1.41/containers/" + "a" * 5000 + "/stop", None),
    ("GET", "/v1.41/images/..%2F..%2Fetc%2Fpasswd/json", None),
    ("DELETE", "/v1.41/images/%2E%2E", None),
    ("GET", "/v1.41/exec/../../json", None),
    # image references with control characters and traversal
    ("POST", "/v1.41/images/create?fromImage=bad%01name&tag=latest", None),
    ("POST", "/v1.41/images/create?fromImage=..%2F..%2Fx&tag=latest", None),
    ("POST", "/v1.41/images/busybox/tag?repo=evil%0Aname&tag=v1", None),
    ("POST", "/v1.41/images/busybox/tag?repo=busybox&tag=..%2F..", None),
    ("POST", "/v1.41/images/busybox/tag?repo=UPPER&tag=v1", None),
    # filters that are valid JSON but not a filter object
    *[(method, f"/v1.41/{path}?filters={value}", None)
      for method, path in (("GET", "containers/json"), ("GET", "networks"), ("GET", "volumes"),
                           ("POST", "networks/prune"), ("POST", "containers/prune"),
                           ("GET", "images/json"))
      for value in ("5", "true", "%5B1%5D", "%7B%22a%22%3A5%7D", "NaN")],
    # volumes
    ("POST", "/v1.41/volumes/create", b'{"Name": "../../escape"}'),
    ("POST", "/v1.41/volumes/create", b'{"Name": "bad\\nname"}'),
    ("POST", "/v1.41/volumes/create", b'{"Name": "/abs"}'),
    ("POST", "/v1.41/volumes/create", b'{"Name": 7}'),
    ("DELETE", "/v1.41/volumes/..%2F..", None),
]


def _id(case: tuple[str, str, bytes | None]) -> str:
    return f"{case[0]} {case[1][:60]} {(case[2] or b'')[:40]!r}"


@pytest.mark.parametrize("case", BAD, ids=[_id(c) for c in BAD])
def test_hostile_request_is_a_clean_4xx(daemon, api, case):
    method, path, body = case
    before = listing(daemon.data_root)
    status, out = api(method, path, raw=body)
    assert 400 <= status < 500, (status, out)
    if status != 404 or out.startswith(b"{"):
        assert json.loads(out)["message"], out
    after = listing(daemon.data_root)
    # Nothing new in the store (a container may not appear for a refused create).
    assert {k for k in after if k not in before} <= {k for k in after if "/log" in k}
    assert not Path("/etc/escape").exists() and not Path("/escape").exists()


def test_huge_body_is_no_5xx_and_daemon_lives(daemon, api):
    # Docker sets no size limit on create; what matters is no crash and no half-made object.
    body = b'{"Image": "busybox", "Env": ["' + b"A" * (64 << 20) + b'"]}'
    status, out = api("POST", CREATE, raw=body)
    assert status < 500, (status, out[:200])
    if status == 201:
        daemon.out("rm", "-f", json.loads(out)["Id"])
    assert api("GET", "/_ping")[0] == 200


def test_deeply_nested_json_is_a_4xx(daemon, api):
    body = b'{"Image": "busybox", "Labels": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    status, out = api("POST", CREATE, raw=body)
    assert 400 <= status < 500, (status, out[:200])
    assert api("GET", "/_ping")[0] == 200


def test_volume_name_cannot_escape_the_data_root(daemon, api, tmp_path):
    target = tmp_path / "outside"
    rel = os.path.relpath(target, daemon.data_root / "volumes")
    status, _ = api("POST", "/v1.41/volumes/create", {"Name": rel})
    assert 400 <= status < 500
    assert not target.exists()
