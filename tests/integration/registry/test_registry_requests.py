"""What berthd sends a registry, request by request, against a fake that writes them down.

Expected sequences are what dockerd 20.10 sent the same fake (shared cases 037 and 039).
Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from tests.support.fake_registry import MANIFEST_LIST_V2, MANIFEST_V2, SERVICE, TOKEN, FakeRegistry


@pytest.fixture()
def fake_registry(request: pytest.FixtureRequest) -> Iterator[FakeRegistry]:
    reg = FakeRegistry(request.param)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def _digests_hidden(lines: list[str]) -> list[str]:
    return [re.sub(r"sha256:[0-9a-f]{64}", "sha256:<d>", line) for line in lines]


@pytest.mark.parametrize("fake_registry", ["auth"], indirect=True)
def test_case_037_token_auth_scopes(reg_daemon, fake_registry, open_registry):
    """Case 037: follow the Bearer challenge, ask for ``repository:foo/bar:pull`` to pull and
    ``push,pull`` to push, then send the token on every request.

    The dockerd that was captured knew what its busybox layers are compressed (it had pulled
    them), so it only asked the fake whether it has those blobs. berth's busybox was loaded
    from an archive: one push to a real registry first tells berth what its layers became."""
    known = f"{open_registry.host}/case037/busybox:1"
    reg_daemon.out("tag", "busybox", known)
    try:
        reg_daemon.out("push", known)
    finally:
        reg_daemon.cli("rmi", known)
    ref = f"{fake_registry.host}/foo/bar:v1"
    pull = reg_daemon.cli("pull", ref)
    assert pull.returncode == 1  # the fake holds no manifest
    assert "manifest unknown" in pull.stderr.decode()
    assert fake_registry.lines() == [
        "GET /v2/",
        f"GET /token?scope=repository:foo/bar:pull&service={SERVICE}",
        "HEAD /v2/foo/bar/manifests/v1",
        "GET /v2/foo/bar/manifests/v1",
    ]

    fake_registry.requests.clear()
    reg_daemon.out("tag", "busybox", ref)
    try:
        push = reg_daemon.cli("push", ref)
    finally:
        reg_daemon.cli("rmi", ref)
    assert push.returncode == 0, push.stderr
    layers = int(reg_daemon.out("inspect", "-f", "{{len .RootFS.Layers}}", "busybox"))
    assert _digests_hidden(fake_registry.lines()) == [
        "GET /v2/",
        f"GET /token?scope=repository:foo/bar:push,pull&service={SERVICE}",
        *["HEAD /v2/foo/bar/blobs/sha256:<d>"] * (layers + 1),  # the layers and the config
        "PUT /v2/foo/bar/manifests/v1",
    ]
    for req in fake_registry.requests:
        if req.path.startswith("/v2/foo/"):
            assert req.headers.get("Authorization") == f"Bearer {TOKEN}", req.line


@pytest.mark.parametrize("fake_registry", ["index"], indirect=True)
def test_case_039_manifest_list_without_the_host_platform(reg_daemon, fake_registry):
    """Case 039: a list with only arm entries: resolve the tag, fetch the list by digest, find
    no linux/amd64 entry, store nothing."""
    ref = f"{fake_registry.host}/foo/bar:v1"
    images = reg_daemon.out("images", "-q", "--no-trunc")
    proc = reg_daemon.cli("pull", ref)
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines()[-1] == (
        "Error response from daemon: no matching manifest for linux/amd64 in the manifest list "
        "entries")
    assert fake_registry.lines() == [
        "GET /v2/",
        "HEAD /v2/foo/bar/manifests/v1",
        f"GET /v2/foo/bar/manifests/{fake_registry.index_digest}",
    ]
    for req in fake_registry.requests[1:]:
        accept = req.headers.get("Accept", "")
        assert MANIFEST_V2 in accept and MANIFEST_LIST_V2 in accept, accept
    assert reg_daemon.out("images", "-q", "--no-trunc") == images
