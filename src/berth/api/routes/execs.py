"""``/containers/{id}/exec`` and ``/exec/{id}/...``: thin adapters over the exec service.

``start`` hijacks the connection as attach does: the exec's output goes out as multiplexed
frames (raw bytes with a tty), the client's input goes to the exec's stdin, and the client's
half-close ends that stdin. A failure to start after the hijack is written into the stream, as
dockerd does, and the exec keeps the exit code (``GET /exec/{id}/json``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from berth.api.attach import parse_detach_keys, relay
from berth.api.streams import (
    RAW_STREAM,
    STDOUT,
    HijackedConnection,
    encode_frame,
    hijack,
    json_response,
    read_json_body,
)
from berth.engine.execs import ExecConfig, ExecService, ExecStream, ExecView
from berth.errors import BerthError, InvalidArgument

if TYPE_CHECKING:
    from berth.api.app import ApiRouter

log = logging.getLogger(__name__)


def _strings(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {key}: expected a list of strings")
    return tuple(value)


def parse_exec_config(body: Any) -> ExecConfig:
    if not isinstance(body, dict):
        raise InvalidArgument("invalid exec configuration: expected a JSON object")
    return ExecConfig(
        cmd=_strings(body, "Cmd"), env=_strings(body, "Env"), user=body.get("User") or "",
        working_dir=body.get("WorkingDir") or "", privileged=bool(body.get("Privileged")),
        tty=bool(body.get("Tty")), attach_stdin=bool(body.get("AttachStdin")),
        attach_stdout=bool(body.get("AttachStdout")),
        attach_stderr=bool(body.get("AttachStderr")),
        detach_keys=body.get("DetachKeys") or "")


def render_exec(view: ExecView) -> dict[str, Any]:
    cfg = view.config
    process: dict[str, Any] = {"tty": cfg.tty, "entrypoint": cfg.cmd[0] if cfg.cmd else "",
                               "arguments": list(cfg.cmd[1:]), "privileged": cfg.privileged}
    if cfg.user:
        process["user"] = cfg.user
    return {
        "ID": view.id, "Running": view.running, "ExitCode": view.exit_code,
        "ProcessConfig": process, "OpenStdin": cfg.attach_stdin,
        "OpenStderr": cfg.attach_stderr, "OpenStdout": cfg.attach_stdout,
        "CanRemove": view.can_remove, "ContainerID": view.container_id,
        "DetachKeys": cfg.detach_keys, "Pid": view.pid,
    }


class ExecRoutes:
    def __init__(self, service: ExecService) -> None:
        self.service = service

    def register(self, router: ApiRouter) -> None:
        router.add("POST", "/containers/{id}/exec", self.create)
        router.add("POST", "/exec/{id}/start", self.start)
        router.add("POST", "/exec/{id}/resize", self.resize)
        router.add("GET", "/exec/{id}/json", self.inspect)

    async def create(self, request: web.Request) -> web.StreamResponse:
        config = parse_exec_config(await read_json_body(request))
        exec_id = self.service.create(request.match_info["id"], config)
        return json_response({"Id": exec_id}, status=201)

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        return json_response(render_exec(await self.service.inspect(request.match_info["id"])))

    async def resize(self, request: web.Request) -> web.StreamResponse:
        try:
            height = int(request.query.get("h") or 0)
            width = int(request.query.get("w") or 0)
        except ValueError as err:
            raise InvalidArgument(f"invalid resize parameters: {err}") from err
        await self.service.resize(request.match_info["id"], height, width)
        return web.Response(status=200)

    async def start(self, request: web.Request) -> web.StreamResponse:
        exec_id = request.match_info["id"]
        body = await read_json_body(request) or {}
        if not isinstance(body, dict):
            raise InvalidArgument("invalid exec start configuration")
        view = self.service.check_startable(exec_id)
        if body.get("Detach"):
            await self.service.start(exec_id, detach=True)
            return web.Response(status=200)
        keys = parse_detach_keys(view.config.detach_keys or None)
        conn = await hijack(request, RAW_STREAM)
        try:
            try:
                stream = await self.service.start(exec_id, detach=False)
            except BerthError as err:
                message = (err.message + "\r\n").encode()
                conn.writer.write(message if view.config.tty else encode_frame(STDOUT, message))
                await conn.writer.drain()
                return conn.response
            assert stream is not None
            await _pump(conn, stream, view.config.attach_stdin, keys)
        except (ConnectionError, OSError):
            pass  # the client went away: the exec goes on
        finally:
            with contextlib.suppress(BerthError):
                await self.service.stream_ended(exec_id)
            await conn.close()
        return conn.response


async def _pump(conn: HijackedConnection, stream: ExecStream, stdin: bool, keys: bytes) -> None:
    await relay(conn, stream.reader, stream.writer, tty=stream.tty, stdin=stdin,
                detach_keys=keys)
