"""kill -9 berthd in the middle of create, start, rm and load; after a restart every object is
either fully there or fully gone, and nothing (mounts, shims, containers) is leaked.

The default run tries a few injection points; ``-m slow`` loops over many more.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest
from tests.conftest import mounts_under


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


def check_consistent(d) -> None:  # type: ignore[no-untyped-def]
    """Every container the daemon lists is whole; nothing on disk is unaccounted for."""
    ids = set(d.out("ps", "-aq", "--no-trunc").split())
    orphans = _container_dirs(d) - ids
    assert not orphans, f"container dirs without a container: {orphans}"
    for cid in ids:
        assert (d.data_root / "containers" / cid).is_dir(), f"{cid} has no directory"
        d.out("inspect", cid)
    # the image survived and still runs
    assert d.out("run", "--rm", "busybox", "echo", "ok") == "ok\n"
    if ids:
        d.out("rm", "-f", *ids, timeout=120)
    deadline = time.monotonic() + 10
    while (_shims(d) or mounts_under(d.root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not mounts_under(d.root), mounts_under(d.root)
    assert not _shims(d), _shims(d)
    assert not _container_dirs(d)


def _operation(d, kind: str, n: int, archive: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    if kind == "create":
        return _cli_async(d, "create", "--name", f"cc{n}", "busybox", "true")
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
    raise AssertionError(kind)


def _loop(d, archive: str, points: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    kinds = ["create", "start", "run", "rm", "load"]
    for n in range(points):
        kind = kinds[n % len(kinds)]
        proc = _operation(d, kind, n, archive)
        time.sleep(rng.uniform(0.0, 0.25))
        _kill9(d)
        proc.communicate(timeout=30)
        d.restart()
        try:
            check_consistent(d)
        except AssertionError as err:
            raise AssertionError(f"after kill -9 during {kind} (point {n}): {err}") from None


def test_kill9_during_operations_bounded(fresh_daemon, test_images):
    fresh_daemon.out("load", "-i", str(test_images.busybox_docker_tar))
    _loop(fresh_daemon, str(test_images.busybox_docker_tar), points=5, seed=9)


@pytest.mark.slow
def test_kill9_during_operations_long(fresh_daemon, test_images):
    fresh_daemon.out("load", "-i", str(test_images.busybox_docker_tar))
    _loop(fresh_daemon, str(test_images.busybox_docker_tar), points=40, seed=99)
