"""Shims forked by the fork-server, and berth's own runtime called inside the shim."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.integration.shim.conftest import Container, wait_for_shim_exit

from berth.errors import RuntimeFailure
from berth.runtime.shim.client import iter_frames, start_shim
from berth.runtime.shim.forkserver import ForkServer
from berth.runtime.shim.protocol import ShimConfig

Make = Callable[..., Container]
BERTH_RUNTIME = str(Path(sys.executable).parent / "berth-runtime")


@pytest.fixture()
def forkserver() -> Iterator[ForkServer]:
    server = ForkServer.spawn("berth-shim-test")
    try:
        yield server
    finally:
        server.close()


def _collect(sock: socket.socket) -> list[tuple[int, bytes]]:
    with sock:
        return list(iter_frames(sock))


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def _run(config: ShimConfig, forkserver: ForkServer | None) -> tuple[list[tuple[int, bytes]], int]:
    client = start_shim(config, forkserver=forkserver)
    attached = client.attach(stdout=True, stderr=True)
    client.start()
    frames = _collect(attached)
    code = client.wait(timeout=20).exit_code
    wait_for_shim_exit(config)
    return frames, code


def test_forked_shim_runs_the_container_and_is_nobodys_child(
    make_container: Make, forkserver: ForkServer
) -> None:
    c = make_container(("/bin/sh", "-c", "echo forked; exit 4"))
    client = start_shim(c.config, forkserver=forkserver)
    shim_pid = int(Path(c.config.pid_file).read_text())
    # re-parented away from both berthd (us) and the fork-server
    assert _ppid(shim_pid) not in (forkserver.pid, os.getpid())
    attached = client.attach(stdout=True, stderr=True)
    client.start()
    assert _collect(attached) == [(1, b"forked\n")]
    assert client.wait(timeout=20).exit_code == 4
    wait_for_shim_exit(c.config)


def test_shim_outlives_the_forkserver(make_container: Make, forkserver: ForkServer) -> None:
    c = make_container(("/bin/sh", "-c", "echo still here"))
    client = start_shim(c.config, forkserver=forkserver)
    forkserver.close()  # berthd stopping
    attached = client.attach(stdout=True, stderr=True)
    client.start()
    assert _collect(attached) == [(1, b"still here\n")]
    assert client.wait(timeout=20).exit_code == 0
    wait_for_shim_exit(c.config)


def test_a_dead_forkserver_falls_back_to_spawning(
    make_container: Make, forkserver: ForkServer
) -> None:
    forkserver.close()
    assert not forkserver.alive
    c = make_container(("/bin/sh", "-c", "echo spawned"))
    assert _run(c.config, forkserver) == ([(1, b"spawned\n")], 0)


def test_builtin_runtime_runs_in_the_shim(make_container: Make, forkserver: ForkServer) -> None:
    c = make_container(("/bin/sh", "-c", "echo out; echo err >&2; exit 3"))
    config = dataclasses.replace(c.config, runtime=BERTH_RUNTIME)
    frames, code = _run(config, forkserver)
    assert sorted(frames) == [(1, b"out\n"), (2, b"err\n")] and code == 3


def test_builtin_runtime_gives_the_process_default_signals(
    make_container: Make, forkserver: ForkServer
) -> None:
    # The shim ignores SIGINT and SIGHUP; the container's process must not inherit that.
    c = make_container(("/bin/cat", "/proc/self/status"))
    config = dataclasses.replace(c.config, runtime=BERTH_RUNTIME)
    frames, code = _run(config, forkserver)
    status = b"".join(data for _, data in frames).decode()
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:"))
                  .split()[1], 16)
    assert code == 0 and ignored & 0b11 == 0  # bit 0 SIGHUP, bit 1 SIGINT


def test_builtin_runtime_kill_and_missing_command(
    make_container: Make, forkserver: ForkServer
) -> None:
    c = make_container(("/bin/sleep", "60"))
    config = dataclasses.replace(c.config, runtime=BERTH_RUNTIME)
    client = start_shim(config, forkserver=forkserver)
    client.start()
    client.kill(9)  # PID 1 without handlers ignores SIGTERM
    assert client.wait(timeout=20).exit_code == 137
    wait_for_shim_exit(config)

    missing = make_container(("/no/such/command",))
    config = dataclasses.replace(missing.config, runtime=BERTH_RUNTIME)
    with pytest.raises(RuntimeFailure) as err:
        start_shim(config, forkserver=forkserver).start()
    assert err.value.exit_code == 127
    assert "berth-runtime" in str(err.value)
    wait_for_shim_exit(config)
