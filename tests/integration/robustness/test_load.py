"""Load: many parallel clients running ``run --rm`` and ``run -d`` + ``rm -f`` at once.

Every client gets the right exit code, no container is lost, and afterwards nothing of the
daemon's is left: no containers, no mounts under its root, no shims, no cgroups.
The default run is bounded (20 + 20); ``-m slow`` runs the issue's 50 + 50.
"""

from __future__ import annotations

import glob
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.conftest import Daemon, mounts_under


def _shims(d: Daemon) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(d.exec_root)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines()
            if "shim" in line and "forkserver" not in line]


def _cgroups(ids: set[str]) -> list[str]:
    return [p for cid in ids for p in glob.glob(f"/sys/fs/cgroup/*/berth/{cid}")]


def _leftovers(d: Daemon, ids: set[str]) -> list[str]:
    left = [f"container {c}" for c in d.out("ps", "-aq", "--no-trunc").split()]
    containers = d.data_root / "containers"
    if containers.exists():
        left += [f"dir {p.name}" for p in containers.iterdir()]
    left += [f"mount {m}" for m in mounts_under(d.root)]
    left += [f"shim {s}" for s in _shims(d)]
    left += [f"cgroup {c}" for c in _cgroups(ids)]
    return left


def _assert_nothing_left(d: Daemon, ids: set[str]) -> None:
    deadline = time.monotonic() + 15  # shims and cgroups go a moment after the exit
    while (left := _leftovers(d, ids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left


def _load(d: Daemon, n: int, tag: str) -> dict[str, float]:
    times: dict[str, float] = {}
    pool = ThreadPoolExecutor(max_workers=n)
    try:
        # n × run --rm, each with its own exit code so a mix-up would show
        start = time.monotonic()
        procs = list(pool.map(
            lambda i: d.cli("run", "--rm", "--name", f"{tag}rm{i}", "busybox",
                            "sh", "-c", f"exit {i % 8}", timeout=300), range(n)))
        times["run --rm"] = time.monotonic() - start
        bad = [(i, p.returncode, p.stderr.decode()[-300:]) for i, p in enumerate(procs)
               if p.returncode != i % 8 or p.stderr]
        assert not bad, bad

        # n × run -d, all running at once, then n × rm -f
        start = time.monotonic()
        procs = list(pool.map(
            lambda i: d.cli("run", "-d", "--name", f"{tag}d{i}", "busybox", "sleep", "30",
                            timeout=300), range(n)))
        times["run -d"] = time.monotonic() - start
        bad = [(i, p.returncode, p.stderr.decode()[-300:]) for i, p in enumerate(procs)
               if p.returncode != 0]
        assert not bad, bad
        ids = {p.stdout.decode().strip() for p in procs}
        assert len(ids) == n and all(len(c) == 64 for c in ids), ids
        running = set(d.out("ps", "-q", "--no-trunc", "--filter", "status=running").split())
        assert ids <= running, f"lost containers: {ids - running}"

        start = time.monotonic()
        procs = list(pool.map(lambda c: d.cli("rm", "-f", c, timeout=300), sorted(ids)))
        times["rm -f"] = time.monotonic() - start
        bad = [(-1, p.returncode, p.stderr.decode()[-300:]) for p in procs
               if p.returncode != 0 or p.stderr]
        assert not bad, bad
        assert sorted(p.stdout.decode().strip() for p in procs) == sorted(ids)
        _assert_nothing_left(d, ids)
    finally:
        pool.shutdown()
    print(f"\nload {n}+{n}: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    return times


def _loaded(d: Daemon, tar: Path) -> Daemon:
    d.out("load", "-i", str(tar))
    return d


@pytest.mark.timeout(300)
def test_load_bounded(fresh_daemon, test_images) -> None:  # type: ignore[no-untyped-def]
    _load(_loaded(fresh_daemon, test_images.busybox_docker_tar), 20, "lb")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_load_50(fresh_daemon, test_images) -> None:  # type: ignore[no-untyped-def]
    _load(_loaded(fresh_daemon, test_images.busybox_docker_tar), 50, "lf")
