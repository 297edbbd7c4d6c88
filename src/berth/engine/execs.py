"""``docker exec``: extra processes in a running container.

An exec is created (its configuration recorded, nothing runs), then started once: the process
is built from the container's own runtime spec input with the exec's command, environment,
user, working directory and tty replaced, and handed to the container's shim, which runs the
OCI runtime's ``exec`` (all of the container's namespaces and its cgroup). The shim holds the
exec's stdio; a start that is not detached gets the stream back.

Execs live in memory, as in dockerd: a daemon restart forgets them; removing the container
forgets its execs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from berth.engine import launch
from berth.engine.container_files import merge_env, process_env
from berth.engine.containers import ContainerService
from berth.engine.model import ContainerRecord
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound
from berth.runtime import spec as runtime_spec
from berth.runtime.users import resolve_user

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, dict[str, str]], None]  # (action, container id, attributes)

POLL_DETACHED = 0.1  # how often a detached exec's state is asked for until it ends
KEEP_ENDED = 256  # ended execs kept for inspection; older ones are forgotten (a healthcheck
# running every few seconds must not grow the daemon without bound)


@dataclass(frozen=True)
class ExecConfig:
    """Docker's ``ExecConfig`` (the body of ``POST /containers/{id}/exec``)."""

    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    privileged: bool = False
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    detach_keys: str = ""


@dataclass(frozen=True)
class ExecView:
    """What ``GET /exec/{id}/json`` shows."""

    id: str
    container_id: str
    config: ExecConfig
    running: bool
    exit_code: int | None
    pid: int
    can_remove: bool = False


@dataclass(frozen=True)
class ExecStream:
    """The started exec's stdio at the shim: frames out, raw stdin in (``write_eof`` ends it)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tty: bool


class _Exec:
    """One exec's changing state (the record the service keeps; views are frozen copies)."""

    def __init__(self, exec_id: str, container_id: str, config: ExecConfig) -> None:
        self.id = exec_id
        self.container_id = container_id
        self.config = config
        self.started = False
        self.running = False
        self.exit_code: int | None = None
        self.pid = 0

    def view(self) -> ExecView:
        return ExecView(self.id, self.container_id, self.config, self.running, self.exit_code,
                        self.pid)


