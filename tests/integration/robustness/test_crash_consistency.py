"""kill -9 berthd in the middle of create, start, rm, load, build and volume rm; after a restart
every object is either fully there or fully gone, and nothing (mounts, shims, containers, build
steps, layers, blobs, volume directories) is leaked.

An injection point is a moment after the operation's request went out: the loop sleeps, then
kills. For load, build and volume rm the test first times one uninterrupted run and spreads the
points over that time in equal strata, so even the bounded run lands early, in the middle and
late; the others get a random moment in the first quarter second. The default run tries a few
points per kind; ``-m slow`` many more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.conftest import mounts_under

BUILD_STEPS = (
    "FROM busybox\n"
    "RUN echo one > /one\n"
    "COPY file /file\n"
    "RUN dd if=/dev/zero of=/big bs=1M count=4 2>/dev/null\n"
    "VOLUME /data\n"
    "RUN mkdir -p /data && echo two > /data/two\n"
    "RUN echo done > /marker\n"
)
VOLUME_FILES = 1500
CREATE_VOLUMES = 16
LOAD_TAG = "layered"  # loaded, then removed again, so that every load writes layers


def _kill9(d) -> None:  # type: ignore[no-untyped-def]
    d.process.send_signal(signal.SIGKILL)
    d.process.wait(10)


def _cli_async(d, *args: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    from tests.conftest import _tool

    return subprocess.Popen([*_tool("berth"), "-H", d.host, *args], env=d.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _container_dirs(d) -> set[str]:  # type: ignore[no-untyped-def]
    root = d.data_root / "containers"
    return {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()


def _shims(d) -> list[str]:  # type: ignore[no-untyped-def]
    out = subprocess.run(["pgrep", "-af", str(d.exec_root)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines()
            if "shim" in line and "forkserver" not in line]


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def _db_rows(d, sql: str) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(f"file:{d.data_root / 'berth.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def check_images_whole(d) -> None:  # type: ignore[no-untyped-def]
    """Every recorded image has its config, manifest, layer blobs and unpacked layers; every
    unpacked layer and every blob belongs to a recorded image (nothing half-committed)."""
    blobs_dir = d.data_root / "content" / "blobs" / "sha256"
    layers_dir = d.data_root / "layers"
    want_blobs: set[str] = set()
    want_layers: set[str] = set()
    for image_id, manifest, chain in _db_rows(d, "SELECT id, manifest, chain FROM images"):
        digests = [str(image_id), str(manifest)]
        assert (blobs_dir / str(manifest).removeprefix("sha256:")).is_file(), \
            f"image {image_id} has no manifest blob"
        body = json.loads((blobs_dir / str(manifest).removeprefix("sha256:")).read_text())
        digests += [layer["digest"] for layer in body["layers"]]
        for digest in digests:
            assert (blobs_dir / digest.removeprefix("sha256:")).is_file(), \
                f"image {image_id} lacks blob {digest}"
        for chain_id in json.loads(str(chain)):
            hex_id = chain_id.removeprefix("sha256:")
            assert (layers_dir / hex_id / "layer.json").is_file(), \
                f"image {image_id} lacks layer {chain_id}"
            want_layers.add(hex_id)
        want_blobs.update(x.removeprefix("sha256:") for x in digests)
    for ref, image_id in _db_rows(d, "SELECT ref, image_id FROM image_refs"):
        assert _db_rows(d, f"SELECT 1 FROM images WHERE id = '{image_id}'"), \
            f"{ref} names a missing image"
    stray_layers = set(_entries(layers_dir)) - want_layers
    assert not stray_layers, f"layers no image uses: {stray_layers}"
    stray_blobs = set(_entries(blobs_dir)) - want_blobs
    assert not stray_blobs, f"blobs no image uses: {stray_blobs}"
    assert not _entries(d.data_root / "content" / "ingest")


def check_volumes_whole(d) -> None:  # type: ignore[no-untyped-def]
    """A volume directory for each volume record and none without one."""
    rows = {str(r[0]) for r in _db_rows(d, "SELECT name FROM volumes")}
    listed = set(d.out("volume", "ls", "-q").split())
    assert listed == rows
    dirs = set(_entries(d.data_root / "volumes"))
    assert dirs == rows, f"volume dirs {dirs} vs records {rows}"


def check_consistent(d) -> None:  # type: ignore[no-untyped-def]
    """Every container the daemon lists is whole; nothing on disk is unaccounted for."""
    ids = set(d.out("ps", "-aq", "--no-trunc").split())
    orphans = _container_dirs(d) - ids
    assert not orphans, f"container dirs without a container: {orphans}"
    for cid in ids:
        assert (d.data_root / "containers" / cid).is_dir(), f"{cid} has no directory"
        d.out("inspect", cid)
    check_images_whole(d)
    check_volumes_whole(d)
    # every container went with its anonymous volumes: one left is a create's that never
    # recorded its container
    assert not d.out("volume", "ls", "-q", "--filter", "dangling=true").split()
    # the image survived and still runs
    assert d.out("run", "--rm", "busybox", "echo", "ok") == "ok\n"
    if ids:
        d.out("rm", "-f", "-v", *ids, timeout=120)
    _wait_settled(d)
    assert not mounts_under(d.root), mounts_under(d.root)
    assert not _shims(d), _shims(d)
    assert not _container_dirs(d)


def _wait_settled(d) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while (_shims(d) or mounts_under(d.root)) and time.monotonic() < deadline:
        time.sleep(0.2)


# -- build ---------------------------------------------------------------------------------


def _build_context(d) -> Path:  # type: ignore[no-untyped-def]
    ctx: Path = d.root / "build-context"
    if not ctx.is_dir():
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(BUILD_STEPS)
        (ctx / "file").write_text("file\n")
    return ctx


def check_after_build(d, tag: str) -> None:  # type: ignore[no-untyped-def]
    """No build container, shim, mount or step directory is left; the tag names the finished
    image or nothing; building again works."""
    assert d.out("ps", "-aq", "--no-trunc") == "", "a build container survived the restart"
    _wait_settled(d)
    assert not _shims(d), _shims(d)
    assert not mounts_under(d.root), mounts_under(d.root)
    assert not _container_dirs(d), _container_dirs(d)
    builder = d.data_root / "builder"
    assert not _entries(builder / "steps"), _entries(builder / "steps")
    assert not _entries(builder / "contexts"), _entries(builder / "contexts")
    assert not [n for n in _entries(builder) if n.startswith("commit-")]
    check_images_whole(d)
    if d.cli("image", "inspect", tag).returncode == 0:
        assert d.out("run", "--rm", tag, "cat", "/marker", "/data/two") == "done\ntwo\n"
    d.out("build", "-t", tag, str(_build_context(d)), timeout=120)
    assert d.out("run", "--rm", tag, "cat", "/marker", "/data/two") == "done\ntwo\n"


# -- volume rm -----------------------------------------------------------------------------


def _fill_volume(d, name: str) -> None:  # type: ignore[no-untyped-def]
    d.out("volume", "create", name)
    d.out("run", "--rm", "-v", f"{name}:/d", "busybox", "sh", "-c",
          f"cd /d && seq 1 {VOLUME_FILES} | xargs touch && echo data > f", timeout=120)


def check_after_volume_rm(d, name: str) -> None:  # type: ignore[no-untyped-def]
    """The volume is whole (listed, every file there) or gone (no record, no directory)."""
    vdir = d.data_root / "volumes" / name
    rows = _db_rows(d, f"SELECT name FROM volumes WHERE name = '{name}'")
    if name in d.out("volume", "ls", "-q").split():
        assert rows
        data = vdir / "_data"
        assert (data / "f").is_file(), f"{name} is listed but lost its data"
        assert (data / "f").read_text() == "data\n"
        assert len(_entries(data)) == VOLUME_FILES + 1, f"{name} is listed but lost files"
        d.out("volume", "rm", name)
    else:
        assert not rows, f"{name} is not listed but has a record"
        assert not vdir.exists(), f"{name} is gone but its directory is not"
    check_volumes_whole(d)


# -- the loop ------------------------------------------------------------------------------


@dataclass
class _Plan:
    """Where to kill: the operation's kind, its number, and how long to wait after starting it."""

    kinds: tuple[str, ...]
    points: int
    seed: int
    durations: dict[str, float] = field(default_factory=dict)

    def delay(self, rng: random.Random, kind: str, n: int) -> float:
        if kind not in self.durations:
            return rng.uniform(0.0, 0.25)
        rounds = max(1, self.points // len(self.kinds))
        stratum = (n // len(self.kinds)) % rounds
        return self.durations[kind] * (stratum + rng.random()) / rounds


def _time_uninterrupted(d, kinds: tuple[str, ...], archive: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    durations: dict[str, float] = {}
    if "load" in kinds:
        start = time.monotonic()
        d.out("load", "-i", archive)
        durations["load"] = time.monotonic() - start
        d.out("rmi", LOAD_TAG)
    if "build" in kinds:
        start = time.monotonic()
        d.out("build", "--no-cache", "-t", "cc-warmup", str(_build_context(d)), timeout=120)
        durations["build"] = time.monotonic() - start
        d.out("rmi", "cc-warmup")
    if "volume-rm" in kinds:
        _fill_volume(d, "cc-warmup")
        start = time.monotonic()
        d.out("volume", "rm", "cc-warmup")
        durations["volume-rm"] = time.monotonic() - start
    return durations


def _operation(d, kind: str, n: int, archive: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    if kind == "create":
        # anonymous volumes are made before the container is recorded: a longer window
        volumes = [arg for i in range(CREATE_VOLUMES) for arg in ("-v", f"/anon{i}")]
        return _cli_async(d, "create", "--name", f"cc{n}", *volumes, "busybox", "true")
    if kind == "start":
        d.out("create", "--name", f"cs{n}", "busybox", "sleep", "30")
        return _cli_async(d, "start", f"cs{n}")
    if kind == "run":
        return _cli_async(d, "run", "-d", "--name", f"cr{n}", "busybox", "sleep", "30")
    if kind == "rm":
        d.out("run", "-d", "--name", f"cx{n}", "busybox", "sleep", "30")
        return _cli_async(d, "rm", "-f", f"cx{n}")
    if kind == "load":
        return _cli_async(d, "load", "-i", archive)
    if kind == "build":
        return _cli_async(d, "build", "--no-cache", "-t", f"ccb{n}", str(_build_context(d)))
    if kind == "volume-rm":
        _fill_volume(d, f"ccv{n}")
        return _cli_async(d, "volume", "rm", f"ccv{n}")
    raise AssertionError(kind)


def _check_after(d, kind: str, n: int) -> None:  # type: ignore[no-untyped-def]
    if kind == "build":
        check_after_build(d, f"ccb{n}")
    elif kind == "volume-rm":
        check_after_volume_rm(d, f"ccv{n}")
    check_consistent(d)
    if kind == "load" and d.cli("image", "inspect", LOAD_TAG).returncode == 0:
        d.out("rmi", LOAD_TAG)  # so that the next load writes its layers again
        check_images_whole(d)


def _loop(d, archive: str, plan: _Plan) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(plan.seed)
    plan.durations = _time_uninterrupted(d, plan.kinds, archive)
    for n in range(plan.points):
        kind = plan.kinds[n % len(plan.kinds)]
        proc = _operation(d, kind, n, archive)
        delay = plan.delay(rng, kind, n)
        time.sleep(delay)
        _kill9(d)
        proc.communicate(timeout=30)
        d.restart()
        try:
            _check_after(d, kind, n)
        except AssertionError as err:
            raise AssertionError(
                f"after kill -9 during {kind} (point {n}, {delay:.3f}s in): {err}") from None


_CORE_KINDS = ("create", "start", "run", "rm", "load")
_BUILD_AND_VOLUME_KINDS = ("build", "volume-rm")


def test_kill9_during_operations_bounded(fresh_daemon, test_images) -> None:  # type: ignore[no-untyped-def]
    fresh_daemon.out("load", "-i", str(test_images.busybox_docker_tar))
    _loop(fresh_daemon, str(test_images.layered_docker_tar),
          _Plan(_CORE_KINDS, points=5, seed=9))


def test_kill9_during_build_and_volume_rm_bounded(fresh_daemon, test_images) -> None:  # type: ignore[no-untyped-def]
    fresh_daemon.out("load", "-i", str(test_images.busybox_docker_tar))
    _loop(fresh_daemon, str(test_images.layered_docker_tar),
          _Plan(_BUILD_AND_VOLUME_KINDS, points=6, seed=4))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kill9_during_operations_long(fresh_daemon, test_images) -> None:  # type: ignore[no-untyped-def]
    fresh_daemon.out("load", "-i", str(test_images.busybox_docker_tar))
    _loop(fresh_daemon, str(test_images.layered_docker_tar),
          _Plan(_CORE_KINDS + _BUILD_AND_VOLUME_KINDS, points=70,
                seed=int(os.environ.get("BERTH_CRASH_SEED", "99"))))
