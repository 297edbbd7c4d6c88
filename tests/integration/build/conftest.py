"""Helpers for build tests: a context directory per test, tags removed afterwards."""

from __future__ import annotations

import http.server
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.loopback_http import LoopbackHTTP


def write_context(ctx: Path, dockerfile: str,
                  files: dict[str, str | bytes] | None = None) -> Path:
    """A build context directory: the Dockerfile and ``files`` (relative path → content)."""
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for rel, data in (files or {}).items():
        path = ctx / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    return ctx


@dataclass
class Builder:
    """Builds contexts with the CLI and removes what it tagged or started."""

    daemon: object
    root: Path
    tags: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)

    def context(self, dockerfile: str, files: dict[str, str | bytes] | None = None,
                name: str = "ctx") -> Path:
        return write_context(self.root / name, dockerfile, files)

    def tag(self) -> str:
        tag = f"buildtest-{secrets.token_hex(4)}:latest"
        self.tags.append(tag)
        return tag

    def build(self, ctx: Path, *args: str, tag: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        tag_args = ["-t", tag] if tag else []
        return self.daemon.cli("build", *tag_args, *args, str(ctx),  # type: ignore[attr-defined]
                               timeout=timeout)

    def build_ok(self, dockerfile: str, files: dict[str, str | bytes] | None = None,
                 *args: str) -> tuple[str, str]:
        """Build and tag; returns (tag, output)."""
        ctx = self.context(dockerfile, files)
        tag = self.tag()
        proc = self.build(ctx, *args, tag=tag)
        out = proc.stdout.decode() + proc.stderr.decode()
        assert proc.returncode == 0, out
        return tag, out

    def out(self, *args: str) -> str:
        return self.daemon.out(*args)  # type: ignore[attr-defined, no-any-return]

    def run(self, *args: str) -> str:
        return self.out("run", "--rm", *args)

    def layers(self, image: str) -> int:
        return int(self.out("inspect", "-f", "{{len .RootFS.Layers}}", image).strip())


@pytest.fixture()
def builder(daemon, tmp_path) -> Iterator[Builder]:  # type: ignore[no-untyped-def]
    b = Builder(daemon, tmp_path)
    try:
        yield b
    finally:
        for cid in b.containers:
            daemon.cli("rm", "-f", cid)
        if b.tags:
            daemon.cli("rmi", "-f", *b.tags)


@dataclass
class FileServer:
    """A loopback HTTP server for ``ADD <url>`` (stopped after the test)."""

    directory: Path
    port: int


@pytest.fixture()
def file_server(tmp_path) -> Iterator[FileServer]:  # type: ignore[no-untyped-def]
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *args):  # type: ignore[no-untyped-def]
            pass

    server = LoopbackHTTP(Handler)
    try:
        yield FileServer(www, server.port)
    finally:
        server.stop()
