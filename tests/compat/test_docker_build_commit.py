"""Build and commit through the real docker CLI (classic builder, `POST /build`) and docker-py."""

from __future__ import annotations

import io
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.compat.test_docker_cli import DOCKER, DockerCLI

pytestmark = [pytest.mark.compat]

DOCKERFILE = """\
FROM busybox
ARG GREETING=hello
ENV WHO=world
WORKDIR /app
COPY greet.sh .
RUN chmod +x greet.sh && echo "$GREETING" > greeting
LABEL org.example.kind=compat
CMD ["/app/greet.sh"]
"""


@pytest.fixture()
def docker(daemon) -> Iterator[DockerCLI]:  # type: ignore[no-untyped-def]
    if not DOCKER.exists():
        pytest.skip("the docker CLI is not installed at /usr/local/bin/docker")
    with tempfile.TemporaryDirectory(prefix="berth-test-dockercfg-") as cfg:
        yield DockerCLI(daemon.host, cfg)


def _context(root: Path) -> Path:
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "greet.sh").write_text('#!/bin/sh\necho "$(cat /app/greeting), $WHO"\n')
    return root


def test_docker_cli_builds_with_the_classic_builder(docker: DockerCLI, tmp_path: Path) -> None:
    tag = f"compat-build-{uuid.uuid4().hex[:8]}:1"
    try:
        out = docker.ok("build", "--build-arg", "GREETING=hi", "-t", tag, str(_context(tmp_path)),
                        timeout=180)
        assert "Step 1/8 : FROM busybox" in out
        assert f"Successfully tagged {tag}" in out
        assert docker.ok("run", "--rm", tag) == "hi, world\n"
        labels = docker.ok("image", "inspect", "-f",
                           '{{index .Config.Labels "org.example.kind"}}', tag)
        assert labels.strip() == "compat"
        # the base, then WORKDIR (it creates /app), COPY and RUN: the classic builder commits
        # a layer for each of them
        layers = docker.ok("image", "inspect", "-f", "{{len .RootFS.Layers}}", tag)
        assert layers.strip() == "4"
    finally:
        docker.run("rmi", "-f", tag)


def test_docker_cli_commit_with_changes(docker: DockerCLI):
    name = f"compat-commit-{uuid.uuid4().hex[:8]}"
    tag = f"{name}:1"
    try:
        docker.ok("run", "--name", name, "busybox", "sh", "-c", "echo kept > /kept")
        image_id = docker.ok("commit", "-c", 'CMD ["cat", "/kept"]', "-m", "a message", name,
                             tag).strip()
        assert image_id.startswith("sha256:")
        assert docker.ok("run", "--rm", tag) == "kept\n"
        assert docker.ok("image", "inspect", "-f", "{{.Comment}}", tag).strip() == "a message"
    finally:
        docker.run("rm", "-f", name)
        docker.run("rmi", "-f", tag)


def test_docker_py_images_build(daemon, tmp_path):  # type: ignore[no-untyped-def]
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")
    client = docker_py.DockerClient(base_url=daemon.host, version="auto")
    tag = f"compat-pybuild-{uuid.uuid4().hex[:8]}:1"
    try:
        image, logs = client.images.build(path=str(_context(tmp_path)), tag=tag,
                                          buildargs={"GREETING": "hey"}, rm=True)
        assert any("Successfully built" in chunk.get("stream", "") for chunk in logs)
        assert tag in image.tags
        out = client.containers.run(tag, remove=True)
        assert out == b"hey, world\n"
        # a build from a file object (no context) works too
        image2, _ = client.images.build(fileobj=io.BytesIO(b"FROM busybox\nCMD [\"true\"]\n"),
                                        tag=tag + "b")
        assert image2.attrs["Config"]["Cmd"] == ["true"]
    finally:
        for t in (tag, tag + "b"):
            try:
                client.images.remove(t, force=True)
            except docker_py.errors.ImageNotFound:
                pass
        client.close()
