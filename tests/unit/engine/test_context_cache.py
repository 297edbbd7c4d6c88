"""Unpacked build contexts are reused only for the very same bytes and Dockerfile name."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from berth.engine.context_cache import ContextCache
from berth.errors import NotFound


def _tar(files: dict[str, bytes], mtime: int = 1_700_000_000) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


CONTEXT = {"Dockerfile": b"FROM scratch\nCOPY a /\n", "a": b"one"}


def test_the_same_bytes_reuse_the_unpacked_context(tmp_path: Path) -> None:
    cache = ContextCache(tmp_path / "contexts")
    first = cache.acquire(io.BytesIO(_tar(CONTEXT)), "Dockerfile")
    cache.release(first)
    again = cache.acquire(io.BytesIO(_tar(CONTEXT)), "Dockerfile")
    assert again is first and (again.context.root / "a").read_bytes() == b"one"
    cache.release(again)


def test_changed_content_with_the_same_mtime_is_unpacked_afresh(tmp_path: Path) -> None:
    cache = ContextCache(tmp_path / "contexts")
    first = cache.acquire(io.BytesIO(_tar(CONTEXT)), "Dockerfile")
    cache.release(first)
    changed = cache.acquire(io.BytesIO(_tar({**CONTEXT, "a": b"two"})), "Dockerfile")
    assert changed is not first and (changed.context.root / "a").read_bytes() == b"two"
    cache.release(changed)


def test_another_dockerfile_name_is_another_entry(tmp_path: Path) -> None:
    files = {**CONTEXT, "other.Dockerfile": b"FROM busybox\n"}
    cache = ContextCache(tmp_path / "contexts")
    first = cache.acquire(io.BytesIO(_tar(files)), "Dockerfile")
    other = cache.acquire(io.BytesIO(_tar(files)), "other.Dockerfile")
    assert other is not first and other.context.dockerfile_text == "FROM busybox\n"
    cache.release(first)
    cache.release(other)


def test_only_the_newest_are_kept_and_none_removed_while_read(tmp_path: Path) -> None:
    cache = ContextCache(tmp_path / "contexts", keep=2)
    in_use = cache.acquire(io.BytesIO(_tar({**CONTEXT, "a": b"0"})), "Dockerfile")
    for i in range(1, 4):
        cache.release(cache.acquire(io.BytesIO(_tar({**CONTEXT, "a": str(i).encode()})),
                                    "Dockerfile"))
    assert in_use.root.is_dir()  # evicted, but a build still reads it
    cache.release(in_use)
    assert not in_use.root.exists()
    assert len(list((tmp_path / "contexts").iterdir())) == 2


def test_a_failed_build_leaves_nothing_and_big_contexts_are_not_kept(tmp_path: Path) -> None:
    cache = ContextCache(tmp_path / "contexts", max_bytes=10_000)
    failed = cache.acquire(io.BytesIO(_tar(CONTEXT)), "Dockerfile")
    cache.release(failed, keep=False)
    big = cache.acquire(io.BytesIO(_tar({**CONTEXT, "big": bytes(20_000)})), "Dockerfile")
    cache.release(big)
    assert list((tmp_path / "contexts").iterdir()) == []


def test_a_context_without_its_dockerfile_leaves_nothing(tmp_path: Path) -> None:
    cache = ContextCache(tmp_path / "contexts")
    with pytest.raises(NotFound, match="Cannot locate specified Dockerfile"):
        cache.acquire(io.BytesIO(_tar({"a": b"x"})), "Dockerfile")
    assert list((tmp_path / "contexts").iterdir()) == []
