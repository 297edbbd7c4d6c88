"""A build context whose symlinks point outside it never brings host files into an image."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.usefixtures("daemon")

SECRET = "host-secret-7f3a\n"


@pytest.mark.parametrize("how", ["abs-file", "rel-file", "abs-dir", "rel-dir"])
def test_copy_through_context_symlink_does_not_leak(daemon, tmp_path, how):
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text(SECRET)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    kind, _, what = how.partition("-")
    target = host / "secret" if what == "file" else host
    link = str(target) if kind == "abs" else os.path.relpath(target, ctx)
    os.symlink(link, ctx / "leak")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY leak /x\nCMD cat /x /x/secret 2>/dev/null; true\n")
    tag = f"hostile-build-{how}:v1"
    proc = daemon.cli("build", "-q", "-t", tag, str(ctx), timeout=120)
    try:
        if proc.returncode == 0:
            out = daemon.out("run", "--rm", tag)
            assert SECRET not in out
    finally:
        daemon.cli("rmi", "-f", tag)
    assert (host / "secret").read_text() == SECRET
