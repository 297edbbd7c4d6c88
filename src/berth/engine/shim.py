"""The engine's handle on one container's shim: launch, reconnect after a restart, talk.

A thin layer over ``berth.runtime.shim.client``: it decides where the shim's socket, pid file
and log live (``<exec-root>/shims/<id>/``) and forwards the operations.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

from berth.engine.log_config import LogSettings
from berth.errors import BerthError
from berth.runtime.shim.client import AsyncShimClient, start_shim_async
from berth.runtime.shim.forkserver import ForkServer
from berth.runtime.shim.protocol import (
    EXIT_FILE_NAME,
    ExecState,
    ExitStatus,
    ShimConfig,
    load_exit_file,
)

ExitState = ExitStatus

# The shim runs from the same interpreter as the daemon, so a venv install needs no PATH setup.
SHIM_COMMAND = (sys.executable, "-m", "berth.runtime.shim.main")


def read_exit(bundle: Path) -> ExitStatus | None:
    return load_exit_file(str(bundle / EXIT_FILE_NAME))


def start_forkserver(label: str) -> ForkServer:
    """The daemon's shim fork-server; ``label`` (the exec root) names it in ``ps``."""
    return ForkServer.spawn(label)


class Shim:
    def __init__(self, client: AsyncShimClient, state_dir: Path) -> None:
        self._client = client
        self._state_dir = state_dir

    @classmethod
    async def launch(cls, *, container_id: str, bundle: Path, runtime: str, runtime_root: Path,
                     state_dir: Path, log: LogSettings, tty: bool, stdin: bool,
                     stdin_once: bool, forkserver: ForkServer | None = None) -> Shim:
        """Start a shim that runs ``runtime create``; returns once the container exists.

        With the daemon's ``forkserver`` the shim is forked from it rather than started as a
        new interpreter (the difference is most of a ``run``'s latency)."""
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True)
        (bundle / EXIT_FILE_NAME).unlink(missing_ok=True)  # from an earlier run
        runtime_root.mkdir(parents=True, exist_ok=True)
        config = ShimConfig(
            container_id=container_id, bundle=str(bundle),
            socket_path=str(state_dir / "shim.sock"),
            log_path=str(log.path) if log.path is not None else "",
            log_max_size=log.max_size, log_max_files=log.max_files,
            pid_file=str(state_dir / "shim.pid"), runtime=runtime,
            runtime_root=str(runtime_root / Path(runtime).name), tty=tty, open_stdin=stdin,
            stdin_once=stdin_once, debug_log=str(state_dir / "shim.log"))
        try:
            client = await start_shim_async(config, command=SHIM_COMMAND, forkserver=forkserver)
        except BaseException:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        return cls(client, state_dir)

    @classmethod
    async def reconnect(cls, container_id: str, state_dir: Path, bundle: Path) -> Shim | None:
        """The running shim of a container after a daemon restart, or None if it is gone."""
        sock = state_dir / "shim.sock"
        if not sock.exists():
            return None
        client = AsyncShimClient(str(sock), exit_file=str(bundle / EXIT_FILE_NAME))
        try:
            state = await client.state()
        except BerthError:
            return None
        if state.status == "stopped":
            return None
        return cls(client, state_dir)

    async def start(self) -> int:
        return await self._client.start()

    async def wait(self) -> ExitStatus:
        return await self._client.wait()

    async def kill(self, signal: int) -> None:
        await self._client.kill(signal)

    async def pause(self) -> None:
        await self._client.pause()

    async def resume(self) -> None:
        await self._client.resume()

    async def resize(self, height: int, width: int) -> None:
        await self._client.resize(height, width)

    async def attach(self, *, stdin: bool, stdout: bool, stderr: bool
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self._client.attach(stdin=stdin, stdout=stdout, stderr=stderr)

    async def exec(self, exec_id: str, process: dict[str, Any], *, tty: bool, stdin: bool,
                   stdout: bool, stderr: bool, detach: bool
                   ) -> tuple[int, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        return await self._client.exec(exec_id, process, tty=tty, stdin=stdin, stdout=stdout,
                                       stderr=stderr, detach=detach)

    async def exec_state(self, exec_id: str) -> ExecState:
        return await self._client.exec_state(exec_id)

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await self._client.exec_resize(exec_id, height, width)

    async def close(self) -> None:
        """Forget the shim; it exits by itself after the container did."""

    def remove_state(self) -> None:
        shutil.rmtree(self._state_dir, ignore_errors=True)