class ExecService:
    def __init__(self, containers: ContainerService, on_event: EventSink | None = None) -> None:
        self._containers = containers
        self._on_event = on_event or (lambda action, cid, attrs: None)
        self._execs: dict[str, _Exec] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    # -- create and inspect -----------------------------------------------------------------

    def create(self, ref: str, config: ExecConfig) -> str:
        if not config.cmd:
            raise InvalidArgument("No exec command specified")
        record, _ = self._containers.running_shim(ref)
        exec_id = secrets.token_hex(32)
        self._forget_old()
        self._execs[exec_id] = _Exec(exec_id, record.id, config)
        self._containers.note_exec(record.id, exec_id, True)
        self._event(record.id, "exec_create: " + " ".join(config.cmd), exec_id)
        return exec_id

    def _get(self, exec_id: str) -> _Exec:
        ex = self._execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex

    async def inspect(self, exec_id: str) -> ExecView:
        ex = self._get(exec_id)
        if ex.running:
            await self._refresh(ex)
        return ex.view()

    def _forget_old(self) -> None:
        ended = [e.id for e in self._execs.values() if e.started and not e.running]
        for exec_id in ended[:max(0, len(ended) - KEEP_ENDED + 1)]:
            del self._execs[exec_id]

    def forget_container(self, container_id: str) -> None:
        """The container is gone: so are its execs (``GET /exec/{id}/json`` answers 404)."""
        for exec_id in [e.id for e in self._execs.values() if e.container_id == container_id]:
            del self._execs[exec_id]

    # -- start --------------------------------------------------------------------------------

    def check_startable(self, exec_id: str) -> ExecView:
        """Docker's 404/409 checks, done before the connection is hijacked."""
        ex = self._get(exec_id)
        if ex.exit_code is not None or (ex.started and not ex.running):
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        if ex.running or ex.started:
            raise Conflict(f"Error: Exec command {exec_id} is already running")
        self._containers.running_shim(ex.container_id)
        return ex.view()

    async def start(self, exec_id: str, detach: bool) -> ExecStream | None:
        """Run the exec; its stream (or None when detached). Failures to start (command not
        found...) raise RuntimeFailure with Docker's exit code, which the exec keeps."""
        self.check_startable(exec_id)
        ex = self._get(exec_id)
        ex.started = True
        cfg = ex.config
        try:
            record, shim = self._containers.running_shim(ex.container_id)
            process = await asyncio.to_thread(self._process, record, cfg)
            pid, stream = await shim.exec(
                exec_id, process, tty=cfg.tty, stdin=cfg.attach_stdin and not detach,
                stdout=cfg.attach_stdout, stderr=cfg.attach_stderr, detach=detach)
        except BerthError as err:
            ex.exit_code = getattr(err, "exit_code", 126)
            self._ended(ex)
            raise
        ex.pid, ex.running = pid, True
        self._event(ex.container_id, "exec_start: " + " ".join(cfg.cmd), exec_id)
        if stream is None:
            task = asyncio.get_running_loop().create_task(self._watch(ex))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)
            return None
        return ExecStream(stream[0], stream[1], cfg.tty)

    async def stream_ended(self, exec_id: str) -> None:
        """The start's stream ended (the process exited and its output drained)."""
        ex = self._execs.get(exec_id)
        if ex is not None and ex.running:
            await self._refresh(ex)

    def _process(self, record: ContainerRecord, cfg: ExecConfig) -> dict[str, Any]:
        """The container's process with the exec's changes (reads the rootfs: a thread)."""
        cdir = self._containers.container_dir(record.id)
        rootfs = cdir / "rootfs"
        base = launch.build_spec_input(record, cdir, rootfs)
        user = resolve_user(str(rootfs), cfg.user or record.config.user,
                            record.host_config.group_add)
        env = process_env(record)
        if cfg.tty and not record.config.tty:
            env = merge_env(env, ["TERM=xterm"])
        env = merge_env(env, list(cfg.env))
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home or '/'}")
        inp = replace(base, args=cfg.cmd, env=tuple(env),
                      cwd=cfg.working_dir or base.cwd, uid=user.uid, gid=user.gid,
                      additional_gids=user.additional_gids, tty=cfg.tty,
                      privileged=base.privileged or cfg.privileged)
        return runtime_spec.build_process(inp)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        ex = self._get(exec_id)
        if not ex.running:
            raise Conflict(f"Exec {exec_id} is not running")
        _, shim = self._containers.running_shim(ex.container_id)
        await shim.exec_resize(exec_id, height, width)

    # -- the end of an exec -------------------------------------------------------------------

    async def _refresh(self, ex: _Exec) -> None:
        try:
            _, shim = self._containers.running_shim(ex.container_id)
            state = await shim.exec_state(ex.id)
        except BerthError as err:
            # the container (and its shim) ended: so did the exec
            log.debug("exec %s: no state (%s)", ex.id, err)
            self._ended(ex)
            return
        if not state.running:
            ex.exit_code = state.exit_code
            self._ended(ex)

    def _ended(self, ex: _Exec) -> None:
        was_running = ex.running
        ex.running = False
        self._containers.note_exec(ex.container_id, ex.id, False)
        if was_running:
            attrs = {"execID": ex.id}
            if ex.exit_code is not None:
                attrs["exitCode"] = str(ex.exit_code)
            self._on_event("exec_die", ex.container_id, attrs)

    async def _watch(self, ex: _Exec) -> None:
        while ex.running:
            await asyncio.sleep(POLL_DETACHED)
            await self._refresh(ex)

    def _event(self, container_id: str, action: str, exec_id: str) -> None:
        self._on_event(action, container_id, {"execID": exec_id})

    async def close(self) -> None:
        for task in list(self._watchers):
            task.cancel()
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
