"""The build context on the daemon side: safe extraction, the Dockerfile, .dockerignore."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from berth.build.context import BuildContext, extract_context
from berth.errors import NotFound, UnsafeArchive


def _tar(*entries: tuple[str, bytes | None, str]) -> bytes:
    """(name, data or None for a dir/link, link target) → an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("name", ["../up", "a/../../up", "/abs"])
def test_escaping_names_are_refused(tmp_path, name):
    dest = tmp_path / "ctx"
    dest.mkdir()
    with pytest.raises(UnsafeArchive):
        extract_context(io.BytesIO(_tar((name, b"x", ""))), dest)
    assert not (tmp_path / "up").exists()


def test_a_symlink_is_never_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "ctx"
    dest.mkdir()
    data = _tar(("link", None, str(outside)), ("link/owned", b"x", ""))
    with pytest.raises(UnsafeArchive):
        extract_context(io.BytesIO(data), dest)
    assert not (outside / "owned").exists()
    assert (dest / "link").is_symlink()


def test_a_truncated_final_member_as_the_docker_cli_sends_it(tmp_path):
    data = _tar(("Dockerfile", b"FROM busybox\n", ""), (".dockerignore", b"*.log\n", ""))
    # drop the end-of-archive blocks and the last member's padding
    cut = data[: 512 * 3 + len(b"*.log\n")]
    dest = tmp_path / "ctx"
    dest.mkdir()
    extract_context(io.BytesIO(cut), dest)
    assert (dest / ".dockerignore").read_bytes() == b"*.log\n"


def test_dockerignore_hides_files_and_the_dockerfile(tmp_path):
    dest = tmp_path / "ctx"
    dest.mkdir()
    extract_context(io.BytesIO(_tar(
        ("Dockerfile", b"FROM busybox\n", ""), (".dockerignore", b"*.log\n!keep.log\nDockerfile\n",
                                                 ""),
        ("a.log", b"", ""), ("keep.log", b"", ""), ("sub", None, ""), ("sub/b.log", b"", ""))),
        dest)
    ctx = BuildContext.open(dest)
    assert ctx.dockerfile_text == "FROM busybox\n"
    names = sorted(str(p.relative_to(dest)) for p in Path(dest).rglob("*"))
    assert names == [".dockerignore", "keep.log", "sub", "sub/b.log"]


def test_missing_dockerfile(tmp_path):
    with pytest.raises(NotFound, match="Cannot locate specified Dockerfile: Dockerfile.dev"):
        BuildContext.open(tmp_path, "Dockerfile.dev")
    (tmp_path / "dockerfile").write_text("FROM busybox\n")
    assert BuildContext.open(tmp_path).dockerfile_name == "dockerfile"
