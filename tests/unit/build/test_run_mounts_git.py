"""Pure parts of RUN --mount and ADD <git>: source parsing, mount resolution, stub removal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from berth.build.git_source import is_git_source, parse_git_source
from berth.build.instructions import parse_mount
from berth.build.run_mounts import check_supported, resolve_mounts
from berth.engine.build_mounts import CacheMounts, remove_stubs
from berth.errors import NotImplementedByBerth


@pytest.mark.parametrize(("source", "git"), [
    ("https://h/o/r.git", True), ("https://h/o/r.git#main:sub", True), ("git@h:o/r.git", True),
    ("git://h/r", True), ("ssh://git@h/r.git", True), ("https://h/f.tgz", False),
    ("r.git", False),
])
def test_is_git_source(source, git):
    assert is_git_source(source) is git


def test_parse_git_source_fragment():
    g = parse_git_source("https://h/r.git#v1:a/../b/c")
    assert (g.url, g.ref, g.subdir) == ("https://h/r.git", "v1", "b/c")
    g = parse_git_source("git@h:o/r.git")
    assert (g.url, g.ref, g.subdir) == ("git@h:o/r.git", "", "")
    assert parse_git_source("https://h/r.git#:../../x").subdir == "x"


def test_secret_and_ssh_refused():
    with pytest.raises(NotImplementedByBerth, match="type=secret is not supported"):
        check_supported((parse_mount("type=secret,id=a"),), 3)
    with pytest.raises(NotImplementedByBerth, match="type=ssh"):
        check_supported((parse_mount("type=ssh"),), 3)


def test_resolve_mounts_relative_target_and_context_key(tmp_path: Path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("1")

    async def root_for(ref: str) -> tuple[Path, str]:
        raise AssertionError(ref)

    async def resolve() -> tuple[object, str]:
        return await resolve_mounts(
            (parse_mount("type=cache,target=c"), parse_mount("target=/m,source=f")),
            workdir="/w", context_root=ctx, root_for=root_for, scratch=tmp_path)

    mounts, key = asyncio.run(resolve())
    assert [(m.kind, m.target, m.cache_id) for m in mounts] == [  # type: ignore[attr-defined]
        ("cache", "/w/c", "c"), ("bind", "/m", "")]  # id: the target as written (BuildKit)
    (ctx / "f").write_text("2")
    assert asyncio.run(resolve())[1] != key  # the bound file's content is in the key


def test_remove_stubs_keeps_real_changes(tmp_path: Path):
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    (upper / "new/deep/mnt").mkdir(parents=True)  # runtime-made chain
    (upper / "usr/cache").mkdir(parents=True)  # usr copied up, cache made
    (upper / "usr/kept").write_text("x")
    (upper / "file-mnt").touch()
    (lower / "usr").mkdir(parents=True)
    (lower / "existing").mkdir()
    (upper / "existing").mkdir()  # exists below: not a stub
    remove_stubs(upper, [lower], ["/new/deep/mnt", "/usr/cache", "/file-mnt", "/existing"])
    assert sorted(p.name for p in upper.iterdir()) == ["existing", "usr"]
    assert [p.name for p in (upper / "usr").iterdir()] == ["kept"]


def test_cache_dir_names_are_safe(tmp_path: Path):
    cm = CacheMounts(tmp_path / "cm")
    for cache_id in ("/root/.cache", "..", "a/../../b"):
        path = cm.path_for(cache_id)
        assert path.parent == tmp_path / "cm" and "/" not in path.name and path.name != ".."
